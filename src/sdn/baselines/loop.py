"""`sdn train --method gan-int-cls|stackgan1`: a GAN baseline's training loop on SDN's machinery.

It reads the same cache and caption embeddings as SDN and shares SDN's checkpoints (numbered, atomic,
`--resume auto` exact: both networks, both optimisers, the random states), stats.jsonl, progress
bar, divergence guard, torchrun data parallelism and wall-clock budget. Every random number a step
uses (the captions averaged per image, flips, noise) comes from a generator seeded by (seed, step),
drawn for the whole global batch, so a resumed run repeats an uninterrupted one exactly. The last
incomplete batch of an epoch is dropped, as in both papers' code (batch norm needs a batch).
Under torchrun each process's batch norm sees its own slice, so N processes are close to, not equal
to, one process with the whole batch.
"""

from __future__ import annotations

import json
import math
import time
import warnings
from pathlib import Path
from types import SimpleNamespace

import torch
from tqdm.auto import tqdm

from sdn.training import distributed
from sdn.baselines import build_discriminator, build_generator, check_method
from sdn.baselines.losses import mismatched_indices
from sdn.baselines.networks import down_stages
from sdn.baselines.step import GanSettings, StepInputs, gan_step
from sdn.training.budget import WallClockBudget, stop_if_diverged
from sdn.training.checkpoint import EXPORT, LATEST, check_compatible, check_same_training, checkpoint_files, export_generator, save_numbered
from sdn.evaluation.collapse import variety_report, warn_if_collapsed
from sdn.data.captioned_images import CaptionedImages
from sdn.errors import UserError
from sdn.sampling import generate, one_per_class
from sdn.utils import check_precision, default_device, ensure_writable
from sdn.training.optim import check_adam, make_adam
from sdn.data.batches import caption_embeddings, epoch_order, host_to_device
from sdn.training.resume import find_resume_checkpoint, resume_position, rng_states, set_rng_states
from sdn.training.run_log import RunLog


def gan_training_loop(
    data: CaptionedImages,
    run_dir: str | Path,
    method: str = "gan-int-cls",  # a key of sdn.baselines.METHODS
    text_encoder: str = "all-minilm-l6-v2",
    epochs: int | None = None,  # None: the paper's (600 for both)
    batch_size: int | None = None,  # global batch; None: the paper's (64)
    lr: float | None = None,  # Adam learning rate of G and D; None: the paper's (2e-4), halved every lr_decay_every epochs
    n_outputs: int | None = None,  # drawings per caption when sampling (noise vectors); training is unaffected
    precision: str = "bf16",  # "bf16" autocast or "fp32"
    channels_last: bool = True,
    adam: str = "auto",
    seed: int = 0,  # initialisation, data order, every step's noise, and the sampling noise bank
    resume: str | Path | None = None,  # as sdn.training.loop.training_loop
    checkpoint_every: int | None = 500,
    checkpoint_epochs: int = 1,  # as sdn.training.loop.training_loop
    keep_checkpoints: int = 3,
    max_bad_steps: int = 5,
    max_seconds: float | None = None,  # stop at the first step boundary after this much wall time, with a checkpoint
    device: str | None = None,
    progress: bool = True,
    text_encoder_instance=None,
    overwrite: bool = False,
    allow_changed_settings: tuple[str, ...] = (),  # on resume, saved settings that may differ (recorded), as SDN's loop
) -> Path:
    """Train a GAN baseline on `data`'s train split; returns the path of the last checkpoint."""
    a = SimpleNamespace(**locals())  # the arguments as one object, for the steps below
    config = _check_and_configure(a, data.resolution)
    a.run_dir = run_dir = Path(run_dir)
    world = distributed.setup(default_device(device))
    budget = WallClockBudget(max_seconds, world)
    dev = distributed.local_device(device, world)
    if world.is_main:
        ensure_writable(run_dir)
    train = data.subset("train")
    if len(train) < 2:
        raise UserError("a GAN needs at least 2 training images")
    torch.manual_seed(seed)
    distributed.check_same_settings({**config, "run_dir": str(run_dir), "resume": str(resume), "overwrite": overwrite,
                                     "train_images": len(train), "world_size": world.world_size}, world)
    ckpt = find_resume_checkpoint(resume, run_dir, overwrite, world)
    if ckpt is not None:
        check_compatible(ckpt["config"], config, "this run")
        config["changed_settings"] = check_same_training(ckpt["config"], config, allow_changed_settings, ckpt["step"])
    embeddings = caption_embeddings(train, config["text_encoder"], text_encoder_instance)
    config["text_dim"] = embeddings.shape[-1]
    if ckpt is not None:
        check_compatible(ckpt["config"], config, "this run")
    run = _start(a, config, ckpt, train, embeddings, dev, world)
    _train_epochs(a, config, run, train, embeddings, dev, world, budget, ckpt is not None)
    distributed.barrier(world)
    files = checkpoint_files(run_dir)
    return files[0] if files else run_dir / LATEST


