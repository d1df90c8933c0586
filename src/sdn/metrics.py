"""Metrics, in a registry: name -> fn(generated images, data) -> dict of numbers.

generated: float (N, n, 3, H, W) in [0, 1], one row per image of `data`, made from its captions.
"""

from __future__ import annotations

from typing import Callable

import torch

from sdn.data import CaptionedImages
from sdn.demo_data import COLOURS

METRICS: dict[str, Callable[[torch.Tensor, CaptionedImages], dict]] = {}


def register(name: str):
    def wrap(fn):
        METRICS[name] = fn
        return fn

    return wrap


def object_colours(images: torch.Tensor, masks: torch.Tensor) -> list[str]:
    """The palette colour nearest (RGB distance) to each image's mean colour inside its object mask."""
    names = list(COLOURS)
    palette = torch.tensor([COLOURS[n] for n in names], dtype=torch.float32) / 255
    m = masks.unsqueeze(1).float()
    mean = (images.float() * m).sum((2, 3)) / m.sum((2, 3)).clamp_min(1)  # (N, 3)
    return [names[i] for i in torch.cdist(mean, palette).argmin(1).tolist()]


@register("colour_accuracy")
def colour_accuracy(generated: torch.Tensor, data: CaptionedImages) -> dict:
    """Demo data only: how often the generated object (inside the real image's object mask, which the
    caption's size and position words pin down) has the colour the caption asked for. Every output
    of a diverse model is scored. The real images score close to 1 by construction."""
    if data.masks is None or not data.attributes:
        raise ValueError("colour_accuracy needs the demo data's object masks")
    asked = [a["colour"] for a in data.attributes]
    n = generated.shape[1]
    hits = 0
    for p in range(n):
        got = object_colours(generated[:, p], data.masks)
        hits += sum(g == a for g, a in zip(got, asked))
    real = object_colours(data.images.float() / 255, data.masks)
    return {
        "colour_accuracy": hits / (len(asked) * n),
        "colour_accuracy_of_real_images": sum(g == a for g, a in zip(real, asked)) / len(asked),
        "images": len(asked) * n,
    }
