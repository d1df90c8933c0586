"""The baselines' networks, at any power-of-two resolution from 32 px (64 px in both papers).

GAN-INT-CLS (Reed et al., ICML 2016): the caption embedding projected to 128-d with leaky ReLU and
concatenated with 100-d noise, then the DCGAN generator (transposed 4x4 convolutions with batch norm
and ReLU, tanh out). Reed's released flowers model adds residual blocks at 4x4 and 8x8; this port
follows the paper's plain DCGAN.
StackGAN Stage-I (Zhang et al., ICCV 2017): conditioning augmentation (a fully connected layer with
leaky ReLU gives mu and log sigma, c = mu + sigma * eps), [c, z] through a fully connected layer to
4x4, then up-sampling blocks (nearest neighbour + 3x3 conv + batch norm) with residual blocks at 4x4
and 8x8, tanh out, as in their released Stage-I "default" network.
Both discriminators are `MatchingDiscriminator`: strided 4x4 convolutions down to 4x4, the caption
projected to 128-d and replicated over the 4x4 grid, concatenated, a 1x1 convolution and a 4x4 one
to a single logit.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from sdn.baselines.noise import BaselineGenerator
from sdn.errors import UserError
from sdn.networks.caption_input import StandardisedCaptions


def down_stages(resolution: int) -> int:
    """Halvings between the image and the networks' 4x4 grid."""
    stages = round(math.log2(resolution / 4)) if resolution > 0 else 0
    if resolution < 32 or 4 * 2**stages != resolution:
        raise UserError(f"the GAN baselines draw power-of-two sizes from 32 px (64 px as published), not {resolution} px")
    return stages


def dcgan_init(module: nn.Module, linear_too: bool) -> None:
    """DCGAN's N(0, 0.02) weights and N(1, 0.02) batch-norm scales, as both papers' code."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)) or (linear_too and isinstance(m, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


def leaky() -> nn.Module:
    return nn.LeakyReLU(0.2)


class ResidualBlock(nn.Module):
    """x + (1x1 to a bottleneck, 3x3, 3x3 back, batch norm after each); the activation follows the sum."""

    def __init__(self, channels: int, bottleneck: int, activation):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, bottleneck, 1, bias=False), nn.BatchNorm2d(bottleneck), activation(),
            nn.Conv2d(bottleneck, bottleneck, 3, padding=1, bias=False), nn.BatchNorm2d(bottleneck), activation(),
            nn.Conv2d(bottleneck, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels),
        )
        self.activation = activation()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activation(x + self.body(x))


class GanIntClsGenerator(BaselineGenerator):
    def __init__(self, resolution: int, text_dim: int, noise_dim: int = 100, text_proj_dim: int = 128, gf_dim: int = 128,
                 n_outputs: int = 1, noise_seed: int = 0):
        super().__init__(resolution, text_dim, noise_dim, n_outputs, noise_seed)
        stages = down_stages(resolution)
        self.project = nn.Sequential(nn.Linear(text_dim, text_proj_dim), leaky())
        ch = gf_dim * 2 ** (stages - 1)
        layers = [nn.ConvTranspose2d(noise_dim + text_proj_dim, ch, 4, bias=False), nn.BatchNorm2d(ch), nn.ReLU()]
        for _ in range(stages - 1):
            layers += [nn.ConvTranspose2d(ch, ch // 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ch // 2), nn.ReLU()]
            ch //= 2
        layers += [nn.ConvTranspose2d(ch, 3, 4, 2, 1, bias=False), nn.Tanh()]
        self.net = nn.Sequential(*layers)
        dcgan_init(self, linear_too=False)  # Reed's code leaves the text projection at torch7's default

    def draw(self, text: torch.Tensor, noise: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.cat([noise, self.project(self.standardise(text))], 1)
        return self.net(x[:, :, None, None]), text.new_zeros(())


def kl_divergence(mu: torch.Tensor, log_sigma: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, sigma^2) || N(0, 1)), averaged over batch and dimensions as StackGAN's code does."""
    return (-log_sigma + 0.5 * (-1 + torch.exp(2 * log_sigma) + mu**2)).mean()


