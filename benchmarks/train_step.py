"""Training-step and sampling speed of the paper's setting (VGG19 teacher, G with fc_dim 4096,
batch 12) against the machine's own matrix-product peak.

    python benchmarks/train_step.py [--sizes 64,128,224] [--quick] [--compile] [--json out.json]

For Stage I and Stage II steps at each size it times two paths, each case in a fresh process (so
that peak memory is the case's own):

- naive: what a straightforward port does. fp32, eager, default (NCHW) memory format, for-loop
  Adam, and a teacher loaded but never frozen, so the pass on the real images runs with autograd
  recording a graph through the teacher's weights, the loss back-propagates into it and computes the
  teacher's weight gradients nobody uses; the teacher is run on the real images inside each loss
  term (one term per stage here, so once per step).
- sdn train: the real `sdn.training.train_step` and loss classes with `training_loop`'s defaults
  (read from its signature: bf16 autocast, channels-last, fused Adam, no autograd graph for the
  teacher's real pass, one such pass shared by every loss term).

Stage II at the largest size also runs with --grad-checkpointing, for its peak memory. Sampling:
batch-1 latency and batch-64 throughput of `sdn.sampling.Sampler` (inference mode, bf16,
channels-last) at the largest size. `--compile` adds the sdn-train path under torch.compile at the
smallest size, with its compile time.

Columns: GFLOP/step counts the convolutions and matrix products, forward and backward, of one step
as each path runs it (torch.utils.flop_counter), so the naive path's wasted teacher gradients count
as its work; "% of peak" divides the achieved rate by the largest torch.mm rate measured here in the
same precision (bf16 for sdn train and sampling, fp32 for naive). Memory on CPU: peak resident set
(ru_maxrss) of the case's process, and that peak minus the resident set just before the first step
(model weights and the process itself excluded; gradients, Adam state and activations included).
On CUDA: torch.cuda.max_memory_allocated, and the same minus what was allocated before the first step.
The VGG19 teacher has random weights (speed does not depend on them).
"""

from __future__ import annotations

import argparse
import inspect
import json
import math
import os
import resource
import subprocess
import sys
import time
import warnings

import torch

TEXT_DIM = 384  # all-MiniLM-L6-v2's embedding size
FC_DIM = 4096  # the paper's g-fc8 / g-fc7 width


# ---------------------------------------------------------------------------------------------
# One case, run in its own process.

def _rss_mb() -> float | None:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return None


def _peak_rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes on macOS, KiB on Linux


def _memory_probe(dev: torch.device):
    """-> (start(), finish() -> (peak MB, peak above the start MB))."""
    if dev.type == "cuda":
        def start():
            torch.cuda.synchronize(dev)
            torch.cuda.reset_peak_memory_stats(dev)
            return torch.cuda.memory_allocated(dev) / 2**20

        def finish(before):
            peak = torch.cuda.max_memory_allocated(dev) / 2**20
            return peak, peak - before
    else:
        def start():
            return _rss_mb()

        def finish(before):
            peak = _peak_rss_mb()
            return peak, (None if before is None else max(0.0, peak - before))
    return start, finish


def _count_flops(fn) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return float(counter.get_total_flops())


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def naive_step(generator, teacher, loss_fn, stage, real, text, optimizer) -> float:
    """A straightforward port's step: fp32, and the teacher's real pass inside the loss term with
    autograd on (the teacher was never frozen, so a graph through its weights is recorded)."""
    images, acts = generator(text)
    real_feats = teacher(real)
    fake_feats = teacher(images.flatten(0, 1)) if stage == "stage2" else None
    loss = loss_fn(real=real, images=images, real_feats=real_feats, fake_feats=fake_feats, generator_acts=acts)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss.item()


