"""One SDN optimiser step, and the tap statistics its losses are weighted by."""

from __future__ import annotations

import math

import torch

from sdn.networks.teachers import Teacher
from sdn.training import distributed
from sdn.utils import autocast


@torch.no_grad()
def tap_mean_activations(teacher: Teacher, images: torch.Tensor, device, precision: str, batch_size: int = 32) -> torch.Tensor:
    """Each tap's mean |activation| over `images` (uint8)."""
    sums = torch.zeros(len(teacher.taps))
    for i in range(0, len(images), batch_size):
        real = images[i : i + batch_size].to(device).float() / 255
        with autocast(device, precision):
            feats = teacher(real)
        sums += torch.tensor([f.float().abs().mean().item() * len(real) for f in feats])
    return (sums / len(images)).clamp_min(1e-6)


def train_step(generator, teacher, loss_fn, real, text, optimizer, dev, precision, share: float = 1.0,
               critic_optimizer=None) -> dict[str, float]:
    """One optimiser step of `loss_fn` (an sdn.training.losses.Loss) on this process's slice of the global
    batch; `share` is the slice's fraction of the batch, which weighs its loss so that the gradients
    summed over processes are those of the whole batch's mean loss. Returns the whole batch's loss
    and its parts. A non-finite loss skips the update (every process sees the same summed loss, so
    all of them skip)."""
    names = loss_fn.term_names
    optimizer.zero_grad(set_to_none=True)
    values = torch.zeros(1 + len(names))
    if len(text):  # a short last batch can leave a process nothing to do but add zeros
        loss, terms = loss_fn(generator, teacher, real, text, precision)
        (loss if share == 1 else loss * share).backward()
        values = torch.stack([loss.detach().float()] + [terms[n].float() for n in names]).cpu() * share
    values = distributed.sum_gradients(generator.parameters(), values)
    result = dict(zip(("loss", *names), values.tolist()))
    if math.isfinite(result["loss"]):
        optimizer.step()
    if critic_optimizer is not None and hasattr(loss_fn, "critic"):
        result.update(critic_step(loss_fn, critic_optimizer, dev, precision, share))
    return result


def critic_step(loss_fn, critic_optimizer, dev, precision: str, share: float = 1.0) -> dict[str, float]:
    """The critic's update after the generator's (the "projected" scheme): its hinge loss on the
    teacher's taps of the real images and of the drawings that `loss_fn` just compared (no new teacher
    pass), gradients summed over processes as the generator's are; a non-finite loss skips it."""
    from sdn.networks.projected_discriminator import hinge_critic_loss

    critic, passes = loss_fn.critic, loss_fn.last_passes
    names = ("d_loss", "d_real", "d_fake") + (("d_wrong",) if loss_fn.wrong_captions else ())
    critic_optimizer.zero_grad(set_to_none=True)
    values = torch.zeros(len(names))
    if passes is not None:
        real_feats, fake_feats, text, fake_text = passes
        with autocast(dev, precision):
            # another image's caption (the batch is shuffled, so mostly another class's)
            wrong = critic(real_feats, text.roll(1, 0)) if loss_fn.wrong_captions and len(text) > 1 else None
            terms = hinge_critic_loss(critic(real_feats, text), critic(fake_feats, fake_text), wrong)
        terms.setdefault("d_wrong", terms["d_fake"].new_zeros(()))
        (terms["d_loss"] * share).backward()
        values = torch.stack([terms[k].detach().float() for k in names]).cpu() * share
    loss_fn.last_passes = None
    values = distributed.sum_gradients(critic.parameters(), values)
    result = dict(zip(names, values.tolist()))
    if math.isfinite(result["d_loss"]):
        critic_optimizer.step()
    return result
