"""The one SDN training loop: every scheme of the paper's Table 3, data parallel over torchrun's
processes (see sdn.training.distributed), checkpoints that survive a kill at any moment, exact resume
(sdn.training.resume), a guard against diverging losses (sdn.training.budget), and a per-step log (sdn.training.run_log)."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import torch
from tqdm.auto import tqdm

from sdn.training import distributed
from sdn.data.batches import caption_blend, caption_embeddings, epoch_blend, epoch_order, host_to_device
from sdn.training.budget import WallClockBudget, stop_if_diverged
from sdn.training.config import PAPER
from sdn.training.checkpoint import EXPORT, LATEST, check_compatible, check_same_training, checkpoint_files, export_generator, save_numbered
from sdn.data.captioned_images import CaptionedImages
from sdn.errors import UserError
from sdn.networks.generator import Generator
from sdn.training.host_memory import retain_freed_memory as retain_freed_host_memory
from sdn.training.average import average_entries, drawing_generator, weight_average
from sdn.training.optim import make_adam, scheduled_lr
from sdn.training.resume import find_resume_checkpoint, resume_position, rng_states, set_rng_states
from sdn.training.run_log import RunLog
from sdn.training.schemes import SCHEMES, scheme_losses, uses_critic
from sdn.networks.teacher_fusion import fuse_teacher
from sdn.networks.teacher_views import tap_weight_profile
from sdn.networks.teachers import build_teacher
from sdn.networks.text import TextEncoder
from sdn.training.settings import check_training_arguments, settle_speed_switches, training_config
from sdn.training.step import tap_mean_activations, train_step
from sdn.utils import default_device, ensure_writable


def training_loop(
    data: CaptionedImages,
    run_dir: str | Path,
    teacher: str = PAPER.teacher,
    teacher_weights: str | None = None,  # local state-dict file; None = the default pretrained weights
    teacher_init: str = PAPER.teacher_init,
    teacher_pooling: str = PAPER.teacher_pooling,
    text_encoder: str = PAPER.text_encoder,
    scheme: str = PAPER.scheme,
    n_outputs: int | None = PAPER.n_outputs,
    stage1_epochs: int = PAPER.stage1_epochs,
    stage2_epochs: int = PAPER.stage2_epochs,
    batch_size: int = PAPER.batch_size,
    lr: float = PAPER.lr,
    fc_dim: int = PAPER.fc_dim,
    caption_film: bool = PAPER.caption_film,
    pair_preactivation: bool | None = PAPER.pair_preactivation,
    tap_weights: str = PAPER.tap_weights,
    loss_reduction: str = PAPER.loss_reduction,
    tap_distance: str = PAPER.tap_distance,
    pixel_distance: str = PAPER.pixel_distance,
    pixel_weight: float = PAPER.pixel_weight,
    stage2_pixel_weight: float | None = PAPER.stage2_pixel_weight,
    tap_profile: str = PAPER.tap_profile,
    teacher_input_size: int | None = PAPER.teacher_input_size,
    stage1_inputs: str = PAPER.stage1_inputs,
    diverse_mean_weight: float = PAPER.diverse_mean_weight,
    ema_decay: float = PAPER.ema_decay,
    lr_decay: str = PAPER.lr_decay,
    caption_noise: float = PAPER.caption_noise,
    caption_mix: bool = PAPER.caption_mix,
    text_scaling: str = PAPER.text_scaling,
    adversarial_weight: float = PAPER.adversarial_weight,
    critic_lr: float = PAPER.critic_lr,
    critic_wrong_captions: bool = PAPER.critic_wrong_captions,
    precision: str = PAPER.precision,
    channels_last: bool = PAPER.channels_last,
    adam: str = PAPER.adam,
    compile: bool = PAPER.compile,
    grad_checkpointing: bool = PAPER.grad_checkpointing,
    teacher_fusion: bool = PAPER.teacher_fusion,
    fused_l1: bool = PAPER.fused_l1,
    matmul_convs: bool = PAPER.matmul_convs,
    retain_freed_memory: bool = PAPER.retain_freed_memory,
    seed: int = PAPER.seed,
    resume: str | Path | None = None,  # checkpoint file or run folder to continue from, exactly where it stopped;
    # "auto": the newest readable checkpoint in run_dir, or a fresh start if it has none
    checkpoint_every: int | None = PAPER.checkpoint_every,
    keep_checkpoints: int = PAPER.keep_checkpoints,
    max_bad_steps: int = PAPER.max_bad_steps,
    checkpoint_epochs: int = PAPER.checkpoint_epochs,
    device: str | None = None,  # "cpu", "cuda", ...; None = CUDA when available
    progress: bool = True,  # show a progress bar
    text_encoder_instance: TextEncoder | None = None,  # an already-built encoder, to reuse
    overwrite: bool = False,  # start afresh in a run folder that already holds a checkpoint
    allow_changed_settings: tuple[str, ...] = (),  # on resume, settings (keys of the saved config) that may
    # differ from the checkpoint's; any other difference is refused. Each change is recorded in the config.
    max_seconds: float | None = None,  # stop at the first step boundary after this much wall time, with a checkpoint
) -> Path:
    """Train a generator on `data`'s train split (settings: sdn.training.config.TrainingConfig); returns the last checkpoint."""
    a = SimpleNamespace(**locals())  # the arguments as one object, for the steps below
    budget = WallClockBudget(max_seconds)  # counts setup too: the budget is wall time
    check_training_arguments(a)  # also settles n_outputs and pair_preactivation
    a.run_dir = run_dir = Path(run_dir)
    world = distributed.setup(default_device(device))
    budget.world = world
    dev = distributed.local_device(device, world)
    settle_speed_switches(a, dev.type)
    if world.is_main:
        ensure_writable(run_dir)
    train = data.subset("train")
    if len(train) == 0:
        raise UserError("the data has no training images")
    torch.manual_seed(seed)
    config = training_config(a, data.resolution)
    distributed.check_same_settings(
        {**config, "run_dir": str(run_dir), "resume": None if resume is None else str(resume), "overwrite": overwrite,
         "checkpoint_every": checkpoint_every, "checkpoint_epochs": checkpoint_epochs, "keep_checkpoints": keep_checkpoints,
         "max_bad_steps": max_bad_steps,
         "train_images": len(train), "world_size": world.world_size},
        world,
    )
    ckpt = find_resume_checkpoint(resume, run_dir, overwrite, world)  # checked before anything slow is built
    if ckpt is not None:
        check_compatible(ckpt["config"], config, "this run")
        config["changed_settings"] = check_same_training(ckpt["config"], config, allow_changed_settings, ckpt["step"])
    teacher_net, generator, embeddings = _build_networks(a, config, ckpt, train, dev)
    optimizer = make_adam(generator.parameters(), lr, adam)
    state = _start(a, ckpt, generator, optimizer, teacher_net, train, embeddings, dev, world)
    average = weight_average(generator, ema_decay, ckpt)
    distributed.broadcast_parameters(generator, world)
    critic = _build_critic(a, teacher_net, state, embeddings, ckpt, dev, world)
    losses = scheme_losses(a, state.tap_weights, state.tap_scales, critic and critic[0])
    _train_epochs(a, config, state, generator, average, teacher_net, optimizer, losses, train, embeddings, dev, world, budget,
                  ckpt is not None, critic)
    if world.is_main:
        export_generator(drawing_generator(generator, average), {**config, "step": state.step}, run_dir / EXPORT)
    distributed.barrier(world)  # no rank leaves (and tears the group down) while rank 0 still writes
    files = checkpoint_files(run_dir)
    return files[0] if files else run_dir / LATEST


