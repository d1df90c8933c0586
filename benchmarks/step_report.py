"""The tables of benchmarks/train_step.py: repeats folded into medians, the roofline shares, the report."""

from __future__ import annotations

import statistics

import torch

STAGE_PASSES = {"stage1": ("generator forward+backward", "teacher forward"),
                "stage2": ("generator forward+backward", "teacher forward", "teacher forward+backward")}


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


def fmt(value, spec: str = ".1f", missing: str = "-") -> str:
    return missing if value is None else format(value, spec)


def case_label(case: dict) -> str:
    extra = (" +grad-ckpt" if case.get("grad_checkpointing") else "") + (" +compile" if case.get("compile") else "")
    what = case.get("stage", f"batch {case['batch']}") if case["kind"] != "roofline" else "roofline"
    return f"{case['teacher']} {what} {case['size']} px {case['path']}{extra}"


def merge_repeats(cases: list[dict]) -> list[dict]:
    """One row per case, the repeats of a path folded into their median."""
    rows, seen = [], {}
    for case in cases:
        key = (case_label(case), case.get("batch"))
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
    print(f"\n{cpu_name()}, {torch.get_num_threads()} threads, torch {torch.__version__}, device {dev}; "
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
        print(f"| {row['teacher']} | {name} | {row['size']} | {path} | {r['images_per_s']:.2f} | {fmt(naive, '.1f')}{'x' if naive else ''} | "
              f"{fmt(switches_off, '.2f')}{'x' if switches_off else ''} | {seconds:.3f} | {fmt(r.get('cpu_seconds_per_step'), '.3f')} | "
              f"{r['flops_per_step'] / 1e9:.1f} | {achieved:.0f} | {100 * achieved / peaks[r['precision']]:.0f} % | "
              f"{fmt(None if share is None else 100 * share, '.0f')}{' %' if share else ''} | {fmt(r['peak_memory_mb'], '.0f')} | "
              f"{fmt(r['step_memory_mb'], '.0f')} |")
    print("\nsdn train / switches off (medians of the repeats; CPU time is the work when --threads 1):")
    for row in rows:
        if row["kind"] == "train" and row["path"].startswith("sdn train") and not row.get("grad_checkpointing") and not row.get("compile"):
            off = next((o for o in rows if o["kind"] == "train" and o["path"] == "switches off" and
                        (o["teacher"], o["stage"], o["size"]) == (row["teacher"], row["stage"], row["size"])), None)
            if off is not None:
                r, o = row["result"], off["result"]
                cpu = (o["cpu_seconds_per_step"] / r["cpu_seconds_per_step"]) if r.get("cpu_seconds_per_step") and o.get("cpu_seconds_per_step") else None
                print(f"  {row['teacher']} {row['size']} px {row['stage']} {row['path']}: images/s {r['images_per_s'] / o['images_per_s']:.2f}x, "
                      f"CPU time per step {fmt(cpu, '.2f')}x less ({len(row['runs'])} run(s) each)")
    for row in rows:
        if row.get("compile"):
            r = row["result"]
            print(f"torch.compile, {row['stage']} {row['size']} px: first step (compilation included) {r['first_step_s']:.0f} s; "
                  f"then {r['seconds_per_step']:.2f} s/step compiled vs {r['eager_seconds_per_step']:.2f} s/step eager "
                  f"(alternated in one process): {r['eager_seconds_per_step'] / r['seconds_per_step']:.2f}x")
    for row in rows:
        if row["result"].get("profile"):
            print(f"\ntorch.profiler, {case_label(row)}, 3 steps, top operators by self CPU time:\n{row['result']['profile']}")
    if not all(row["result"].get("finite", True) for row in rows):
        print("WARNING: a case produced a non-finite loss")
