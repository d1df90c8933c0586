"""Evaluation throughput: images/s for drawing and for each metric's feature extraction.

    python benchmarks/eval_throughput.py [--cache data/oxford102-64] [--images 256]

Uses the Oxford-102 cache when there is one (`sdn data prepare --dataset oxford102 ... --size 64
--out data/oxford102-64`), else random images of the same size; the generator is a randomly
initialised one of the demo's size (speed does not depend on training). One run, one machine:
compare the rows with each other, not with another run."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from sdn.data.captioned_images import CaptionedImages
from sdn.evaluation.evaluate import draw_all
from sdn.evaluation.metrics import METRICS, EvalContext
from sdn.networks.classifiers import FidInception, build_classifier, extract
from sdn.networks.generator import Generator
from sdn.networks.teachers import teacher_taps


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache", default="data/oxford102-64")
    ap.add_argument("--images", type=int, default=256, help="images per measurement")
    ap.add_argument("--resolution", type=int, default=64, help="when no cache is found")
    ap.add_argument("--batch-size", type=int, default=64)
    a = ap.parse_args()
    if Path(a.cache, "meta.json").is_file():
        from sdn.data.cache import load_cache

        data = load_cache(a.cache, "all-minilm-l6-v2").subset("test")
        source = f"{a.cache} (test split)"
        idx = torch.arange(min(a.images, len(data)))
        data = CaptionedImages(images=data.images[idx], captions=[data.captions[i] for i in idx], labels=[data.labels[i] for i in idx],
                               split=["test"] * len(idx), embeddings=data.embeddings[idx], embeddings_name=data.embeddings_name)
    else:
        n, r = a.images, a.resolution
        data = CaptionedImages(images=torch.randint(0, 256, (n, 3, r, r), dtype=torch.uint8), captions=[["x"]] * n, labels=["x"] * n,
                               split=["test"] * n, embeddings=torch.randn(n, 1, 384))
        source = f"random {r} px images (no cache at {a.cache})"
    n = len(data)
    print(f"{n} images from {source}, {torch.get_num_threads()} threads, batch {a.batch_size}\n")
    generator = Generator(teacher_taps("efficientnet-lite0"), data.resolution, data.embeddings.shape[-1], 1024, 1)
    rows = []
    generated, s = timed(lambda: draw_all(generator, data, 1, a.batch_size, precision="bf16"))
    rows.append(("drawing (generator, bf16)", n / s))
    generated_fp32, s = timed(lambda: draw_all(generator, data, 1, a.batch_size, precision="fp32"))
    rows.append(("drawing (generator, fp32)", n / s))
    ctx = EvalContext(generated, data, batch_size=a.batch_size)
    for name in ("ssim", "fsim"):
        _, s = timed(lambda: METRICS[name].fn(ctx))
        rows.append((f"{name.upper()} (piq, paired, {data.resolution} px)", n / s))
    for name in ("efficientnet-lite0",):
        net = build_classifier(name)
        _, s = timed(lambda: extract(net, data.images, a.batch_size))
        rows.append((f"IS / retrieval features: {name} at {net.input_size} px, fp32", n / s))
        _, s = timed(lambda: extract(net, data.images, a.batch_size, precision="bf16"))
        rows.append((f"IS / retrieval features: {name} at {net.input_size} px, bf16", n / s))
    fid_net = FidInception()
    _, s = timed(lambda: extract(fid_net, data.images, a.batch_size))
    rows.append(("FID features: TF Inception-v3 at 299 px, fp32", n / s))
    _, s = timed(lambda: extract(fid_net, data.images, a.batch_size, precision="bf16"))
    rows.append(("FID features: TF Inception-v3 at 299 px, bf16 (not used)", n / s))
    print("| stage | images/s |\n| --- | --- |")
    for name, rate in rows:
        print(f"| {name} | {rate:,.1f} |")


if __name__ == "__main__":
    main()