def _build_networks(a: SimpleNamespace, config: dict, ckpt: dict | None, train: CaptionedImages, dev: torch.device):
    """(teacher, generator, caption embeddings of the train split), as the settings ask."""
    teacher_net = build_teacher(a.teacher, a.teacher_weights, a.teacher_init, a.teacher_pooling, config["resolution"],
                                a.teacher_input_size).to(dev)
    embeddings = caption_embeddings(train, config["text_encoder"], a.text_encoder_instance)
    config["text_dim"] = embeddings.shape[-1]
    if a.text_scaling == "paraphrase" and embeddings.shape[1] < 2:
        raise UserError("--text-scaling paraphrase needs at least two captions per training image (they are its paraphrases)")
    if ckpt is not None:
        check_compatible(ckpt["config"], config, "this run")
    generator = Generator(teacher_net.taps, config["resolution"], config["text_dim"], a.fc_dim, a.n_outputs, a.pair_preactivation,
                          a.grad_checkpointing, a.matmul_convs, a.caption_film,
                          caption_projection=a.text_scaling == "paraphrase").to(dev)
    memory_format = torch.channels_last if a.channels_last else torch.contiguous_format
    if a.teacher_fusion:
        teacher_net = fuse_teacher(teacher_net, a.precision)
    if a.retain_freed_memory and dev.type == "cpu":
        retain_freed_host_memory()
    teacher_net.to(memory_format=memory_format)
    generator.to(memory_format=memory_format)
    return teacher_net, generator, embeddings


