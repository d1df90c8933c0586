"""Built-in demo data: coloured shapes on varied backgrounds, with captions in varied phrasing.

Generated deterministically from a seed, so `sdn demo` needs no download. The split is
class-disjoint like the paper's (a class is a colour-shape pair): every colour and every shape is
seen in training, but the test pairs (one unseen shape per colour) never are, so the test set is
zero-shot in the same sense as Oxford-102's or CUB's.
"""

from __future__ import annotations

import random

import numpy as np
import torch
from PIL import Image, ImageDraw

from sdn.data.captioned_images import CaptionedImages

COLOURS = {
    "red": (215, 35, 35),
    "orange": (245, 135, 20),
    "yellow": (240, 220, 30),
    "green": (40, 165, 55),
    "blue": (35, 75, 215),
    "purple": (140, 50, 185),
}
SHAPES = ("circle", "square", "triangle", "diamond")
SIZES = {"small": 0.15, "large": 0.25}  # half-extent as a fraction of the image side
SIZE_WORDS = {"small": ("small", "little", "tiny"), "large": ("large", "big", "huge")}
# (name, x, y, phrasings)
POSITIONS = (
    ("upper left", 0.29, 0.29, ("in the upper left", "in the top left corner", "near the top left")),
    ("top", 0.5, 0.29, ("at the top", "near the top", "in the upper middle")),
    ("upper right", 0.71, 0.29, ("in the upper right", "in the top right corner", "near the top right")),
    ("left", 0.29, 0.5, ("on the left", "at the left side", "near the left edge")),
    ("center", 0.5, 0.5, ("in the center", "in the middle", "at the centre of the picture")),
    ("right", 0.71, 0.5, ("on the right", "at the right side", "near the right edge")),
    ("lower left", 0.29, 0.71, ("in the lower left", "in the bottom left corner", "near the bottom left")),
    ("bottom", 0.5, 0.71, ("at the bottom", "near the bottom", "in the lower middle")),
    ("lower right", 0.71, 0.71, ("in the lower right", "in the bottom right corner", "near the bottom right")),
)
TEMPLATES = (
    "a {size} {colour} {shape} {pos}",
    "there is a {colour} {shape} {pos}",
    "a {colour} {shape}, {size}, {pos}",
    "the picture shows a {size} {shape} coloured {colour} {pos}",
    "{pos} sits a {size} {colour} {shape}",
    "a {shape} painted {colour} {pos}",
    "this image has one {size} {colour} {shape} {pos}",
)


def held_out_classes() -> set[str]:
    """One unseen shape per colour: the held-out colour-shape pairs."""
    return {f"{c} {SHAPES[i % len(SHAPES)]}" for i, c in enumerate(COLOURS)}


def _caption(rng: random.Random, colour: str, shape: str, size: str, phrasings: tuple[str, ...]) -> str:
    text = rng.choice(TEMPLATES).format(
        size=rng.choice(SIZE_WORDS[size]), colour=colour, shape=shape, pos=rng.choice(phrasings)
    )
    return text[0].upper() + text[1:] if rng.random() < 0.5 else text


def _polygon(shape: str, cx: float, cy: float, r: float) -> list[tuple[float, float]] | None:
    if shape == "square":
        return [(cx - r, cy - r), (cx + r, cy - r), (cx + r, cy + r), (cx - r, cy + r)]
    if shape == "triangle":
        return [(cx, cy - r), (cx + r, cy + r * 0.85), (cx - r, cy + r * 0.85)]
    if shape == "diamond":
        return [(cx, cy - r * 1.2), (cx + r, cy), (cx, cy + r * 1.2), (cx - r, cy)]
    return None


def _draw(shape, colour, cx, cy, r, background, size, scale=4):
    big = size * scale
    top, bottom = (np.array(c, dtype=np.float32) for c in background)
    ramp = np.linspace(0, 1, big, dtype=np.float32)[:, None, None]
    canvas = Image.fromarray(((1 - ramp) * top + ramp * bottom).repeat(big, 1).astype(np.uint8))
    mask = Image.new("L", (big, big), 0)
    box = [(cx - r) * big, (cy - r) * big, (cx + r) * big, (cy + r) * big]
    poly = _polygon(shape, cx * big, cy * big, r * big)
    for img, fill in ((canvas, colour), (mask, 255)):
        draw = ImageDraw.Draw(img)
        draw.ellipse(box, fill=fill) if poly is None else draw.polygon(poly, fill=fill)
    canvas = canvas.resize((size, size), Image.LANCZOS)  # drawn large, reduced: anti-aliased edges
    mask = mask.resize((size, size), Image.BOX)
    return np.asarray(canvas), np.asarray(mask) > 127


BACKGROUNDS = ("flat", "gradient")
FLAT_GREY = (128.0, 128.0, 128.0)


def make_demo_data(resolution: int = 64, seed: int = 0, backgrounds_per_layout: int = 3, captions_per_image: int = 5,
                   background: str = "gradient") -> CaptionedImages:
    """Every colour x shape x size x position, each drawn `backgrounds_per_layout` times (shade and
    place jittered). background: "gradient" (a random low-saturation vertical gradient per image) or
    "flat" (mid-grey everywhere). The captions never describe the background, so for a generator
    without a noise input (SDN's) a random one is pure noise in every gradient step."""
    if background not in BACKGROUNDS:
        raise ValueError(f"background must be one of {BACKGROUNDS}, not {background!r}")
    rng = random.Random(seed)
    held_out = held_out_classes()
    images, masks, captions, labels, split, attrs = [], [], [], [], [], []
    for colour, rgb in COLOURS.items():
        for shape in SHAPES:
            for size, r in SIZES.items():
                for pos, x, y, phrasings in POSITIONS:
                    for _ in range(backgrounds_per_layout):
                        # Low-saturation vertical gradients, never mistaken for an object colour.
                        base = rng.uniform(80, 200)
                        gradient = [tuple(base + rng.uniform(-12, 12) + rng.uniform(-6, 6) for _ in range(3)) for _ in range(2)]
                        # drawn either way, so flat data keeps the gradient data's objects, shades and captions
                        ends = gradient if background == "gradient" else [FLAT_GREY, FLAT_GREY]
                        shade = tuple(int(np.clip(v + rng.uniform(-15, 15), 0, 255)) for v in rgb)
                        cx, cy = x + rng.uniform(-0.03, 0.03), y + rng.uniform(-0.03, 0.03)
                        img, mask = _draw(shape, shade, cx, cy, r, ends, resolution)
                        images.append(img)
                        masks.append(mask)
                        captions.append([_caption(rng, colour, shape, size, phrasings) for _ in range(captions_per_image)])
                        label = f"{colour} {shape}"
                        labels.append(label)
                        split.append("test" if label in held_out else "train")
                        attrs.append({"colour": colour, "shape": shape, "size": size, "position": pos})
    return CaptionedImages(
        images=torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous(),
        captions=captions,
        labels=labels,
        split=split,
        masks=torch.from_numpy(np.stack(masks)),
        attributes=attrs,
    )
