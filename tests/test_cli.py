"""The `sdn` command end to end on a tiny configuration, and every bad input of issue 2."""

import json
import os
import subprocess
import sys

import pytest
import torch

from sdn.cli import main

TINY = ["--size", "32", "--fc-dim", "32", "--text-encoder", "test-hash", "--no-progress", "--batch-size", "32"]


@pytest.fixture(scope="module")
def demo_run(module_tmp):
    out = module_tmp("demo")
    from _pytest.monkeypatch import MonkeyPatch

    from conftest import HashEncoder
    from sdn.networks import text

    from sdn.networks import shape_classifier

    mp = MonkeyPatch()
    mp.setitem(text.TEXT_ENCODERS, HashEncoder.name, HashEncoder)
    # The real shape classifier is tested in test_demo_metrics.py; here a one-epoch one in a private cache.
    mp.setenv("SDN_CACHE_DIR", str(module_tmp("cache")))
    quick = shape_classifier.train_shape_classifier
    mp.setattr(shape_classifier, "train_shape_classifier", lambda: quick(epochs=1))
    try:
        # the test-hash encoder's vectors carry no meaning for the demo's paraphrase reading to keep
        assert main(["demo", "--out", str(out), "--stage1-epochs", "1", "--stage2-epochs", "1", "--text-scaling", "dimension", *TINY]) == 0
    finally:
        mp.undo()
    return out


def test_demo_writes_grid_loss_plot_metrics_and_checkpoint(demo_run):
    for name in ("samples.png", "loss.png", "metrics.json", "checkpoint-latest.pt", "stats.jsonl"):
        assert (demo_run / name).stat().st_size > 0, name
    metrics = json.loads((demo_run / "metrics.json").read_text())
    assert metrics["test_images"] == 324 and metrics["config"]["teacher"] == "efficientnet-lite0"
    assert metrics["background"] == "flat" and metrics["config"]["lr"] == 3e-4 and metrics["config"]["pixel_distance"] == "l2"
    assert metrics["real_unseen_pair_images"]["colour"] == metrics["real_unseen_pair_images"]["position"] == 1.0
    for run in ("sdn", "image_baseline"):
        for part in ("unseen_pairs", "training_pairs", "held_out_phrasings"):
            details = metrics[run][part]["details"]
            assert details["shape"]["images"] == (metrics["train_images"] if part == "training_pairs" else 324)
            for k in ("colour", "shape", "position"):
                assert metrics[run][part][k] == round(details[k][f"{k}_accuracy"], 4)
    # the baseline is the image-space scheme at SDN's budget, in its own folder
    sdn, baseline = (json.loads((folder / "generator.json").read_text()) for folder in (demo_run, demo_run / "baseline-image"))
    assert baseline["scheme"] == "image" and sdn["scheme"] == "sdn" and baseline["step"] == sdn["step"] > 0
    assert set(metrics["goals"]) == {"unseen_pairs/shape", "unseen_pairs/colour", "unseen_pairs/position", "held_out_phrasings/colour",
                                     "held_out_phrasings/shape", "unseen_pairs/shape_over_image_baseline"}
    assert metrics["colour_accuracy_test_unseen_pairs"] == metrics["sdn"]["unseen_pairs"]["colour"]


def test_sample_draws_a_grid_for_typed_captions(demo_run, tmp_path):
    out = tmp_path / "grid.png"
    assert main(["sample", "--checkpoint", str(demo_run), "--text", "a big red circle", "--text", "a tiny blue square", "--out", str(out)]) == 0
    from PIL import Image

    w, h = Image.open(out).size
    assert (w, h) == (2 + 2 * 34, 2 + 34)  # two 32-px images in a row, 2-px padding


def test_sample_and_export_use_the_safetensors_export(demo_run, tmp_path):
    exported = tmp_path / "g.safetensors"
    assert main(["export", "--checkpoint", str(demo_run), "--out", str(exported)]) == 0
    assert exported.read_bytes() == (demo_run / "generator.safetensors").read_bytes()  # the same as training's own
    for source in (exported, demo_run / "generator.safetensors"):
        out = tmp_path / f"{source.parent.name}.png"
        assert main(["sample", "--checkpoint", str(source), "--text", "a big red circle", "--out", str(out)]) == 0
        assert out.stat().st_size > 0


def run_cli(*args, env=None):
    """Run `python -m sdn` in a fresh process: returns (exit code, stderr)."""
    p = subprocess.run([sys.executable, "-m", "sdn", *args], capture_output=True, text=True, timeout=300, env=env)
    return p.returncode, p.stderr


def assert_one_clear_line(code, stderr, match):
    assert code == 2, stderr
    assert "Traceback" not in stderr
    lines = [l for l in stderr.strip().splitlines() if not l.startswith("sdn: warning")]
    assert len(lines) == 1 and lines[0].startswith("sdn: error:") and match in lines[0], stderr


