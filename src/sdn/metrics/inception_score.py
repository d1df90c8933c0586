"""Inception Score (the paper's eq. 6): exp(E_x KL(p(y|x) || p(y))), mean and std over splits."""

from __future__ import annotations

import torch

from sdn.classifiers import build_classifier, extract
from sdn.errors import UserError
from sdn.metrics import EvalContext, register


def inception_score(probs: torch.Tensor, splits: int = 10) -> tuple[float, float]:
    """probs: (N, classes) rows summing to 1. The N rows are cut into `splits` consecutive parts, as
    in the original implementation; returns (mean, std) of the parts' scores."""
    if len(probs) < splits:
        raise UserError(f"the Inception Score needs at least {splits} images (one per split), got {len(probs)}")
    probs = probs.double().clamp_min(1e-12)
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
    if len(drawings) < ctx.is_splits:
        raise UserError(f"the Inception Score needs at least {ctx.is_splits} images (one per split), got {len(drawings)}")
    classifier = build_classifier(ctx.classifier, ctx.classifier_weights)
    logits, feats = extract(classifier, drawings, ctx.batch_size, ctx.device, ctx.progress, desc=f"IS ({classifier.name})",
                          precision=ctx.feature_precision)
    ctx.cache[("generated_features", classifier.name)] = feats
    mean, std = inception_score(logits.softmax(1), ctx.is_splits)
    note = "" if classifier.comparable_with_published_is else "; NOT comparable with published IS (not Inception-v3)"
    return {"is": mean, "is_std": std, "is_images": len(drawings), "is_classifier": classifier.name,
            "is_settings": f"{ctx.is_splits} splits, {ctx.feature_precision} features, bicubic antialiased resize {ctx.data.resolution} -> {classifier.input_size} px, RGB{note}"}
