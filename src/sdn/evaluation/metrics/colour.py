"""Colour accuracy on the demo data: does the drawn object have the colour the caption asked for?"""

from __future__ import annotations

import torch

from sdn.data.captioned_images import CaptionedImages
from sdn.data.demo_data import COLOURS
from sdn.evaluation.metrics.registry import EvalContext, register


def _hue_saturation(rgb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """rgb (N, 3) in [0, 1] -> hue in degrees [0, 360), HSV saturation in [0, 1]."""
    mx, arg = rgb.max(1)
    mn = rgb.min(1).values
    delta = (mx - mn).clamp_min(1e-8)
    r, g, b = rgb.unbind(1)
    hue = torch.where(arg == 0, ((g - b) / delta) % 6, torch.where(arg == 1, (b - r) / delta + 2, (r - g) / delta + 4))
    return hue * 60, (mx - mn) / mx.clamp_min(1e-8)


def object_colours(images: torch.Tensor, top_fraction: float = 0.03, min_saturation: float = 0.15) -> list[str | None]:
    """Each image's object colour: the mean RGB of its most saturated pixels (the top
    `top_fraction`; the demo's backgrounds are near-grey, its objects cover at least 5 % of the
    image), named by the palette colour of nearest hue; None where even that mean is nearly grey.

    Hue, not RGB distance: a faint but right-coloured object is right, and a grey blob is wrong
    (an RGB-nearest rule would call grey "purple"). No mask: the score does not depend on where the
    object was drawn, only on its colour."""
    names = list(COLOURS)
    palette_hue, _ = _hue_saturation(torch.tensor([COLOURS[n] for n in names], dtype=torch.float32) / 255)
    pixels = images.float().flatten(2).transpose(1, 2)  # (N, HW, 3)
    _, sat = _hue_saturation(pixels.reshape(-1, 3))
    k = max(1, int(top_fraction * pixels.shape[1]))
    top = sat.view(len(images), -1).topk(k, 1).indices
    mean = pixels.gather(1, top[..., None].expand(-1, -1, 3)).mean(1)
    hue, sat = _hue_saturation(mean)
    gap = (hue[:, None] - palette_hue[None]).abs()
    nearest = torch.minimum(gap, 360 - gap).argmin(1)
    return [names[i] if s >= min_saturation else None for i, s in zip(nearest.tolist(), sat.tolist())]


def colour_accuracy(generated: torch.Tensor, data: CaptionedImages) -> dict:
    """generated: float (N, n, 3, H, W) in [0, 1], one row per image of `data`.

    Demo data only: how often the generated image's object has the colour its caption asked for
    (see `object_colours`: hue of the most saturated 3 % of pixels, nearest of the 6 palette hues,
    saturation at least 0.15). Every output of a diverse model is scored. Real images score 1."""
    if not data.attributes or "colour" not in data.attributes[0]:
        raise ValueError("colour_accuracy needs the demo data's colour attributes")
    asked = [a["colour"] for a in data.attributes]
    n = generated.shape[1]
    hits = 0
    for p in range(n):
        got = object_colours(generated[:, p])
        hits += sum(g == a for g, a in zip(got, asked))
    real = object_colours(data.images.float() / 255)
    return {
        "colour_accuracy": hits / (len(asked) * n),
        "colour_accuracy_of_real_images": sum(g == a for g, a in zip(real, asked)) / len(asked),
        "images": len(asked) * n,
    }


@register("colour_accuracy", "demo data only: share of drawings whose object has the caption's colour (hue rule)", default=False)
def _colour_accuracy_metric(ctx: EvalContext) -> dict:
    drawings = ctx.drawings().float() / 255
    index = ctx.paired_real_index()
    return colour_accuracy(drawings[:, None], ctx.data.take(index))
