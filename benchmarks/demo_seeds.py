"""The demo's figures over several seeds, for the README: run the demo once per seed, then collect.

    OMP_NUM_THREADS=1 sdn demo --seed 0 --out runs/demo-seed0 --no-progress   # and 1, 2 (two side by side on 2 cores)
    python benchmarks/demo_seeds.py runs/demo-seed0 runs/demo-seed1 runs/demo-seed2 --out benchmarks/results/demo-seeds.json

Writes every run's figures (from its metrics.json) and prints the README's table rows, seeds in the
order given, with the worst seed of each figure named."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

PARTS = ("unseen_pairs", "training_pairs", "held_out_phrasings")
FIGURES = ("colour", "shape", "position")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", help="demo output folders (each with metrics.json)")
    p.add_argument("--out", default="benchmarks/results/demo-seeds.json")
    p.add_argument("--label", default="SDN (the demo's defaults)", help="the SDN row's name in the printed table")
    p.add_argument("--command", default="OMP_NUM_THREADS=1 sdn demo --seed S --out runs/demo-seedS --no-progress")
    a = p.parse_args()
    runs = {}
    for folder in map(Path, a.runs):
        m = json.loads((folder / "metrics.json").read_text())
        runs[folder.name] = {
            "seed": m["config"]["seed"],
            **{who: {part: {f: m[who][part][f] for f in FIGURES} for part in PARTS} for who in ("sdn", "image_baseline") if m.get(who)},
            "wall_seconds": m["wall_seconds"], "train_seconds": m["train_seconds"], "torch_threads": m["torch_threads"],
            "ema_decay": m["config"].get("ema_decay", 0.0),
        }
    Path(a.out).write_text(json.dumps({"command": a.command, "runs": runs}, indent=1) + "\n")
    seeds = " / ".join(str(r["seed"]) for r in runs.values())
    for who, label in (("sdn", a.label), ("image_baseline", "image-space baseline, same budget")):
        cells = []
        for part, figs in (("unseen_pairs", FIGURES), ("held_out_phrasings", ("colour", "shape"))):
            for f in figs:
                cells.append(" / ".join(f"{100 * r[who][part][f]:.1f}" for r in runs.values()) + " %")
        print(f"| {label}, seeds {seeds} | {cells[0]} | {cells[1]} | {cells[2]} | {cells[3]} · {cells[4]} |")
    walls = [r["wall_seconds"] for r in runs.values()]
    print(f"wall seconds per demo: {min(walls):.0f}-{max(walls):.0f}")


if __name__ == "__main__":
    main()
