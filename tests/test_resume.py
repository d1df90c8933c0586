"""Checkpoints that survive a kill, exact resume, the divergence guard, the per-step log, the export."""

import json
import math
import warnings

import pytest
import test_training
import torch
from test_training import TINY

from sdn.errors import UserError
from sdn.networks.generator import Generator
from sdn.networks.teachers import build_teacher
from sdn.training import loop as training
from sdn.training import run_log
from sdn.training.checkpoint import (
    checkpoint_files,
    generator_from_checkpoint,
    load_checkpoint,
    newest_checkpoint,
)
from sdn.training.loop import training_loop
from sdn.training.losses import Stage1Loss
from sdn.training.step import train_step

# 18 train images in batches of 8: steps 1-3 are epoch 0 (stage 1), steps 4-6 epoch 1 (stage 2)
RUN = {**TINY, "stage1_epochs": 1, "stage2_epochs": 1, "seed": 4, "checkpoint_every": 2}


@pytest.fixture(scope="module")
def tiny_data():
    return test_training.tiny_data.__wrapped__()


class Killed(Exception):
    pass


def crash_at_step(monkeypatch, step: int) -> None:
    """Make training die inside its `step`-th step of this process (after the step-1 before it)."""
    calls = []

    def dying(*args, **kwargs):
        calls.append(1)
        if len(calls) == step:
            raise Killed
        return real(*args, **kwargs)

    real = training.train_step
    monkeypatch.setattr(training, "train_step", dying)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_a_run_killed_mid_epoch_and_resumed_matches_the_uninterrupted_run_bit_for_bit(tmp_path, tiny_data, monkeypatch, precision):
    whole = load_checkpoint(training_loop(tiny_data, tmp_path / "whole", precision=precision, **RUN))
    crash_at_step(monkeypatch, 5)  # checkpoints at steps 2, 3 (epoch end) and 4: dies mid epoch 1
    with pytest.raises(Killed):
        training_loop(tiny_data, tmp_path / "cut", precision=precision, resume="auto", **RUN)  # auto: nothing yet, fresh
    monkeypatch.setattr(training, "train_step", train_step)  # alive again
    assert load_checkpoint(tmp_path / "cut")["position"] == {"epoch": 1, "images": 8}
    resumed = load_checkpoint(training_loop(tiny_data, tmp_path / "cut", precision=precision, resume="auto", **RUN))
    assert [h[:2] for h in resumed["history"]] == [h[:2] for h in whole["history"]]
    assert [h[2] for h in resumed["history"]] == [h[2] for h in whole["history"]]  # exactly, not approximately
    for name, weight in whole["generator"].items():
        assert torch.equal(resumed["generator"][name], weight), name
    steps = [json.loads(line)["step"] for line in (tmp_path / "cut" / "stats.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4, 5, 6]  # the log of the lost step 5 is not doubled


def test_the_weight_average_resumes_exactly_and_is_what_the_export_draws_with(tmp_path, tiny_data, monkeypatch):
    run = {**RUN, "ema_decay": 0.9}
    whole = load_checkpoint(training_loop(tiny_data, tmp_path / "whole", **run))
    crash_at_step(monkeypatch, 5)
    with pytest.raises(Killed):
        training_loop(tiny_data, tmp_path / "cut", resume="auto", **run)
    monkeypatch.setattr(training, "train_step", train_step)
    resumed = torch.load(training_loop(tiny_data, tmp_path / "cut", resume="auto", **run), weights_only=True)
    assert resumed["average_count"] == whole["average_count"] == 6
    for name, weight in whole["generator_average"].items():
        assert torch.equal(resumed["generator_average"][name], weight), name
    last, averaged = whole["generator"]["fc.0.weight"], whole["generator_average"]["fc.0.weight"]
    assert not torch.equal(last, averaged)  # the average lags the last weights
    export = load_checkpoint(tmp_path / "whole" / "generator.safetensors")["generator"]["fc.0.weight"].float()
    assert torch.allclose(export, averaged.float(), atol=1e-2 * averaged.abs().max().item())  # bf16 export of the average
    assert not torch.allclose(export, last.float(), atol=1e-4)
    drawn = generator_from_checkpoint(whole)  # sample/evaluate from a checkpoint draw with the average too
    assert torch.equal(drawn.fc[0].weight, averaged)


def test_a_truncated_newest_checkpoint_gives_way_to_the_previous_one(tmp_path, tiny_data):
    run = {**RUN, "stage2_epochs": 0, "checkpoint_every": 1, "keep_checkpoints": 2}
    training_loop(tiny_data, tmp_path, **run)
    assert [p.name for p in checkpoint_files(tmp_path)] == ["checkpoint-000003.pt", "checkpoint-000002.pt", "checkpoint-latest.pt"]
    newest = tmp_path / "checkpoint-000003.pt"
    newest.write_bytes(newest.read_bytes()[:5000])  # as if the disk had filled up while writing it
    with pytest.warns(UserWarning, match="cannot read checkpoint .*checkpoint-000003.pt"):
        path, ckpt = newest_checkpoint(tmp_path)
    assert path.name == "checkpoint-000002.pt" and ckpt["step"] == 2
    half_written = tmp_path / ".checkpoint-000004.pt.x1y2.tmp"  # what a kill inside atomic_save leaves
    half_written.write_bytes(b"PK\x03\x04 and no more")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        final = load_checkpoint(training_loop(tiny_data, tmp_path, resume="auto", **run))
    assert final["step"] == 3 and [s for s, *_ in final["history"]] == [1, 2, 3]
    assert (tmp_path / "checkpoint-000003.pt.unreadable").exists()  # moved aside, not deleted
    assert not half_written.exists()


def test_resume_bad_inputs_are_clear_errors(tmp_path, tiny_data):
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no checkpoint in"):
        training_loop(tiny_data, tmp_path / "run", resume=tmp_path / "empty", **RUN)
    with pytest.raises(UserError, match="checkpoint not found"):
        training_loop(tiny_data, tmp_path / "run", resume=tmp_path / "nothing.pt", **RUN)
    with pytest.raises(UserError, match="must be 1 or more"):
        training_loop(tiny_data, tmp_path / "run", keep_checkpoints=0, **TINY)


def test_a_world_size_that_does_not_divide_the_batch_is_refused_before_waiting_for_peers(tmp_path, tiny_data, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "3")  # torchrun --nproc_per_node 3, batch 8
    with pytest.raises(UserError, match="batch size 8 is the global batch and must divide evenly over the 3 processes"):
        training_loop(tiny_data, tmp_path, **TINY)


def test_a_non_finite_loss_skips_the_update():
    teacher = build_teacher("efficientnet-lite0", resolution=32)
    generator = Generator(teacher.taps, 32, 4, fc_dim=16)
    opt = torch.optim.Adam(generator.parameters(), 1e-3)
    before = {k: v.clone() for k, v in generator.state_dict().items()}

    class NanLoss(Stage1Loss):
        def compare(self, **passes):
            loss, terms = super().compare(**passes)
            return loss * float("nan"), terms

    nan_loss = NanLoss([1.0] * len(teacher.taps))
    terms = train_step(generator, teacher, nan_loss, torch.rand(2, 3, 32, 32), torch.randn(2, 4), opt, torch.device("cpu"), "fp32")
    assert math.isnan(terms["loss"])
    assert all(torch.equal(before[k], v) for k, v in generator.state_dict().items())
    assert not opt.state  # Adam never stepped


def test_the_divergence_guard_skips_bad_steps_and_stops_after_too_many(tmp_path, tiny_data, monkeypatch):
    calls = []
    real_compare = Stage1Loss.compare

    def flaky(self, **kw):  # step 2 alone is bad on the first run; from step 3 of the second run, all are
        calls.append(1)
        loss, terms = real_compare(self, **kw)
        return (loss * float("nan") if len(calls) == 2 or len(calls) >= 6 else loss), terms

    monkeypatch.setattr(Stage1Loss, "compare", flaky)
    with pytest.warns(UserWarning, match="non-finite loss at step 2"):
        first = load_checkpoint(training_loop(tiny_data, tmp_path, **{**RUN, "stage2_epochs": 0}))
    assert first["skipped_steps"] == 1 and [s for s, *_ in first["history"]] == [1, 3]
    good = {k: v.clone() for k, v in first["generator"].items()}
    with pytest.warns(UserWarning), pytest.raises(UserError, match="training diverged: 3 non-finite losses in a row up to step 8; the last good checkpoint is kept"):
        training_loop(tiny_data, tmp_path, resume="auto", max_bad_steps=3, **{**RUN, "stage1_epochs": 4, "stage2_epochs": 0, "checkpoint_every": 100})
    kept = load_checkpoint(tmp_path)
    assert kept["step"] == 6  # the epoch-end checkpoint before the bad streak
    assert all(torch.isfinite(v).all() for v in kept["generator"].values()) and not torch.equal(kept["generator"]["fc.0.weight"], good["fc.0.weight"])


def test_log_lines_export_and_tensorboard(tmp_path, tiny_data, monkeypatch):
    written = []

    class FakeWriter:  # stands in for torch.utils.tensorboard.SummaryWriter, an optional dependency
        def __init__(self, folder):
            written.append(("folder", folder))

        def add_scalar(self, tag, value, step):
            written.append(("scalar", tag, step))

        def add_image(self, tag, image, step):
            written.append(("image", tag, tuple(image.shape), step))

        def close(self):
            pass

    monkeypatch.setattr(run_log, "_summary_writer", FakeWriter)
    last = training_loop(tiny_data, tmp_path, scheme="joint", **{**RUN, "stage2_epochs": 0, "keep_checkpoints": 1})
    assert [p.name for p in checkpoint_files(tmp_path)] == ["checkpoint-000003.pt", "checkpoint-latest.pt"]
    assert last == tmp_path / "checkpoint-000003.pt"
    lines = [json.loads(line) for line in (tmp_path / "stats.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines] == [1, 2, 3]
    for key in ("stage", "loss", "stage1_taps", "stage1_pixel", "stage2_taps", "stage2_pixel", "images_per_s", "lr", "peak_rss_mb"):
        assert key in lines[0], key
    assert lines[0]["stage1_pixel"] == lines[0]["stage2_pixel"] > 0
    assert ("scalar", "joint/loss", 3) in written and ("image", "samples", (3, 36, 2 + 8 * 34), 3) in written

    export = load_checkpoint(tmp_path / "generator.safetensors")  # no pickle involved
    assert json.loads((tmp_path / "generator.json").read_text())["fc_dim"] == TINY["fc_dim"]
    text = torch.randn(2, 16)
    with torch.no_grad():
        a = generator_from_checkpoint(export)(text)[0]
        b = generator_from_checkpoint(load_checkpoint(last))(text)[0]
    assert torch.equal(a, b)


def test_resume_refuses_changed_settings_unless_allowed_and_records_them(tmp_path, tiny_data, monkeypatch):
    crash_at_step(monkeypatch, 3)
    with pytest.raises(Killed):
        training_loop(tiny_data, tmp_path, **RUN)  # checkpoint at step 2
    monkeypatch.setattr(training, "train_step", train_step)  # alive again
    for key, value in (("pixel_weight", 7.0), ("scheme", "joint"), ("tap_weights", "equal"), ("lr", 3e-4),
                       ("loss_reduction", "sum"), ("pair_preactivation", False), ("seed", 5)):
        with pytest.raises(UserError, match=f"{key}: .* saved, {value!r} now"):
            training_loop(tiny_data, tmp_path, resume="auto", **{**RUN, key: value})
    with pytest.raises(UserError, match="lr: 0.0001 saved, 0.0003 now; pixel_weight: 1.0 saved, 7.0 now"):
        training_loop(tiny_data, tmp_path, resume="auto", **{**RUN, "pixel_weight": 7.0, "lr": 3e-4})
    # training longer needs no permission but is recorded; runtime switches with the same results are not settings
    training_loop(tiny_data, tmp_path, resume="auto", **{**RUN, "stage2_epochs": 2, "adam": "foreach", "lr": 2e-4},
                  allow_changed_settings=("lr",))
    config = load_checkpoint(tmp_path)["config"]
    assert config["stage2_epochs"] == 2 and config["lr"] == 2e-4
    assert config["changed_settings"] == [{"key": "stage2_epochs", "from": 1, "to": 2, "step": 2},
                                          {"key": "lr", "from": 1e-4, "to": 2e-4, "step": 2}]
    assert [s for s, *_ in load_checkpoint(tmp_path)["history"]][-1] == 9  # 3 epochs of 3 steps: the longer run was trained


def test_a_checkpoint_from_before_a_setting_existed_resumes_with_its_old_default(tmp_path, tiny_data, monkeypatch):
    crash_at_step(monkeypatch, 3)
    with pytest.raises(Killed):
        training_loop(tiny_data, tmp_path, **RUN)
    monkeypatch.setattr(training, "train_step", train_step)  # alive again
    path = checkpoint_files(tmp_path)[0]
    ckpt = torch.load(path, weights_only=True)
    del ckpt["config"]["loss_reduction"]  # as written before --loss-reduction existed
    torch.save(ckpt, path)
    training_loop(tiny_data, tmp_path, resume=path, **RUN)
    with pytest.raises(UserError, match="loss_reduction: 'mean' saved, 'sum' now"):
        training_loop(tiny_data, tmp_path, resume="auto", **{**RUN, "loss_reduction": "sum"})


def test_checkpoint_epochs_saves_every_nth_epoch_end_and_the_last(tmp_path, tiny_data):
    """3 steps per epoch, 5 epochs, a checkpoint every 2nd epoch end: after steps 6 and 12, and 15 (the last)."""
    run = {**RUN, "stage1_epochs": 3, "stage2_epochs": 2, "checkpoint_every": None, "checkpoint_epochs": 2, "keep_checkpoints": 10}
    training_loop(tiny_data, tmp_path, **run)
    assert [p.name for p in checkpoint_files(tmp_path)] == [
        "checkpoint-000015.pt", "checkpoint-000012.pt", "checkpoint-000006.pt", "checkpoint-latest.pt"]
    with pytest.raises(UserError, match="--checkpoint-epochs"):
        training_loop(tiny_data, tmp_path / "bad", **{**run, "checkpoint_epochs": 0})
