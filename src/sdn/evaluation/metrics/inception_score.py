"""Inception Score (the paper's eq. 6): exp(E_x KL(p(y|x) || p(y))), mean and std over splits."""

from __future__ import annotations

import torch

from sdn.networks.classifiers import build_classifier, extract
from sdn.errors import UserError
from sdn.evaluation.metrics.registry import EvalContext, register


SPLIT_SEED = 0  # the fixed shuffle before splitting; recorded with every score


def check_enough_images(n_images: int, splits: int) -> None:
    """The Inception Score needs one image per split at least; callers check before the slow part."""
    if n_images < splits:
        raise UserError(f"the Inception Score needs at least {splits} images (one per split), got {n_images}")


def inception_score(probs: torch.Tensor, splits: int = 10, seed: int | None = SPLIT_SEED) -> tuple[float, float]:
    """probs: (N, classes) rows summing to 1. The rows are shuffled with `seed` (None: kept in
    order) and cut into `splits` parts; returns (mean, std) of the parts' scores.

    The shuffle matters: drawings come in the cache's order, which is sorted by class, so
    consecutive parts would each hold a few classes only and the per-part marginal p(y) would be
    far too narrow (20 test classes in 10 consecutive parts: about 2 per part, an IS up to 10x too
    low for a class-faithful model). The original code split consecutive parts of a shuffled set."""
    check_enough_images(len(probs), splits)
    probs = probs.double().clamp_min(1e-12)
    if seed is not None:
        probs = probs[torch.randperm(len(probs), generator=torch.Generator().manual_seed(seed))]
    scores = []
    for part in probs.tensor_split(splits):
        marginal = part.mean(0, keepdim=True)
        kl = (part * (part.log() - marginal.log())).sum(1)
        scores.append(kl.mean().exp())
    scores = torch.stack(scores)
    return scores.mean().item(), scores.std(unbiased=False).item() if splits > 1 else 0.0


@register("is", "Inception Score over all drawings (eq. 6), 10 splits; the classifier is named with it")
def inception_score_metric(ctx: EvalContext) -> dict:
    drawings = ctx.drawings()
    check_enough_images(len(drawings), ctx.is_splits)
    classifier = build_classifier(ctx.classifier, ctx.classifier_weights)
    logits, feats = extract(classifier, drawings, ctx.batch_size, ctx.device, ctx.progress, desc=f"IS ({classifier.name})",
                          precision=ctx.feature_precision)
    mean, std = inception_score(logits.softmax(1), ctx.is_splits)
    return {"is": mean, "is_std": std, "is_images": len(drawings), "is_classifier": classifier.name,
            "is_split_seed": SPLIT_SEED,
            "is_settings": f"{ctx.is_splits} splits after a shuffle with seed {SPLIT_SEED}, {ctx.feature_precision} features, bicubic antialiased resize {ctx.data.resolution} -> {classifier.input_size} px, RGB; {classifier.is_label}"}
