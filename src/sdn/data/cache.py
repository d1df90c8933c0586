"""`sdn data prepare`: read a dataset once, write a cache that training and evaluation read instead.

A cache is a folder:
    images.npy          uint8 (N, 3, S, S), memory-mapped on read (whole image resized, no crop)
    meta.json           captions, class labels, split, and the manifest (counts, settings, source,
                        every problem met and what was done about it)
    embeddings/<encoder>.npy   float32 (N, captions per image, dim), one file per text encoder

It is built in a temporary folder beside the target and renamed into place when complete, so an
interrupted run never leaves a cache that looks complete; rerun, it starts over. Embeddings for a
new encoder are added to an existing cache the same way (temporary file, then rename).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from sdn.data.captioned_images import CaptionedImages
from sdn.data.readers import READERS, Problems, Record
from sdn.errors import UserError
from sdn.networks.teachers import check_resolution
from sdn.networks.text import TextEncoder, encode_unique
from sdn.utils import atomic_write

FORMAT = "sdn-cache-1"


def load_image(path: Path, size: int) -> np.ndarray:
    """Any mode (grayscale, CMYK, palette, alpha) to RGB, resized whole to size x size."""
    with Image.open(path) as im:
        im.load()  # decode now: a truncated file fails here, not later
        if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
            background = Image.new("RGB", im.size, (255, 255, 255))
            background.paste(im.convert("RGBA"), mask=im.convert("RGBA").getchannel("A"))
            im = background
        im = im.convert("RGB").resize((size, size), Image.BICUBIC, reducing_gap=3.0)
        return np.array(im).transpose(2, 0, 1)  # a writable copy


def prepare(dataset: str, root: str | Path, out: str | Path, size: int = 64, strict: bool = False,
            encoder: TextEncoder | None = None, progress: bool = True) -> Path:
    """Build the cache at `out` (an existing complete cache is left alone and reused)."""
    check_resolution(size)
    if dataset not in READERS:
        raise UserError(f"unknown dataset {dataset!r}; choose from {', '.join(READERS)}")
    out = Path(out)
    if (out / "meta.json").is_file():
        meta = json.loads((out / "meta.json").read_text())
        if meta["manifest"]["size"] != size or meta["manifest"]["dataset"] != dataset:
            raise UserError(f"{out} already holds a different cache ({meta['manifest']['dataset']}, {meta['manifest']['size']} px)")
    else:
        _build(dataset, Path(root), out, size, strict, progress)
    if encoder is not None:
        add_embeddings(out, encoder)
    return out


def _build(dataset: str, root: Path, out: Path, size: int, strict: bool, progress: bool) -> None:
    started = time.perf_counter()
    problems = Problems(strict)
    records: list[Record] = READERS[dataset](root, problems)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".{out.name}.partial")
        shutil.rmtree(tmp, ignore_errors=True)  # left by an interrupted run
        tmp.mkdir()
    except OSError as e:
        raise UserError(f"cannot write the cache at {out}: {e.strerror or e}") from None
    images = np.lib.format.open_memmap(tmp / "images.npy", mode="w+", dtype=np.uint8, shape=(len(records), 3, size, size))
    kept = []
    for rec in tqdm(records, desc=f"prepare {dataset} {size}px", unit="img", disable=not progress):
        try:
            images[len(kept)] = load_image(rec.image, size)
        except Exception as e:  # corrupt or truncated JPEG, not an image at all
            problems.add(rec.image, f"unreadable image ({type(e).__name__})")
            continue
        kept.append(rec)
    images.flush()
    del images
    if len(kept) < len(records):  # shrink the array to the images kept
        full = np.load(tmp / "images.npy", mmap_mode="r")
        np.save(tmp / "images.kept.npy", full[: len(kept)])
        del full
        os.replace(tmp / "images.kept.npy", tmp / "images.npy")
    if not kept:
        shutil.rmtree(tmp, ignore_errors=True)
        raise UserError(f"no usable images under {root} ({len(problems.items)} problems, first: {problems.items[:1]})")
    counts = {s: sum(r.split == s for r in kept) for s in ("train", "test")}
    manifest = {
        "format": FORMAT, "dataset": dataset, "source": str(root.resolve()), "size": size,
        "resize": "whole image to size x size, bicubic, no crop", "images": len(kept), "split_counts": counts,
        "classes": {s: len({r.label for r in kept if r.split == s}) for s in ("train", "test")},
        "captions_per_image": len(kept[0].captions), "skipped": problems.skipped,
        "problems": problems.items, "seconds": round(time.perf_counter() - started, 1),
    }
    meta = {"manifest": manifest, "images": [r.image.name for r in kept], "captions": [r.captions for r in kept],
            "labels": [r.label for r in kept], "split": [r.split for r in kept]}
    (tmp / "meta.json").write_text(json.dumps(meta))
    (tmp / "embeddings").mkdir()
    if out.exists():
        shutil.rmtree(out)  # an incomplete folder without meta.json: nothing complete is lost
    os.replace(tmp, out)


def add_embeddings(cache: str | Path, encoder: TextEncoder) -> Path:
    cache = Path(cache)
    path = cache / "embeddings" / f"{encoder.name}.npy"
    if path.is_file():
        return path
    meta = json.loads((cache / "meta.json").read_text())
    flat = [c for caps in meta["captions"] for c in caps]
    emb = encode_unique(encoder, flat).view(len(meta["captions"]), -1, encoder.dim).numpy()
    atomic_write(path, lambda f: np.save(f, emb))
    return path


def add_stackgan_embeddings(cache: str | Path, stackgan_dir: str | Path) -> Path:
    """Import StackGAN's precomputed char-CNN-RNN caption embeddings (`<split>/filenames.pickle` and
    `<split>/char-CNN-RNN-embeddings.pickle`, read with the restricted unpickler) into the cache,
    aligned with its images by file name."""
    from sdn.data.safe_pickle import safe_load
    from sdn.networks.text import CharCnnRnnPickle

    cache, stackgan_dir = Path(cache), Path(stackgan_dir)
    meta = json.loads((cache / "meta.json").read_text())
    table = {}
    for split in ("train", "test"):
        names_path, emb_path = stackgan_dir / split / "filenames.pickle", stackgan_dir / split / "char-CNN-RNN-embeddings.pickle"
        if not emb_path.is_file():
            raise UserError(f"{emb_path} not found (StackGAN's char-CNN-RNN embeddings)")
        names, emb = safe_load(names_path), np.asarray(safe_load(emb_path), dtype=np.float32)
        if emb.ndim != 3 or len(emb) != len(names) or emb.shape[2] != CharCnnRnnPickle.dim:
            raise UserError(f"{emb_path}: expected ({len(names)}, captions, {CharCnnRnnPickle.dim}) embeddings, got {emb.shape}")
        table.update({Path(str(n)).name: e for n, e in zip(names, emb)})
    missing = [name for name in meta["images"] if Path(name).stem not in table]
    if missing:
        raise UserError(f"{len(missing)} cached image(s) have no char-CNN-RNN embedding in {stackgan_dir}, e.g. {missing[0]}")
    per_image = min(len(table[Path(n).stem]) for n in meta["images"])
    out = np.stack([table[Path(n).stem][:per_image] for n in meta["images"]])
    path = cache / "embeddings" / f"{CharCnnRnnPickle.name}.npy"
    atomic_write(path, lambda f: np.save(f, out))
    return path


def load_cache(cache: str | Path, encoder_name: str | None = None) -> CaptionedImages:
    cache = Path(cache)
    if not (cache / "meta.json").is_file():
        raise UserError(f"{cache} is not a prepared cache (run `sdn data prepare` first)")
    meta = json.loads((cache / "meta.json").read_text())
    images = torch.from_numpy(np.load(cache / "images.npy", mmap_mode="c"))
    embeddings = None
    if encoder_name is not None and (cache / "embeddings" / f"{encoder_name}.npy").is_file():
        embeddings = torch.from_numpy(np.load(cache / "embeddings" / f"{encoder_name}.npy", mmap_mode="c"))
    return CaptionedImages(images=images, captions=meta["captions"], labels=meta["labels"], split=meta["split"],
                           embeddings=embeddings, embeddings_name=encoder_name if embeddings is not None else None)
