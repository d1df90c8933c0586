"""Checkpoints: written atomically, read with `weights_only=True` (no arbitrary unpickling).

A run folder holds numbered checkpoints (`checkpoint-000123.pt`, the step), the newest few of them
kept, and `checkpoint-latest.pt`, a hard link to the newest (the name earlier versions wrote). Each
file is written to a temporary name, flushed to disk and renamed, so a kill at any moment leaves the
earlier checkpoints intact; one that still fails to read (a truncated copy, a full disk) is skipped
with a warning in favour of the one before it. The weights alone, for drawing, are exported as
`generator.safetensors` (no pickle at all) with the configuration in `generator.json` beside it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import warnings
from pathlib import Path

import torch

from sdn.errors import UserError
from sdn.networks.generator import Generator
from sdn.networks.teachers import teacher_taps
from sdn.utils import atomic_write

# Settings that fix the generator's architecture or meaning; a checkpoint only fits a run that agrees.
# "method": "sdn" or a GAN baseline (sdn.baselines); checkpoints written before it existed are SDN's.
ARCHITECTURE_KEYS = ("method", "teacher", "resolution", "text_encoder", "text_dim", "fc_dim", "n_outputs", "noise_dim", "gf_dim",
                     "df_dim", "text_proj_dim", "caption_film", "text_scaling")  # text_scaling: "paraphrase" adds a buffer
LATEST = "checkpoint-latest.pt"
EXPORT = "generator.safetensors"
_NUMBERED = re.compile(r"checkpoint-(\d+)\.pt")


def atomic_save(obj, path: str | Path) -> None:
    """torch.save to a temporary file beside `path`, flush to disk, then rename over it."""
    atomic_write(path, lambda f: torch.save(obj, f), durable=True)


def checkpoint_path(run_dir: str | Path, step: int) -> Path:
    return Path(run_dir) / f"checkpoint-{step:06d}.pt"


def checkpoint_step(path: str | Path) -> int | None:
    """The step a numbered checkpoint's name gives (`checkpoint-000123.pt`: 123); None for any other name."""
    m = _NUMBERED.fullmatch(Path(path).name)
    return None if m is None else int(m.group(1))


def checkpoint_files(run_dir: str | Path) -> list[Path]:
    """The run folder's checkpoints, newest (highest step) first; a lone legacy
    `checkpoint-latest.pt` last, as the fallback of last resort."""
    run_dir = Path(run_dir)
    numbered = sorted((step, p) for p in run_dir.glob("checkpoint-*.pt") if (step := checkpoint_step(p)) is not None)
    files = [p for _, p in reversed(numbered)]
    if (run_dir / LATEST).is_file():
        files.append(run_dir / LATEST)
    return files


def save_numbered(state: dict, run_dir: str | Path, keep: int) -> Path:
    """Write `checkpoint-<step>.pt`, point `checkpoint-latest.pt` at it, delete all but the newest `keep`."""
    run_dir = Path(run_dir)
    path = checkpoint_path(run_dir, state["step"])
    atomic_save(state, path)
    _point_latest(path)
    for old in [p for p in checkpoint_files(run_dir) if p.name != LATEST][keep:]:
        old.unlink(missing_ok=True)
    return path


def _point_latest(path: Path) -> None:
    """checkpoint-latest.pt becomes a hard link to `path` (no extra bytes written), swapped in by an
    atomic rename; where the file system has no hard links, a copy."""
    tmp = path.parent / f".{LATEST}.link"
    tmp.unlink(missing_ok=True)
    try:
        os.link(path, tmp)
    except OSError:
        shutil.copyfile(path, tmp)
    os.replace(tmp, path.parent / LATEST)


def remove_run_files(run_dir: str | Path) -> None:
    """Before a fresh run in an old folder: its checkpoints would otherwise outrank the new ones."""
    run_dir = Path(run_dir)
    for p in checkpoint_files(run_dir) + [run_dir / EXPORT, run_dir / "generator.json"]:
        p.unlink(missing_ok=True)
    remove_stale_temporaries(run_dir)


def remove_stale_temporaries(run_dir: str | Path) -> None:
    """Half-written files of a process killed while saving."""
    for p in Path(run_dir).glob(".checkpoint-*"):
        p.unlink(missing_ok=True)


def _read(path: Path) -> dict:
    if path.suffix == ".safetensors":
        return load_export(path)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise UserError(f"cannot read checkpoint {path} (corrupt, truncated or not an sdn checkpoint): {type(e).__name__}") from None
    if not isinstance(ckpt, dict) or not {"config", "generator", "step"} <= ckpt.keys():
        raise UserError(f"{path} is not an sdn checkpoint")
    return ckpt


def newest_checkpoint(run_dir: str | Path) -> tuple[Path, dict] | None:
    """The newest checkpoint of `run_dir` that reads, warning about each newer one that does not; None if none does."""
    for path in checkpoint_files(run_dir):
        try:
            return path, _read(path)
        except UserError as e:
            warnings.warn(f"{e}; trying the previous checkpoint")
    return None


def load_checkpoint(path: str | Path) -> dict:
    """A checkpoint file, an exported `.safetensors` generator, or a run folder (its newest readable
    checkpoint, else its export)."""
    path = Path(path)
    if path.is_dir():
        found = newest_checkpoint(path)
        if found is not None:
            return found[1]
        if (path / EXPORT).is_file():
            return load_export(path / EXPORT)
        raise UserError(f"no checkpoint in {path}")
    if not path.is_file():
        raise UserError(f"checkpoint not found: {path}")
    return _read(path)


