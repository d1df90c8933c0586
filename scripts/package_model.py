"""Make a training run into a model that ships with the package: src/sdn/models_data/NAME/.

    python scripts/package_model.py runs/flowers NAME [--metrics EVAL/metrics.json] [--description "..."]
        [--data "..."] [--command "..."] [--hardware "..."] [--limits "..."] [--overwrite]

Writes generator.safetensors (bf16), generator.json and MODEL_CARD.md; review the card before committing.
"""

from __future__ import annotations

import argparse
import sys

from sdn.errors import UserError
from sdn.packaging import TO_WRITE, package_model


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run", help="run folder (its newest checkpoint), checkpoint file or generator.safetensors")
    p.add_argument("name", help="model name, e.g. flowers-64")
    p.add_argument("--models-dir", help="where to write (default: the package's models_data)")
    p.add_argument("--metrics", help="an `sdn evaluate` metrics.json (default: RUN/metrics.json if there)")
    p.add_argument("--description", default="", help="the one line `sdn models` shows")
    p.add_argument("--data", default="", help="model card: the data and split")
    p.add_argument("--command", help="model card: the exact training command (default: rebuilt from the configuration)")
    p.add_argument("--hardware", default="", help="model card: where it was trained")
    p.add_argument("--limits", default="", help="model card: known limits")
    p.add_argument("--overwrite", action="store_true")
    a = p.parse_args()
    try:
        folder = package_model(a.run, a.name, a.models_dir, a.metrics, a.description, a.data, a.command, a.hardware, a.limits, a.overwrite)
    except UserError as e:
        print(f"package_model: error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {folder}")
    if TO_WRITE in (folder / "MODEL_CARD.md").read_text():
        print(f"{folder / 'MODEL_CARD.md'}: some sections are still {TO_WRITE}; fill them in before shipping")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
