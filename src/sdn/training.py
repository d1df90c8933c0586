"""The one SDN training loop: every scheme of the paper's Table 3, data parallel over torchrun's
processes (see sdn.distributed), checkpoints that survive a kill at any moment, exact resume, a guard
against diverging losses, and a per-step log."""

from __future__ import annotations

import json
import math
import random
import resource
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from sdn import distributed
from sdn.budget import WallClockBudget
from sdn.checkpoint import (EXPORT, LATEST, check_compatible, check_same_training, checkpoint_files, export_generator,
                            load_checkpoint, newest_checkpoint, remove_run_files, remove_stale_temporaries, save_numbered)
from sdn.data import CaptionedImages
from sdn.errors import UserError
from sdn.generator import Generator
from sdn.host_memory import retain_freed_memory as retain_freed_host_memory
from sdn.optim import check_adam, make_adam
from sdn.losses import LOSSES, REDUCTIONS, TAP_WEIGHTS
from sdn.schemes import SCHEMES
from sdn.teacher_fusion import fuse_teacher
from sdn.teachers import Teacher, build_teacher, default_pair_preactivation
from sdn.text import TextEncoder, build_text_encoder, encode_unique
from sdn.utils import atomic_write_text, autocast, check_precision, default_device

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


def encode_captions(encoder: TextEncoder, captions: list[list[str]]) -> torch.Tensor:
    """(N, captions per image, dim) embeddings, each distinct caption encoded once."""
    per_image = {len(c) for c in captions}
    if len(per_image) != 1:
        raise UserError(f"every image needs the same number of captions, found {sorted(per_image)}")
    flat = encode_unique(encoder, [c for caps in captions for c in caps])
    return flat.view(len(captions), per_image.pop(), -1)


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
    budget = WallClockBudget(max_seconds)  # counts setup too: the budget is wall time
    if scheme not in SCHEMES:
        raise UserError(f"unknown scheme {scheme!r}; choose from {', '.join(SCHEMES)}")
    if tap_weights not in TAP_WEIGHTS:
        raise UserError(f"tap weights must be 'equal' or 'inverse-mean', not {tap_weights!r}")
    if loss_reduction not in REDUCTIONS:
        raise UserError(f"loss reduction must be one of {', '.join(REDUCTIONS)}, not {loss_reduction!r}")
    if diverse_mean_weight < 0:
        raise UserError(f"--diverse-mean-weight must be 0 or more, not {diverse_mean_weight}")
    if pair_preactivation is None:
        pair_preactivation = default_pair_preactivation(teacher)
    check_precision(precision)
    check_adam(adam)
    n_outputs = n_outputs or SCHEMES[scheme].n_outputs
    if SCHEMES[scheme].n_outputs > 1 and n_outputs < 2:
        raise UserError(f"the {scheme} scheme needs --n-outputs of 2 or more")
    if batch_size < 1 or stage1_epochs < 0 or stage2_epochs < 0 or stage1_epochs + stage2_epochs < 1:
        raise UserError("batch size must be >= 1 and the epochs must add up to at least 1")
    if (checkpoint_every is not None and checkpoint_every < 1) or keep_checkpoints < 1 or max_bad_steps < 1:
        raise UserError("--checkpoint-every, --keep-checkpoints and --max-bad-steps must be 1 or more")
    world_size = distributed.world_size_from_env()
    if batch_size % world_size:
        raise UserError(f"the batch size {batch_size} is the global batch and must divide evenly over the {world_size} "
                        f"processes: choose a multiple of {world_size}")
    run_dir = Path(run_dir)
    world = distributed.setup(default_device(device))
    budget.world = world
    dev = distributed.local_device(device, world)
    if world.is_main:
        _ensure_writable(run_dir)
    train = data.subset("train")
    if len(train) == 0:
        raise UserError("the data has no training images")
    torch.manual_seed(seed)

    encoder_name = text_encoder_instance.name if text_encoder_instance is not None else text_encoder
    config = dict(
        method="sdn", teacher=teacher, teacher_pooling=teacher_pooling, teacher_init=teacher_init, resolution=data.resolution,
        text_encoder=encoder_name, fc_dim=fc_dim, n_outputs=n_outputs, scheme=scheme,
        pair_preactivation=pair_preactivation,
        stage1_epochs=stage1_epochs, stage2_epochs=stage2_epochs, batch_size=batch_size, lr=lr,
        tap_weights=tap_weights, loss_reduction=loss_reduction, pixel_weight=pixel_weight, diverse_mean_weight=diverse_mean_weight,
        precision=precision, channels_last=channels_last, seed=seed,
        adam=adam, compile=compile, grad_checkpointing=grad_checkpointing,
        teacher_fusion=teacher_fusion, fused_l1=fused_l1, matmul_convs=matmul_convs, retain_freed_memory=retain_freed_memory,
    )
    distributed.check_same_settings(
        {**config, "run_dir": str(run_dir), "resume": None if resume is None else str(resume), "overwrite": overwrite,
         "checkpoint_every": checkpoint_every, "keep_checkpoints": keep_checkpoints, "max_bad_steps": max_bad_steps,
         "train_images": len(train), "world_size": world.world_size},
        world,
    )
    ckpt = _find_resume_checkpoint(resume, run_dir, overwrite, world)  # checked before anything slow is built
    if ckpt is not None:
        check_compatible(ckpt["config"], config, "this run")
        config["changed_settings"] = check_same_training(ckpt["config"], config, allow_changed_settings, ckpt["step"])

    teacher_net = build_teacher(teacher, teacher_weights, teacher_init, teacher_pooling, data.resolution).to(dev)
    encoder = text_encoder_instance or build_text_encoder(text_encoder)
    config["text_dim"] = encoder.dim
    if ckpt is not None:
        check_compatible(ckpt["config"], config, "this run")
    generator = Generator(teacher_net.taps, data.resolution, encoder.dim, fc_dim, n_outputs, pair_preactivation,
                          grad_checkpointing, matmul_convs).to(dev)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    if teacher_fusion:
        teacher_net = fuse_teacher(teacher_net, precision)
    if retain_freed_memory and dev.type == "cpu":
        retain_freed_host_memory()
    teacher_net.to(memory_format=memory_format)
    generator.to(memory_format=memory_format)
    if train.embeddings is not None and train.embeddings_name == encoder.name:
        embeddings = train.embeddings.float()  # precomputed by `sdn data prepare`
    else:
        embeddings = encode_captions(encoder, train.captions)
    optimizer = make_adam(generator.parameters(), lr, adam)

    if ckpt is not None:
        generator.load_state_dict(ckpt["generator"])
        optimizer.load_state_dict(ckpt["optimizer"])
        weights, scales = ckpt["tap_weights"], ckpt["tap_scales"]
        step, history, skipped_steps = ckpt["step"], ckpt.get("history", []), ckpt.get("skipped_steps", 0)
        start_epoch, start_image = resume_position(ckpt, len(train))
        _set_rng_states(ckpt.get("rng"), world)
    else:
        generator.set_text_statistics(embeddings.flatten(0, 1).to(dev))
        if tap_weights == "inverse-mean":
            # Sample a fixed subset: the scales are typical sizes, not exact statistics.
            sample = train.images[torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))[:512]]
            scales = tap_mean_activations(teacher_net, sample, dev, precision)
            weights = torch.full((len(teacher_net.taps),), 1 / len(teacher_net.taps))
        else:
            scales, weights = None, torch.ones(len(teacher_net.taps))
        step, history, skipped_steps, start_epoch, start_image = 0, [], 0, 0, 0
    distributed.broadcast_parameters(generator, world)

    losses = {name: LOSSES[name](weights, pixel_weight, diverse_mean_weight, scales, loss_reduction, fused_l1=fused_l1)
              for name in dict.fromkeys(SCHEMES[scheme])}

    total_epochs = stage1_epochs + stage2_epochs
    steps_per_epoch = math.ceil(len(train) / batch_size)
    log = RunLog(run_dir, step if ckpt is not None else None, lr, dev) if world.is_main else None
    preview = embeddings[:8, 0].to(dev)  # the same captions drawn at every epoch end, for TensorBoard
    bar = tqdm(total=total_epochs * steps_per_epoch, initial=step, disable=not (progress and world.is_main), desc=f"train {scheme}",
               unit="step", dynamic_ncols=True)

    def save(epoch: int, images_done: int) -> None:
        rng = distributed.gather_objects(_rng_states(), world)  # every rank takes part; rank 0 writes
        if world.is_main:
            state = {
                "config": config, "generator": generator.state_dict(), "optimizer": optimizer.state_dict(),
                "tap_weights": weights, "tap_scales": scales, "epoch": epoch, "step": step, "history": history,
                "position": {"epoch": epoch, "images": images_done}, "rng": rng, "skipped_steps": skipped_steps,
            }
            save_numbered(state, run_dir, keep_checkpoints)

    # The compiled modules share their parameters with the originals, which are what gets saved.
    step_generator, step_teacher = (torch.compile(generator), torch.compile(teacher_net)) if compile else (generator, teacher_net)
    bad_in_a_row, out_of_time = 0, False
    for epoch in range(start_epoch, total_epochs):
        stage = SCHEMES[scheme][0] if epoch < stage1_epochs else SCHEMES[scheme][1]
        order, caption_pick = epoch_order(seed, epoch, len(train), embeddings.shape[1])
        for i in range(start_image if epoch == start_epoch else 0, len(train), batch_size):
            batch = order[i : i + batch_size]
            idx = distributed.shard(batch, batch_size, world)
            real = (host_to_device(train.images[idx], dev).float() / 255).contiguous(memory_format=memory_format)
            text = host_to_device(embeddings[idx, caption_pick[idx]], dev)
            started = time.perf_counter()
            terms = train_step(step_generator, step_teacher, losses[stage], real, text, optimizer, dev, precision,
                               share=len(idx) / len(batch))
            seconds = time.perf_counter() - started
            step += 1
            loss = terms["loss"]
            if math.isfinite(loss):
                bad_in_a_row = 0
                history.append((step, stage, loss))
            else:
                bad_in_a_row, skipped_steps = bad_in_a_row + 1, skipped_steps + 1
                _stop_if_diverged(bad_in_a_row, max_bad_steps, step, run_dir, world)
            if log is not None:
                log.step(step, epoch, stage, terms, len(batch) / seconds, skipped=not math.isfinite(loss))
            bar.update(1)
            bar.set_postfix(stage=stage, loss=f"{loss:.4f}", refresh=False)
            epoch_done = i + batch_size >= len(train)
            out_of_time = budget.spent()
            if epoch_done or out_of_time or (checkpoint_every is not None and step % checkpoint_every == 0):
                save(epoch, min(i + batch_size, len(train)))
            if out_of_time:
                break
        if log is not None:
            log.epoch_end(step, generator, preview, precision)
        if out_of_time:
            break
    bar.close()
    if log is not None:
        log.close()
    if world.is_main:
        export_generator(generator, {**config, "step": step}, run_dir / EXPORT)
    distributed.barrier(world)  # no rank leaves (and tears the group down) while rank 0 still writes
    files = checkpoint_files(run_dir)
    return files[0] if files else run_dir / LATEST


