"""Shape accuracy on the demo data: does the drawn object have the shape the caption asked for?"""

from __future__ import annotations

import torch

from sdn.data.captioned_images import CaptionedImages
from sdn.evaluation.metrics.registry import EvalContext, register


def shape_accuracy(generated: torch.Tensor, data: CaptionedImages, classifier=None) -> dict:
    """generated: float (N, n, 3, H, W) in [0, 1], one row per image of `data`.

    Demo data only: how often the package's shape classifier (sdn.networks.shape_classifier: a small CNN
    trained on real demo images of another seed, with a fifth class "no shape" for soft Gaussian blobs
    and empty or noisy images) names the shape the caption asked for. "No shape" counts as wrong. Every output of a diverse model
    is scored. Real images score the classifier's own accuracy, reported beside it."""
    from sdn.networks.shape_classifier import NO_SHAPE, classify_shapes, load_or_train

    if not data.attributes or "shape" not in data.attributes[0]:
        raise ValueError("shape_accuracy needs the demo data's shape attributes")
    net = classifier if classifier is not None else load_or_train()[0]
    asked = [a["shape"] for a in data.attributes]
    n = generated.shape[1]
    hits = refused = 0
    for p in range(n):
        got, _ = classify_shapes(net, generated[:, p])
        hits += sum(g == a for g, a in zip(got, asked))
        refused += got.count(NO_SHAPE)
    real, _ = classify_shapes(net, data.images.float() / 255)
    return {
        "shape_accuracy": hits / (len(asked) * n),
        "shape_accuracy_of_real_images": sum(g == a for g, a in zip(real, asked)) / len(asked),
        "called_no_shape": refused / (len(asked) * n),
        "images": len(asked) * n,
    }


@register("shape_accuracy", "demo data only: share of drawings whose object the demo's shape classifier names as the caption's shape", default=False)
def _shape_accuracy_metric(ctx: EvalContext) -> dict:
    return shape_accuracy(ctx.drawings()[:, None].float() / 255, ctx.data.take(ctx.paired_real_index().tolist()))
