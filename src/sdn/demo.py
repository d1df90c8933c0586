"""`sdn demo`: make the built-in data, train SDN (Stage I then Stage II) and, at the same budget, the
image-space baseline; draw unseen colour-shape pairs and score colour, shape and position."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import torch

from sdn.data.demo_data import make_demo_data
from sdn.evaluation.demo_scores import goals_met, score_generator
from sdn.evaluation.plots import captioned_grid, loss_plot
from sdn.networks.shape_classifier import classify_shapes, load_or_train
from sdn.networks.text import build_text_encoder
from sdn.training.checkpoint import generator_from_checkpoint, load_checkpoint
from sdn.training.config import PRESETS
from sdn.training.loop import training_loop

BASELINE_DIR = "baseline-image"


def run_demo(out: str | Path = "runs/demo", resolution: int = 64, seed: int = 0, progress: bool = True, baseline: bool = True,
             background: str = "flat", **train_kwargs) -> dict:
    """Writes to `out`: SDN's checkpoint, stats.jsonl, samples.png (unseen pairs: real, SDN and, with
    `baseline`, the image-space scheme trained at the same budget in out/baseline-image), loss.png and
    metrics.json. background: the demo data's (sdn.data.demo_data.make_demo_data): "flat" by default,
    because a random background that no caption describes is noise in every gradient step of a
    generator without a noise input and slows its learning of shapes (docs/demo-levers.md).
    `train_kwargs` go to `training_loop` (the baseline gets them with scheme="image")."""
    started, cpu_started = time.perf_counter(), time.process_time()
    out = Path(out)
    data = make_demo_data(resolution, seed, background=background)
    encoder = build_text_encoder(train_kwargs.pop("text_encoder", PRESETS["demo"].text_encoder))
    classifier, classifier_record = load_or_train()
    test = data.subset("test")
    real_test = test.images.float() / 255
    real_shapes, _ = classify_shapes(classifier, real_test)
    runs = {"sdn": (out, train_kwargs)}
    if baseline:
        runs["image_baseline"] = (out / BASELINE_DIR, {**train_kwargs, "scheme": "image"})
    results, drawings, seconds, ckpts = {}, {}, {}, {}
    for name, (folder, kwargs) in runs.items():
        t = time.perf_counter()
        # The demo replaces its own earlier output in `out`.
        path = training_loop(data, folder, seed=seed, progress=progress, text_encoder_instance=encoder, overwrite=True,
                             checkpoint_epochs=PRESETS["demo"].checkpoint_epochs, **kwargs)
        seconds[name] = round(time.perf_counter() - t, 1)
        ckpts[name] = load_checkpoint(path)
        generator = generator_from_checkpoint(ckpts[name])
        results[name], drawings[name] = score_generator(generator, encoder, data, classifier, seed, ckpts[name]["config"]["precision"])

    pick = _two_per_pair(test.attributes)
    rows = [("real", real_test[pick]), ("SDN", drawings["sdn"][pick, 0])]
    if baseline:
        rows.append(("image-space\nbaseline", drawings["image_baseline"][pick, 0]))
    captioned_grid(rows, [test.captions[i][0] for i in pick], out / "samples.png",
                   title="Unseen colour-shape pairs (never in training): real images and drawings of their captions")
    loss_plot(ckpts["sdn"]["history"], out / "loss.png")
    report = {
        **results,
        "goals": goals_met(results["sdn"], results.get("image_baseline")),
        "real_unseen_pair_images": {"shape_classifier_accuracy": round(sum(s == a["shape"] for s, a in zip(real_shapes, test.attributes)) / len(test), 4),
                                    **{k: results["sdn"]["unseen_pairs"]["details"][k][f"{k}_accuracy_of_real_images"] for k in ("colour", "position")}},
        "shape_classifier": {**classifier_record, "how_blobs_are_refused": "a fifth class, 'no shape', trained on soft Gaussian "
                             "blobs of every palette colour and on empty or noisy backgrounds; a drawing called 'no shape' counts as a wrong shape"},
        "colour_accuracy_test_unseen_pairs": results["sdn"]["unseen_pairs"]["colour"],
        "colour_accuracy_train": results["sdn"]["training_pairs"]["colour"],
        "background": background,
        "test_images": len(test), "train_images": len(data) - len(test),
        "train_seconds": seconds, "wall_seconds": round(time.perf_counter() - started, 1),
        "cpu_seconds": round(time.process_time() - cpu_started, 1),  # all threads; with the wall time, shows how busy the machine was
        "load_average_at_end": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "device": str(next(generator.parameters()).device), "torch_threads": torch.get_num_threads(),
        "config": ckpts["sdn"]["config"],
        "metric_definitions": {
            "colour": "hue of the most saturated 3 % of pixels is nearest the caption's palette colour (saturation >= 0.15)",
            "shape": "the package's shape classifier (sdn.networks.shape_classifier) names the caption's shape; 'no shape' is wrong",
            "position": "the object's centroid (its most colourful pixels) lies in the caption's cell of the 3x3 grid",
            "held_out_phrasings": "unseen pairs captioned with templates, shape words and position phrases used only at test time (sdn.data.demo_phrasings)",
        },
    }
    (out / "metrics.json").write_text(json.dumps(report, indent=2))
    return report


def _two_per_pair(attributes: list[dict]) -> list[int]:
    """Two examples (small, upper left; large, centre) of each unseen pair, in order of appearance."""
    wanted = {("small", "upper left"), ("large", "center")}
    pick, seen = [], set()
    for i, a in enumerate(attributes):
        key = (a["colour"], a["shape"], a["size"], a["position"])
        if (a["size"], a["position"]) in wanted and key not in seen:
            seen.add(key)
            pick.append(i)
    return pick