def epoch_order(seed: int, epoch: int, n_images: int, captions_per_image: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The epoch's image order and the caption drawn for each image: fixed by (seed, epoch) alone, so
    every process and every resumed run sees the same ones."""
    order_rng = torch.Generator().manual_seed(seed * 100003 + epoch)
    order = torch.randperm(n_images, generator=order_rng)
    caption_pick = torch.randint(captions_per_image, (n_images,), generator=order_rng)
    return order, caption_pick


def host_to_device(batch: torch.Tensor, dev: torch.device) -> torch.Tensor:
    """A freshly gathered CPU batch -> `dev`. On CUDA it is staged in pinned memory first (the
    caching host allocator reuses the buffers), so the copy is a real asynchronous DMA rather than a
    synchronous copy through a pageable bounce buffer; uint8 images cross the bus, 4x less than fp32."""
    if dev.type == "cuda":
        batch = batch.pin_memory()
    return batch.to(dev, non_blocking=True)


def train_step(generator, teacher, loss_fn, real, text, optimizer, dev, precision, share: float = 1.0) -> dict[str, float]:
    """One optimiser step of `loss_fn` (an sdn.losses.Loss) on this process's slice of the global
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
    return result


def _stop_if_diverged(bad_in_a_row: int, max_bad_steps: int, step: int, run_dir: Path, world) -> None:
    if world.is_main:
        warnings.warn(f"non-finite loss at step {step}: step skipped ({bad_in_a_row} in a row)")
    if bad_in_a_row >= max_bad_steps:
        kept = "the last good checkpoint is kept there" if checkpoint_files(run_dir) else "no checkpoint had been written yet"
        raise UserError(f"training diverged: {bad_in_a_row} non-finite losses in a row up to step {step}; {kept} ({run_dir}); "
                        "try a lower --lr or --precision fp32")


def _find_resume_checkpoint(resume, run_dir: Path, overwrite: bool, world) -> dict | None:
    """The checkpoint to continue from (None: a fresh start). Rank 0 chooses the file and every
    process reads that one, so they cannot pick different ones."""
    chosen = ckpt = message = None
    if world.is_main:
        try:
            chosen, ckpt = _choose_resume_file(resume, run_dir, overwrite)
        except UserError as e:
            message = str(e)
    shared_choice, message = distributed.gather_objects((chosen, message), world)[0]
    if message is not None:
        raise UserError(message)
    if ckpt is None and shared_choice is not None:  # the other processes read the file rank 0 chose
        ckpt = load_checkpoint(shared_choice)
    return ckpt


def _choose_resume_file(resume, run_dir: Path, overwrite: bool) -> tuple[str | None, dict | None]:
    if resume is None:
        if checkpoint_files(run_dir):
            if not overwrite:
                raise UserError(f"{run_dir} already holds a run: continue it with --resume auto, or pass --overwrite to start afresh")
            remove_run_files(run_dir)
        return None, None
    remove_stale_temporaries(run_dir)
    if str(resume) == "auto":
        found = newest_checkpoint(run_dir)
        if found is None:
            return None, None
        for newer in checkpoint_files(run_dir)[: checkpoint_files(run_dir).index(found[0])]:
            newer.rename(newer.with_name(newer.name + ".unreadable"))  # kept for a post-mortem, out of the way
        return str(found[0]), found[1]
    path = Path(resume)
    if path.is_dir():
        found = newest_checkpoint(path)
        if found is None:
            raise UserError(f"no checkpoint in {path} to resume from")
        path, ckpt = found
    else:
        ckpt = load_checkpoint(path)  # a clear error here, before the other processes try
    later = [p for p in checkpoint_files(run_dir) if p.name != LATEST and int(p.stem.split("-")[1]) > ckpt["step"]]
    if later:
        raise UserError(f"{run_dir} already holds checkpoints past step {ckpt['step']} ({later[0].name}): continue with "
                        "--resume auto, or train from this checkpoint into another --out folder")
    return str(path), ckpt


def resume_position(ckpt: dict, n_images: int) -> tuple[int, int]:
    """(epoch, images of it already trained on) to continue from. Counting images rather than
    steps keeps the position meaningful if the batch size changes on resume."""
    position = ckpt.get("position")
    if position is None:  # written by an older version, at the end of an epoch
        return ckpt["epoch"] + 1, 0
    if position["images"] >= n_images:
        return position["epoch"] + 1, 0
    return position["epoch"], position["images"]


def _rng_states() -> dict:
    """Every random state a step could draw from. Training itself draws none today (the data order
    comes from its own seeded generator), but an exact resume must not depend on that staying so."""
    state = {"torch": torch.get_rng_state(), "python": random.getstate(),
             "numpy": {k: torch.from_numpy(v.astype(np.int64)) if isinstance(v, np.ndarray) else v
                       for k, v in zip(("kind", "keys", "pos", "has_gauss", "cached"), np.random.get_state())}}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_states(per_rank: list | None, world) -> None:
    if not per_rank:
        return
    state = per_rank[world.rank % len(per_rank)]
    torch.set_rng_state(state["torch"])
    random.setstate((state["python"][0], tuple(state["python"][1]), state["python"][2]))
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


class RunLog:
    """Rank 0's record of a run: stats.jsonl (one line per step) and, when the `tensorboard` package
    is installed, TensorBoard scalars and an image grid per epoch in run_dir/tensorboard."""

    def __init__(self, run_dir: Path, resumed_step: int | None, lr: float, dev: torch.device):
        self.path, self.lr, self.dev = run_dir / "stats.jsonl", lr, dev
        if resumed_step is None:
            self.path.unlink(missing_ok=True)  # a fresh run's log starts empty
        elif self.path.exists():  # drop the lines of steps the resumed run will do again
            kept = [line for line in self.path.read_text().splitlines() if _logged_step(line) <= resumed_step]
            atomic_write_text(self.path, "".join(line + "\n" for line in kept))
        self.file = open(self.path, "a")  # noqa: SIM115 - open for the whole run, closed by close()
        self.tensorboard = _summary_writer(run_dir / "tensorboard")

    def step(self, step: int, epoch: int, stage: str, terms: dict[str, float], images_per_s: float, skipped: bool) -> None:
        record = {"step": step, "epoch": epoch, "stage": stage,
                  **{k: v if math.isfinite(v) else None for k, v in terms.items()},
                  "images_per_s": round(images_per_s, 2), "lr": self.lr, "skipped": skipped, **self.memory()}
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()
        if self.tensorboard is not None:
            for k, v in terms.items():
                self.tensorboard.add_scalar(f"{stage}/{k}", v, step)
            self.tensorboard.add_scalar("images_per_s", images_per_s, step)

    def memory(self) -> dict:
        out = {"peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}  # KiB on Linux
        if self.dev.type == "cuda":
            out["cuda_max_allocated_mb"] = round(torch.cuda.max_memory_allocated(self.dev) / 2**20, 1)
        return out

    @torch.no_grad()
    def epoch_end(self, step: int, generator: Generator, text: torch.Tensor, precision: str) -> None:
        if self.tensorboard is None:
            return
        import torchvision.utils

        with autocast(self.dev, precision):
            images, _ = generator(text)
        grid = torchvision.utils.make_grid(images.flatten(0, 1).float().clamp(0, 1).cpu(), nrow=images.shape[1] * len(text))
        self.tensorboard.add_image("samples", grid, step)

    def close(self) -> None:
        self.file.close()
        if self.tensorboard is not None:
            self.tensorboard.close()


def _logged_step(line: str) -> float:
    try:
        return json.loads(line)["step"]
    except (ValueError, KeyError, TypeError):
        return math.inf  # a line torn by a kill: dropped


def _summary_writer(folder: Path):
    """TensorBoard is optional: without the package there is simply no TensorBoard log."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(str(folder))


def _ensure_writable(run_dir: Path) -> None:
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise UserError(f"cannot write to output folder {run_dir}: {e.strerror or e}") from None
