"""What limits the demo's generator, measured without the teacher: train the demo's mirrored
generator (EfficientNet-Lite0's mirror, 64 px, fc 1024, batch 12, Adam) on the image term alone for a
fixed number of steps, with one thing changed, and score colour, shape and position on unseen and
training pairs (first captions) with the package's shape classifier. Appends one JSON line and draws
`<out>/<name>.png`.

    OMP_NUM_THREADS=1 python benchmarks/demo_generator_probe.py base
    OMP_NUM_THREADS=1 python benchmarks/demo_generator_probe.py oracle --condition attributes
    OMP_NUM_THREADS=1 python benchmarks/demo_generator_probe.py wide4 --width 4
    OMP_NUM_THREADS=1 python benchmarks/demo_generator_probe.py flat --flat-background
    OMP_NUM_THREADS=1 python benchmarks/demo_generator_probe.py l2 --distance l2
    OMP_NUM_THREADS=1 python benchmarks/demo_generator_probe.py ema --ema 0.998

--condition attributes feeds G a one-hot of the caption's colour, shape, size and position instead of
the caption's MiniLM vector (an oracle text encoder: what G does when the caption's meaning is given);
--width multiplies every convolution's channels (the mirror of a mobile network is narrow: 16-40
channels at 8-32 px); --flat-background paints every training image's background mid-grey (the
caption never says the background, so its pixels are noise to an image loss)."""

from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path

import torch
from measure import append_result

from sdn.data.demo_data import COLOURS, POSITIONS, SHAPES, SIZES, make_demo_data
from sdn.evaluation.demo_scores import score
from sdn.evaluation.plots import captioned_grid
from sdn.networks.generator import Generator
from sdn.networks.shape_classifier import load_or_train
from sdn.networks.teachers import EFFICIENTNET_LITE0_TAPS, Tap
from sdn.networks.text import build_text_encoder, encode_unique
from sdn.sampling import Sampler
from sdn.utils import autocast

ATTRIBUTES = (("colour", list(COLOURS)), ("shape", list(SHAPES)), ("size", list(SIZES)), ("position", [p[0] for p in POSITIONS]))


def attribute_vectors(attributes: list[dict]) -> torch.Tensor:
    """One-hot colour, shape, size and position, concatenated (21 values)."""
    out = torch.zeros(len(attributes), sum(len(v) for _, v in ATTRIBUTES))
    for i, a in enumerate(attributes):
        offset = 0
        for key, values in ATTRIBUTES:
            out[i, offset + values.index(a[key])] = 1
            offset += len(values)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("name")
    p.add_argument("--steps", type=int, default=2600, help="2,592 steps of batch 12 = the demo's 32 epochs")
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--pixel-weight", type=float, default=50.0)
    p.add_argument("--condition", choices=["caption", "attributes"], default="caption")
    p.add_argument("--width", type=float, default=1.0)
    p.add_argument("--flat-background", action="store_true")
    p.add_argument("--distance", choices=["l1", "l2"], default="l1")
    p.add_argument("--ema", type=float, default=0.0, help="draw with an exponential moving average of the weights (0: off)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/demo-probe")
    p.add_argument("--results", default="benchmarks/results/demo-generator-probe.jsonl")
    a = p.parse_args()
    torch.manual_seed(a.seed)
    data = make_demo_data(64, a.seed)
    train, test = data.subset("train"), data.subset("test")
    encoder = build_text_encoder("all-minilm-l6-v2")
    if a.condition == "attributes":
        conditions = attribute_vectors(train.attributes)[:, None]
        condition_of = lambda part: attribute_vectors(part.attributes)
    else:
        conditions = encode_unique(encoder, [c for cs in train.captions for c in cs]).view(len(train), -1, 384)
        condition_of = lambda part: encode_unique(encoder, [c[0] for c in part.captions])
    taps = tuple(t if t.name == "head" else Tap(t.name, round(t.channels * a.width), t.stride) for t in EFFICIENTNET_LITE0_TAPS)
    generator = Generator(taps, 64, conditions.shape[-1], fc_dim=1024, matmul_convs=True)
    generator.set_text_statistics(conditions.flatten(0, 1))
    optimizer = torch.optim.Adam(generator.parameters(), lr=a.lr)
    average = copy.deepcopy(generator) if a.ema else None
    real = train.images.float() / 255
    if a.flat_background:
        real = torch.where(train.masks[:, None].bool(), real, torch.full_like(real, 0.5))
    started = time.perf_counter()
    for step in range(a.steps):
        rows = torch.randint(len(real), (12,))
        which = torch.randint(conditions.shape[1], (12,))
        with autocast(torch.device("cpu"), "bf16"):
            images, _ = generator(conditions[rows, which])
        diff = images[:, 0].float() - real[rows]
        loss = a.pixel_weight * (diff.abs() if a.distance == "l1" else diff.square()).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if average is not None:
            with torch.no_grad():
                for slow, fast in zip(average.parameters(), generator.parameters()):
                    slow.lerp_(fast, 1 - a.ema)
    seconds = time.perf_counter() - started
    drawer = (average or generator).eval()
    classifier, _ = load_or_train()
    sampler = Sampler(drawer, "bf16")
    row = {"name": a.name, "steps": a.steps, "lr": a.lr, "condition": a.condition, "width": a.width,
           "flat_background": a.flat_background, "distance": a.distance, "ema": a.ema, "seed": a.seed,
           "parameters_m": round(sum(p.numel() for p in generator.parameters()) / 1e6, 1), "train_seconds": round(seconds)}
    for part_name, part in (("unseen_pairs", test), ("training_pairs", train)):
        drawn = sampler(condition_of(part))
        figures = score(drawn, part, classifier)
        row.update({f"{part_name}/{m}": figures[m] for m in ("colour", "shape", "position")})
        if part_name == "unseen_pairs":
            pick = list(range(0, len(part), 27))[:12]
            Path(a.out).mkdir(parents=True, exist_ok=True)
            captioned_grid([("real", part.images[pick].float() / 255), ("drawn", drawn[pick, 0])], [part.captions[i][0] for i in pick],
                           Path(a.out) / f"{a.name}.png", title=f"{a.name}: unseen pairs")
    append_result(a.results, row)


if __name__ == "__main__":
    main()
