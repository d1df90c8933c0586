"""A light conditional discriminator that reads the frozen teacher's taps (Projected GAN, Sauer et al.,
NeurIPS 2021, without its random channel mixing): the "projected" scheme's critic.

An L1 regression to the teacher's features draws the mean of what a caption can look like: a soft
blob. A discriminator that judges the drawing's teacher features, not its pixels, asks for the
texture and edges a real photo's features have, and costs little: the teacher's pass over the
drawing is already made for the Stage-II loss, so the critic adds a few small convolutions.

One head per scale (the last tap of each stride from 4 to 32; EfficientNet-Lite0: block2, block4,
block10, head; VGG19: pool2..pool5), each a 1x1 then a 3x3 convolution, spectrally normalised, whose
per-position logit adds a projection term (Miyato & Koyama 2018): the inner product of the position's
features with an embedding of the caption, so the critic judges image and caption together. The
logit of an image is the sum over heads of their mean over positions."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils.parametrizations import spectral_norm

from sdn.networks.caption_input import StandardisedCaptions
from sdn.networks.teachers import Tap


def critic_taps(taps: Sequence[Tap]) -> list[int]:
    """Indices of the taps the critic reads: the last tap of each stride from 4 to 32."""
    last = {t.stride: i for i, t in enumerate(taps) if 4 <= t.stride <= 32}
    return [last[s] for s in sorted(last)]


class _Head(nn.Module):
    def __init__(self, channels: int, text_dim: int, width: int):
        super().__init__()
        self.body = nn.Sequential(
            spectral_norm(nn.Conv2d(channels, width, 1)), nn.LeakyReLU(0.2),
            spectral_norm(nn.Conv2d(width, width, 3, padding=1)), nn.LeakyReLU(0.2),
        )
        self.out = spectral_norm(nn.Conv2d(width, 1, 1))
        self.embed = spectral_norm(nn.Linear(text_dim, width))
        self.width = width

    def forward(self, feats: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        h = self.body(feats)
        projection = (h * self.embed(text)[:, :, None, None]).sum(1, keepdim=True) / math.sqrt(self.width)
        return (self.out(h) + projection).flatten(1).mean(1)


class ProjectedDiscriminator(StandardisedCaptions):
    """critic(taps, text) -> one logit per image; `taps` are all the teacher's taps (as the teacher
    returns them), `text` the caption vectors. `tap_scales` (one per teacher tap, None = 1) divide the
    taps first, so every head sees features of about unit size. caption_projection: read captions through
    the "paraphrase" text scaling's projection (sdn.networks.caption_input)."""

    def __init__(self, taps: Sequence[Tap], text_dim: int, tap_scales: Sequence[float] | torch.Tensor | None = None, width: int = 64,
                 caption_projection: bool = False):
        super().__init__()
        self.tap_indices = critic_taps(taps)
        self.heads = nn.ModuleList(_Head(taps[i].channels, text_dim, width) for i in self.tap_indices)
        scales = torch.ones(len(taps)) if tap_scales is None else torch.as_tensor(tap_scales, dtype=torch.float32)
        self.register_buffer("inverse_scales", 1 / scales[self.tap_indices])
        self.register_caption_statistics(text_dim, caption_projection)

    def forward(self, taps: Sequence[torch.Tensor], text: torch.Tensor) -> torch.Tensor:
        text = self.standardise_text(text)
        logits = [head(taps[i] * s, text) for head, i, s in zip(self.heads, self.tap_indices, self.inverse_scales)]
        return torch.stack(logits, 1).float().sum(1)


def hinge_critic_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor, wrong_logits: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """The critic's hinge loss (as Projected GAN and BigGAN): real pushed above 1, drawings below -1.
    With `wrong_logits` (real images paired with other images' captions), GAN-CLS's matching-aware
    form: those count as fakes too, half and half with the drawings, so that a drawing which looks real
    but ignores its caption is refused (without them the critic's projection term alone let the
    generator draw one photo-like picture for every caption: docs/flowers-gpu.md)."""
    terms = {"d_real": F.relu(1 - real_logits.float()).mean(), "d_fake": F.relu(1 + fake_logits.float()).mean()}
    if wrong_logits is None:
        terms["d_loss"] = terms["d_real"] + terms["d_fake"]
    else:
        terms["d_wrong"] = F.relu(1 + wrong_logits.float()).mean()
        terms["d_loss"] = terms["d_real"] + 0.5 * (terms["d_fake"] + terms["d_wrong"])
    return terms