def _build_critic(a, teacher_net, state, embeddings, ckpt, dev, world):
    """(critic, its optimiser) for a scheme that has one (sdn.networks.projected_discriminator), from
    the checkpoint or fresh; None for the paper's schemes."""
    if not uses_critic(a.scheme):
        return None
    from sdn.networks.projected_discriminator import ProjectedDiscriminator

    critic = ProjectedDiscriminator(teacher_net.taps, embeddings.shape[-1], state.tap_scales,
                                    caption_projection=a.text_scaling == "paraphrase").to(dev)
    optimizer = make_adam(critic.parameters(), a.critic_lr, a.adam)  # the implementation --adam names
    for group in optimizer.param_groups:
        group["betas"] = (0.0, 0.99)  # as Projected GAN
    if ckpt is not None:
        critic.load_state_dict(ckpt["critic"])
        optimizer.load_state_dict(ckpt["critic_optimizer"])
    else:
        critic.set_text_statistics(embeddings.to(dev), a.text_scaling)
    distributed.broadcast_parameters(critic, world)
    return critic, optimizer


@dataclass
class _State:
    """Where the run stands, and the loss's tap weighting; saved in every checkpoint."""

    step: int
    history: list
    skipped_steps: int
    start_epoch: int
    start_image: int
    tap_weights: torch.Tensor
    tap_scales: torch.Tensor | None


def _start(a, ckpt, generator, optimizer, teacher_net, train, embeddings, dev, world) -> _State:
    """A resumed run's state from its checkpoint, or a fresh one (caption statistics, tap weights)."""
    if ckpt is not None:
        generator.load_state_dict(ckpt["generator"])
        optimizer.load_state_dict(ckpt["optimizer"])
        start_epoch, start_image = resume_position(ckpt, len(train))
        set_rng_states(ckpt.get("rng"), world)
        return _State(ckpt["step"], ckpt.get("history", []), ckpt.get("skipped_steps", 0), start_epoch, start_image,
                      ckpt["tap_weights"], ckpt["tap_scales"])
    try:
        generator.set_text_statistics(embeddings.to(dev), a.text_scaling)
    except ValueError as e:
        raise UserError(f"--text-scaling {a.text_scaling}: {e}") from None
    if a.tap_weights == "inverse-mean":
        # Sample a fixed subset: the scales are typical sizes, not exact statistics.
        sample = train.images[torch.randperm(len(train), generator=torch.Generator().manual_seed(a.seed))[:512]]
        scales = tap_mean_activations(teacher_net, sample, dev, a.precision)
        weights = tap_weight_profile(a.tap_profile, teacher_net.taps)
    else:
        scales, weights = None, tap_weight_profile(a.tap_profile, teacher_net.taps) * len(teacher_net.taps)
    return _State(0, [], 0, 0, 0, weights, scales)


