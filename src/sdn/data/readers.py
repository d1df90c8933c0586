"""Readers for datasets in their published layouts. Each returns `Record`s and reports problems.

- oxford102: `jpg/image_XXXXX.jpg`, Reed's `text_c10/class_XXXXX/image_XXXXX.txt` (10 captions a
  file), `trainvalclasses.txt` / `testclasses.txt`.
- cub: `CUB_200_2011/images/<class>/<name>.jpg`, `text_c10/<class>/<name>.txt`, the same class lists.
- stackgan: the split, image names and classes from StackGAN's `<split>/filenames.pickle` and
  `<split>/class_info.pickle`, captions from AttnGAN's `captions.pickle` where present (else from
  `text_c10/`), images from `jpg/` (Oxford) or `CUB_200_2011/images/` (CUB); the pickles are found in
  `<root>/stackgan/` or `<root>/`, and read only with the restricted unpickler.
- folder: images plus `captions.jsonl` lines `{"image": ..., "captions": [...], "class": ..., "split": ...}`
  (`split` optional: without it every fifth class, in sorted order, is a test class).

A problem (missing caption file, caption count != 10, undecodable text, image with no class, class
with no images...) is recorded with its path; the item is skipped, or with `strict` the read stops.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from sdn.errors import UserError

CAPTIONS_PER_IMAGE = 10


@dataclass
class Record:
    image: Path
    captions: list[str]
    label: str
    split: str


class Problems:
    """Collects (path, what) pairs; in strict mode the first one is fatal."""

    def __init__(self, strict: bool = False):
        self.strict, self.items = strict, []

    def add(self, path, what: str, skipped: bool = True) -> None:
        if self.strict:
            raise UserError(f"{path}: {what} (--strict)")
        self.items.append({"path": str(path), "problem": what, "skipped": skipped})

    @property
    def skipped(self) -> int:
        return sum(p["skipped"] for p in self.items)


def read_caption_file(path: Path, problems: Problems) -> list[str] | None:
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        problems.add(path, "missing caption file")
        return None
    except UnicodeDecodeError as e:
        problems.add(path, f"not UTF-8 text (byte {e.start})")
        return None
    lines = [" ".join(l.split()) for l in text.splitlines()]
    captions = [l for l in lines if l]
    if len(captions) != len(lines) and len(captions) == CAPTIONS_PER_IMAGE:
        problems.add(path, f"{len(lines) - len(captions)} blank line(s) ignored", skipped=False)
    if len(captions) != CAPTIONS_PER_IMAGE:
        problems.add(path, f"{len(captions)} captions instead of {CAPTIONS_PER_IMAGE}")
        return None
    return captions


def _split_lists(root: Path) -> dict[str, str]:
    split = {}
    for name, part in (("trainvalclasses.txt", "train"), ("testclasses.txt", "test")):
        path = root / name
        if not path.is_file():
            raise UserError(f"split file not found: {path}")
        for line in path.read_text(encoding="utf-8", errors="replace").split():
            split[line.strip()] = part
    return split


def _read_reed(root: Path, image_of, problems: Problems) -> list[Record]:
    """Reed's layout: one caption file per image under text_c10/<class>/; image_of(class, stem)."""
    if not root.is_dir():
        raise UserError(f"dataset root not found: {root}")
    text_root = root / "text_c10"
    if not text_root.is_dir():
        raise UserError(f"caption folder not found: {text_root}")
    split = _split_lists(root)
    records, seen_images = [], set()
    for cls in sorted(split):
        folder = text_root / cls
        files = sorted(folder.glob("*.txt")) if folder.is_dir() else []
        if not files:
            problems.add(folder, f"class {cls} in the split files has no images", skipped=False)
            continue
        for txt in files:
            image = image_of(cls, txt.stem)
            seen_images.add(image.resolve())
            if not image.is_file():
                problems.add(image, "image file missing for caption file")
                continue
            captions = read_caption_file(txt, problems)
            if captions is not None:
                records.append(Record(image, captions, cls, split[cls]))
    return records, seen_images


