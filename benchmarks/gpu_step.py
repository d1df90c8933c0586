"""The paper's setting on one GPU: VGG19 teacher (random weights: speed does not depend on them), G
with fc_dim 4096, 224 px; `sdn train`'s own step at batch 12 and at the largest batch that fits,
against the GPU's bf16 matrix-product peak measured in the same run, and the projected time of the
paper's schedule (100 Stage-I + 100 Stage-II epochs) on Oxford-102 and CUB.

    python benchmarks/gpu_step.py [--size 224] [--batch 12] [--max-batch 1024] [--seconds 200] [--json out.json]
    python benchmarks/gpu_step.py --dry-run     # the same steps on the CPU at 32 px, batches up to 4

Run by benchmarks/gpu_check.sh. `--seconds` is a budget: the largest-batch search stops early when
it runs short, and says so."""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import sys
import time
import warnings

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import step_cases  # the per-case code of benchmarks/train_step.py

TRAIN_IMAGES = {"Oxford-102": 7034, "CUB-200-2011": 8855}  # the paper's train splits
EPOCHS = {"stage1": 100, "stage2": 100}


def matmul_peak(dev: torch.device, n: int, reps: int = 10) -> float:
    """bf16 GFLOP/s of the best of `reps` n x n x n products, after warm-up."""
    a, b = torch.randn(n, n, device=dev, dtype=torch.bfloat16), torch.randn(n, n, device=dev, dtype=torch.bfloat16)
    for _ in range(3):
        torch.mm(a, b)
    best = math.inf
    for _ in range(reps):
        step_cases.sync(dev)
        t = time.perf_counter()
        torch.mm(a, b)
        step_cases.sync(dev)
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best / 1e9


def measure(dev, size: int, batch: int, stage: str, warmup: int, timed: int) -> dict:
    """One `sdn train` step configuration: images/s, GFLOP/s, peak memory."""
    spec = {"teacher": "vgg19", "size": size, "batch": batch, "stage": stage, "path": "sdn train"}
    step, _, _ = step_cases.make_train_step(spec, dev)
    start, finish = step_cases.memory_probe(dev)
    before = start()
    flops = step_cases.count_flops(step)
    seconds, _ = step_cases.timed(step, dev, warmup, timed)
    peak, _ = finish(before)
    del step
    free(dev)
    return {"batch": batch, "stage": stage, "seconds_per_step": seconds, "images_per_s": batch / seconds,
            "gflop_per_step": flops / 1e9, "gflop_per_s": flops / seconds / 1e9, "peak_memory_mb": peak}


def free(dev) -> None:
    gc.collect()
    if dev.type == "cuda":
        torch.cuda.empty_cache()


def fits(dev, size: int, batch: int) -> str | None:
    """Does a Stage II step (the larger of the two) run at this batch? None if it does, else why not:
    out of memory, or a kernel's limit (on an H200, torch 2.11's nearest up-sampling backward refused
    768 x 64 x 224 x 224 elements, over INT_MAX, long before the memory ran out)."""
    why = None
    try:
        measure(dev, size, batch, "stage2", 1, 1)
    except torch.OutOfMemoryError:
        why = "out of memory"
    except RuntimeError as e:
        if "INT_MAX" not in str(e) and "out of memory" not in str(e):
            raise
        why = str(e).strip().splitlines()[0][:120]
    free(dev)  # after the except block, whose traceback still holds the failed step's tensors
    return why


