"""The quality-versus-training-time curve of benchmarks/gpu_train.py's runs, as a table and a figure.

    python benchmarks/flowers_curve.py benchmarks/results/gpu-h200-flowers/curve.json --out docs/flowers-gpu-curve.png

Prints a Markdown table (every scored checkpoint: epochs, minutes of wall time since the runs
started, SSIM, FSIM, IS with EfficientNet-Lite0, fd_effnet) and draws the four scores against
minutes, one line per run. The scores are gpu_train.py's (test split, first caption per image);
fd_effnet is a Frechet distance in EfficientNet-Lite0's features, a proxy, not FID.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

SCORES = (("fd_effnet", "fd_effnet (lower is better)"), ("fsim", "FSIM"), ("ssim", "SSIM"), ("is", "IS (EfficientNet-Lite0)"))


def table(curve: dict) -> str:
    lines = ["| run | epochs | minutes | SSIM | FSIM | IS | fd_effnet |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for name, rows in curve.items():
        for r in rows:
            lines.append(f"| {name} | {r['epoch']} | {r['seconds'] / 60:.1f} | {r['ssim']:.3f} | {r['fsim']:.3f} | {r['is']:.2f} | {r['fd_effnet']:.1f} |")
    return "\n".join(lines)


def figure(curve: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(SCORES), figsize=(4 * len(SCORES), 3.2))
    for ax, (key, label) in zip(axes, SCORES):
        for name, rows in curve.items():
            ax.plot([r["seconds"] / 60 for r in rows], [r[key] for r in rows], marker=".", label=name)
        ax.set_xlabel("minutes of training (one shared H200)")
        ax.set_title(label, fontsize=10)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle("Oxford-102, 64 px, unseen test classes, first caption of each of 1,155 images", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("curve", type=Path, help="curve.json written by benchmarks/gpu_train.py")
    p.add_argument("--out", type=Path, help="PNG to draw the curve into")
    a = p.parse_args()
    curve = json.loads(a.curve.read_text())["curve"]
    print(table(curve))
    if a.out:
        figure(curve, a.out)
        print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