def read_oxford102(root: str | Path, problems: Problems) -> list[Record]:
    root = Path(root)
    records, seen = _read_reed(root, lambda cls, stem: root / "jpg" / f"{stem}.jpg", problems)
    for image in sorted((root / "jpg").glob("*.jpg")):
        if image.resolve() not in seen:
            problems.add(image, "image has no caption file in any split class (no class)")
    return records


def read_cub(root: str | Path, problems: Problems) -> list[Record]:
    root = Path(root)
    images = root / "CUB_200_2011" / "images"
    if not images.is_dir():
        raise UserError(f"CUB image folder not found: {images}")
    records, seen = _read_reed(root, lambda cls, stem: images / cls / f"{stem}.jpg", problems)
    for image in sorted(images.glob("*/*.jpg")):
        if image.resolve() not in seen:
            problems.add(image, "image has no caption file in any split class (no class)")
    return records


def read_folder(root: str | Path, problems: Problems) -> list[Record]:
    root = Path(root)
    index = root / "captions.jsonl"
    if not index.is_file():
        raise UserError(f"{index} not found: a folder dataset needs one JSON line per image")
    rows = []
    for n, line in enumerate(index.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            image, captions, label = root / row["image"], [" ".join(c.split()) for c in row["captions"]], str(row["class"])
        except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as e:
            problems.add(f"{index}:{n}", f"bad line ({type(e).__name__})")
            continue
        captions = [c for c in captions if c]
        if not captions:
            problems.add(f"{index}:{n}", "no non-empty caption")
        elif not image.is_file():
            problems.add(image, "image file missing")
        else:
            rows.append((image, captions, label, row.get("split")))
    if not rows:
        return []
    per_image = max(len(c) for _, c, _, _ in rows)
    classes = sorted({r[2] for r in rows})
    test = {c for i, c in enumerate(classes) if i % 5 == 4}
    records = []
    for image, captions, label, split in rows:
        if len(captions) < per_image:  # training needs the same count per image: cycle the captions
            captions = [captions[i % len(captions)] for i in range(per_image)]
        records.append(Record(image, captions, label, split or ("test" if label in test else "train")))
    return records


def read_stackgan(root: str | Path, problems: Problems) -> list[Record]:
    from sdn.data.safe_pickle import safe_load

    root = Path(root)
    if not root.is_dir():
        raise UserError(f"dataset root not found: {root}")
    pickles = root / "stackgan" if (root / "stackgan" / "train" / "filenames.pickle").is_file() else root
    if not (pickles / "train" / "filenames.pickle").is_file():
        raise UserError(f"StackGAN's train/filenames.pickle not found under {root} or {root / 'stackgan'}")
    attngan = safe_load(pickles / "captions.pickle") if (pickles / "captions.pickle").is_file() else None
    records = []
    for k, split in enumerate(("train", "test")):
        names = safe_load(pickles / split / "filenames.pickle")
        classes = safe_load(pickles / split / "class_info.pickle")
        if len(classes) != len(names):
            raise UserError(f"{pickles / split}: {len(names)} file names but {len(classes)} class ids")
        tokens = attngan[k] if attngan is not None else None
        if tokens is not None and len(tokens) != CAPTIONS_PER_IMAGE * len(names):
            raise UserError(f"{pickles / 'captions.pickle'}: {len(tokens)} {split} captions for {len(names)} images")
        for i, (name, cls) in enumerate(zip(names, classes)):
            name = str(name)
            label = f"class_{int(cls):05d}"
            image = root / "jpg" / f"{name}.jpg"
            if not image.is_file():
                image = root / "CUB_200_2011" / "images" / f"{name}.jpg"
            if not image.is_file():
                problems.add(image, "image file missing")
                continue
            if tokens is not None:  # AttnGAN's captions are tokenised: words joined back with spaces
                captions = [" ".join(attngan[2][t] for t in toks) for toks in tokens[i * CAPTIONS_PER_IMAGE:(i + 1) * CAPTIONS_PER_IMAGE]]
            else:
                folder = label if (root / "text_c10" / label).is_dir() else Path(name).parent.name
                captions = read_caption_file(root / "text_c10" / folder / f"{Path(name).name}.txt", problems)
                if captions is None:
                    continue
            records.append(Record(image, captions, label, split))
    return records


READERS = {"oxford102": read_oxford102, "cub": read_cub, "stackgan": read_stackgan, "folder": read_folder}
