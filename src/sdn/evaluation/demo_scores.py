"""The demo's figures for one trained generator: colour, shape and position accuracy on unseen
colour-shape pairs, on training pairs and on unseen pairs captioned in held-out phrasings."""

from __future__ import annotations

import torch

from sdn.data.captioned_images import CaptionedImages
from sdn.data.demo_phrasings import held_out_captions
from sdn.evaluation.metrics import colour_accuracy, position_accuracy, shape_accuracy
from sdn.networks.text import TextEncoder, encode_unique
from sdn.sampling import Sampler

# The goals for the demo's defaults, on the worst of three seeds.
GOALS = {
    ("unseen_pairs", "shape"): 0.80, ("unseen_pairs", "colour"): 0.90, ("unseen_pairs", "position"): 0.80,
    ("held_out_phrasings", "colour"): 0.85, ("held_out_phrasings", "shape"): 0.70,
}
SHAPE_MARGIN_OVER_IMAGE_BASELINE = 0.30


def score(drawings: torch.Tensor, data: CaptionedImages, classifier) -> dict:
    """drawings: float (N, n, 3, H, W) of `data`'s images' captions -> {colour, shape, position, details}."""
    parts = {"colour": colour_accuracy(drawings, data), "shape": shape_accuracy(drawings, data, classifier),
             "position": position_accuracy(drawings, data)}
    return {**{k: round(v[f"{k}_accuracy"], 4) for k, v in parts.items()}, "details": parts}


def score_generator(generator, encoder: TextEncoder, data: CaptionedImages, classifier, seed: int, precision: str) -> tuple[dict, torch.Tensor]:
    """Every figure of one generator, and its drawings of the unseen pairs' first captions (for the figure)."""
    sampler = Sampler(generator, precision)
    test, train = data.subset("test"), data.subset("train")
    held_out, synonym = held_out_captions(test.attributes, seed)
    results, drawn = {}, {}
    for name, part, captions in (
        ("unseen_pairs", test, [c[0] for c in test.captions]),
        ("training_pairs", train, [c[0] for c in train.captions]),
        ("held_out_phrasings", test, held_out),
    ):
        drawn[name] = sampler(encode_unique(encoder, captions))
        results[name] = score(drawn[name], part, classifier)
    pick = [i for i, s in enumerate(synonym) if s]
    with_synonym = shape_accuracy(drawn["held_out_phrasings"][pick], test.take(pick), classifier)
    results["held_out_phrasings"]["shape_when_named_by_synonym"] = round(with_synonym["shape_accuracy"], 4)
    return results, drawn["unseen_pairs"]


def goals_met(sdn: dict, image_baseline: dict | None) -> dict:
    """Each goal of the demo: the figure, the bar and whether it is reached."""
    out = {f"{part}/{metric}": {"value": sdn[part][metric], "goal": bar, "met": sdn[part][metric] >= bar}
           for (part, metric), bar in GOALS.items()}
    if image_baseline is not None:
        margin = sdn["unseen_pairs"]["shape"] - image_baseline["unseen_pairs"]["shape"]
        out["unseen_pairs/shape_over_image_baseline"] = {"value": round(margin, 4), "goal": SHAPE_MARGIN_OVER_IMAGE_BASELINE,
                                                         "met": margin >= SHAPE_MARGIN_OVER_IMAGE_BASELINE}
    return out
