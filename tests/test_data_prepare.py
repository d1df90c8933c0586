import json
import pickle

import numpy as np
import pytest
from PIL import Image

from sdn.cli import main
from sdn.data.cache import load_cache, prepare
from sdn.data.readers import Problems, read_oxford102
from sdn.data.safe_pickle import safe_load
from sdn.errors import UserError

CAPTIONS = [f"this flower has {i} petals" for i in range(10)]


def _jpeg(path, mode="RGB", size=(40, 30), fmt="JPEG"):
    colour = {"RGB": (200, 30, 30), "L": 120, "CMYK": (0, 200, 200, 0), "RGBA": (0, 0, 255, 128), "P": 3}[mode]
    Image.new(mode, size, colour).save(path, fmt)


@pytest.fixture
def oxford_like(tmp_path):
    """A small Oxford-102 layout with one of every kind of bad input."""
    root = tmp_path / "oxford"
    (root / "jpg").mkdir(parents=True)
    for cls in ("class_00001", "class_00002"):
        (root / "text_c10" / cls).mkdir(parents=True)
    (root / "trainvalclasses.txt").write_text("class_00002\n")
    (root / "testclasses.txt").write_text("class_00001\nclass_00003\n")  # class_00003 has no images

    def item(n, cls, captions=CAPTIONS, mode="RGB", fmt="JPEG", raw_text=None):
        _jpeg(root / "jpg" / f"image_{n:05d}.jpg", mode, fmt=fmt)
        txt = root / "text_c10" / cls / f"image_{n:05d}.txt"
        txt.write_bytes(raw_text if raw_text is not None else "\n".join(captions).encode() + b"\n")

    item(1, "class_00001")
    item(2, "class_00001", mode="L")  # grayscale
    item(3, "class_00001", mode="CMYK")
    item(4, "class_00002", mode="P", fmt="PNG")  # palette (PNG bytes under a .jpg name)
    item(5, "class_00002", mode="RGBA", fmt="PNG")  # alpha
    item(6, "class_00002", raw_text="\n\n".join(CAPTIONS).encode() + b"\n\n")  # blank lines: kept
    item(7, "class_00002", captions=CAPTIONS[:9])  # 9 captions: skipped
    item(8, "class_00002", captions=CAPTIONS + ["an eleventh"])  # 11 captions: skipped
    item(9, "class_00002", raw_text=b"\xff\xfe not utf-8 \x80\n" * 10)  # not UTF-8: skipped
    item(10, "class_00002")
    (root / "jpg" / "image_00010.jpg").write_bytes(b"not a jpeg at all")  # corrupt: skipped
    item(11, "class_00002")
    good = (root / "jpg" / "image_00011.jpg").read_bytes()
    (root / "jpg" / "image_00011.jpg").write_bytes(good[: len(good) // 2])  # truncated: skipped
    _jpeg(root / "jpg" / "image_00012.jpg")  # an image with no caption file, so no class: skipped
    return root


def test_prepare_converts_odd_images_and_skips_and_reports_bad_items(oxford_like, tmp_path):
    out = prepare("oxford102", oxford_like, tmp_path / "cache", size=32, progress=False)
    meta = json.loads((out / "meta.json").read_text())
    m = meta["manifest"]
    assert meta["images"] == [f"image_{n:05d}.jpg" for n in (1, 2, 3, 4, 5, 6)]
    assert m["split_counts"] == {"train": 3, "test": 3} and m["captions_per_image"] == 10
    problems = {p["path"].split("/")[-1]: p for p in m["problems"]}
    for name in ("image_00007.txt", "image_00008.txt", "image_00009.txt", "image_00010.jpg", "image_00011.jpg", "image_00012.jpg"):
        assert problems[name]["skipped"], name
    assert not problems["image_00006.txt"]["skipped"] and not problems["class_00003"]["skipped"]
    assert m["skipped"] == 6
    data = load_cache(out)
    assert data.images.shape == (6, 3, 32, 32) and data.images.dtype.is_floating_point is False
    assert data.images[1].float().std(0).max() == 0  # grayscale became equal R, G, B
    assert data.captions[5] == CAPTIONS
    assert set(data.subset("train").labels).isdisjoint(data.subset("test").labels)


def test_strict_stops_at_the_first_problem_and_leaves_no_cache(oxford_like, tmp_path):
    with pytest.raises(UserError, match="--strict"):
        prepare("oxford102", oxford_like, tmp_path / "cache", size=32, strict=True, progress=False)
    assert not (tmp_path / "cache").exists()


def test_interrupted_prepare_leaves_nothing_that_looks_complete(oxford_like, tmp_path, monkeypatch):
    import sdn.data.cache

    calls = {"n": 0}
    real = sdn.data.cache.load_image

    def dying(path, size):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(path, size)

    monkeypatch.setattr(sdn.data.cache, "load_image", dying)
    with pytest.raises(KeyboardInterrupt):
        prepare("oxford102", oxford_like, tmp_path / "cache", size=32, progress=False)
    assert not (tmp_path / "cache" / "meta.json").exists()
    with pytest.raises(UserError, match="not a prepared cache"):
        load_cache(tmp_path / "cache")
    monkeypatch.setattr(sdn.data.cache, "load_image", real)
    out = prepare("oxford102", oxford_like, tmp_path / "cache", size=32, progress=False)  # rerun finishes
    assert load_cache(out).images.shape[0] == 6


@pytest.mark.parametrize("breakage,match", [
    (lambda r: (r / "testclasses.txt").unlink(), "split file not found"),
    (lambda r: __import__("shutil").rmtree(r), "dataset root not found"),
])
def test_missing_root_or_split_file_is_one_clear_error(oxford_like, tmp_path, breakage, match):
    breakage(oxford_like)
    assert main(["data", "prepare", "--dataset", "oxford102", "--root", str(oxford_like), "--out", str(tmp_path / "c"),
                 "--size", "32", "--text-encoder", "none", "--no-progress"]) == 2
    with pytest.raises(UserError, match=match):
        read_oxford102(oxford_like, Problems())


def test_cache_stores_embeddings_per_encoder_and_training_uses_them(oxford_like, tmp_path):
    from conftest import HashEncoder

    out = prepare("oxford102", oxford_like, tmp_path / "cache", size=32, encoder=HashEncoder(), progress=False)
    emb = np.load(out / "embeddings" / "test-hash.npy")
    assert emb.shape == (6, 10, 16)
    data = load_cache(out, "test-hash")
    assert data.embeddings_name == "test-hash" and data.subset("test").embeddings.shape == (3, 10, 16)


def test_restricted_unpickler_reads_data_and_refuses_code(tmp_path):
    plain = tmp_path / "filenames.pickle"
    plain.write_bytes(pickle.dumps({"names": ["image_00001"], "ids": [1, 2.5], "emb": np.ones((2, 3), np.float32)}, protocol=2))
    loaded = safe_load(plain)
    assert loaded["names"] == ["image_00001"] and loaded["emb"].shape == (2, 3)

    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (__import__("os").system, (f"touch {marker}",))

    evil = tmp_path / "evil.pickle"
    evil.write_bytes(pickle.dumps([1, Evil()]))
    with pytest.raises(UserError, match="refused global (posix|os).system"):
        safe_load(evil)
    assert not marker.exists()


def test_oxford102_published_layout_counts(oxford_root, tmp_path):
    out = prepare("oxford102", oxford_root, tmp_path / "ox64", size=64, progress=False)
    m = json.loads((out / "meta.json").read_text())["manifest"]
    assert m["split_counts"] == {"train": 7034, "test": 1155}
    assert m["classes"] == {"train": 82, "test": 20} and m["captions_per_image"] == 10 and m["skipped"] == 0
    data = load_cache(out)
    assert data.images.shape == (8189, 3, 64, 64)
    assert all(len(c) == 10 for c in data.captions)


def test_stackgan_pickles_of_the_shared_data_load_safely(oxford_root):
    names = safe_load(oxford_root / "stackgan" / "test" / "filenames.pickle")
    assert len(names) == 1155 and all(isinstance(n, str) for n in names)


def test_train_and_sample_on_a_prepared_cache(oxford_like, tmp_path):
    from conftest import HashEncoder

    cache = prepare("oxford102", oxford_like, tmp_path / "cache", size=32, encoder=HashEncoder(), progress=False)
    run = tmp_path / "run"
    tiny = ["--fc-dim", "16", "--text-encoder", "test-hash", "--no-progress", "--teacher", "efficientnet-lite0"]
    assert main(["train", "--data", str(cache), "--out", str(run), "--stage1-epochs", "1", "--stage2-epochs", "1", *tiny]) == 0
    assert main(["sample", "--checkpoint", str(run), "--data", str(cache), "--count", "3", "--out", str(tmp_path / "g.png")]) == 0
    assert Image.open(tmp_path / "g.png").size[0] > 100
    # a cache of another resolution does not fit the checkpoint
    other = prepare("oxford102", oxford_like, tmp_path / "cache64", size=64, progress=False)
    assert main(["sample", "--checkpoint", str(run), "--data", str(other), "--out", str(tmp_path / "h.png")]) == 2
    assert main(["train", "--data", str(cache), "--size", "64", "--out", str(run), *tiny]) == 2


def test_stackgan_char_cnn_rnn_embeddings_are_imported_and_trained_on(oxford_like, tmp_path):
    cache = prepare("oxford102", oxford_like, tmp_path / "cache", size=32, progress=False)
    names = json.loads((cache / "meta.json").read_text())["images"]
    rng = np.random.default_rng(0)
    stackgan = tmp_path / "stackgan"
    for split, part in (("train", names[3:]), ("test", names[:3])):
        (stackgan / split).mkdir(parents=True)
        (stackgan / split / "filenames.pickle").write_bytes(pickle.dumps([n[:-4] for n in part], protocol=2))
        emb = rng.standard_normal((len(part), 10, 1024)).astype(np.float32)
        (stackgan / split / "char-CNN-RNN-embeddings.pickle").write_bytes(pickle.dumps(emb, protocol=2))
    assert main(["data", "prepare", "--dataset", "oxford102", "--root", str(oxford_like), "--out", str(cache), "--size", "32",
                 "--text-encoder", "none", "--stackgan-dir", str(stackgan), "--no-progress"]) == 0
    assert np.load(cache / "embeddings" / "char-cnn-rnn-pickle.npy").shape == (6, 10, 1024)
    run = tmp_path / "run"
    assert main(["train", "--data", str(cache), "--out", str(run), "--text-encoder", "char-cnn-rnn-pickle", "--fc-dim", "16",
                 "--teacher", "efficientnet-lite0", "--stage1-epochs", "1", "--stage2-epochs", "0", "--no-progress"]) == 0
    assert main(["sample", "--checkpoint", str(run), "--data", str(cache), "--count", "2", "--out", str(tmp_path / "g.png")]) == 0
    # typed sentences cannot be encoded with precomputed embeddings: one clear error
    assert main(["sample", "--checkpoint", str(run), "--text", "a red flower", "--out", str(tmp_path / "h.png")]) == 2


def test_cub_and_folder_layouts(tmp_path):
    cub = tmp_path / "cub"
    for cls, split in (("001.Black_footed_Albatross", "train"), ("002.Laysan_Albatross", "test")):
        (cub / "CUB_200_2011" / "images" / cls).mkdir(parents=True)
        (cub / "text_c10" / cls).mkdir(parents=True)
        for k in range(2):
            _jpeg(cub / "CUB_200_2011" / "images" / cls / f"{cls[4:]}_{k}.jpg")
            (cub / "text_c10" / cls / f"{cls[4:]}_{k}.txt").write_text("\n".join(CAPTIONS))
        with open(cub / ("trainvalclasses.txt" if split == "train" else "testclasses.txt"), "a") as f:
            f.write(cls + "\n")
    m = json.loads((prepare("cub", cub, tmp_path / "c1", size=32, progress=False) / "meta.json").read_text())["manifest"]
    assert m["split_counts"] == {"train": 2, "test": 2} and m["skipped"] == 0

    folder = tmp_path / "mine"
    folder.mkdir()
    lines = []
    for k in range(10):
        _jpeg(folder / f"{k}.jpg")
        lines.append(json.dumps({"image": f"{k}.jpg", "captions": [f"photo {k}", f"picture {k}"], "class": f"c{k % 5}"}))
    lines.append(json.dumps({"image": "missing.jpg", "captions": ["x"], "class": "c0"}))
    lines.append("{not json")
    (folder / "captions.jsonl").write_text("\n".join(lines))
    data = load_cache(prepare("folder", folder, tmp_path / "c2", size=32, progress=False))
    assert len(data) == 10 and sorted(set(data.subset("test").labels)) == ["c4"]  # every fifth class is test
    m = json.loads((tmp_path / "c2" / "meta.json").read_text())["manifest"]
    assert m["skipped"] == 2


def test_stackgan_and_attngan_files_of_the_shared_data(oxford_root, tmp_path):
    from sdn.data.readers import read_stackgan

    records = read_stackgan(oxford_root, Problems(strict=True))
    counts = {s: sum(r.split == s for r in records) for s in ("train", "test")}
    assert counts == {"train": 7034, "test": 1155}
    first = next(r for r in records if r.image.name == "image_00001.jpg")
    assert first.label == "class_00077" and first.captions[0] == "prominent purple stigma petals are white inc olor"
    reed_test = set((oxford_root / "testclasses.txt").read_text().split())
    assert {r.label for r in records if r.split == "test"} == reed_test  # the same class-disjoint split
