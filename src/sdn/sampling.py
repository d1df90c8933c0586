"""Drawing images from caption embeddings with a trained generator."""

from __future__ import annotations

import copy
from pathlib import Path

import torch

from sdn.data.cache import load_cache
from sdn.errors import UserError
from sdn.evaluation.plots import captioned_grid, save_grid
from sdn.networks.generator import Generator
from sdn.networks.text import build_text_encoder, check_captions
from sdn.training.checkpoint import check_compatible, generator_from_checkpoint, load_checkpoint
from sdn.utils import atomic_write, default_device, image_format, image_output


class Sampler:
    """The one drawing path: every command that draws (sample, evaluate, figures, interpolate, demo,
    ablate, serve) goes through a Sampler, so the same caption and checkpoint give the same pixels.

    The generator is made ready once: eval mode, channels-last and, in bf16, a copy whose weights
    are already bf16 (autocast would cast the ~143 M fp32 weights of the paper's G again at every
    call, which for a batch of one costs more than the convolutions). The caption standardisation
    buffers stay fp32 (see Generator.forward)."""

    def __init__(self, generator: Generator, precision: str = "bf16", channels_last: bool = True):
        generator.eval()
        if channels_last:
            generator.to(memory_format=torch.channels_last)  # in place, outside inference mode: stays trainable
        self.model = generator
        if precision == "bf16":
            self.model = copy.deepcopy(generator).to(torch.bfloat16)
            for name, buffer in generator.named_buffers(recurse=False):  # the caption statistics
                if buffer.is_floating_point():
                    setattr(self.model, name, buffer.float().clone())
        self.n_outputs, self.resolution = generator.n_outputs, generator.resolution
        self.device = next(generator.parameters()).device

    def __call__(self, text: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
        """(N, dim) embeddings -> (N, n_outputs, 3, H, W) float images clamped to [0, 1], on the CPU."""
        out = []
        with torch.inference_mode():  # no autograd bookkeeping at all, unlike no_grad
            for i in range(0, len(text), batch_size):
                images, _ = self.model(text[i : i + batch_size].to(self.device, torch.float32))
                out.append(images.float().clamp(0, 1).cpu())
        return torch.cat(out) if out else torch.empty(0, self.n_outputs, 3, self.resolution, self.resolution)

    def uint8(self, text: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
        """The drawings as the 8-bit pixels every file and metric sees."""
        return to_uint8(self(text, batch_size))


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """Float images in [0, 1] -> uint8, rounding to nearest (the one quantisation used everywhere)."""
    return (images.clamp(0, 1) * 255).round().to(torch.uint8)


def sampler_for(ckpt: dict, device: str | torch.device | None = None) -> Sampler:
    """A checkpoint's generator on `device` (default: CUDA when available), drawing in the precision
    it was trained in."""
    return Sampler(generator_from_checkpoint(ckpt).to(default_device(device)), ckpt["config"].get("precision", "fp32"))


def generate(generator: Generator, text: torch.Tensor, batch_size: int = 64, precision: str = "bf16",
             channels_last: bool = True) -> torch.Tensor:
    """(N, dim) embeddings -> (N, n_outputs, 3, H, W) float images in [0, 1] on the CPU, quantised to
    the 8-bit values a file would hold. To draw many small batches with one model, build a `Sampler`."""
    return Sampler(generator, precision, channels_last).uint8(text, batch_size).float() / 255


def save_png(images: torch.Tensor, path: str | Path, nrow: int = 8) -> None:
    """uint8 (N, 3, H, W) -> one PNG grid (a single image: the image itself), replacing `path` only
    by a complete file."""
    atomic_write(path, lambda f: save_grid(images.float() / 255, f, nrow=nrow, padding=2, pad_value=1.0, format=image_format(path)))


def sample_to_file(checkpoint: str, captions: list[str], out: str, n: int | None = None, device: str | None = None) -> None:
    """`sdn sample`: a grid with one row per caption and one column per output image."""
    out_path = image_output(out)
    captions = check_captions(captions)
    ckpt = load_checkpoint(checkpoint)
    n_outputs = ckpt["config"]["n_outputs"]
    n = n_outputs if n is None else n
    if not 1 <= n <= n_outputs:
        raise UserError(f"-n must be between 1 and {n_outputs} (this model draws {n_outputs} image(s) per caption)")
    encoder = build_text_encoder(ckpt["config"]["text_encoder"])
    if encoder.dim != ckpt["config"]["text_dim"]:
        raise UserError(f"text encoder {encoder.name} gives {encoder.dim}-d vectors, the checkpoint expects {ckpt['config']['text_dim']}")
    images = sampler_for(ckpt, device).uint8(encoder.encode(captions))[:, :n]
    # A diverse model: one row per caption, one column per output; otherwise the captions in a row.
    save_png(images.flatten(0, 1), out_path, nrow=n if n > 1 else len(captions))


def one_per_class(labels: list[str], count: int) -> list[int]:
    """Indices of up to `count` images, cycling through the classes so that many classes show."""
    by_class: dict[str, list[int]] = {}
    for i, label in enumerate(labels):
        by_class.setdefault(label, []).append(i)
    pick, round_ = [], 0
    while len(pick) < min(count, len(labels)):
        for members in by_class.values():
            if round_ < len(members) and len(pick) < count:
                pick.append(members[round_])
        round_ += 1
    return pick


def sample_split_grid(checkpoint: str, cache: str, out: str, split: str = "test", count: int = 12, device: str | None = None) -> None:
    """Real images of `split` next to the generator's drawings of their first captions, one per
    class in turn (so a test split shows unseen classes), as a captioned grid."""
    ckpt = load_checkpoint(checkpoint)
    cfg = ckpt["config"]
    data = load_cache(cache, cfg["text_encoder"]).subset(split)
    if len(data) == 0:
        raise UserError(f"the {split} split of {cache} is empty")
    check_compatible(cfg, {"resolution": data.resolution}, f"the cache {cache}")
    pick = one_per_class(data.labels, count)
    captions = [data.captions[i][0] for i in pick]
    if data.embeddings is not None:
        text = data.embeddings[pick, 0].float()
    else:
        text = build_text_encoder(cfg["text_encoder"]).encode(captions)
    images = sampler_for(ckpt, device).uint8(text).float() / 255
    rows = [("real", data.images[pick].float() / 255)] + [(f"generated #{p + 1}" if images.shape[1] > 1 else "generated", images[:, p])
                                                            for p in range(images.shape[1])]
    captioned_grid(rows, captions, Path(out), title=f"{split} split of {Path(cache).name}: real images and drawings of their captions")