def export_generator(generator: torch.nn.Module, config: dict, path: str | Path, weights_dtype: torch.dtype | None = None) -> Path:
    """The generator's weights as safetensors (the configuration in its metadata and, for people,
    in a JSON file beside it): all `sdn sample` needs, loadable without unpickling anything.
    weights_dtype: e.g. torch.bfloat16, half the bytes (the packaged models); the buffers (the
    caption statistics, a few KB) keep their precision. Loading casts back to the model's dtype."""
    from safetensors.torch import save

    path = Path(path)
    parameters = {name for name, _ in generator.named_parameters()}
    tensors = {k: (v.to(weights_dtype) if weights_dtype is not None and k in parameters else v).detach().cpu().contiguous()
               for k, v in generator.state_dict().items()}
    blob = save(tensors, metadata={"sdn_config": json.dumps(config)})
    atomic_write(path, lambda f: f.write(blob), durable=True)
    atomic_write(path.with_suffix(".json"), lambda f: f.write((json.dumps(config, indent=2) + "\n").encode()), durable=True)
    return path


def load_export(path: str | Path) -> dict:
    """An export read back in the shape of a checkpoint (config, generator, step)."""
    from safetensors import safe_open

    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
        config = json.loads(metadata["sdn_config"])
    except Exception as e:
        raise UserError(f"cannot read exported generator {path} (corrupt, truncated or not an sdn export): {type(e).__name__}") from None
    return {"config": config, "generator": tensors, "step": config.get("step")}


def check_compatible(ckpt_config: dict, config: dict, what: str = "this run") -> None:
    for key in ARCHITECTURE_KEYS:
        theirs = ckpt_config.get(key, _OLD_DEFAULTS.get(key))
        if key in config and theirs != config[key]:
            raise UserError(f"checkpoint was made with {key}={theirs!r} but {what} has {key}={config[key]!r}")


# Settings that change what is trained. Runtime switches that give the same results (adam, compile,
# grad_checkpointing, channels_last) are left out, and so are where and how often to save.
TRAINING_KEYS = ARCHITECTURE_KEYS + (
    "teacher_init", "teacher_pooling", "scheme", "pair_preactivation", "stage1_epochs", "stage2_epochs", "batch_size",
    "lr", "tap_weights", "loss_reduction", "pixel_weight", "diverse_mean_weight", "precision", "seed",
    "stage2_pixel_weight", "tap_profile", "teacher_input_size", "stage1_inputs", "tap_distance", "pixel_distance", "ema_decay",
    "lr_decay", "caption_noise", "caption_mix", "adversarial_weight", "critic_lr", "critic_wrong_captions",
)
# Training longer (or shorter) is what resuming is for: allowed, but recorded like any change.
_LENGTH_KEYS = ("stage1_epochs", "stage2_epochs")
# What a checkpoint written before a setting existed was trained with.
_OLD_DEFAULTS = {"caption_film": False, "loss_reduction": "mean", "teacher_pooling": "avg", "teacher_init": "pretrained", "diverse_mean_weight": 0.001,
                 "method": "sdn", "stage2_pixel_weight": None, "tap_profile": "flat", "teacher_input_size": None,
                 "stage1_inputs": "generator", "tap_distance": "l1", "pixel_distance": "l1", "ema_decay": 0.0,
                 "lr_decay": "none", "caption_noise": 0.0, "caption_mix": False, "text_scaling": "dimension", "adversarial_weight": 0.1, "critic_lr": 2e-4,
                 "critic_wrong_captions": False}


def check_same_training(saved: dict, wanted: dict, allowed=(), step: int | None = None) -> list[dict]:
    """Refuse, in one line naming every differing key, to continue a run whose saved settings differ
    from the `wanted` ones, except for the `allowed` keys; returns the saved config's record of changed
    settings with the allowed changes of this call appended."""
    differ = [k for k in TRAINING_KEYS if k in wanted and saved.get(k, _OLD_DEFAULTS.get(k)) != wanted[k]]
    refused = [k for k in differ if k not in allowed and k not in _LENGTH_KEYS]
    if refused:
        shown = "; ".join(f"{k}: {saved.get(k, _OLD_DEFAULTS.get(k))!r} saved, {wanted[k]!r} now" for k in refused)
        raise UserError(f"the run was trained with other settings ({shown}): use the saved ones, another --out folder, "
                        f"or --allow-changed-settings {' '.join(refused)} to change them on purpose")
    record = list(saved.get("changed_settings", []))
    return record + [{"key": k, "from": saved.get(k, _OLD_DEFAULTS.get(k)), "to": wanted[k], "step": step} for k in differ]


def generator_from_checkpoint(ckpt: dict) -> torch.nn.Module:
    """SDN's generator, or a GAN baseline's (same drawing interface, see sdn.baselines.noise)."""
    cfg = ckpt["config"]
    if cfg.get("method", "sdn") != "sdn":
        from sdn.baselines import build_generator

        generator = build_generator(cfg)
    else:
        generator = Generator(teacher_taps(cfg["teacher"]), cfg["resolution"], cfg["text_dim"], cfg["fc_dim"], cfg["n_outputs"],
                              caption_film=cfg.get("caption_film", _OLD_DEFAULTS["caption_film"]),
                              caption_projection=cfg.get("text_scaling", _OLD_DEFAULTS["text_scaling"]) == "paraphrase")
    try:  # a run with a weight average draws with it (sdn.training.average)
        generator.load_state_dict(ckpt.get("generator_average", ckpt["generator"]))
    except RuntimeError as e:
        raise UserError(f"checkpoint weights do not fit its own configuration: {str(e).splitlines()[0]}") from None
    return generator.eval()