def largest_batch(dev, size: int, start: int, limit: int, deadline: float) -> tuple[int, str]:
    """Doubling from `start`, then halving the gap three times: (batch, how the search ended)."""
    ok, bad, why = start, None, None
    while bad is None and ok * 2 <= limit:
        if time.time() > deadline:
            return ok, "stopped early: time budget"
        why = fits(dev, size, ok * 2)
        if why is None:
            ok *= 2
        else:
            bad = ok * 2
    if bad is None:
        return ok, f"reached --max-batch {limit}"
    for _ in range(3):
        if bad - ok <= max(1, ok // 16) or time.time() > deadline:
            break
        mid = (ok + bad) // 2
        failed = fits(dev, size, mid)
        ok, bad, why = (mid, bad, why) if failed is None else (ok, mid, failed)
    return ok, f"batch {bad} did not run: {why}"


def schedule_hours(per_stage: dict[str, dict], batch: int) -> dict[str, float]:
    """Hours for 100 + 100 epochs of each data set at `batch` with these step times."""
    return {name: sum(EPOCHS[s] * math.ceil(n / batch) * per_stage[s]["seconds_per_step"] for s in EPOCHS) / 3600
            for name, n in TRAIN_IMAGES.items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--batch", type=int, default=12, help="the paper's batch")
    ap.add_argument("--max-batch", type=int, default=1024, help="upper end of the largest-batch search")
    ap.add_argument("--seconds", type=float, default=200, help="time budget of this script")
    ap.add_argument("--dry-run", action="store_true", help="the same steps on the CPU at 32 px, batches up to 4")
    ap.add_argument("--json", metavar="PATH")
    a = ap.parse_args()
    warnings.filterwarnings("ignore", message=".*RANDOM weights.*")  # on purpose: VGG weights ship in no package
    started = time.time()
    deadline = started + a.seconds
    if a.dry_run:
        dev, size, batch, max_batch, n = torch.device("cpu"), 32, 2, 4, 512
    else:
        if not torch.cuda.is_available():
            print("no CUDA GPU: run with --dry-run for the CPU rehearsal", file=sys.stderr)
            return 2
        dev, size, batch, max_batch, n = torch.device("cuda"), a.size, a.batch, a.max_batch, 8192
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "CPU (dry run)"
    peak = matmul_peak(dev, n)
    print(f"{name}, torch {torch.__version__}; bf16 torch.mm peak ({n}^3): {peak:.0f} GFLOP/s", flush=True)
    warmup, timed = (3, 10) if dev.type == "cuda" else (1, 2)
    rows = {s: measure(dev, size, batch, s, warmup, timed) for s in EPOCHS}
    for r in rows.values():  # printed now: a failure later must not lose them
        print(f"{r['stage']}, batch {r['batch']}: {r['images_per_s']:.1f} images/s, {r['gflop_per_s']:.0f} GFLOP/s "
              f"({100 * r['gflop_per_s'] / peak:.1f} % of the bf16 mm peak), peak memory {r['peak_memory_mb']:.0f} MB", flush=True)
    big, why = largest_batch(dev, size, batch, max_batch, deadline - 60)
    print(f"largest batch that fits a Stage II step at {size} px: {big} ({why})", flush=True)
    if big != batch:
        rows_big = {s: measure(dev, size, big, s, 2, 3) for s in EPOCHS}
    else:
        rows_big = rows
    print(f"\nVGG19 teacher (random weights), G fc_dim {step_cases.FC_DIM['vgg19']}, {size} px, `sdn train` defaults\n")
    print("| stage | batch | images/s | s/step | GFLOP/step | GFLOP/s | % of bf16 mm peak | peak memory MB |")
    print("|---|---|---|---|---|---|---|---|")
    for r in [*rows.values(), *([] if rows_big is rows else rows_big.values())]:
        print(f"| {r['stage']} | {r['batch']} | {r['images_per_s']:.1f} | {r['seconds_per_step']:.4f} | {r['gflop_per_step']:.0f} | "
              f"{r['gflop_per_s']:.0f} | {100 * r['gflop_per_s'] / peak:.1f} % | {r['peak_memory_mb']:.0f} |")
    print("\nProjected time of the paper's schedule (100 Stage-I + 100 Stage-II epochs, these step times):")
    projections = {b: schedule_hours(r, b) for b, r in ((batch, rows), (big, rows_big))}
    for b, hours in projections.items():
        print(f"  batch {b}: " + "; ".join(f"{k} ({TRAIN_IMAGES[k]:,} images) {h:.2f} h" for k, h in hours.items()))
    print(f"\n{time.time() - started:.0f} s")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"device": name, "torch": torch.__version__, "bf16_mm_peak_gflops": peak, "size": size,
                       "batch": rows, "largest_batch": {"batch": big, "search": why, "rows": rows_big},
                       "projected_hours": {str(b): h for b, h in projections.items()}}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