def run_train_case(spec: dict) -> dict:
    from sdn.generator import Generator
    from sdn.losses import Stage1Loss, Stage2Loss
    from sdn.teachers import build_teacher
    from sdn.training import host_to_device, make_adam, train_step, training_loop

    defaults = {k: p.default for k, p in inspect.signature(training_loop).parameters.items()}
    dev, size, batch, stage = torch.device(spec["device"]), spec["size"], spec["batch"], spec["stage"]
    torch.manual_seed(0)
    teacher = build_teacher("vgg19", None, "random", defaults["teacher_pooling"], size)
    generator = Generator(teacher.taps, size, TEXT_DIM, FC_DIM, grad_checkpointing=spec.get("grad_checkpointing", False))
    loss_fn = (Stage1Loss if stage == "stage1" else Stage2Loss)(torch.ones(len(teacher.taps)), defaults["pixel_weight"])
    images_u8 = torch.randint(0, 256, (batch, 3, size, size), dtype=torch.uint8)
    text = torch.randn(batch, TEXT_DIM)

    if spec["path"] == "naive":
        precision = "fp32"
        teacher.requires_grad_(True)
        generator.to(dev)
        teacher.to(dev)
        optimizer = torch.optim.Adam(generator.parameters(), lr=defaults["lr"], foreach=False)

        def step():
            real = images_u8.to(dev).float() / 255
            return naive_step(generator, teacher, loss_fn, stage, real, text.to(dev), optimizer)

        eager_step = step
    else:
        precision = defaults["precision"]
        memory_format = torch.channels_last if defaults["channels_last"] else torch.contiguous_format
        generator.to(dev).to(memory_format=memory_format)
        teacher.to(dev).to(memory_format=memory_format)
        optimizer = make_adam(generator.parameters(), defaults["lr"], defaults["adam"])
        compile_ = spec.get("compile", defaults["compile"])
        step_generator, step_teacher = (torch.compile(generator), torch.compile(teacher)) if compile_ else (generator, teacher)

        def make_step(g, t):
            def step():
                real = (host_to_device(images_u8, dev).float() / 255).contiguous(memory_format=memory_format)
                return train_step(g, t, loss_fn, stage, real, host_to_device(text, dev), optimizer, dev, precision)["loss"]
            return step

        step, eager_step = make_step(step_generator, step_teacher), make_step(generator, teacher)

    start, finish = _memory_probe(dev)
    before = start()
    result = {}
    if spec.get("compile"):
        # FLOPs are counted on the eager modules (the dispatch-level counter does not see inside
        # compiled kernels); the first compiled step includes the compilation. Then compiled and
        # eager steps alternate, so that a busy machine slows both alike and their ratio holds.
        flops = _count_flops(eager_step)
        t = time.perf_counter()
        step()
        _sync(dev)
        result["first_step_s"] = time.perf_counter() - t
        for _ in range(spec["warmup"] - 1):
            step()
        compiled_s, eager_s, losses = [], [], []
        for _ in range(spec["timed"]):
            for fn, times in ((step, compiled_s), (eager_step, eager_s)):
                t = time.perf_counter()
                losses.append(fn())
                _sync(dev)
                times.append(time.perf_counter() - t)
        seconds = sum(compiled_s) / len(compiled_s)
        result["eager_seconds_per_step"] = sum(eager_s) / len(eager_s)
    else:
        flops = _count_flops(step)  # doubles as the first warm-up step
        for _ in range(spec["warmup"] - 1):
            step()
        _sync(dev)
        t = time.perf_counter()
        losses = [step() for _ in range(spec["timed"])]
        _sync(dev)
        seconds = (time.perf_counter() - t) / spec["timed"]
    peak, above = finish(before)
    result.update(
        seconds_per_step=seconds, images_per_s=batch / seconds, flops_per_step=flops, precision=precision,
        peak_memory_mb=peak, step_memory_mb=above, finite=all(math.isfinite(v) for v in losses),
    )
    return result


