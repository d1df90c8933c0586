"""Pictures for people: image grids with their captions, and loss curves."""

from __future__ import annotations

import textwrap
from pathlib import Path

import torch

from sdn.utils import atomic_write, image_format


def _figure():
    import matplotlib

    matplotlib.use("Agg")  # files only; never needs a display
    import matplotlib.pyplot as plt

    return plt


def _atomic_savefig(fig, path: Path, **kw) -> None:
    atomic_write(path, lambda f: fig.savefig(f, format=image_format(path), **kw))


def save_grid(images: torch.Tensor, path, nrow: int, padding: int = 2, pad_value: float = 1.0, format: str | None = None) -> None:
    """(B, 3, H, W) images in [0, 1] as one image file, `nrow` per row: the same pixels as
    torchvision.utils.save_image (tested against it), without importing torchvision, whose import
    (torch._dynamo through torchvision.ops) took seconds of `sdn sample`'s start-up. `path`: a file
    name or, with `format` ("png", "jpeg"), a binary file object."""
    from PIL import Image

    b, c, h, w = images.shape
    if b == 1:  # torchvision returns a lone image unpadded
        grid = images[0]
    else:
        cols = min(nrow, b)
        rows = -(-b // cols)
        grid = torch.full((c, rows * (h + padding) + padding, cols * (w + padding) + padding), pad_value, dtype=images.dtype)
        for i in range(b):
            y, x = divmod(i, cols)
            top, left = y * (h + padding) + padding, x * (w + padding) + padding
            grid[:, top : top + h, left : left + w] = images[i]
    pixels = grid.mul(255).add_(0.5).clamp_(0, 255).permute(1, 2, 0).to(torch.uint8).numpy()
    Image.fromarray(pixels).save(path, format=format)


def captioned_grid(rows: list[tuple[str, torch.Tensor]], captions: list[str], path: str | Path, title: str = "") -> None:
    """rows: (row label, (K, 3, H, W) images in [0, 1]); one column per caption, caption under it."""
    plt = _figure()
    n_rows, n_cols = len(rows), len(captions)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(1.6 * n_cols, 1.6 * n_rows + 0.9), squeeze=False)
    for r, (label, images) in enumerate(rows):
        for c in range(n_cols):
            ax = axes[r][c]
            ax.imshow(images[c].permute(1, 2, 0).clamp(0, 1).numpy())
            ax.set_xticks([]), ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(label, fontsize=8)
            if r == n_rows - 1:
                ax.set_xlabel("\n".join(textwrap.wrap(captions[c], 22)), fontsize=6)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    _atomic_savefig(fig, Path(path), dpi=110)
    plt.close(fig)


def loss_plot(history: list[tuple[int, str, float]], path: str | Path, window: int = 25) -> None:
    """Loss per step, one colour per stage, with a moving average."""
    plt = _figure()
    fig, ax = plt.subplots(figsize=(7, 3.5))
    for stage in dict.fromkeys(s for _, s, _ in history):
        steps = [st for st, s, _ in history if s == stage]
        values = torch.tensor([v for _, s, v in history if s == stage])
        ax.plot(steps, values.numpy(), alpha=0.25, lw=0.8)
        if len(values) >= window:
            smooth = values.unfold(0, window, 1).mean(1)
            ax.plot(steps[window - 1 :], smooth.numpy(), lw=1.6, label=f"{stage} (moving mean of {window})",
                    color=ax.lines[-1].get_color())
        else:
            ax.lines[-1].set_label(stage)
    ax.set_xlabel("step"), ax.set_ylabel("loss"), ax.set_yscale("log")
    ax.legend(fontsize=8)
    fig.tight_layout()
    _atomic_savefig(fig, Path(path), dpi=110)
    plt.close(fig)


def metric_bars(rows: list[dict], metrics: list[str], path: str | Path) -> None:
    """One bar chart per metric, a bar per row (run)."""
    plt = _figure()
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.2 * len(metrics), 3.4), squeeze=False)
    names = [r["run"] for r in rows]
    for ax, metric in zip(axes[0], metrics):
        ax.bar(range(len(rows)), [r[metric] for r in rows], color="#4c72b0")
        ax.set_xticks(range(len(rows)), names, rotation=60, ha="right", fontsize=7)
        ax.set_title(metric.upper() + (" (lower is better)" if metric == "fid" else ""), fontsize=9)
    fig.tight_layout()
    _atomic_savefig(fig, Path(path), dpi=110)
    plt.close(fig)
