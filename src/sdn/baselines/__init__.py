"""The Table 1 baselines, GAN-INT-CLS and StackGAN Stage-I, on SDN's data cache, text embeddings,
checkpoints and evaluation. `sdn train --method gan-int-cls|stackgan1` trains one (sdn.baselines.loop);
its generator draws through sdn.sampling.Sampler like SDN's (see sdn.baselines.noise)."""

from __future__ import annotations

from dataclasses import dataclass

from sdn.baselines.networks import GanIntClsGenerator, MatchingDiscriminator, StackGanStage1Generator
from sdn.errors import UserError


@dataclass(frozen=True)
class MethodDefaults:
    """Each paper's published settings (Reed's flowers script; StackGAN's stageI/cfg/flowers.yml)."""

    what: str
    epochs: int
    lr_decay_every: int  # epochs between halvings of both learning rates
    interp_weight: float  # GAN-INT: weight of the interpolated-embedding drawings in G's loss (0: off)
    kl_weight: float  # conditioning augmentation's KL coefficient (0: no CA)
    gf_dim: int = 128
    df_dim: int = 64
    noise_dim: int = 100
    text_proj_dim: int = 128  # GAN-INT-CLS: the text projection; StackGAN: the CA's c and D's text code
    batch_size: int = 64
    lr: float = 2e-4
    beta1: float = 0.5
    captions_averaged: int = 4  # both papers train on the mean embedding of 4 of the image's captions
    wrong_weight: float = 0.5  # D loss = real + w * (real image, wrong text) + (1 - w) * fake


METHODS = {
    "gan-int-cls": MethodDefaults("GAN-INT-CLS (Reed et al., ICML 2016)", epochs=600, lr_decay_every=100, interp_weight=1.0, kl_weight=0.0),
    "stackgan1": MethodDefaults("StackGAN Stage-I (Zhang et al., ICCV 2017)", epochs=600, lr_decay_every=50, interp_weight=0.0, kl_weight=2.0),
}


def check_method(method: str) -> MethodDefaults:
    if method not in METHODS:
        raise UserError(f"unknown method {method!r}; choose from sdn, {', '.join(METHODS)}")
    return METHODS[method]


def build_generator(cfg: dict):
    args = dict(noise_dim=cfg["noise_dim"], gf_dim=cfg["gf_dim"], n_outputs=cfg["n_outputs"], noise_seed=cfg["noise_seed"])
    check_method(cfg["method"])
    if cfg["method"] == "gan-int-cls":
        return GanIntClsGenerator(cfg["resolution"], cfg["text_dim"], text_proj_dim=cfg["text_proj_dim"], **args)
    return StackGanStage1Generator(cfg["resolution"], cfg["text_dim"], ca_dim=cfg["text_proj_dim"], **args)


def build_discriminator(cfg: dict) -> MatchingDiscriminator:
    # Reed's D batch-normalises its text code; StackGAN's does not but has a residual block at 4x4.
    stackgan = check_method(cfg["method"]) and cfg["method"] == "stackgan1"
    return MatchingDiscriminator(cfg["resolution"], cfg["text_dim"], cfg["df_dim"], cfg["text_proj_dim"],
                                 text_batch_norm=not stackgan, residual=stackgan)