def run_sample_case(spec: dict) -> dict:
    from sdn.generator import Generator
    from sdn.sampling import Sampler
    from sdn.teachers import teacher_taps

    dev, size, batch = torch.device(spec["device"]), spec["size"], spec["batch"]
    torch.manual_seed(0)
    generator = Generator(teacher_taps("vgg19"), size, TEXT_DIM, FC_DIM).to(dev)
    text = torch.randn(batch, TEXT_DIM)

    sampler = Sampler(generator, precision="bf16", channels_last=True)  # what `sdn sample` builds once per model

    def draw():
        return sampler(text, batch_size=batch)

    start, finish = _memory_probe(dev)
    before = start()
    flops = _count_flops(draw)
    for _ in range(spec["warmup"] - 1):
        draw()
    times = []
    for _ in range(spec["timed"]):
        t = time.perf_counter()
        draw()
        _sync(dev)
        times.append(time.perf_counter() - t)
    seconds = sum(times) / len(times)
    peak, above = finish(before)
    return {"seconds_per_call": seconds, "latency_ms": 1000 * seconds, "images_per_s": batch / seconds, "flops_per_step": flops,
            "precision": "bf16", "peak_memory_mb": peak, "step_memory_mb": above}


def run_case(spec: dict) -> dict:
    warnings.filterwarnings("ignore", message=".*RANDOM weights.*")
    if spec.get("threads"):
        torch.set_num_threads(spec["threads"])
    return run_sample_case(spec) if spec["kind"] == "sample" else run_train_case(spec)


# ---------------------------------------------------------------------------------------------
# The driver.

