"""SSIM and FSIM, the paper's paired protocol: each drawing against the real image whose caption
drew it. piq computes both; FSIM is piq's colour variant FSIMc (chromatic=True)."""

from __future__ import annotations

import torch

from sdn.evaluation.metrics.registry import EvalContext, register


def _paired(ctx: EvalContext, score) -> torch.Tensor:
    drawings, index = ctx.drawings(), ctx.paired_real_index()
    values = []
    for i in range(0, len(drawings), ctx.batch_size):
        fake = drawings[i : i + ctx.batch_size].float() / 255
        real = ctx.data.images[index[i : i + ctx.batch_size]].float() / 255
        values.append(score(fake.to(ctx.device), real.to(ctx.device)).float().cpu())
    return torch.cat(values)


def _summary(name: str, values: torch.Tensor, ctx: EvalContext, how: str) -> dict:
    return {
        name: values.mean().item(), f"{name}_std": values.std().item() if len(values) > 1 else 0.0, f"{name}_pairs": len(values),
        f"{name}_settings": f"{how}; data_range 1.0 on RGB in [0, 1]; {ctx.data.resolution} px; drawing vs its own real image",
    }


@register("ssim", "structural similarity of each drawing with its real image (piq.ssim, 11x11 Gaussian window)")
def ssim(ctx: EvalContext) -> dict:
    import piq  # here, not at the top: piq imports torchvision, seconds that only SSIM and FSIM need

    values = _paired(ctx, lambda x, y: piq.ssim(x, y, data_range=1.0, reduction="none"))
    return _summary("ssim", values, ctx, "piq.ssim, kernel 11, sigma 1.5, mean over RGB channels")


@register("fsim", "feature similarity (colour FSIMc) of each drawing with its real image (piq.fsim)")
def fsim(ctx: EvalContext) -> dict:
    import piq

    values = _paired(ctx, lambda x, y: piq.fsim(x, y, data_range=1.0, chromatic=True, reduction="none"))
    return _summary("fsim", values, ctx, "piq.fsim chromatic=True (FSIMc)")
