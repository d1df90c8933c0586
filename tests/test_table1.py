"""The baselines through the command line (train, sample, interpolate, figure, evaluate), the
wall-clock budget, and `sdn table1` end to end on a tiny cache."""

import dataclasses
import json

import pytest
from conftest import HashEncoder
from test_evaluation import write_cache

from sdn import baselines
from sdn.cli import main
from sdn.data.demo_data import make_demo_data
from sdn.training.checkpoint import load_checkpoint


@pytest.fixture(autouse=True)
def tiny_specs(monkeypatch):
    for name, spec in list(baselines.METHODS.items()):
        monkeypatch.setitem(baselines.METHODS, name, dataclasses.replace(spec, gf_dim=8, df_dim=8, noise_dim=8, text_proj_dim=8, batch_size=8))


@pytest.fixture(scope="module")
def cache(module_tmp):
    """32 px, 48 train and 24 test images of the demo data, test-hash embeddings."""
    from sdn.networks import text

    text.TEXT_ENCODERS.setdefault(HashEncoder.name, HashEncoder)
    full = make_demo_data(32, 0)
    pick = [i for i, s in enumerate(full.split) if s == "train"][::20][:48] + [i for i, s in enumerate(full.split) if s == "test"][::12][:24]
    data = full.take(pick, captions_per_image=2)
    return write_cache(data, module_tmp("table1") / "cache", HashEncoder())


def test_a_gan_baseline_trains_samples_interpolates_and_evaluates_from_the_command_line(cache, tmp_path, capsys):
    run = tmp_path / "gan"
    common = ["--data", str(cache), "--text-encoder", "test-hash", "--no-progress", "--precision", "fp32"]
    assert main(["train", "--method", "gan-int-cls", "--out", str(run), "--epochs", "1", "--n-outputs", "2", *common]) == 0
    ckpt = load_checkpoint(run)
    assert ckpt["config"]["method"] == "gan-int-cls" and ckpt["config"]["batch_size"] == 8 and ckpt["step"] == 6  # 48 // 8 an epoch
    assert main(["sample", "--checkpoint", str(run / "generator.safetensors"), "--text", "a red circle", "--out", str(tmp_path / "s.png")]) == 0
    assert main(["interpolate", "--checkpoint", str(run), "--text", "a red circle", "--text", "a blue square", "--out", str(tmp_path / "i.png")]) == 0
    assert main(["figure", "diverse", "--checkpoint", str(run), "--data", str(cache), "--count", "3", "--out", str(tmp_path / "d.png")]) == 0
    assert main(["evaluate", "--checkpoint", str(run), "--data", str(cache), "--out", str(tmp_path / "eval"), "--metrics", "ssim,variety",
                 "--no-figures", "--no-progress"]) == 0
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())["metrics"]
    assert metrics["collapsed"] is False and metrics["variety"] > 0.1 and 0 < metrics["ssim"] < 1
    for name in ("s.png", "i.png", "d.png"):
        assert (tmp_path / name).stat().st_size > 500
    assert main(["train", "--method", "gan-int-cls", "--out", str(tmp_path / "x"), "--stage1-epochs", "3", *common]) == 2
    assert "takes --epochs" in capsys.readouterr().err


def test_evaluation_flags_a_collapsed_generator(cache, tmp_path, monkeypatch):
    from sdn.baselines.networks import GanIntClsGenerator
    from sdn.evaluation.evaluate import evaluate

    real_draw = GanIntClsGenerator.draw
    monkeypatch.setattr(GanIntClsGenerator, "draw", lambda self, text, noise: real_draw(self, text * 0, noise * 0))
    with pytest.warns(UserWarning):
        assert main(["train", "--method", "gan-int-cls", "--data", str(cache), "--out", str(tmp_path / "run"), "--epochs", "1",
                     "--text-encoder", "test-hash", "--no-progress"]) == 0
    with pytest.warns(UserWarning, match="looks collapsed"):
        result = evaluate(tmp_path / "run", cache, tmp_path / "eval", metrics=("variety",), with_figures=False, progress=False)
    assert result["metrics"]["collapsed"] is True and result["metrics"]["variety"] < 0.01
    assert "COLLAPSED" in (tmp_path / "eval" / "report.html").read_text()


@pytest.mark.parametrize("method", ["sdn", "stackgan1"])
def test_a_budget_stops_training_at_a_step_boundary_with_a_checkpoint(cache, tmp_path, method):
    args = ["train", "--method", method, "--data", str(cache), "--out", str(tmp_path), "--text-encoder", "test-hash", "--no-progress",
            "--max-minutes", "0", "--batch-size", "8"]
    if method == "sdn":
        args += ["--teacher", "efficientnet-lite0", "--fc-dim", "16", "--stage1-epochs", "1", "--stage2-epochs", "1"]
    assert main(args) == 0
    first = load_checkpoint(tmp_path)
    assert first["step"] == 1 and first["position"] == {"epoch": 0, "images": 8} and (tmp_path / "generator.safetensors").is_file()
    assert main([*args, "--resume", "auto"]) == 0  # continues, one more step within a zero budget
    assert load_checkpoint(tmp_path)["step"] == 2


def test_table1_trains_every_method_on_one_budget_and_tabulates(cache, tmp_path):
    from sdn.evaluation.table1 import table1

    out = tmp_path / "t1"
    results = table1(cache, out, budget_minutes=0.02, teacher="efficientnet-lite0", fc_dim=16, text_encoder="test-hash",
                     metrics=("ssim", "fsim", "variety"), progress=False)
    assert set(results) == {"sdn", "gan-int-cls", "stackgan1"}
    text = (out / "table1.md").read_text()
    assert "0.02 minutes of wall time" in text and all(f"| {m} |" in text for m in results)
    for method, r in results.items():
        assert r["train_seconds"] >= 0.02 * 60 and r["row"]["epochs"] < 20, method  # stopped by the budget, not the 100s of epochs
        assert r["row"]["images_per_s"] > 0 and r["row"]["steps"] >= 1
        assert json.loads((out / method / "budget.json").read_text())["done"] is True
    sdn_config = results["sdn"]["config"]
    assert sdn_config["stage2_epochs"] == 100 and sdn_config["stage1_epochs"] <= 100  # Stage II got the second half
    for name in ("table1.json", "table1.png", "report.html"):
        assert (out / name).stat().st_size > 100
    stamp = (out / "gan-int-cls" / "eval" / "metrics.json").stat().st_mtime_ns
    table1(cache, out, budget_minutes=0.02, methods=("gan-int-cls",), text_encoder="test-hash", metrics=("ssim", "fsim", "variety"),
           progress=False)
    assert (out / "gan-int-cls" / "eval" / "metrics.json").stat().st_mtime_ns == stamp  # finished and evaluated: reused


@pytest.mark.parametrize("share", [0, 1, 1.5])
def test_a_stage1_share_outside_zero_to_one_is_refused(tmp_path, share):
    from sdn.errors import UserError
    from sdn.evaluation.table1 import train_within_budget

    with pytest.raises(UserError, match="Stage I share"):
        train_within_budget("sdn", None, tmp_path, 60, {}, {}, stage1_share=share)
