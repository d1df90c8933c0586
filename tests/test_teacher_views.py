"""The demo's loss levers: the teacher's input scale, tap weight profiles, the second stage's pixel weight."""

import json

import pytest
import torch

from sdn.data.demo_data import make_demo_data
from sdn.errors import UserError
from sdn.networks.teacher_views import MID_NARROW, ResizedInputTeacher, tap_weight_profile
from sdn.networks.teachers import build_teacher, teacher_taps
from sdn.training.checkpoint import load_checkpoint
from sdn.training.loop import training_loop

TAPS = teacher_taps("efficientnet-lite0")


def test_an_upsampled_teacher_gives_the_native_tap_shapes_of_the_upsampled_image():
    native = build_teacher("efficientnet-lite0", resolution=32)
    assert not isinstance(native, ResizedInputTeacher)
    assert not isinstance(build_teacher("efficientnet-lite0", resolution=32, input_size=32), ResizedInputTeacher)
    scaled = build_teacher("efficientnet-lite0", resolution=32, input_size=64)
    assert scaled.taps == native.taps and not scaled.training
    images = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        small, big = native(images), scaled(images)
        # what it computes: the 64 px teacher's taps of the up-sampled image, area-pooled to the 32 px shapes
        direct = build_teacher("efficientnet-lite0", resolution=64)(torch.nn.functional.interpolate(images, size=64, mode="bilinear"))
    for s, b, d in zip(small, big, direct):
        assert s.shape == b.shape
        assert torch.allclose(b, torch.nn.functional.avg_pool2d(d, 2), atol=1e-5)
    assert not torch.allclose(small[3], big[3], atol=1e-3)  # another view, not the same features
    with pytest.raises(UserError, match="multiple of 32 and at least"):
        build_teacher("efficientnet-lite0", resolution=64, input_size=32)


def test_tap_weight_profiles():
    flat, mid = tap_weight_profile("flat", TAPS), tap_weight_profile("mid", TAPS)
    assert torch.allclose(flat, torch.full((9,), 1 / 9)) and mid.sum().item() == pytest.approx(1)
    assert mid.argmax().item() == 4 and mid[0] == mid[-1] == pytest.approx(mid[4] / 4)  # peak mid-way, ends a quarter
    narrow = tap_weight_profile("mid-narrow", TAPS)
    assert narrow.sum().item() == pytest.approx(1) and narrow[2:5].sum() > 0.75  # blocks 2, 4, 7 carry most of it
    assert torch.allclose(narrow, tap_weight_profile(",".join(map(str, MID_NARROW)), TAPS))  # the measured curve itself
    vgg = tap_weight_profile("mid-narrow", teacher_taps("vgg19"))  # another depth: the same curve, read at its taps
    assert len(vgg) == len(teacher_taps("vgg19")) and vgg.argmax() / (len(vgg) - 1) == pytest.approx(0.25, abs=0.15)
    custom = tap_weight_profile("0,0,1,1,1,1,0,0,0", TAPS)
    assert custom.tolist() == pytest.approx([0, 0, 0.25, 0.25, 0.25, 0.25, 0, 0, 0])
    for bad in ("1,2", "x", "-1,1,1,1,1,1,1,1,1", "0,0,0,0,0,0,0,0,0"):
        with pytest.raises(UserError, match="tap-profile"):
            tap_weight_profile(bad, TAPS)


def test_training_uses_the_profile_and_the_second_stage_pixel_weight(tmp_path):
    data = make_demo_data(32, seed=0, backgrounds_per_layout=1, captions_per_image=1).take(list(range(0, 432, 18)))
    kw = dict(teacher="efficientnet-lite0", text_encoder="test-hash", fc_dim=16, batch_size=8, progress=False, stage1_epochs=1, stage2_epochs=1)
    path = training_loop(data, tmp_path / "a", pixel_weight=0.0, stage2_pixel_weight=3.0, tap_profile="mid", teacher_input_size=64, **kw)
    ckpt = load_checkpoint(path)
    assert torch.allclose(ckpt["tap_weights"], tap_weight_profile("mid", TAPS))
    assert ckpt["config"]["teacher_input_size"] == 64 and ckpt["config"]["stage2_pixel_weight"] == 3.0
    logged = [json.loads(line) for line in (tmp_path / "a" / "stats.jsonl").read_text().splitlines()]
    assert all(r["pixel"] == 0 for r in logged if r["stage"] == "stage1")
    assert all(r["pixel"] > 0 for r in logged if r["stage"] == "stage2")
    # the scales are those of the up-sampled view: different from the native teacher's
    native = load_checkpoint(training_loop(data, tmp_path / "b", **kw))
    assert not torch.allclose(native["tap_scales"], ckpt["tap_scales"])
