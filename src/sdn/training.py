"""The one SDN training loop: every scheme of the paper's Table 3, checkpoints every epoch, resume."""

from __future__ import annotations

import contextlib
import json
import math
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

from sdn.checkpoint import atomic_save, check_compatible, load_checkpoint
from sdn.data import CaptionedImages
from sdn.errors import UserError
from sdn.generator import Generator
from sdn.losses import ImageLoss, Stage1Loss, Stage2Loss
from sdn.teachers import Teacher, build_teacher
from sdn.text import TextEncoder, build_text_encoder, encode_unique

# scheme -> (loss of the first `stage1_epochs`, loss of the remaining `stage2_epochs`)
SCHEMES = {
    "image": ("image", "image"),  # image-space loss only
    "stage1": ("stage1", "stage1"),  # Stage-I loss only
    "stage2": ("stage2", "stage2"),  # Stage-II loss only
    "joint": ("joint", "joint"),  # Stage-I & Stage-II losses together
    "sdn": ("stage1", "stage2"),  # the paper's two-stage SDN
    "diverse": ("stage1", "stage2"),  # two-stage SDN with n outputs and min-over-outputs losses
}


def autocast(device: torch.device, precision: str):
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


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
    batch_size: int = 12,  # images per step (paper: 12)
    lr: float = 1e-4,  # Adam learning rate (paper: 1e-4)
    fc_dim: int = 4096,  # width of g-fc8 and g-fc7
    pair_preactivation: bool = True,  # Stage I pairs G's pre-ReLU values with the taps (see Generator)
    tap_weights: str = "equal",  # "equal": the paper's unweighted sum of raw tap L1s; "inverse-mean":
    # each tap divided by its mean |activation| on real training images and weighted 1/(number of
    # taps), so every tap counts alike and the taps together weigh about as much as a relative error
    pixel_weight: float = 1.0,  # weight of the image-space L1 term
    diverse_mean_weight: float = 0.001,  # CRN's small share of the mean over the n outputs
    precision: str = "bf16",  # "bf16" autocast (AMX on CPU, tensor cores on CUDA) or "fp32"
    channels_last: bool = True,  # NHWC memory format for the convolutions
    adam: str = "auto",  # Adam implementation: "fused" (one kernel over all parameters), "foreach",
    # "for-loop" (the reference); "auto" = fused where this torch supports it on the device, else
    # foreach. On 2 CPU cores fused steps the 142 M-parameter 224 px generator 5x faster than foreach.
    compile: bool = False,  # torch.compile the generator and the teacher (off: on 2 CPU cores it took
    # minutes to compile and gained nothing clear, 0.95-0.99x in Stage I, 1.03-1.26x in Stage II)
    grad_checkpointing: bool = False,  # recompute the generator's insides in the backward pass for
    # a smaller peak memory (224 px on small GPUs); same results, about one more generator forward
    seed: int = 0,  # initialisation, data order and caption choice
    resume: str | Path | None = None,  # checkpoint file or run folder to continue from
    device: str | None = None,  # "cpu", "cuda", ...; None = CUDA when available
    progress: bool = True,  # show a progress bar
    text_encoder_instance: TextEncoder | None = None,  # an already-built encoder, to reuse
    overwrite: bool = False,  # start afresh in a run folder that already holds a checkpoint
) -> Path:
    """Train a generator on `data`'s train split; returns the path of the last checkpoint."""
    if scheme not in SCHEMES:
        raise UserError(f"unknown scheme {scheme!r}; choose from {', '.join(SCHEMES)}")
    if tap_weights not in ("equal", "inverse-mean"):
        raise UserError(f"tap weights must be 'equal' or 'inverse-mean', not {tap_weights!r}")
    if precision not in ("bf16", "fp32"):
        raise UserError(f"precision must be 'bf16' or 'fp32', not {precision!r}")
    if adam not in ADAM_CHOICES:
        raise UserError(f"adam must be one of {', '.join(ADAM_CHOICES)}, not {adam!r}")
    n_outputs = n_outputs or (3 if scheme == "diverse" else 1)
    if scheme == "diverse" and n_outputs < 2:
        raise UserError("the diverse scheme needs --n-outputs of 2 or more")
    if batch_size < 1 or stage1_epochs < 0 or stage2_epochs < 0 or stage1_epochs + stage2_epochs < 1:
        raise UserError("batch size must be >= 1 and the epochs must add up to at least 1")
    run_dir = Path(run_dir)
    _ensure_writable(run_dir)
    if resume is None and (run_dir / "checkpoint-latest.pt").exists() and not overwrite:
        raise UserError(f"{run_dir} already holds a run: continue it with --resume {run_dir}, or pass --overwrite to start afresh")
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    train = data.subset("train")
    if len(train) == 0:
        raise UserError("the data has no training images")
    torch.manual_seed(seed)

    encoder_name = text_encoder_instance.name if text_encoder_instance is not None else text_encoder
    config = dict(
        teacher=teacher, teacher_pooling=teacher_pooling, teacher_init=teacher_init, resolution=data.resolution,
        text_encoder=encoder_name, fc_dim=fc_dim, n_outputs=n_outputs, scheme=scheme,
        pair_preactivation=pair_preactivation,
        stage1_epochs=stage1_epochs, stage2_epochs=stage2_epochs, batch_size=batch_size, lr=lr,
        tap_weights=tap_weights, pixel_weight=pixel_weight, diverse_mean_weight=diverse_mean_weight,
        precision=precision, channels_last=channels_last, seed=seed,
        adam=adam, compile=compile, grad_checkpointing=grad_checkpointing,
    )
    ckpt = None
    if resume is not None:  # checked before anything slow is built
        ckpt = load_checkpoint(resume)
        check_compatible(ckpt["config"], config, "this run")

    teacher_net = build_teacher(teacher, teacher_weights, teacher_init, teacher_pooling, data.resolution).to(dev)
    encoder = text_encoder_instance or build_text_encoder(text_encoder)
    config["text_dim"] = encoder.dim
    if ckpt is not None:
        check_compatible(ckpt["config"], config, "this run")
    generator = Generator(teacher_net.taps, data.resolution, encoder.dim, fc_dim, n_outputs, pair_preactivation,
                          grad_checkpointing).to(dev)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
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
        start_epoch, step, history = ckpt["epoch"] + 1, ckpt["step"], ckpt.get("history", [])
    else:
        generator.set_text_statistics(embeddings.flatten(0, 1).to(dev))
        if tap_weights == "inverse-mean":
            # Sample a fixed subset: the scales are typical sizes, not exact statistics.
            sample = train.images[torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))[:512]]
            scales = tap_mean_activations(teacher_net, sample, dev, precision)
            weights = torch.full((len(teacher_net.taps),), 1 / len(teacher_net.taps))
        else:
            scales, weights = None, torch.ones(len(teacher_net.taps))
        start_epoch, step, history = 0, 0, []

    losses = {
        "image": ImageLoss(weights, pixel_weight, diverse_mean_weight, scales),
        "stage1": Stage1Loss(weights, pixel_weight, diverse_mean_weight, scales),
        "stage2": Stage2Loss(weights, pixel_weight, diverse_mean_weight, scales),
    }
    losses["joint"] = lambda **kw: losses["stage1"](**kw) + losses["stage2"](**kw)

    total_epochs = stage1_epochs + stage2_epochs
    steps_per_epoch = math.ceil(len(train) / batch_size)
    stats_path = run_dir / "stats.jsonl"
    if ckpt is None:
        stats_path.unlink(missing_ok=True)  # a fresh run's log starts empty
    # The compiled modules share their parameters with the originals, which are what gets saved.
    step_generator, step_teacher = (torch.compile(generator), torch.compile(teacher_net)) if compile else (generator, teacher_net)
    bar = tqdm(total=total_epochs * steps_per_epoch, initial=step, disable=not progress, desc=f"train {scheme}", unit="step", dynamic_ncols=True)
    last = None
    for epoch in range(start_epoch, total_epochs):
        stage = SCHEMES[scheme][0] if epoch < stage1_epochs else SCHEMES[scheme][1]
        order_rng = torch.Generator().manual_seed(seed * 100003 + epoch)  # data order fixed by (seed, epoch)
        order = torch.randperm(len(train), generator=order_rng)
        caption_pick = torch.randint(embeddings.shape[1], (len(train),), generator=order_rng)
        epoch_start, sums = time.perf_counter(), []
        for i in range(0, len(train), batch_size):
            idx = order[i : i + batch_size]
            real = (host_to_device(train.images[idx], dev).float() / 255).contiguous(memory_format=memory_format)
            text = host_to_device(embeddings[idx, caption_pick[idx]], dev)
            loss = train_step(step_generator, step_teacher, losses[stage], stage, real, text, optimizer, dev, precision)
            step += 1
            sums.append(loss)
            history.append((step, stage, loss))
            bar.update(1)
            bar.set_postfix(stage=stage, loss=f"{loss:.4f}", refresh=False)
        seconds = time.perf_counter() - epoch_start
        record = {"epoch": epoch, "step": step, "stage": stage, "loss": sum(sums) / len(sums), "images_per_s": len(train) / seconds, "lr": lr}
        with open(stats_path, "a") as f:
            f.write(json.dumps(record) + "\n")
        last = _save(run_dir, generator, optimizer, weights, scales, config, epoch, step, history)
    bar.close()
    return last or run_dir / "checkpoint-latest.pt"


