"""The baselines' losses: the matching-aware discriminator (GAN-CLS), the generator's loss with
interpolated embeddings (GAN-INT), and the mismatched captions the discriminator learns to refuse."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def matching_aware_d_loss(real: torch.Tensor, wrong: torch.Tensor, fake: torch.Tensor, wrong_weight: float = 0.5) -> dict[str, torch.Tensor]:
    """Logits of D on (real image, right text), (real image, wrong text), (fake image, right text).
    Reed et al.'s Algorithm 1 / StackGAN: log D(real) + w log(1 - D(wrong)) + (1 - w) log(1 - D(fake)),
    w = 0.5 in both papers' code."""
    terms = {
        "d_real": F.binary_cross_entropy_with_logits(real.float(), torch.ones_like(real, dtype=torch.float)),
        "d_wrong": F.binary_cross_entropy_with_logits(wrong.float(), torch.zeros_like(wrong, dtype=torch.float)),
        "d_fake": F.binary_cross_entropy_with_logits(fake.float(), torch.zeros_like(fake, dtype=torch.float)),
    }
    terms["d_loss"] = terms["d_real"] + wrong_weight * terms["d_wrong"] + (1 - wrong_weight) * terms["d_fake"]
    return terms


def generator_loss(fake: torch.Tensor, interpolated: torch.Tensor | None = None, interp_weight: float = 1.0) -> torch.Tensor:
    """The non-saturating -log D(G(z, t)); with GAN-INT also on the interpolated embeddings, weighted
    `interp_weight` and averaged over all drawings together (Reed's weighted BCE)."""
    loss = F.binary_cross_entropy_with_logits(fake.float(), torch.ones_like(fake, dtype=torch.float), reduction="sum")
    count = len(fake)
    if interpolated is not None and len(interpolated):
        ones = torch.ones_like(interpolated, dtype=torch.float)
        loss = loss + interp_weight * F.binary_cross_entropy_with_logits(interpolated.float(), ones, reduction="sum")
        count += len(interpolated)
    return loss / count


def interpolate_pairs(text: torch.Tensor, beta: float = 0.5) -> torch.Tensor:
    """GAN-INT: beta * t1 + (1 - beta) * t2 for the first half of the batch paired with the second half."""
    half = len(text) // 2
    return beta * text[:half] + (1 - beta) * text[half : 2 * half]


def mismatched_indices(labels: list) -> torch.Tensor:
    """For each item, the nearest later item (cyclically) of another class: its caption is the
    "wrong text" for this item's image. Only when the whole batch is one class does an item get
    another item's caption of the same class (never its own, if there are two or more)."""
    n = len(labels)
    out = []
    for i in range(n):
        others = [(i + k) % n for k in range(1, n)]
        different = [j for j in others if labels[j] != labels[i]]
        out.append(different[0] if different else (others[0] if others else i))
    return torch.tensor(out, dtype=torch.long)
