"""Position accuracy on the demo data: is the drawn object in the 3x3-grid cell its caption named?"""

from __future__ import annotations

import torch

from sdn.data.captioned_images import CaptionedImages
from sdn.data.demo_data import POSITIONS
from sdn.evaluation.metrics.registry import EvalContext, register

# Grid lines on each axis lie midway between the demo's position centres (0.29, 0.5, 0.71), so every
# real object's centroid (a triangle's sits up to 0.06 below its placement point) falls in its own cell.
_CENTRES = sorted({x for _, x, _, _ in POSITIONS})
_CELL = {(x, y): name for name, x, y, _ in POSITIONS}


def object_centres(images: torch.Tensor, min_contrast: float = 0.05) -> list[tuple[float, float] | None]:
    """float (N, 3, H, W) in [0, 1] -> each object's centroid (x, y) as fractions of the image side.

    The object is where the image is most colourful: chroma (max - min of RGB) above the midpoint
    between the image's median chroma (the near-grey background covers most of it) and its 99th
    percentile (the object). None where that contrast is under `min_contrast`: nothing was drawn."""
    chroma = images.float().amax(1) - images.float().amin(1)  # (N, H, W)
    flat = chroma.flatten(1)
    low, high = flat.median(1).values, flat.quantile(0.99, dim=1)
    mask = chroma > ((low + high) / 2)[:, None, None]
    h, w = chroma.shape[1:]
    ys = (torch.arange(h, dtype=torch.float32) + 0.5) / h
    xs = (torch.arange(w, dtype=torch.float32) + 0.5) / w
    count = mask.sum((1, 2)).clamp_min(1)
    cx = (mask * xs[None, None, :]).sum((1, 2)) / count
    cy = (mask * ys[None, :, None]).sum((1, 2)) / count
    return [None if c < min_contrast else (x, y) for x, y, c in zip(cx.tolist(), cy.tolist(), (high - low).tolist())]


def cell_of(centre: tuple[float, float] | None) -> str | None:
    """The position name of the grid cell holding `centre` (the nearest position centre on each axis)."""
    if centre is None:
        return None
    x, y = (min(_CENTRES, key=lambda c: abs(c - v)) for v in centre)
    return _CELL[(x, y)]


def position_accuracy(generated: torch.Tensor, data: CaptionedImages) -> dict:
    """generated: float (N, n, 3, H, W) in [0, 1], one row per image of `data`.

    Demo data only: how often the drawn object's centroid (see `object_centres`) lies in the cell of
    the 3x3 grid that the caption named. Every output of a diverse model is scored. Real images score 1."""
    if not data.attributes or "position" not in data.attributes[0]:
        raise ValueError("position_accuracy needs the demo data's position attributes")
    asked = [a["position"] for a in data.attributes]
    n = generated.shape[1]
    hits = sum(cell_of(c) == a for p in range(n) for c, a in zip(object_centres(generated[:, p]), asked))
    real = [cell_of(c) for c in object_centres(data.images.float() / 255)]
    return {
        "position_accuracy": hits / (len(asked) * n),
        "position_accuracy_of_real_images": sum(g == a for g, a in zip(real, asked)) / len(asked),
        "images": len(asked) * n,
    }


@register("position_accuracy", "demo data only: share of drawings whose object lies in the caption's cell of the 3x3 grid", default=False)
def _position_accuracy_metric(ctx: EvalContext) -> dict:
    return position_accuracy(ctx.drawings()[:, None].float() / 255, ctx.data.take(ctx.paired_real_index().tolist()))
