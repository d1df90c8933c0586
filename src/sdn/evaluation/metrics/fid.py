"""Fréchet Inception Distance between the drawings and the real images of the evaluated split."""

from __future__ import annotations

import torch

from sdn.evaluation.metrics.registry import EvalContext, register
from sdn.networks.classifiers import FidInception, extract


def frechet_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """FID of two feature sets (N, D), in float64. tr sqrt(S_a S_b) is the sum of the square roots of
    the eigenvalues of S_a S_b (real and non-negative in exact arithmetic; round-off is clipped),
    which avoids scipy's sqrtm and its complex-valued failures."""
    a, b = a.double(), b.double()
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = torch.cov(a.T), torch.cov(b.T)
    eig = torch.linalg.eigvals(cov_a @ cov_b).real.clamp_min(0)
    value = (mu_a - mu_b).square().sum() + cov_a.trace() + cov_b.trace() - 2 * eig.sqrt().sum()
    return max(value.item(), 0.0)


@register("fid", "Fréchet distance of TF-Inception pool3 features: drawings vs the split's real images")
def fid(ctx: EvalContext) -> dict:
    net = FidInception()
    key = ("fid_real_features", len(ctx.data), ctx.feature_precision)
    if key not in ctx.cache:
        (ctx.cache[key],) = extract(net, ctx.data.images, ctx.batch_size, ctx.device, ctx.progress, desc="FID real", precision=ctx.feature_precision)
    (fake,) = extract(net, ctx.drawings(), ctx.batch_size, ctx.device, ctx.progress, desc="FID generated", precision=ctx.feature_precision)
    return {"fid": frechet_distance(fake, ctx.cache[key]), "fid_generated_images": len(fake), "fid_real_images": len(ctx.cache[key]),
            "fid_network": net.name,
            "fid_settings": f"bicubic antialiased float resize {ctx.data.resolution} -> 299 px, {ctx.feature_precision} features; "
                            "FID is biased by sample count: compare only at equal counts"}
