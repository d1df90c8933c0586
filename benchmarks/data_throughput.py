"""Data throughput: `sdn data prepare` (images/s) and the training loader reading batches from the
prepared uint8 cache versus decoding the JPEGs in the loop, on the real Oxford-102 data.

    python benchmarks/data_throughput.py [--root ../shared/data/oxford102] [--size 64] [--images 2000]

Prints one table; both loaders produce the same float batches (B, 3, S, S) in [0, 1].
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

from sdn.data.cache import load_cache, load_image, prepare


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", default=str(Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "oxford102"))
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--images", type=int, default=2000, help="images drawn by each loader")
    ap.add_argument("--batch-size", type=int, default=12)
    a = ap.parse_args()
    root = Path(a.root)
    if not (root / "jpg").is_dir():
        print(f"skipped: the Oxford-102 data is absent at {root}")
        return 0
    tmp = Path(tempfile.mkdtemp(prefix="sdn-bench-"))
    try:
        t = time.perf_counter()
        cache = prepare("oxford102", root, tmp / "cache", a.size, progress=False)
        prepare_s = time.perf_counter() - t
        data = load_cache(cache)
        n_all = len(data)
        paths = [root / "jpg" / name for name in __import__("json").loads((cache / "meta.json").read_text())["images"]]
        order = torch.randperm(n_all, generator=torch.Generator().manual_seed(0))[: a.images]

        def from_cache():
            for i in range(0, len(order), a.batch_size):
                yield data.images[order[i : i + a.batch_size]].float() / 255

        def from_jpeg():
            for i in range(0, len(order), a.batch_size):
                idx = order[i : i + a.batch_size].tolist()
                yield torch.stack([torch.from_numpy(load_image(paths[j], a.size)) for j in idx]).float() / 255

        rows = [("prepare (decode + resize + write, all images)", n_all / prepare_s)]
        for name, loader in (("loader: uint8 cache, memory-mapped", from_cache), ("loader: decode JPEG in the loop", from_jpeg)):
            t = time.perf_counter()
            count = sum(len(b) for b in loader())
            rows.append((name, count / (time.perf_counter() - t)))
        print(f"Oxford-102, {a.size} px, batch {a.batch_size}, {torch.get_num_threads()} threads")
        print(f"| {'what':48s} | images/s |\n|{'-' * 50}|----------|")
        for name, rate in rows:
            print(f"| {name:48s} | {rate:8.0f} |")
        print(f"cache loader / JPEG loader: {rows[1][1] / rows[2][1]:.0f}x")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
