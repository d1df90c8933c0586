"""The per-image L1 of every loss term in four elementwise passes instead of about eleven.

`scaled_l1_per_image(output, target, target_scale, result_scale)` is

    result_scale * mean over (C, H, W) of |output - target * target_scale|      (one value per image)

in fp32, with the plain formula's gradients. Stage I passes target_scale = 1 / tap scale (the
generator learns unit-scale activations); Stage II passes result_scale = 1 / tap scale, since
|fake / s - real / s| = |fake - real| / s: the scaled fp32 copies of both taps are never made.

Forward: one `torch.sub` (the difference computed in fp32 inside the kernel and stored in the
inputs' dtype, so bf16 taps lose only the rounding of the difference itself, about 0.4 %) and one
reduction that sums |.| in fp32 over the image's dimensions in whatever memory layout the tap has
(no flattening copy of a channels-last tensor). Backward: the difference is recomputed from the
saved inputs (which the training step keeps alive anyway, so nothing extra is stored), then its sign
is scaled in place. The plain formula (sdn.training.losses.l1_per_image) makes fp32 copies of both inputs,
keeps an int8 sign, flattens, and casts the gradient back: its numbers, at a third of the passes.
"""

from __future__ import annotations

import torch


def scaled_l1_per_image(output: torch.Tensor, target: torch.Tensor, target_scale: float = 1.0,
                        result_scale: float = 1.0, batch_dims: int = 1) -> torch.Tensor:
    """output (*batch, ...), target of the same shape or broadcastable to it -> (*batch) fp32, the
    mean over all but the first `batch_dims` dimensions (2 for the pixel term's (B, n, 3, H, W))."""
    return _ScaledL1.apply(output, target, float(target_scale), float(result_scale), batch_dims)


class _ScaledL1(torch.autograd.Function):
    @staticmethod
    def forward(ctx, output, target, target_scale, result_scale, batch_dims):
        diff = torch.sub(output, target, alpha=target_scale)
        count = diff[(0,) * batch_dims].numel()
        ctx.save_for_backward(output, target)
        ctx.scales, ctx.count = (target_scale, result_scale), count
        # abs in place, then an fp32-accumulating sum (torch.linalg.vector_norm(ord=1) measured 4x slower on CPU)
        return diff.abs_().sum(tuple(range(batch_dims, diff.dim())), dtype=torch.float32) * (result_scale / count)

    @staticmethod
    def backward(ctx, grad):
        output, target = ctx.saved_tensors
        target_scale, result_scale = ctx.scales
        diff = torch.sub(output, target, alpha=target_scale)
        per_image = (grad * (result_scale / ctx.count)).to(diff.dtype)
        per_image = per_image.view(*per_image.shape, *[1] * (diff.dim() - per_image.dim()))
        g = diff.sign_().mul_(per_image)  # d|d|/dd = sign(d): 0 where the two agree, as torch's abs
        grad_output = g.to(output.dtype) if ctx.needs_input_grad[0] else None
        grad_target = None
        if ctx.needs_input_grad[1]:
            grad_target = -target_scale * g
            grad_target = grad_target.to(target.dtype)
            if grad_target.shape != target.shape:  # a broadcast target: sum its gradient back
                grad_target = grad_target.sum_to_size(target.shape)
        return grad_output, grad_target, None, None, None


def weighted_taps_per_image(outputs, targets, weights: torch.Tensor, target_scales=None, result_scales=None) -> torch.Tensor:
    """sum over taps of weight * scaled_l1_per_image(output, target, ...): (B,) fp32. target_scales /
    result_scales: one multiplier per tap, or None for 1 each."""
    assert len(outputs) == len(targets) == len(weights)
    ones = [1.0] * len(outputs)
    terms = torch.stack([scaled_l1_per_image(o, t, ts, rs) for o, t, ts, rs in
                         zip(outputs, targets, target_scales or ones, result_scales or ones)], 1)  # (B, taps)
    return terms @ weights.to(terms.device)
