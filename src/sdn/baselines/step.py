"""One training step of a GAN baseline: a discriminator update, then a generator update, each on
this process's slice of the global batch, with gradients summed over processes as SDN's step does."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from sdn.training import distributed
from sdn.baselines.losses import generator_loss, interpolate_pairs, matching_aware_d_loss
from sdn.evaluation.collapse import mean_pairwise_distance
from sdn.utils import autocast


@dataclass
class GanSettings:
    wrong_weight: float = 0.5
    interp_weight: float = 0.0  # > 0: GAN-INT
    kl_weight: float = 0.0  # StackGAN's conditioning augmentation


@dataclass
class StepInputs:
    """real: images in [-1, 1]; text: their caption embeddings; wrong_text: captions of other-class
    images; noise_d / noise_g: noise of the D and G updates; noise_interp: of the GAN-INT drawings."""

    real: torch.Tensor
    text: torch.Tensor
    wrong_text: torch.Tensor
    noise_d: torch.Tensor
    noise_g: torch.Tensor
    noise_interp: torch.Tensor


def _sum_over_processes(params, terms: dict[str, torch.Tensor], share: float) -> dict[str, float]:
    values = torch.stack([v.detach().float().cpu() for v in terms.values()]) * share
    values = distributed.sum_gradients(params, values)
    return dict(zip(terms, values.tolist()))


def gan_step(generator, discriminator, opt_g, opt_d, x: StepInputs, settings: GanSettings, dev, precision: str,
             share: float = 1.0) -> dict[str, float]:
    """Returns the losses and the discriminator's and drawings' statistics (global batch). A
    non-finite loss skips its network's update."""
    # (1) D: real + right text -> 1; real + wrong text -> 0; fake + right text -> 0
    opt_d.zero_grad(set_to_none=True)
    with autocast(dev, precision):
        with torch.no_grad():
            fake, _ = generator.draw(x.text, x.noise_d)
        # Separate calls, as both papers do: each batch gets its own batch-norm statistics.
        logits = {"real": discriminator(x.real, x.text), "wrong": discriminator(x.real, x.wrong_text), "fake": discriminator(fake, x.text)}
    terms = matching_aware_d_loss(logits["real"], logits["wrong"], logits["fake"], settings.wrong_weight)
    (terms["d_loss"] * share).backward()
    with torch.no_grad():
        every = torch.cat([v.float() for v in logits.values()])
        stats = {f"p_{k}": torch.sigmoid(v.float()).mean() for k, v in logits.items()}
        stats["d_logit_std"] = every.std() if len(every) > 1 else every.new_zeros(())
        # drawings of different captions vs their real images: ~0 when G draws one picture for all
        stats["batch_variety"] = torch.tensor(mean_pairwise_distance((fake.float() + 1) / 2) / max(mean_pairwise_distance((x.real.float() + 1) / 2), 1e-8))
    result = _sum_over_processes(discriminator.parameters(), {**terms, **stats}, share)
    if math.isfinite(result["d_loss"]):
        opt_d.step()

    # (2) G: -log D(G(z, t), t), also on interpolated captions (GAN-INT, one batch with the others
    # as in Reed's code), plus the CA's KL term
    opt_g.zero_grad(set_to_none=True)
    discriminator.requires_grad_(False)  # D's gradients are not needed here
    with autocast(dev, precision):
        text, noise = x.text, x.noise_g
        if settings.interp_weight > 0 and len(x.text) > 1:
            mixed = interpolate_pairs(x.text)
            text, noise = torch.cat([text, mixed]), torch.cat([noise, x.noise_interp[: len(mixed)]])
        fake, kl = generator.draw(text, noise)
        logits = discriminator(fake, text)
        adversarial = generator_loss(logits[: len(x.text)], logits[len(x.text) :], settings.interp_weight)
    discriminator.requires_grad_(True)
    g_terms = {"g_adversarial": adversarial, "kl": kl.float()}
    g_terms["g_loss"] = adversarial + settings.kl_weight * g_terms["kl"]
    (g_terms["g_loss"] * share).backward()
    result.update(_sum_over_processes(generator.parameters(), g_terms, share))
    if math.isfinite(result["g_loss"]):
        opt_g.step()
    result["loss"] = result["d_loss"] + result["g_loss"]  # the divergence guard's one number
    return result
