"""Checkpoints: written atomically, read with `weights_only=True` (no arbitrary unpickling)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch

from sdn.errors import UserError
from sdn.generator import Generator
from sdn.teachers import teacher_taps

# Settings that fix the generator's architecture or meaning; a checkpoint only fits a run that agrees.
ARCHITECTURE_KEYS = ("teacher", "resolution", "text_encoder", "text_dim", "fc_dim", "n_outputs")


def atomic_save(obj, path: str | Path) -> None:
    """torch.save to a temporary file beside `path`, flush to disk, then rename over it."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_checkpoint(path: str | Path) -> dict:
    path = Path(path)
    if path.is_dir():
        path = path / "checkpoint-latest.pt"
    if not path.is_file():
        raise UserError(f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise UserError(f"cannot read checkpoint {path} (corrupt, truncated or not an sdn checkpoint): {type(e).__name__}") from None
    if not isinstance(ckpt, dict) or not {"config", "generator", "step"} <= ckpt.keys():
        raise UserError(f"{path} is not an sdn checkpoint")
    return ckpt


def check_compatible(ckpt_config: dict, config: dict, what: str = "this run") -> None:
    for key in ARCHITECTURE_KEYS:
        if key in config and ckpt_config.get(key) != config[key]:
            raise UserError(f"checkpoint was made with {key}={ckpt_config.get(key)!r} but {what} has {key}={config[key]!r}")


def generator_from_checkpoint(ckpt: dict) -> Generator:
    cfg = ckpt["config"]
    generator = Generator(teacher_taps(cfg["teacher"]), cfg["resolution"], cfg["text_dim"], cfg["fc_dim"], cfg["n_outputs"])
    try:
        generator.load_state_dict(ckpt["generator"])
    except RuntimeError as e:
        raise UserError(f"checkpoint weights do not fit its own configuration: {str(e).splitlines()[0]}") from None
    return generator.eval()