def test_sample_bad_inputs_are_one_line_and_destroy_nothing(demo_run, tmp_path):
    keep = tmp_path / "grid.png"
    keep.write_bytes(b"an earlier grid")
    ck = str(demo_run)
    cases = [
        (["--checkpoint", ck, "--text", "   ", "--out", str(keep)], "empty caption"),
        (["--checkpoint", ck, "--text", "", "--out", str(keep)], "empty caption"),
        (["--checkpoint", str(tmp_path / "nope.pt"), "--text", "a red circle", "--out", str(keep)], "checkpoint not found"),
        (["--checkpoint", ck, "--text", "a red circle", "-n", "2", "--out", str(keep)], "-n must be between 1 and 1"),
        (["--checkpoint", ck, "--text", "a red circle", "--out", str(tmp_path / "missing-dir" / "g.png")], "cannot write"),
    ]
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes((demo_run / "checkpoint-latest.pt").read_bytes()[:1000])
    cases.append((["--checkpoint", str(corrupt), "--text", "a red circle", "--out", str(keep)], "cannot read checkpoint"))
    for args, match in cases:
        assert_one_clear_line(*run_cli("sample", *args), match)
    assert keep.read_bytes() == b"an earlier grid"


def test_train_bad_inputs_are_one_line(demo_run, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("keep")
    weights = tmp_path / "bad.pth"
    weights.write_bytes(b"\x00garbage")
    cases = [
        (["--out", str(tmp_path / "r"), "--size", "50"], "multiple of 32"),
        (["--out", str(blocker / "run"), "--size", "32"], "cannot write to output folder"),
        (["--out", str(tmp_path / "r"), "--teacher-weights", str(weights), "--size", "32"], "cannot read teacher weights"),
        (["--out", str(tmp_path / "r"), "--teacher-weights", str(tmp_path / "none.pth"), "--size", "32"], "not found"),
        (["--out", str(tmp_path / "r"), "--teacher", "alexnet", "--size", "32"], "unknown teacher"),
        (["--out", str(tmp_path / "r"), "--resume", str(demo_run), "--fc-dim", "64", "--size", "32", "--teacher", "efficientnet-lite0"],
         "checkpoint was made with"),
        (["--out", str(tmp_path / "r"), "--resume", str(tmp_path), "--size", "32", "--teacher", "efficientnet-lite0"], "no checkpoint in"),
    ]
    for args, match in cases:
        assert_one_clear_line(*run_cli("train", "--no-progress", *args), match)
    assert blocker.read_text() == "keep"
    # as torchrun --nproc_per_node 5 would start it: 12 images do not split over 5 processes
    env = {**os.environ, "WORLD_SIZE": "5", "RANK": "0", "LOCAL_RANK": "0"}
    assert_one_clear_line(*run_cli("train", "--no-progress", "--out", str(tmp_path / "r"), "--size", "32", env=env), "must divide evenly over the 5")


@pytest.mark.parametrize(("argv", "expected"), [(["demo"], "flat"), (["demo", "--background", "gradient"], "gradient"),
                                                (["train", "--out", "x"], "gradient"), (["train", "--out", "x", "--background", "flat"], "flat")])
def test_background_option_reaches_the_demo_data(monkeypatch, argv, expected):
    import sdn.commands
    import sdn.demo
    from sdn.data import demo_data

    class Made(Exception):
        pass

    def fake(*args, background="gradient", **kwargs):
        raise Made(background)

    monkeypatch.setattr(demo_data, "make_demo_data", fake)  # read by `sdn train`
    monkeypatch.setattr(sdn.demo, "make_demo_data", fake)  # and by `sdn demo`
    monkeypatch.setattr(sdn.commands, "_free_cores_only", lambda: None)  # leave this process's threads alone
    with pytest.raises(Made) as made:
        main([*argv, "--no-progress"])
    assert made.value.args == (expected,)


def test_checkpoints_load_with_weights_only(demo_run):
    ckpt = torch.load(demo_run / "checkpoint-latest.pt", weights_only=True)
    assert {"config", "generator", "optimizer", "step", "epoch"} <= ckpt.keys()


def test_demo_uses_only_the_cores_other_jobs_leave_free(monkeypatch):
    import torch

    from sdn import commands

    before = torch.get_num_threads()
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(commands.os, "cpu_count", lambda: 2)
    try:
        torch.set_num_threads(2)
        monkeypatch.setattr(commands.os, "getloadavg", lambda: (1.1, 1.0, 1.0))  # another job holds a core
        commands._free_cores_only()
        assert torch.get_num_threads() == 1
        torch.set_num_threads(2)
        monkeypatch.setattr(commands.os, "getloadavg", lambda: (0.2, 0.1, 0.1))  # idle: keep torch's threads
        commands._free_cores_only()
        assert torch.get_num_threads() == 2
        monkeypatch.setattr(commands.os, "getloadavg", lambda: (5.0, 5.0, 5.0))  # overloaded: still one
        commands._free_cores_only()
        assert torch.get_num_threads() == 1
        monkeypatch.setenv("OMP_NUM_THREADS", "2")  # the user's choice wins
        torch.set_num_threads(2)
        commands._free_cores_only()
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