def _check_and_configure(a: SimpleNamespace, resolution: int) -> dict:
    """Bad settings fail here, in one line; returns the run's config as its checkpoints record it."""
    spec = check_method(a.method)
    check_precision(a.precision)
    check_adam(a.adam)
    encoder_name = a.text_encoder_instance.name if a.text_encoder_instance is not None else a.text_encoder
    config = dict(
        method=a.method, resolution=resolution, text_encoder=encoder_name, n_outputs=a.n_outputs or 1, noise_dim=spec.noise_dim,
        gf_dim=spec.gf_dim, df_dim=spec.df_dim, text_proj_dim=spec.text_proj_dim, noise_seed=a.seed,
        epochs=a.epochs or spec.epochs, batch_size=a.batch_size or spec.batch_size, lr=a.lr or spec.lr, lr_decay_every=spec.lr_decay_every,
        beta1=spec.beta1, captions_averaged=spec.captions_averaged, wrong_weight=spec.wrong_weight,
        interp_weight=spec.interp_weight, kl_weight=spec.kl_weight, flip=True, precision=a.precision, channels_last=a.channels_last,
        adam=a.adam, seed=a.seed,
    )
    if config["batch_size"] < 2 or config["epochs"] < 1 or config["lr"] <= 0 or config["n_outputs"] < 1:
        raise UserError("a GAN needs a batch size of 2 or more (batch norm), at least 1 epoch, a positive --lr and --n-outputs >= 1")
    if (a.checkpoint_every is not None and a.checkpoint_every < 1) or min(a.keep_checkpoints, a.max_bad_steps, a.checkpoint_epochs) < 1:
        raise UserError("--checkpoint-every, --checkpoint-epochs, --keep-checkpoints and --max-bad-steps must be 1 or more")
    down_stages(resolution)
    world_size, batch_size = distributed.world_size_from_env(), config["batch_size"]
    if batch_size % world_size or batch_size // world_size < 2:
        raise UserError(f"the batch size {batch_size} is the global batch: choose a multiple of the {world_size} processes, 2 or more each")
    return config


