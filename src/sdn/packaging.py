"""A training run made into a shipped model folder (see sdn.pretrained): bf16 weights, config, model card.

For the people who publish models (scripts/package_model.py), not for users. The card is filled from
what the run recorded (its configuration, the step times in stats.jsonl, an `sdn evaluate`
metrics.json) and from what only the packager knows (the data, the hardware, the known limits).
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import torch

from sdn import pretrained
from sdn.training.checkpoint import export_generator, generator_from_checkpoint, load_checkpoint, load_export
from sdn.errors import UserError

_NAME = re.compile(r"[a-z0-9][a-z0-9.-]*")
TO_WRITE = "_(to be written by the packager)_"
# Configuration key -> the `sdn train` option that sets it (the command in the card is rebuilt from these).
TRAIN_OPTIONS = {
    "teacher": "--teacher", "teacher_pooling": "--teacher-pooling", "text_encoder": "--text-encoder", "scheme": "--scheme",
    "n_outputs": "--n-outputs", "stage1_epochs": "--stage1-epochs", "stage2_epochs": "--stage2-epochs",
    "batch_size": "--batch-size", "lr": "--lr", "fc_dim": "--fc-dim", "tap_weights": "--tap-weights",
    "pixel_weight": "--pixel-weight", "precision": "--precision", "seed": "--seed",
}


def training_hours(run: Path, batch_size: int) -> dict[str, float]:
    """Hours spent in training steps per stage, from the run's stats.jsonl (batch / images per second
    of each step; start-up, checkpoint writes and evaluation not included). Empty if there is no log."""
    log = (run if run.is_dir() else run.parent) / "stats.jsonl"
    steps: dict[int, dict] = {}
    if not log.is_file():
        return {}
    for line in log.read_text().splitlines():
        try:
            record = json.loads(line)
            steps[record["step"]] = record  # a resumed run rewrites its steps: the last record counts
        except (ValueError, KeyError, TypeError):
            continue  # a line cut short by a kill
    hours: dict[str, float] = {}
    for record in steps.values():
        if record.get("images_per_s"):
            hours[record["stage"]] = hours.get(record["stage"], 0.0) + batch_size / record["images_per_s"] / 3600
    return hours


def train_command(config: dict, data: str, out: str) -> str:
    parts = ["sdn train", f"--data {data}", f"--out {out}"]
    parts += [f"{flag} {config[key]}" for key, flag in TRAIN_OPTIONS.items() if key in config]
    if config.get("pair_preactivation") is False:
        parts.append("--pair-post-relu")
    if config.get("caption_film"):
        parts.append("--caption-film")
    return " \\\n    ".join(parts)


def metrics_table(metrics: dict) -> str:
    """An `sdn evaluate` metrics.json as a Markdown table, each number with how it was made."""
    m = metrics["metrics"]
    rows = ["| metric | value | how |", "| --- | --- | --- |"]
    for key in ("ssim", "fsim", "is", "fid", "colour_accuracy"):
        if key in m:
            value = f"{m[key]:.4f}" + (f" ± {m[key + '_std']:.4f}" if f"{key}_std" in m else "")
            how = m.get(f"{key}_settings", "")
            if key == "is":
                how = f"classifier {m.get('is_classifier')}; {how}"
            rows.append(f"| {key.upper()} | {value} | {how} |")
    scope = (f"{metrics.get('split')} split of `{Path(str(metrics.get('cache', '?'))).name}`, {metrics.get('real_images')} real images, "
             f"{metrics.get('captions_per_image')} caption(s) each, features in {metrics.get('feature_precision')}")
    return "\n".join(rows) + f"\n\nMeasured on the {scope}."


def _duration(hours: float) -> str:
    return f"{hours:.1f} h" if hours >= 1 else f"{hours * 60:.0f} min"


def model_card(name: str, config: dict, n_parameters: int, size_bytes: int, hours: dict[str, float], metrics: dict | None,
               description: str, data: str, command: str | None, hardware: str, limits: str) -> str:
    total = sum(hours.values())
    time_text = (f"{_duration(total)} in training steps ({', '.join(f'{s} {_duration(h)}' for s, h in hours.items())}), summed from "
                 "the run's stats.jsonl (start-up and checkpoint writes not included)" if hours else "not recorded")
    lines = [
        f"# {name}", "", description or TO_WRITE, "",
        "| | |", "| --- | --- |",
        f"| resolution | {config['resolution']} px |",
        f"| text encoder | {config['text_encoder']} ({config['text_dim']}-d) |",
        f"| teacher | {config['teacher']} |",
        f"| scheme | {config.get('scheme')}, {config.get('n_outputs', 1)} image(s) per caption |",
        f"| weights | bf16 safetensors, {n_parameters / 1e6:.1f} M parameters, {size_bytes / 2**20:.1f} MB |",
        f"| training steps | {config.get('step')} |", "",
        "## Data and split", "", data or TO_WRITE, "",
        "## Training", "", "```", command or train_command(config, "CACHE", f"runs/{name}"), "```", "",
        "" if command else "(Rebuilt from the run's configuration; CACHE is the prepared data.)", "",
        f"Time: {time_text}. Hardware: {hardware or TO_WRITE}.", "",
        "## Metrics", "", metrics_table(metrics) if metrics else "Not measured (no metrics.json given).", "",
        "## Known limits", "", limits or TO_WRITE, "",
        "## Use", "", "```", f'sdn sample --model {name} --text "a caption" --out drawing.png',
        f"sdn evaluate --model {name} --data CACHE --out evaluation/", "```", "",
        "## Configuration", "", "```json", json.dumps(config, indent=2), "```", "",
    ]
    return "\n".join(lines)


def package_model(run: str | Path, name: str, models_dir: str | Path | None = None, metrics: str | Path | None = None,
                  description: str = "", data: str = "", command: str | None = None, hardware: str = "", limits: str = "",
                  overwrite: bool = False) -> Path:
    """Write `models_dir`/`name`/ (default: the package's models_data) from a run folder, checkpoint
    or export; metrics: an `sdn evaluate` metrics.json (default: the run folder's, if any)."""
    if not _NAME.fullmatch(name):
        raise UserError(f"model name {name!r}: use lower-case letters, digits, '-' and '.', e.g. flowers-64")
    run = Path(run)
    target = Path(models_dir or pretrained.MODELS_DIR) / name
    if target.exists() and not overwrite:
        raise UserError(f"{target} exists; pass --overwrite to replace it")
    ckpt = load_checkpoint(run)
    generator = generator_from_checkpoint(ckpt)
    config = {**ckpt["config"], "step": ckpt["step"]}
    if metrics is None and run.is_dir() and (run / "metrics.json").is_file():
        metrics = run / "metrics.json"
    tmp = target.with_name(f".{name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    weights = export_generator(generator, config, tmp / pretrained.WEIGHTS, weights_dtype=torch.bfloat16)
    size = weights.stat().st_size
    if size > pretrained.MAX_BYTES:
        shutil.rmtree(tmp)
        limit = pretrained.MAX_BYTES / 2**20
        raise UserError(f"{name}: {size / 2**20:.1f} MB of weights, over the {limit:.0f} MB a shipped model may have")
    _check_round_trip(generator, weights)
    card = model_card(name, config, sum(p.numel() for p in generator.parameters()), size, training_hours(run, config["batch_size"]),
                      json.loads(Path(metrics).read_text()) if metrics else None, description, data, command, hardware, limits)
    (tmp / pretrained.CARD).write_text(card)
    if target.exists():
        shutil.rmtree(target)
    tmp.rename(target)
    return target


def _check_round_trip(generator: torch.nn.Module, weights: Path) -> None:
    """The written file holds every weight, each the bf16 rounding of the model's own."""
    stored = load_export(weights)["generator"]
    for key, value in generator.state_dict().items():
        if not torch.equal(stored[key].float(), value.to(stored[key].dtype).float()):
            raise RuntimeError(f"{weights}: {key} did not survive the bf16 export")
