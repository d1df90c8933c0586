"""The one SDN training loop: every scheme of the paper's Table 3, data parallel over torchrun's
processes (see sdn.distributed), checkpoints that survive a kill at any moment, exact resume
(sdn.resume), a guard against diverging losses (sdn.budget), and a per-step log (sdn.run_log)."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import torch
from tqdm.auto import tqdm

from sdn import distributed
from sdn.batches import encode_captions, epoch_order, host_to_device
from sdn.budget import WallClockBudget, stop_if_diverged
from sdn.checkpoint import EXPORT, LATEST, check_compatible, check_same_training, checkpoint_files, export_generator, save_numbered
from sdn.data import CaptionedImages
from sdn.errors import UserError
from sdn.generator import Generator
from sdn.host_memory import retain_freed_memory as retain_freed_host_memory
from sdn.losses import LOSSES
from sdn.optim import make_adam
from sdn.resume import find_resume_checkpoint, resume_position, rng_states, set_rng_states
from sdn.run_log import RunLog
from sdn.schemes import SCHEMES
from sdn.teacher_fusion import fuse_teacher
from sdn.teachers import build_teacher
from sdn.text import TextEncoder, build_text_encoder
from sdn.training_settings import check_training_arguments, training_config
from sdn.training_step import tap_mean_activations, train_step
from sdn.utils import default_device, ensure_writable


def training_loop(
    data: CaptionedImages,
    run_dir: str | Path,
    teacher: str = "vgg19",  # teacher network (a key of sdn.teachers.TEACHERS)
    teacher_weights: str | None = None,  # local state-dict file; None = the default pretrained weights
    teacher_init: str = "pretrained",  # "random" is for tests only
    teacher_pooling: str = "avg",  # VGG pooling: "avg" (the authors') or "max"
    text_encoder: str = "all-minilm-l6-v2",  # caption encoder (a key of sdn.text.TEXT_ENCODERS)
    scheme: str = "sdn",  # a key of SCHEMES (the paper's Table 3)
    n_outputs: int | None = None,  # images per caption; None = 3 for "diverse", else 1
    stage1_epochs: int = 100,  # epochs with the first loss of the scheme (paper: 100)
    stage2_epochs: int = 100,  # epochs with the second loss of the scheme (paper: 100)
    batch_size: int = 12,  # images per step over all processes (paper: 12); a multiple of the number of processes
    lr: float = 1e-4,  # Adam learning rate (paper: 1e-4)
    fc_dim: int = 4096,  # width of g-fc8 and g-fc7
    pair_preactivation: bool | None = None,  # Stage I pairs G's pre-ReLU (True) or post-ReLU (False) values
    # with the taps (see Generator); None: post-ReLU for VGG (the authors'), pre-ReLU for teachers with signed taps
    tap_weights: str = "inverse-mean",  # "inverse-mean": each tap divided by its mean |activation| on
    # real training images and weighted 1/(number of taps), so every tap counts alike and the taps
    # together weigh about as much as a relative error; "equal": every raw tap term weighted 1, as in the
    # paper (its exact eqs. 1-3 also need loss_reduction="sum")
    loss_reduction: str = "mean",  # each L1 term over an image's elements: "mean" (a term's size is
    # independent of the tap's shape) or "sum" (the paper's plain ||.||_1, which weighs big taps more)
    pixel_weight: float = 1.0,  # weight of the image-space L1 term
    diverse_mean_weight: float = 0.001,  # CRN's small share of the mean over the n outputs (0: the
    # paper's pure minimum, eqs. 4-5)
    precision: str = "bf16",  # "bf16" autocast (AMX on CPU, tensor cores on CUDA) or "fp32"
    channels_last: bool = True,  # NHWC memory format for the convolutions
    adam: str = "auto",  # Adam implementation: "fused" (one kernel over all parameters), "foreach",
    # "for-loop" (the reference); "auto" = fused where this torch supports it on the device, else
    # foreach. On 2 CPU cores fused steps the 142 M-parameter 224 px generator 5x faster than foreach.
    compile: bool = False,  # torch.compile the generator and the teacher (off: on 2 CPU cores it took
    # minutes to compile and gained nothing clear, 0.95-0.99x in Stage I, 1.03-1.26x in Stage II)
    grad_checkpointing: bool = False,  # recompute the generator's insides in the backward pass for
    # a smaller peak memory (224 px on small GPUs); same results, about one more generator forward
    teacher_fusion: bool = True,  # a frozen teacher with batch norms and paddings folded in and weights
    # held in the step's precision (sdn.teacher_fusion); same taps to rounding
    fused_l1: bool = True,  # every loss term's L1 in 4 elementwise passes instead of ~11 (sdn.fused_l1)
    matmul_convs: bool = True,  # weight-bound generator convolutions as matrix products (Generator)
    retain_freed_memory: bool = True,  # CPU: glibc keeps freed memory for reuse (sdn.host_memory);
    # process-wide. The four together, 64 px, EfficientNet-Lite0, 1 thread: Stage II 1.9x, Stage I 1.3x (docs/speed.md)
    seed: int = 0,  # initialisation, data order and caption choice
    resume: str | Path | None = None,  # checkpoint file or run folder to continue from, exactly where it stopped;
    # "auto": the newest readable checkpoint in run_dir, or a fresh start if it has none
    checkpoint_every: int | None = 500,  # also checkpoint every this many steps (None: at the end of each epoch only)
    keep_checkpoints: int = 3,  # numbered checkpoints kept in run_dir; older ones are deleted
    max_bad_steps: int = 5,  # a non-finite loss skips its step; this many in a row stop training
    device: str | None = None,  # "cpu", "cuda", ...; None = CUDA when available
    progress: bool = True,  # show a progress bar
    text_encoder_instance: TextEncoder | None = None,  # an already-built encoder, to reuse
    overwrite: bool = False,  # start afresh in a run folder that already holds a checkpoint
    allow_changed_settings: tuple[str, ...] = (),  # on resume, settings (keys of the saved config) that may
    # differ from the checkpoint's; any other difference is refused. Each change is recorded in the config.
    max_seconds: float | None = None,  # stop at the first step boundary after this much wall time, with a checkpoint
) -> Path:
    """Train a generator on `data`'s train split; returns the path of the last checkpoint."""
    a = SimpleNamespace(**locals())  # the arguments as one object, for the steps below
    budget = WallClockBudget(max_seconds)  # counts setup too: the budget is wall time
    check_training_arguments(a)  # also settles n_outputs and pair_preactivation
    a.run_dir = run_dir = Path(run_dir)
    world = distributed.setup(default_device(device))
    budget.world = world
    dev = distributed.local_device(device, world)
    if world.is_main:
        ensure_writable(run_dir)
    train = data.subset("train")
    if len(train) == 0:
        raise UserError("the data has no training images")
    torch.manual_seed(seed)
    config = training_config(a, data.resolution)
    distributed.check_same_settings(
        {**config, "run_dir": str(run_dir), "resume": None if resume is None else str(resume), "overwrite": overwrite,
         "checkpoint_every": checkpoint_every, "keep_checkpoints": keep_checkpoints, "max_bad_steps": max_bad_steps,
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
    distributed.broadcast_parameters(generator, world)
    losses = {name: LOSSES[name](state.tap_weights, pixel_weight, diverse_mean_weight, state.tap_scales, loss_reduction, fused_l1=fused_l1)
              for name in dict.fromkeys(SCHEMES[scheme])}
    _train_epochs(a, config, state, generator, teacher_net, optimizer, losses, train, embeddings, dev, world, budget, ckpt is not None)
    if world.is_main:
        export_generator(generator, {**config, "step": state.step}, run_dir / EXPORT)
    distributed.barrier(world)  # no rank leaves (and tears the group down) while rank 0 still writes
    files = checkpoint_files(run_dir)
    return files[0] if files else run_dir / LATEST


def _build_networks(a: SimpleNamespace, config: dict, ckpt: dict | None, train: CaptionedImages, dev: torch.device):
    """(teacher, generator, caption embeddings of the train split), as the settings ask."""
    teacher_net = build_teacher(a.teacher, a.teacher_weights, a.teacher_init, a.teacher_pooling, config["resolution"]).to(dev)
    encoder = a.text_encoder_instance or build_text_encoder(a.text_encoder)
    config["text_dim"] = encoder.dim
    if ckpt is not None:
        check_compatible(ckpt["config"], config, "this run")
    generator = Generator(teacher_net.taps, config["resolution"], encoder.dim, a.fc_dim, a.n_outputs, a.pair_preactivation,
                          a.grad_checkpointing, a.matmul_convs).to(dev)
    memory_format = torch.channels_last if a.channels_last else torch.contiguous_format
    if a.teacher_fusion:
        teacher_net = fuse_teacher(teacher_net, a.precision)
    if a.retain_freed_memory and dev.type == "cpu":
        retain_freed_host_memory()
    teacher_net.to(memory_format=memory_format)
    generator.to(memory_format=memory_format)
    if train.embeddings is not None and train.embeddings_name == encoder.name:
        embeddings = train.embeddings.float()  # precomputed by `sdn data prepare`
    else:
        embeddings = encode_captions(encoder, train.captions)
    return teacher_net, generator, embeddings


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
    generator.set_text_statistics(embeddings.flatten(0, 1).to(dev))
    if a.tap_weights == "inverse-mean":
        # Sample a fixed subset: the scales are typical sizes, not exact statistics.
        sample = train.images[torch.randperm(len(train), generator=torch.Generator().manual_seed(a.seed))[:512]]
        scales = tap_mean_activations(teacher_net, sample, dev, a.precision)
        weights = torch.full((len(teacher_net.taps),), 1 / len(teacher_net.taps))
    else:
        scales, weights = None, torch.ones(len(teacher_net.taps))
    return _State(0, [], 0, 0, 0, weights, scales)


def _train_epochs(a, config, state: _State, generator, teacher_net, optimizer, losses, train, embeddings, dev, world, budget,
                  resumed: bool) -> None:
    """The epochs from where `state` stands: a step per batch, a checkpoint every `checkpoint_every`
    steps, at each epoch's end and when the budget is spent."""
    total_epochs = a.stage1_epochs + a.stage2_epochs
    steps_per_epoch = math.ceil(len(train) / a.batch_size)
    memory_format = torch.channels_last if a.channels_last else torch.contiguous_format
    log = RunLog(a.run_dir, state.step if resumed else None, a.lr, dev) if world.is_main else None
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
                "skipped_steps": state.skipped_steps,
            }
            save_numbered(saved, a.run_dir, a.keep_checkpoints)

    # The compiled modules share their parameters with the originals, which are what gets saved.
    step_generator, step_teacher = (torch.compile(generator), torch.compile(teacher_net)) if a.compile else (generator, teacher_net)
    bad_in_a_row, out_of_time = 0, False
    for epoch in range(state.start_epoch, total_epochs):
        stage = SCHEMES[a.scheme][0] if epoch < a.stage1_epochs else SCHEMES[a.scheme][1]
        order, caption_pick = epoch_order(a.seed, epoch, len(train), embeddings.shape[1])
        for i in range(state.start_image if epoch == state.start_epoch else 0, len(train), a.batch_size):
            batch = order[i : i + a.batch_size]
            idx = distributed.shard(batch, a.batch_size, world)
            real = (host_to_device(train.images[idx], dev).float() / 255).contiguous(memory_format=memory_format)
            text = host_to_device(embeddings[idx, caption_pick[idx]], dev)
            started = time.perf_counter()
            terms = train_step(step_generator, step_teacher, losses[stage], real, text, optimizer, dev, a.precision,
                               share=len(idx) / len(batch))
            seconds = time.perf_counter() - started
            state.step += 1
            loss = terms["loss"]
            if math.isfinite(loss):
                bad_in_a_row = 0
                state.history.append((state.step, stage, loss))
            else:
                bad_in_a_row, state.skipped_steps = bad_in_a_row + 1, state.skipped_steps + 1
                stop_if_diverged(bad_in_a_row, a.max_bad_steps, state.step, a.run_dir, world)
            if log is not None:
                log.step(state.step, epoch, stage, terms, len(batch) / seconds, skipped=not math.isfinite(loss))
            bar.update(1)
            bar.set_postfix(stage=stage, loss=f"{loss:.4f}", refresh=False)
            epoch_done = i + a.batch_size >= len(train)
            out_of_time = budget.spent()
            if epoch_done or out_of_time or (a.checkpoint_every is not None and state.step % a.checkpoint_every == 0):
                save(epoch, min(i + a.batch_size, len(train)))
            if out_of_time:
                break
        if log is not None:
            log.epoch_end(state.step, generator, preview, a.precision)
        if out_of_time:
            break
    bar.close()
    if log is not None:
        log.close()