def _train_epochs(a, config, state: _State, generator, average, teacher_net, optimizer, losses, train, embeddings, dev, world, budget,
                  resumed: bool, critic=None) -> None:
    """The epochs from where `state` stands: a step per batch, a checkpoint every `checkpoint_every`
    steps, at every `checkpoint_epochs`-th epoch's end, at the last one's and when the budget is spent."""
    total_epochs = a.stage1_epochs + a.stage2_epochs
    steps_per_epoch = math.ceil(len(train) / a.batch_size)
    memory_format = torch.channels_last if a.channels_last else torch.contiguous_format
    log = RunLog(a.run_dir, state.step if resumed else None, dev) if world.is_main else None
    preview = embeddings[:8, 0].to(dev)  # the same captions drawn at every epoch end, for TensorBoard
    bar = tqdm(total=total_epochs * steps_per_epoch, initial=state.step, disable=not (a.progress and world.is_main),
               desc=f"train {a.scheme}", unit="step", dynamic_ncols=True)

    def save(epoch: int, images_done: int) -> None:
        rng = distributed.gather_objects(rng_states(), world)  # every rank takes part; rank 0 writes
        if world.is_main:
            saved = {
                "config": config, "generator": generator.state_dict(), "optimizer": optimizer.state_dict(),
                "tap_weights": state.tap_weights, "tap_scales": state.tap_scales, "epoch": epoch, "step": state.step,
                "history": state.history, "position": {"epoch": epoch, "images": images_done}, "rng": rng,
                "skipped_steps": state.skipped_steps, **average_entries(average),
            }
            if critic is not None:
                saved.update(critic=critic[0].state_dict(), critic_optimizer=critic[1].state_dict())
            save_numbered(saved, a.run_dir, a.keep_checkpoints)

    # The compiled modules share their parameters with the originals, which are what gets saved.
    step_generator, step_teacher = (torch.compile(generator), torch.compile(teacher_net)) if a.compile else (generator, teacher_net)
    bad_in_a_row, out_of_time = 0, False
    for epoch in range(state.start_epoch, total_epochs):
        stage = SCHEMES[a.scheme][0] if epoch < a.stage1_epochs else SCHEMES[a.scheme][1]
        order, caption_pick = epoch_order(a.seed, epoch, len(train), embeddings.shape[1])
        if a.caption_mix:
            mix_offset, mix_weight = epoch_blend(a.seed, epoch, len(train), embeddings.shape[1])
        for i in range(state.start_image if epoch == state.start_epoch else 0, len(train), a.batch_size):
            batch = order[i : i + a.batch_size]
            idx = distributed.shard(batch, a.batch_size, world)
            real = (host_to_device(train.images[idx], dev).float() / 255).contiguous(memory_format=memory_format)
            captions = (caption_blend(embeddings[idx], caption_pick[idx], mix_offset[idx], mix_weight[idx]) if a.caption_mix
                        else embeddings[idx, caption_pick[idx]])
            text = host_to_device(captions, dev)
            if a.caption_noise:
                # nearby sentences must draw nearby images: what a caption naming an unseen
                # combination of seen words needs from G's fully connected layers
                text = text + a.caption_noise * generator.text_std * torch.randn_like(text)
            for group in optimizer.param_groups:
                group["lr"] = scheduled_lr(a.lr, a.lr_decay, state.step, total_epochs * steps_per_epoch)
            started = time.perf_counter()
            terms = train_step(step_generator, step_teacher, losses[stage], real, text, optimizer, dev, a.precision,
                               share=len(idx) / len(batch), critic_optimizer=critic and critic[1])
            seconds = time.perf_counter() - started
            state.step += 1
            loss = terms["loss"]
            if math.isfinite(loss):
                if average is not None:
                    average.update_parameters(generator)
                bad_in_a_row = 0
                state.history.append((state.step, stage, loss))
            else:
                bad_in_a_row, state.skipped_steps = bad_in_a_row + 1, state.skipped_steps + 1
                stop_if_diverged(bad_in_a_row, a.max_bad_steps, state.step, a.run_dir, world)
            if log is not None:
                log.step(state.step, epoch, stage, terms, len(batch) / seconds, skipped=not math.isfinite(loss),
                         lr=optimizer.param_groups[0]["lr"])
            bar.update(1)
            bar.set_postfix(stage=stage, loss=f"{loss:.4f}", refresh=False)
            epoch_end_saved = i + a.batch_size >= len(train) and ((epoch + 1) % a.checkpoint_epochs == 0 or epoch + 1 == total_epochs)
            out_of_time = budget.spent()
            if epoch_end_saved or out_of_time or (a.checkpoint_every is not None and state.step % a.checkpoint_every == 0):
                save(epoch, min(i + a.batch_size, len(train)))
            if out_of_time:
                break
        if log is not None:
            log.epoch_end(state.step, drawing_generator(generator, average), preview, a.precision)
        if out_of_time:
            break
    bar.close()
    if log is not None:
        log.close()
