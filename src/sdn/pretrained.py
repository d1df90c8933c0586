"""Trained models that ship inside the package: `sdn sample --model NAME`, offline, right after install.

Each model is a folder `models_data/<name>/` of package data:
    generator.safetensors   the generator's weights in bf16 (its buffers in fp32), configuration in the metadata
    generator.json          the same configuration, for people
    MODEL_CARD.md           data and split, text encoder, teacher, training command, hours, metrics, limits;
                            its first line after the title is the one-line description `sdn models` shows
`scripts/package_model.py RUN NAME` makes such a folder from a training run (see sdn.packaging).
This module imports nothing heavy: `sdn models` and the name lookup stay instant.
"""

from __future__ import annotations

import json
from pathlib import Path

from sdn.errors import UserError

MODELS_DIR = Path(__file__).resolve().parent / "models_data"
WEIGHTS, CONFIG, CARD = "generator.safetensors", "generator.json", "MODEL_CARD.md"
MAX_BYTES = 30 * 1024 * 1024  # each model's weights, so that the package stays an ordinary download


def list_models() -> list[str]:
    """Names of the models that ship, sorted."""
    if not MODELS_DIR.is_dir():
        return []
    return sorted(p.name for p in MODELS_DIR.iterdir() if (p / WEIGHTS).is_file())


def model_dir(name: str) -> Path:
    if name not in list_models():  # also refuses names like "../x": only listed folders count
        available = ", ".join(list_models()) or "none ships with this installation"
        raise UserError(f"unknown model {name!r}; available: {available} (see `sdn models`)")
    return MODELS_DIR / name


def model_path(name: str) -> Path:
    """The model's generator.safetensors: anything that takes a checkpoint takes it."""
    return model_dir(name) / WEIGHTS


def model_config(name: str) -> dict:
    return json.loads((model_dir(name) / CONFIG).read_text())


def model_card(name: str) -> str:
    card = model_dir(name) / CARD
    return card.read_text() if card.is_file() else f"# {name}\n\n(no model card)\n"


def describe(card: str) -> str:
    """The card's one-line description: its first non-empty line that is not a heading."""
    for line in card.splitlines():
        if line.strip() and not line.startswith("#"):
            return line.strip()
    return ""


def model_rows() -> list[dict]:
    """One row per shipped model, for `sdn models`."""
    rows = []
    for name in list_models():
        config = model_config(name)
        rows.append({"name": name, "resolution": f"{config['resolution']} px", "text encoder": config["text_encoder"],
                     "size": f"{model_path(name).stat().st_size / 2**20:.1f} MB", "description": describe(model_card(name))})
    return rows


def models_table() -> str:
    """`sdn models`: a plain-text table of what ships."""
    rows = model_rows()
    if not rows:
        return "no trained model ships with this installation\n"
    keys = list(rows[0])
    widths = {k: max(len(k), *(len(r[k]) for r in rows)) for k in keys}
    return "".join("  ".join(r[k].ljust(widths[k]) for k in keys).rstrip() + "\n" for r in [dict(zip(keys, keys))] + rows)


def resolve_checkpoint(checkpoint: str | None, model: str | None) -> str:
    """The one place `--checkpoint PATH` and `--model NAME` meet: the path to load, from exactly one of them."""
    if (checkpoint is None) == (model is None):
        raise UserError("give exactly one of --checkpoint PATH and --model NAME (see `sdn models`)")
    return checkpoint if model is None else str(model_path(model))
