"""How a network reads a caption vector: standardised with the training captions' statistics.

Sentence vectors of similar captions are close together; standardising spreads them so a network's
first layer can tell them apart. Shared by the generator, the projected critic and the baselines, so
the buffers (`text_mean`, `text_std`) keep one name in every saved file.
"""

from __future__ import annotations

import torch
from torch import nn

TEXT_SCALINGS = ("dimension", "global")


class StandardisedCaptions(nn.Module):
    """Mixin for a network with a caption input: call `register_caption_statistics(dim)` in __init__."""

    def register_caption_statistics(self, text_dim: int) -> None:
        self.register_buffer("text_mean", torch.zeros(text_dim))
        self.register_buffer("text_std", torch.ones(text_dim))

    @torch.no_grad()
    def set_text_statistics(self, embeddings: torch.Tensor, scaling: str = "dimension") -> None:
        """embeddings (N, dim): the training captions. scaling "dimension" divides each dimension by its
        own spread (the default); "global" by one spread for all, the root mean square of theirs, so
        dimensions the training sentences barely move (words they never vary) are not blown up and a
        caption worded otherwise does not land far outside what the network was trained on."""
        if scaling not in TEXT_SCALINGS:
            raise ValueError(f"text scaling must be one of {TEXT_SCALINGS}, not {scaling!r}")
        std = embeddings.std(0)
        if scaling == "global":
            std = std.square().mean().sqrt().expand_as(std)
        self.text_mean.copy_(embeddings.mean(0))
        self.text_std.copy_(std.clamp_min(1e-6))

    def standardise_text(self, text: torch.Tensor) -> torch.Tensor:
        # in fp32 whatever the weights' type: bf16 would blur captions whose vectors are close
        return (text.float() - self.text_mean.float()) / self.text_std.float()