class StackGanStage1Generator(BaselineGenerator):
    """noise = [z (noise_dim), the conditioning augmentation's eps (ca_dim)]."""

    def __init__(self, resolution: int, text_dim: int, noise_dim: int = 100, ca_dim: int = 128, gf_dim: int = 128,
                 n_outputs: int = 1, noise_seed: int = 0):
        super().__init__(resolution, text_dim, noise_dim + ca_dim, n_outputs, noise_seed)
        stages = down_stages(resolution)
        self.z_dim, self.ca_dim = noise_dim, ca_dim
        self.condition = nn.Sequential(nn.Linear(text_dim, 2 * ca_dim), leaky())  # mu and log sigma
        top = gf_dim * 2 ** (stages - 1)
        self.top = top
        self.fc = nn.Sequential(nn.Linear(noise_dim + ca_dim, 16 * top, bias=False), nn.BatchNorm1d(16 * top))
        self.res4 = ResidualBlock(top, top // 4, nn.ReLU)
        self.up8 = nn.Sequential(nn.Upsample(scale_factor=2), nn.Conv2d(top, top // 2, 3, padding=1, bias=False), nn.BatchNorm2d(top // 2))
        self.res8 = ResidualBlock(top // 2, top // 8, nn.ReLU)
        layers, ch = [], top // 2
        for _ in range(stages - 2):
            layers += [nn.Upsample(scale_factor=2), nn.Conv2d(ch, ch // 2, 3, padding=1, bias=False), nn.BatchNorm2d(ch // 2), nn.ReLU()]
            ch //= 2
        layers += [nn.Upsample(scale_factor=2), nn.Conv2d(ch, 3, 3, padding=1, bias=False), nn.Tanh()]
        self.rest = nn.Sequential(*layers)
        dcgan_init(self, linear_too=True)

    def augment(self, text: torch.Tensor, eps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Conditioning augmentation: (c, mu, log sigma)."""
        mu, log_sigma = self.condition(self.standardise(text)).chunk(2, 1)
        return mu + torch.exp(log_sigma) * eps, mu, log_sigma

    def draw(self, text: torch.Tensor, noise: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z, eps = noise.split([self.z_dim, self.ca_dim], 1)
        c, mu, log_sigma = self.augment(text, eps)
        x = self.res4(self.fc(torch.cat([c, z], 1)).view(-1, self.top, 4, 4))
        x = self.res8(self.up8(x))
        return self.rest(x), kl_divergence(mu.float(), log_sigma.float())


class MatchingDiscriminator(StandardisedCaptions):
    """(images in [-1, 1], raw caption embeddings) -> one logit per pair: real *and* matching."""

    def __init__(self, resolution: int, text_dim: int, df_dim: int = 64, text_proj_dim: int = 128, text_batch_norm: bool = True,
                 residual: bool = False):
        super().__init__()
        stages = down_stages(resolution)
        self.register_caption_statistics(text_dim)
        layers, ch = [nn.Conv2d(3, df_dim, 4, 2, 1, bias=False), leaky()], df_dim
        for _ in range(stages - 1):
            layers += [nn.Conv2d(ch, ch * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ch * 2), leaky()]
            ch *= 2
        if residual:
            layers.append(ResidualBlock(ch, ch // 4, leaky))
        self.image = nn.Sequential(*layers)
        self.project = nn.Sequential(nn.Linear(text_dim, text_proj_dim), *([nn.BatchNorm1d(text_proj_dim)] if text_batch_norm else []), leaky())
        self.joint = nn.Sequential(nn.Conv2d(ch + text_proj_dim, ch, 1, bias=False), nn.BatchNorm2d(ch), leaky(), nn.Conv2d(ch, 1, 4, bias=False))
        dcgan_init(self, linear_too=not text_batch_norm)

    def forward(self, images: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        x = self.image(images)
        t = self.project(self.standardise_text(text))
        x = torch.cat([x, t[:, :, None, None].expand(-1, -1, *x.shape[2:])], 1)
        return self.joint(x).flatten()
