"""`sdn demo`: make the built-in data, train Stage I then Stage II, draw unseen captions, score them."""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from sdn.checkpoint import generator_from_checkpoint, load_checkpoint
from sdn.demo_data import make_demo_data
from sdn.metrics import colour_accuracy
from sdn.plots import captioned_grid, loss_plot
from sdn.sampling import generate
from sdn.text import build_text_encoder, encode_unique
from sdn.training import training_loop


def run_demo(out: str | Path = "runs/demo", resolution: int = 64, seed: int = 0, progress: bool = True, **train_kwargs) -> dict:
    """Writes to `out`: checkpoint, stats.jsonl, samples.png (unseen test captions: real vs
    generated), loss.png and metrics.json. `train_kwargs` go to `training_loop`."""
    started = time.perf_counter()
    out = Path(out)
    data = make_demo_data(resolution, seed)
    encoder = build_text_encoder(train_kwargs.pop("text_encoder", "all-minilm-l6-v2"))
    # The demo replaces its own earlier output in `out`.
    checkpoint = training_loop(data, out, seed=seed, progress=progress, text_encoder_instance=encoder, overwrite=True, **train_kwargs)
    train_seconds = time.perf_counter() - started
    ckpt = load_checkpoint(checkpoint)
    generator = generator_from_checkpoint(ckpt)

    metrics = {}
    for split in ("test", "train"):
        part = data.subset(split)
        first_captions = [c[0] for c in part.captions]
        generated = generate(generator, encode_unique(encoder, first_captions), precision=ckpt["config"]["precision"])
        metrics[split] = colour_accuracy(generated, part)
        if split == "test":  # two examples (small, upper left; large, centre) of each unseen pair
            wanted = {("small", "upper left"), ("large", "center")}
            pick, seen = [], set()
            for i, (label, a) in enumerate(zip(part.labels, part.attributes)):
                key = (label, a["size"], a["position"])
                if (a["size"], a["position"]) in wanted and key not in seen:
                    seen.add(key)
                    pick.append(i)
            captioned_grid(
                [("real", part.images[pick].float() / 255), ("generated", generated[pick, 0])],
                [first_captions[i] for i in pick], out / "samples.png",
                title="Unseen colour-shape pairs (zero-shot test classes): real images and SDN's drawings of their captions",
            )
    loss_plot(ckpt["history"], out / "loss.png")
    report = {
        "colour_accuracy_test_unseen_pairs": metrics["test"]["colour_accuracy"],
        "colour_accuracy_train": metrics["train"]["colour_accuracy"],
        "details": metrics,
        "test_images": len(data.subset("test")),
        "train_images": len(data.subset("train")),
        "train_seconds": round(train_seconds, 1),
        "wall_seconds": round(time.perf_counter() - started, 1),
        "device": str(next(generator.parameters()).device),
        "torch_threads": torch.get_num_threads(),
        "config": ckpt["config"],
        "metric_definition": " ".join(colour_accuracy.__doc__.split("Demo data only:")[1].split()),
    }
    (out / "metrics.json").write_text(json.dumps(report, indent=2))
    return report