ADAM_CHOICES = ("auto", "fused", "foreach", "for-loop")


def make_adam(params, lr: float, adam: str = "auto") -> torch.optim.Adam:
    """Adam in the implementation `adam` names (see training_loop); "auto" falls back to foreach
    where fused is unsupported (CPU before torch 2.4, some accelerators)."""
    params = list(params)
    if adam in ("auto", "fused"):
        try:
            return torch.optim.Adam(params, lr=lr, fused=True)
        except (RuntimeError, TypeError):
            if adam == "fused":
                raise UserError("this torch has no fused Adam for this device; use --adam foreach") from None
    return torch.optim.Adam(params, lr=lr, foreach=adam != "for-loop")


def host_to_device(batch: torch.Tensor, dev: torch.device) -> torch.Tensor:
    """A freshly gathered CPU batch -> `dev`. On CUDA it is staged in pinned memory first (the
    caching host allocator reuses the buffers), so the copy is a real asynchronous DMA rather than a
    synchronous copy through a pageable bounce buffer; uint8 images cross the bus, 4x less than fp32."""
    if dev.type == "cuda":
        batch = batch.pin_memory()
    return batch.to(dev, non_blocking=True)


def train_step(generator, teacher, loss_fn, stage, real, text, optimizer, dev, precision) -> float:
    with autocast(dev, precision):
        images, acts = generator(text)
        real_feats = fake_feats = None
        if stage != "image":
            with torch.no_grad():  # one teacher pass on the real images, shared by every term
                real_feats = teacher(real)
        if stage in ("stage2", "joint"):
            fake_feats = teacher(images.flatten(0, 1))
    loss = loss_fn(real=real, images=images, real_feats=real_feats, fake_feats=fake_feats, generator_acts=acts)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.item()


def _save(run_dir, generator, optimizer, weights, scales, config, epoch, step, history) -> Path:
    state = {
        "config": config, "generator": generator.state_dict(), "optimizer": optimizer.state_dict(),
        "tap_weights": weights, "tap_scales": scales, "epoch": epoch, "step": step, "history": history,
    }
    path = run_dir / "checkpoint-latest.pt"
    atomic_save(state, path)
    return path


def _ensure_writable(run_dir: Path) -> None:
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise UserError(f"cannot write to output folder {run_dir}: {e.strerror or e}") from None
