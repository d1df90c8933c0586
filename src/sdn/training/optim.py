"""The optimiser every training loop uses: Adam, in the implementation the user picks."""

from __future__ import annotations

import math

import torch

from sdn.errors import UserError

ADAM_CHOICES = ("auto", "fused", "foreach", "for-loop")


def check_adam(adam: str) -> None:
    if adam not in ADAM_CHOICES:
        raise UserError(f"adam must be one of {', '.join(ADAM_CHOICES)}, not {adam!r}")


LR_DECAYS = ("none", "cosine")


def check_lr_decay(decay: str) -> None:
    if decay not in LR_DECAYS:
        raise UserError(f"--lr-decay must be one of {', '.join(LR_DECAYS)}, not {decay!r}")


def scheduled_lr(lr: float, decay: str, step: int, total_steps: int) -> float:
    """The learning rate of the step after `step` steps: constant ("none"), or a half cosine from lr
    down to 0 over total_steps ("cosine"). A function of the step alone, so a resumed run continues
    the same schedule."""
    check_lr_decay(decay)
    if decay == "none":
        return lr
    return lr * 0.5 * (1 + math.cos(math.pi * min(step, total_steps) / max(total_steps, 1)))


def make_adam(params, lr: float, adam: str = "auto") -> torch.optim.Adam:
    """Adam in the implementation `adam` names (see training_loop); "auto" falls back to foreach
    where fused is unsupported (CPU before torch 2.4, some accelerators)."""
    params = list(params)
    if adam in ("auto", "fused"):
        try:
            return torch.optim.Adam(params, lr=lr, fused=True)
        except (RuntimeError, TypeError):
            if adam == "fused":
                raise UserError("this torch has no fused Adam for this device; use --adam foreach") from None
    return torch.optim.Adam(params, lr=lr, foreach=adam != "for-loop")
