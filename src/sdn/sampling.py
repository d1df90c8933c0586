"""Drawing images from caption embeddings with a trained generator."""

from __future__ import annotations

import torch

from sdn.generator import Generator
from sdn.training import autocast


@torch.no_grad()
def generate(generator: Generator, text: torch.Tensor, batch_size: int = 64, precision: str = "bf16") -> torch.Tensor:
    """(N, dim) embeddings -> (N, n_outputs, 3, H, W) float images clamped to [0, 1], on the CPU."""
    generator.eval()
    dev = next(generator.parameters()).device
    out = []
    for i in range(0, len(text), batch_size):
        with autocast(dev, precision):
            images, _ = generator(text[i : i + batch_size].to(dev))
        out.append(images.float().clamp(0, 1).cpu())
    return torch.cat(out) if out else torch.empty(0, generator.n_outputs, 3, generator.resolution, generator.resolution)


def sample_to_file(checkpoint: str, captions: list[str], out: str, n: int | None = None, device: str | None = None) -> None:
    """`sdn sample`: a grid with one row per caption and one column per output image."""
    import os
    from pathlib import Path

    import torchvision.utils

    from sdn.checkpoint import generator_from_checkpoint, load_checkpoint
    from sdn.errors import UserError
    from sdn.text import build_text_encoder, check_captions

    out_path = Path(out)
    if out_path.suffix.lower() not in (".png", ".jpg", ".jpeg"):
        raise UserError(f"--out must end in .png or .jpg, not {out_path.name!r}")
    if not out_path.parent.is_dir() or not os.access(out_path.parent, os.W_OK):
        raise UserError(f"cannot write to folder {out_path.parent}")
    captions = check_captions(captions)
    ckpt = load_checkpoint(checkpoint)
    generator = generator_from_checkpoint(ckpt)
    n = generator.n_outputs if n is None else n
    if not 1 <= n <= generator.n_outputs:
        raise UserError(f"-n must be between 1 and {generator.n_outputs} (this model draws {generator.n_outputs} image(s) per caption)")
    encoder = build_text_encoder(ckpt["config"]["text_encoder"])
    if encoder.dim != ckpt["config"]["text_dim"]:
        raise UserError(f"text encoder {encoder.name} gives {encoder.dim}-d vectors, the checkpoint expects {ckpt['config']['text_dim']}")
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    images = generate(generator.to(dev), encoder.encode(captions), precision=ckpt["config"].get("precision", "fp32"))[:, :n]
    tmp = out_path.with_name(f".{out_path.name}.tmp{out_path.suffix}")
    # A diverse model: one row per caption, one column per output; otherwise the captions in a row.
    torchvision.utils.save_image(images.flatten(0, 1), tmp, nrow=n if n > 1 else len(captions), padding=2, pad_value=1.0)
    os.replace(tmp, out_path)  # an existing file is only replaced by a complete new one
