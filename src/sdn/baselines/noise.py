"""The GAN baselines' drawing noise outside training, and the generator interface they share with SDN.

A GAN draws from a caption *and* a noise vector. `sdn sample`, `sdn evaluate`, the figures and the
Table 1 grid must give the same drawing for the same caption every time, whatever the batch it is
drawn in, so outside training the noise is not drawn from a random generator at all: each caption
picks row `hash(caption embedding) mod 4096` of a bank of N(0, 1) vectors that the generator makes
from its `noise_seed` (stored in the checkpoint's configuration; the bank itself is not saved).
Different captions thus get independent noise, as in the published protocols that draw fresh noise
per sample, and the same caption always gets the same drawing. The hash reads the embedding rounded
to bf16, so fp32 and bf16 callers (autocast or a bf16 Sampler) pick the same row. Inside
`fixed_noise(generator)` every caption uses row 0 instead: one background and pose for all, as in
Reed et al.'s interpolation figures (`sdn interpolate` uses it).
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn

from sdn.networks.caption_input import StandardisedCaptions

BANK_ROWS = 4096


class BaselineGenerator(StandardisedCaptions):
    """SDN's generator interface for a conditional GAN generator: forward(text) -> (images
    (B, n_outputs, 3, H, W) in [0, 1], []), attributes `n_outputs` and `resolution`. Subclasses set
    `noise_dim` (every random number one drawing needs) and implement `draw(text, noise)`, which
    returns (tanh images in [-1, 1], KL term or 0) for raw caption embeddings."""

    def __init__(self, resolution: int, text_dim: int, noise_dim: int, n_outputs: int = 1, noise_seed: int = 0):
        super().__init__()
        self.resolution, self.n_outputs, self.noise_dim, self.noise_seed = resolution, n_outputs, noise_dim, noise_seed
        self.fixed_noise = False
        # Caption embeddings are standardised with training-set statistics, as for SDN's generator:
        # MiniLM vectors are unit-norm with tiny components, unlike the char-CNN-RNN vectors the papers used.
        self.register_caption_statistics(text_dim)
        g = torch.Generator().manual_seed(noise_seed)
        self.register_buffer("noise_bank", torch.randn(BANK_ROWS, n_outputs, noise_dim, generator=g), persistent=False)
        self.register_buffer("hash_weights", torch.randint(1, 1 << 20, (text_dim,), generator=g), persistent=False)

    @torch.no_grad()
    def refresh_batch_norm(self, text: torch.Tensor, seed: int, batch_size: int = 64, batches: int = 4) -> None:
        """Re-estimate every batch norm's running statistics from `batches` batches of `text` rows
        (raw embeddings, drawn with a generator seeded by `seed`) and fresh noise, replacing the old
        ones ("precise BN"). Drawing outside training uses these statistics (eval mode: a drawing
        must not depend on the rest of its batch); the moving averages kept during training lag
        far behind a GAN's quickly changing weights (early on they made every drawing the same)."""
        norms = [m for m in self.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        momenta = [m.momentum for m in norms]
        for m in norms:
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the batches below
        was_training = self.training
        self.train()
        rng = torch.Generator().manual_seed(seed)
        for _ in range(batches):
            rows = torch.randint(len(text), (min(batch_size, len(text)),), generator=rng)
            noise = torch.randn(len(rows), self.noise_dim, generator=rng)
            self.draw(text[rows].to(self.text_mean.device), noise.to(self.text_mean.device))
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum
        self.train(was_training)

    @property
    def weight_dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    def standardise(self, text: torch.Tensor) -> torch.Tensor:
        # In fp32 whatever the weights' type (a bf16 Sampler keeps these buffers fp32), as SDN's generator.
        return self.standardise_text(text).to(self.weight_dtype)

    def sampling_noise(self, text: torch.Tensor) -> torch.Tensor:
        """(B, n_outputs, noise_dim): each caption's bank row (see the module docstring)."""
        if self.fixed_noise:
            rows = torch.zeros(len(text), dtype=torch.long, device=text.device)
        else:
            bits = text.detach().to(torch.bfloat16).contiguous().view(torch.int16).long()
            rows = (bits * self.hash_weights.long()).sum(1).remainder(BANK_ROWS)  # a Sampler may hand the weights back as floats
        return self.noise_bank[rows]

    def draw(self, text: torch.Tensor, noise: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def forward(self, text: torch.Tensor, noise: torch.Tensor | None = None) -> tuple[torch.Tensor, list]:
        """noise: (B, noise_dim) for one drawing per caption, (B, n, noise_dim) for n; None: the bank's."""
        noise = self.sampling_noise(text) if noise is None else noise
        if noise.dim() == 2:
            noise = noise[:, None]
        n = noise.shape[1]
        images, _ = self.draw(text.repeat_interleave(n, 0), noise.flatten(0, 1).to(self.weight_dtype))
        return ((images + 1) / 2).unflatten(0, (len(text), n)), []


@contextlib.contextmanager
def fixed_noise(generator: nn.Module):
    """Inside: a baseline generator gives every caption the same noise (no-op for SDN's generator)."""
    if not isinstance(generator, BaselineGenerator):
        yield generator
        return
    before, generator.fixed_noise = generator.fixed_noise, True
    try:
        yield generator
    finally:
        generator.fixed_noise = before