def _start(a, config: dict, ckpt: dict | None, train: CaptionedImages, embeddings, dev, world) -> SimpleNamespace:
    """Both networks and optimisers, from the checkpoint or fresh, and where the run stands."""
    generator, discriminator = build_generator(config).to(dev), build_discriminator(config).to(dev)
    memory_format = torch.channels_last if a.channels_last else torch.contiguous_format
    generator.to(memory_format=memory_format), discriminator.to(memory_format=memory_format)
    opt_g, opt_d = make_adam(generator.parameters(), config["lr"], a.adam), make_adam(discriminator.parameters(), config["lr"], a.adam)
    for opt in (opt_g, opt_d):
        for group in opt.param_groups:
            group["betas"] = (config["beta1"], 0.999)
    batch_size = config["batch_size"]
    per_epoch = max(1, len(train) // batch_size) * batch_size if len(train) >= batch_size else len(train)
    run = SimpleNamespace(generator=generator, discriminator=discriminator, opt_g=opt_g, opt_d=opt_d, memory_format=memory_format,
                          per_epoch=per_epoch, step=0, history=[], skipped_steps=0, start_epoch=0, start_image=0)
    if ckpt is not None:
        generator.load_state_dict(ckpt["generator"]), discriminator.load_state_dict(ckpt["discriminator"])
        opt_g.load_state_dict(ckpt["optimizer"]), opt_d.load_state_dict(ckpt["optimizer_d"])
        run.step, run.history, run.skipped_steps = ckpt["step"], ckpt.get("history", []), ckpt.get("skipped_steps", 0)
        run.start_epoch, run.start_image = resume_position(ckpt, per_epoch)
        set_rng_states(ckpt.get("rng"), world)
    else:
        generator.set_text_statistics(embeddings.flatten(0, 1).to(dev))
        discriminator.set_text_statistics(embeddings.flatten(0, 1).to(dev))
    distributed.broadcast_parameters(generator, world), distributed.broadcast_parameters(discriminator, world)
    return run


def _train_epochs(a, config: dict, run: SimpleNamespace, train, embeddings, dev, world, budget, resumed: bool) -> None:
    """The epochs from where `run` stands, with checkpoints, the log and the collapse checks; exports at the end."""
    g, d, batch_size, per_epoch = run.generator, run.discriminator, config["batch_size"], run.per_epoch
    settings = GanSettings(config["wrong_weight"], config["interp_weight"], config["kl_weight"])
    log = RunLog(a.run_dir, run.step if resumed else None, dev) if world.is_main else None
    preview = one_per_class(train.labels, 64)  # the collapse check's captions: one per class in turn
    bar = tqdm(total=config["epochs"] * math.ceil(per_epoch / batch_size), initial=run.step, disable=not (a.progress and world.is_main),
               desc=f"train {a.method}", unit="step", dynamic_ncols=True)

    def save(epoch: int, images_done: int) -> None:
        # first captions of training images, as drawing will see them, with fixed noise: the
        # statistics depend on the weights alone, so a resumed run saves the same ones
        g.refresh_batch_norm(embeddings[:, 0], a.seed, batch_size)
        rng = distributed.gather_objects(rng_states(), world)
        if world.is_main:
            save_numbered({"config": config, "generator": g.state_dict(), "discriminator": d.state_dict(),
                           "optimizer": run.opt_g.state_dict(), "optimizer_d": run.opt_d.state_dict(), "epoch": epoch, "step": run.step,
                           "history": run.history, "position": {"epoch": epoch, "images": images_done}, "rng": rng,
                           "skipped_steps": run.skipped_steps}, a.run_dir, a.keep_checkpoints)

    bad_in_a_row, out_of_time = 0, False
    for epoch in range(run.start_epoch, config["epochs"]):
        for opt in (run.opt_g, run.opt_d):  # both papers halve both learning rates every lr_decay_every epochs
            for group in opt.param_groups:
                group["lr"] = config["lr"] * 0.5 ** (epoch // config["lr_decay_every"])
        if log is not None:
            log.lr = run.opt_g.param_groups[0]["lr"]
        order, _ = epoch_order(a.seed, epoch, len(train), embeddings.shape[1])
        for i in range(run.start_image if epoch == run.start_epoch else 0, per_epoch, batch_size):
            batch = order[i : i + batch_size]
            inputs = step_inputs(train, embeddings, batch, batch_size, a.seed, run.step, config, g.noise_dim, dev, run.memory_format, world)
            started = time.perf_counter()
            terms = gan_step(g, d, run.opt_g, run.opt_d, inputs, settings, dev, a.precision, share=len(inputs.text) / len(batch))
            seconds = time.perf_counter() - started
            run.step += 1
            if math.isfinite(terms["loss"]):
                bad_in_a_row = 0
                run.history += [(run.step, "D", terms["d_loss"]), (run.step, "G", terms["g_loss"])]
            else:
                bad_in_a_row, run.skipped_steps = bad_in_a_row + 1, run.skipped_steps + 1
                stop_if_diverged(bad_in_a_row, a.max_bad_steps, run.step, a.run_dir, world)
            if log is not None:
                log.step(run.step, epoch, a.method, terms, len(batch) / seconds, skipped=not math.isfinite(terms["loss"]),
                         lr=run.opt_g.param_groups[0]["lr"])
            bar.update(1)
            bar.set_postfix(d=f"{terms['d_loss']:.3f}", g=f"{terms['g_loss']:.3f}", refresh=False)
            out_of_time = budget.spent()
            epoch_end_saved = i + batch_size >= per_epoch and ((epoch + 1) % a.checkpoint_epochs == 0 or epoch + 1 == config["epochs"])
            if epoch_end_saved or out_of_time or (a.checkpoint_every is not None and run.step % a.checkpoint_every == 0):
                save(epoch, min(i + batch_size, per_epoch))
            if out_of_time:
                break
        if log is not None and not out_of_time:
            check_collapse(g, train, embeddings, preview, a.precision, log, run.step, epoch)
            g.eval(), log.epoch_end(run.step, g, embeddings[preview[:8], 0].to(dev), a.precision), g.train()
        if out_of_time:
            break
    bar.close()
    if world.is_main:
        report = check_collapse(g, train, embeddings, preview, a.precision, log, run.step, None)
        (a.run_dir / "collapse.json").write_text(json.dumps({"step": run.step, **report}, indent=2))
        log.close()
        export_generator(g, {**config, "step": run.step}, a.run_dir / EXPORT)


def step_inputs(train: CaptionedImages, embeddings: torch.Tensor, batch: torch.Tensor, batch_size: int, seed: int, step: int, cfg: dict,
                noise_dim: int, dev, memory_format, world) -> StepInputs:
    """This process's slice of the global batch and of every random number the step draws."""
    rng = torch.Generator().manual_seed(seed * 1_000_003 + step)
    n, per_image = len(batch), embeddings.shape[1]
    picks = torch.rand(n, per_image, generator=rng).argsort(1)[:, : min(cfg["captions_averaged"], per_image)]
    flips = torch.rand(n, generator=rng) < 0.5
    noise_d, noise_g, noise_interp = (torch.randn(n, noise_dim, generator=rng) for _ in range(3))
    text = embeddings[batch].gather(1, picks[:, :, None].expand(-1, -1, embeddings.shape[2])).mean(1)
    wrong_text = text[mismatched_indices([train.labels[j] for j in batch.tolist()])]
    mine = distributed.shard(torch.arange(n), batch_size, world)
    real = host_to_device(train.images[batch[mine]], dev).float() / 127.5 - 1
    if cfg["flip"]:
        real = torch.where(flips[mine].to(dev)[:, None, None, None], real.flip(-1), real)
    return StepInputs(real.contiguous(memory_format=memory_format), *(host_to_device(t[mine], dev) for t in (text, wrong_text, noise_d, noise_g, noise_interp)))


def check_collapse(generator, train: CaptionedImages, embeddings: torch.Tensor, pick: list[int], precision: str, log, step: int,
                   epoch: int | None) -> dict:
    """Draws the first caption of each picked training image (the sampling noise, eval mode, as
    `sdn sample` would), measures their variety (sdn.evaluation.collapse), logs it and warns if collapsed."""
    drawings = generate(generator, embeddings[pick, 0], precision=precision)[:, 0]
    generator.train()
    report = variety_report(drawings, train.images[pick])
    warn_if_collapsed(report, f"the generator at step {step}")
    if log is not None and not log.file.closed:
        log.file.write(json.dumps({"step": step, "epoch": epoch, "event": "collapse_check", **report}) + "\n")
        log.file.flush()
    if report["collapsed"] and epoch is not None:
        warnings.warn("a collapsed GAN rarely recovers: consider stopping and restarting with another --seed or a lower --lr")
    return report