def matmul_peak_gflops(dtype: torch.dtype, dev: torch.device, n: int, reps: int) -> float:
    """Best of `reps` n x n torch.mm products: the machine's practical peak in this precision."""
    a, b = torch.randn(n, n, device=dev, dtype=dtype), torch.randn(n, n, device=dev, dtype=dtype)
    torch.mm(a, b)
    _sync(dev)
    best = math.inf
    for _ in range(reps):
        t = time.perf_counter()
        torch.mm(a, b)
        _sync(dev)
        best = min(best, time.perf_counter() - t)
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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default=None, help="comma-separated resolutions (default 64,128,224; --quick: 64)")
    ap.add_argument("--batch-size", type=int, default=12, help="training batch (paper: 12)")
    ap.add_argument("--sample-batch", type=int, default=64, help="batch of the sampling-throughput case")
    ap.add_argument("--quick", action="store_true", help="development: 64 px only, 1 warm-up + 1 timed step, small matmul")
    ap.add_argument("--compile", action="store_true", help="also time the sdn-train path under torch.compile at the smallest size")
    ap.add_argument("--device", default=None, help="cpu, cuda ... (default: cuda when available)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own choice)")
    ap.add_argument("--json", metavar="PATH", help="also write every measurement to this JSON file")
    ap.add_argument("--run-case", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.run_case:
        print(json.dumps(run_case(json.loads(a.run_case))))
        return 0

    dev = torch.device(a.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    sizes = [int(s) for s in (a.sizes or ("64" if a.quick else "64,128,224")).split(",")]
    if a.threads:
        torch.set_num_threads(a.threads)
    started = time.perf_counter()
    n = 2048 if a.quick else 4096
    peaks = {"bf16": matmul_peak_gflops(torch.bfloat16, dev, n, 3 if a.quick else 5),
             "fp32": matmul_peak_gflops(torch.float32, dev, n, 3 if a.quick else 5)}

    def steps_for(size):  # (warm-up, timed): few at 224 px, where one naive step takes many seconds;
        # the first warm-up step (FLOP-counted) already builds the oneDNN kernels and the Adam state
        if a.quick:
            return 1, 1
        return (1, 3) if size < 128 else (1, 2)

    base = {"device": str(dev), "batch": a.batch_size, "threads": a.threads}
    cases = []
    for size in sizes:
        warmup, timed = steps_for(size)
        for stage in ("stage1", "stage2"):
            for path in ("naive", "sdn train"):
                cases.append(dict(base, kind="train", stage=stage, size=size, path=path, warmup=warmup, timed=timed))
    largest, smallest = max(sizes), min(sizes)
    # for its peak memory; one timed step is enough to show the recomputation's cost
    cases.append(dict(base, kind="train", stage="stage2", size=largest, path="sdn train", grad_checkpointing=True,
                      warmup=1, timed=1))
    if a.compile:
        for stage in ("stage1", "stage2"):
            cases.append(dict(base, kind="train", stage=stage, size=smallest, path="sdn train", compile=True, warmup=2,
                              timed=1 if a.quick else 5))
    sample_batch = min(a.sample_batch, 8) if a.quick else a.sample_batch
    cases.append(dict(base, kind="sample", size=largest, batch=1, path="sampling", warmup=2, timed=3 if a.quick else 5))
    cases.append(dict(base, kind="sample", size=largest, batch=sample_batch, path="sampling", warmup=1, timed=1 if a.quick else 2))

    for case in cases:
        label = f"{case.get('stage', 'batch ' + str(case['batch']))} {case['size']} px {case['path']}" + (
            " +grad-ckpt" if case.get("grad_checkpointing") else "") + (" +compile" if case.get("compile") else "")
        print(f"running {label} ...", file=sys.stderr, flush=True)
        case["result"] = _in_subprocess(case)

    print(f"\n{_cpu_name()}, {torch.get_num_threads()} threads, torch {torch.__version__}, device {dev}; "
          f"torch.mm peak ({n}x{n}): bf16 {peaks['bf16']:.0f} GFLOP/s, fp32 {peaks['fp32']:.0f} GFLOP/s")
    print(f"VGG19 teacher (random weights), G with fc_dim {FC_DIM}, text dim {TEXT_DIM}, training batch {a.batch_size}\n")
    header = ("| case | px | path | precision | images/s | vs naive | s/step | GFLOP/step | GFLOP/s | % of peak "
              "| peak mem MB | step mem MB |")
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    naive_rate = {}
    for case in cases:
        r = case["result"]
        seconds = r.get("seconds_per_step", r.get("seconds_per_call"))
        achieved = r["flops_per_step"] / seconds / 1e9
        if case["kind"] == "train":
            name = {"stage1": "Stage I step", "stage2": "Stage II step"}[case["stage"]]
            key = (case["stage"], case["size"])
            if case["path"] == "naive":
                naive_rate[key] = r["images_per_s"]
            speedup = r["images_per_s"] / naive_rate[key] if case["path"] != "naive" and key in naive_rate else None
            path = case["path"] + (" +grad-ckpt" if case.get("grad_checkpointing") else "") + (" +compile" if case.get("compile") else "")
        else:
            name = f"sampling batch {case['batch']}" + (f" ({r['latency_ms']:.0f} ms latency)" if case["batch"] == 1 else "")
            speedup, path = None, "generate()"
        print(f"| {name} | {case['size']} | {path} | {r['precision']} | {r['images_per_s']:.2f} | "
              f"{_fmt(speedup, '.1f')}{'x' if speedup else ''} | {seconds:.3f} | {r['flops_per_step'] / 1e9:.0f} | "
              f"{achieved:.0f} | {100 * achieved / peaks[r['precision']]:.0f} % | {_fmt(r['peak_memory_mb'], '.0f')} | "
              f"{_fmt(r['step_memory_mb'], '.0f')} |")
    for case in cases:
        if case.get("compile"):
            r = case["result"]
            print(f"torch.compile, {case['stage']} {case['size']} px: first step (compilation included) {r['first_step_s']:.0f} s; "
                  f"then {r['seconds_per_step']:.2f} s/step compiled vs {r['eager_seconds_per_step']:.2f} s/step eager "
                  f"(alternated in one process): {r['eager_seconds_per_step'] / r['seconds_per_step']:.2f}x")
    if not all(c["result"].get("finite", True) for c in cases):
        print("WARNING: a case produced a non-finite loss")
    print(f"\ntotal {time.perf_counter() - started:.0f} s")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"device": str(dev), "cpu": _cpu_name(), "threads": torch.get_num_threads(), "torch": torch.__version__,
                       "matmul_peak_gflops": peaks, "matmul_n": n, "cases": cases}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
