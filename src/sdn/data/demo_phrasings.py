"""Held-out phrasings of the demo's captions: templates, shape words and position phrases that the
training captions never use (other word orders, "centre of the image", "rhombus", "box"...), to see
whether the generator follows what a caption means rather than the sentences it was trained on.

Only colours stay the training words. `phrases_found_in` checks that none of these phrasings occurs in a
set of captions (the test suite runs it on every caption the demo data makes).
"""

from __future__ import annotations

import random

from sdn.data.demo_data import POSITIONS, TEMPLATES

HELD_OUT_TEMPLATES = (
    "one {size} {colour} {shape} right {pos}",
    "{pos} you can see a {colour} {shape}, {size}",
    "an image of a {shape} that is {colour} and {size}, {pos}",
    "{colour} {shape}, {size}, placed {pos}",
    "a drawing with a {size} {shape} in {colour} {pos}",
)
HELD_OUT_SHAPE_WORDS = {"circle": "disc", "square": "box", "triangle": "triangular shape", "diamond": "rhombus"}
SHAPE_SYNONYM_SHARE = 0.5  # of held-out captions that name the shape by its held-out word
HELD_OUT_SIZE_WORDS = {"small": ("smallish", "miniature"), "large": ("sizeable", "giant")}
HELD_OUT_POSITIONS = {
    "upper left": ("in the top-left part of the image", "up in the left corner"),
    "top": ("at the top of the image", "along the top edge"),
    "upper right": ("in the top-right part of the image", "up in the right corner"),
    "left": ("at the left of the image", "on the image's left"),
    "center": ("in the centre of the image", "in the middle of the image"),
    "right": ("at the right of the image", "on the image's right"),
    "lower left": ("in the bottom-left part of the image", "down in the left corner"),
    "bottom": ("at the bottom of the image", "along the bottom edge"),
    "lower right": ("in the bottom-right part of the image", "down in the right corner"),
}
assert set(HELD_OUT_POSITIONS) == {name for name, *_ in POSITIONS}
assert not set(HELD_OUT_TEMPLATES) & set(TEMPLATES)


def held_out_caption(rng: random.Random, attributes: dict) -> tuple[str, bool]:
    """One held-out phrasing of an image's attributes; and whether it names the shape by its synonym."""
    synonym = rng.random() < SHAPE_SYNONYM_SHARE
    shape = HELD_OUT_SHAPE_WORDS[attributes["shape"]] if synonym else attributes["shape"]
    text = rng.choice(HELD_OUT_TEMPLATES).format(
        size=rng.choice(HELD_OUT_SIZE_WORDS[attributes["size"]]), colour=attributes["colour"], shape=shape,
        pos=rng.choice(HELD_OUT_POSITIONS[attributes["position"]]),
    )
    return (text[0].upper() + text[1:] if rng.random() < 0.5 else text), synonym


def held_out_captions(attributes: list[dict], seed: int = 0) -> tuple[list[str], list[bool]]:
    """One held-out caption per image (seeded), and per caption whether its shape word is a synonym."""
    rng = random.Random(seed + 7919)
    pairs = [held_out_caption(rng, a) for a in attributes]
    return [c for c, _ in pairs], [s for _, s in pairs]


def held_out_phrases() -> list[str]:
    """Every phrase that only the held-out captions use: shape and size words, position phrases, and
    each template's fixed words around its fields."""
    phrases = list(HELD_OUT_SHAPE_WORDS.values()) + [w for ws in HELD_OUT_SIZE_WORDS.values() for w in ws]
    phrases += [p for ps in HELD_OUT_POSITIONS.values() for p in ps]
    for template in HELD_OUT_TEMPLATES:
        pieces = [p.strip(" ,") for p in template.replace("}", "{").split("{")[::2]]
        phrases += [p for p in pieces if len(p.split()) >= 2]  # multi-word skeleton, e.g. "you can see a"
    return phrases


def phrases_found_in(captions: list[str]) -> list[str]:
    """The held-out phrases that occur in `captions` (case-insensitive, whole words): [] when none does."""
    text = " | ".join(" " + " ".join(c.lower().replace(",", " ").split()) + " " for c in captions)
    return [p for p in held_out_phrases() if f" {' '.join(p.lower().replace(',', ' ').split())} " in text]
