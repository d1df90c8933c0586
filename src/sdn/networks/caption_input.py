"""How a network reads a caption vector: standardised with the training captions' statistics.

Sentence vectors of similar captions are close together; standardising spreads them so a network's
first layer can tell them apart. Shared by the generator, the projected critic and the baselines, so
the buffers (`text_mean`, `text_std` and, for the "paraphrase" scaling, `text_projection`) keep one
name in every saved file.
"""

from __future__ import annotations

import torch
from torch import nn

TEXT_SCALINGS = ("dimension", "global", "paraphrase")
# How many directions the "paraphrase" reader keeps: as many as there are independent directions along
# which captions of different images differ more than this many times as much as captions of one image
# do (Fisher's ratio, between / within)...
PARAPHRASE_RATIO = 1.0
# ...with this share of the mean variance added to the within-image covariance for that count, so that
# directions no training caption moves (a ratio of 0 / 0) count as wording, not meaning.
PARAPHRASE_RIDGE = 0.1


def paraphrase_directions(embeddings: torch.Tensor, ratio: float = PARAPHRASE_RATIO, ridge: float = PARAPHRASE_RIDGE) -> torch.Tensor:
    """embeddings (images, captions per image, dim): the training captions, grouped by image. Returns
    (dim, dim): as columns, the k principal directions of the meanings (the image means' covariance less
    the wording's share of it), each scaled to unit spread over the training captions, then dim - k zero columns (a
    network's first layer keeps its width). k is the number of directions along which the captions of
    different images differ more than `ratio` times as much as the captions of one image (a linear
    discriminant analysis with each image a class: an image's captions are paraphrases of one meaning).

    Why: a sentence vector moves with the wording as well as with the meaning; a generator that reads
    every direction learns the training sentences' frames and draws a caption worded otherwise from a
    part of its input it never saw (the demo's held-out phrasings, docs/demo-levers.md). The directions
    themselves are the meanings' principal axes, not the discriminant's: the discriminant whitens by
    the training wordings' spread and so reads a word those wordings never used by its noise ("disc"
    came out nearer "square" than "circle" on the demo), where the principal axes keep the encoder's own
    geometry. Reed et al.'s caption embeddings, which the paper uses, were trained so that captions of
    one class agree; this is that idea as a fixed linear map fitted on the training captions."""
    if embeddings.dim() != 3 or embeddings.shape[1] < 2:
        raise ValueError("the paraphrase text scaling needs at least two captions per training image")
    x = embeddings.double()
    dim = x.shape[-1]
    mean = x.flatten(0, 1).mean(0)
    centred = x.flatten(0, 1) - mean
    image_means = x.mean(1)
    within = (x - image_means[:, None]).flatten(0, 1)
    within = within.T @ within / len(within)
    centred_means = image_means - mean
    between = centred_means.T @ centred_means / len(centred_means)
    regularised = within + ridge * (within + between).trace() / dim * torch.eye(dim, dtype=x.dtype)
    inverse_root = torch.linalg.inv(torch.linalg.cholesky(regularised))
    kept = int((torch.linalg.eigvalsh(inverse_root @ between @ inverse_root.T) > ratio).sum())
    if kept == 0:
        raise ValueError("the paraphrase text scaling found no direction in which different images' captions differ more "
                         "than one image's captions do (does the text encoder carry the captions' meaning?)")
    # The image means' covariance less what the wording adds to a mean of m captions (their spread / m,
    # the within-image spread taken unbiased): the covariance of the meanings themselves.
    m = x.shape[1]
    meanings = between - within / (m - 1)
    directions = torch.linalg.eigh(meanings).eigenvectors.flip(1)[:, :kept]  # largest variance first
    directions = directions / (centred @ directions).std(0)
    return torch.cat([directions, directions.new_zeros(dim, dim - kept)], 1).float()


class StandardisedCaptions(nn.Module):
    """Mixin for a network with a caption input: call `register_caption_statistics(dim)` in __init__."""

    def register_caption_statistics(self, text_dim: int, projection: bool = False) -> None:
        """projection: also hold the "paraphrase" scaling's (dim, dim) map (`text_projection`)."""
        self.register_buffer("text_mean", torch.zeros(text_dim))
        self.register_buffer("text_std", torch.ones(text_dim))
        if projection:
            self.register_buffer("text_projection", torch.eye(text_dim))

    @torch.no_grad()
    def set_text_statistics(self, embeddings: torch.Tensor, scaling: str = "dimension") -> None:
        """embeddings: the training captions, (N, dim), or (images, captions per image, dim), which the
        "paraphrase" scaling needs. scaling "dimension" divides each dimension by its own spread (the
        default); "global" by one spread for all, the root mean square of theirs, so dimensions the
        training sentences barely move (words they never vary) are not blown up and a caption worded
        otherwise does not land far outside what the network was trained on; "paraphrase" keeps only the
        directions in which different images' captions differ more than one image's captions do
        (`paraphrase_directions`; the network must have been built with a projection buffer)."""
        if scaling not in TEXT_SCALINGS:
            raise ValueError(f"text scaling must be one of {TEXT_SCALINGS}, not {scaling!r}")
        if (scaling == "paraphrase") != hasattr(self, "text_projection"):
            raise ValueError(f"text scaling {scaling!r} does not fit a network built {'with' if hasattr(self, 'text_projection') else 'without'} a caption projection")
        flat = embeddings.flatten(0, -2)
        std = flat.std(0)
        if scaling == "global":
            std = std.square().mean().sqrt().expand_as(std)
        if scaling == "paraphrase":
            self.text_projection.copy_(paraphrase_directions(embeddings).to(self.text_projection.device))
            std = torch.ones_like(std)  # the projection scales each direction itself
        self.text_mean.copy_(flat.mean(0))
        self.text_std.copy_(std.clamp_min(1e-6))

    def standardise_text(self, text: torch.Tensor) -> torch.Tensor:
        # in fp32 whatever the weights' type: bf16 would blur captions whose vectors are close
        text = (text.float() - self.text_mean.float()) / self.text_std.float()
        return text @ self.text_projection.float() if hasattr(self, "text_projection") else text
