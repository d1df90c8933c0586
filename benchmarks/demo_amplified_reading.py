"""Probe (session 15, it did not help): redraw a finished demo run with G's read caption scaled by each
factor given, with no training, and print every figure of sdn.evaluation.demo_scores for each. Asks whether
the held-out synonyms, which MiniLM says at a third to two thirds of a training word's strength, are drawn
right when their reading is made louder. Needs a run of the paraphrase reading (its `text_projection`).

    OMP_NUM_THREADS=1 python benchmarks/demo_amplified_reading.py runs/para2-demo-s0 0 1 1.3 1.7 2.2 3
"""

from __future__ import annotations

import argparse
import json

from sdn.data.demo_data import make_demo_data
from sdn.evaluation.demo_scores import score_generator
from sdn.networks.shape_classifier import load_or_train
from sdn.networks.text import build_text_encoder
from sdn.training.checkpoint import generator_from_checkpoint, load_checkpoint


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run", help="a demo run folder (its checkpoint-latest.pt)")
    p.add_argument("seed", type=int, help="the run's seed (the demo data and held-out phrasings)")
    p.add_argument("factors", type=float, nargs="+", help="scales of the read caption (1: as trained)")
    a = p.parse_args()
    ckpt = load_checkpoint(f"{a.run}/checkpoint-latest.pt")
    if ckpt["config"].get("text_scaling") != "paraphrase":
        raise SystemExit("the run does not read captions with the paraphrase scaling")
    data = make_demo_data(64, a.seed, background=ckpt["config"].get("background", "flat"))
    encoder = build_text_encoder(ckpt["config"]["text_encoder"])
    classifier, _ = load_or_train()
    for factor in a.factors:
        generator = generator_from_checkpoint(ckpt)
        generator.text_projection.mul_(factor)
        results, _ = score_generator(generator, encoder, data, classifier, a.seed, ckpt["config"]["precision"])
        print(json.dumps({"factor": factor, **{f"{part}/{m}": results[part][m] for part in results for m in ("colour", "shape", "position")},
                          "held_out_phrasings/shape_when_named_by_synonym": results["held_out_phrasings"]["shape_when_named_by_synonym"]}), flush=True)


if __name__ == "__main__":
    main()
