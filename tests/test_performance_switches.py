"""The speed and memory switches (precision, channels-last, gradient checkpointing, Adam
implementation, torch.compile) change how fast a step runs, never what it computes beyond rounding."""

import itertools
import math

import pytest
import torch

from sdn.training.checkpoint import load_checkpoint
from sdn.data.demo_data import make_demo_data
from sdn.networks.generator import Generator
from sdn.training.losses import Stage1Loss, Stage2Loss, SumOfLosses, l1_per_image
from sdn.sampling import generate
from sdn.networks.teachers import build_teacher, teacher_taps
from sdn.training.optim import ADAM_CHOICES, make_adam
from sdn.training.loop import training_loop
from sdn.training.step import train_step

RUN = {"teacher": "efficientnet-lite0", "text_encoder": "test-hash", "fc_dim": 16, "batch_size": 8, "progress": False, "seed": 5}


@pytest.fixture(scope="module")
def small_data():
    """16 demo images at 32 px: 12 train (two steps of 8 and 4 per epoch), 4 test."""
    data = make_demo_data(32, seed=0, backgrounds_per_layout=1, captions_per_image=2)
    train = [i for i, s in enumerate(data.split) if s == "train"][:12]
    test = [i for i, s in enumerate(data.split) if s == "test"][:4]
    keep = train + test
    data.images, data.masks = data.images[torch.tensor(keep)], data.masks[torch.tensor(keep)]
    for attr in ("captions", "labels", "split", "attributes"):
        setattr(data, attr, [getattr(data, attr)[i] for i in keep])
    return data


def _losses(data, run_dir, **kw) -> list[float]:
    path = training_loop(data, run_dir, **{**RUN, **kw})
    return [v for *_, v in load_checkpoint(path)["history"]]


# precision x channels-last x gradient checkpointing in full; the four Adam implementations taken
# in turn across those eight, so each appears twice (the full product would add no code path).
COMBINATIONS = [(*c, ADAM_CHOICES[i % len(ADAM_CHOICES)])
                for i, c in enumerate(itertools.product(["bf16", "fp32"], [True, False], [True, False]))]


@pytest.mark.parametrize("precision,channels_last,grad_checkpointing,adam", COMBINATIONS)
def test_every_switch_combination_trains_with_finite_losses(tmp_path, small_data, precision, channels_last, grad_checkpointing, adam):
    losses = _losses(small_data, tmp_path, scheme="joint", stage1_epochs=1, stage2_epochs=0, precision=precision,
                     channels_last=channels_last, grad_checkpointing=grad_checkpointing, adam=adam)
    assert len(losses) == 2 and all(math.isfinite(v) for v in losses)
    config = load_checkpoint(tmp_path)["config"]
    assert (config["adam"], config["grad_checkpointing"]) == (adam, grad_checkpointing)


def test_gradient_checkpointing_trains_exactly_like_without(tmp_path, small_data):
    """fp32: the recomputed forward is the same arithmetic, so the losses agree to rounding."""
    kw = {"scheme": "sdn", "stage1_epochs": 1, "stage2_epochs": 1, "precision": "fp32"}
    plain = _losses(small_data, tmp_path / "plain", **kw)
    checkpointed = _losses(small_data, tmp_path / "ckpt", grad_checkpointing=True, **kw)
    assert len(plain) == 4
    assert checkpointed == pytest.approx(plain, rel=1e-6, abs=1e-7)


@pytest.mark.parametrize("pair_preactivation", [True, False])
def test_gradient_checkpointing_gives_the_same_outputs_and_gradients(pair_preactivation):
    torch.manual_seed(0)  # the paper's G (mirrored VGG19: five up-sampling groups), at 32 px
    g = Generator(teacher_taps("vgg19"), 32, text_dim=6, fc_dim=16, pair_preactivation=pair_preactivation)
    text = torch.randn(3, 6)
    results = []
    for checkpointing in (False, True):
        g.grad_checkpointing = checkpointing
        g.zero_grad()
        images, acts = g(text)
        (images.square().mean() + sum(a.abs().mean() for a in acts)).backward()
        results.append((images.detach(), [a.detach() for a in acts], [p.grad.clone() for p in g.parameters()]))
    (images0, acts0, grads0), (images1, acts1, grads1) = results
    torch.testing.assert_close(images1, images0, rtol=0, atol=0)
    for a0, a1 in zip(acts0, acts1):
        torch.testing.assert_close(a1, a0, rtol=0, atol=0)
    for g0, g1 in zip(grads0, grads1):
        torch.testing.assert_close(g1, g0, rtol=1e-6, atol=1e-7)


def test_fused_foreach_and_for_loop_adam_take_the_same_step():
    torch.manual_seed(0)
    start = [torch.randn(5, 7), torch.randn(7)]
    grads = [torch.randn_like(p) for p in start]
    after = {}
    for adam in ("fused", "foreach", "for-loop"):
        params = [torch.nn.Parameter(p.clone()) for p in start]
        opt = make_adam(params, 1e-2, adam)
        for _ in range(3):
            for p, g in zip(params, grads):
                p.grad = g.clone()
            opt.step()
        after[adam] = params
    for adam in ("foreach", "for-loop"):
        for p, q in zip(after["fused"], after[adam]):
            torch.testing.assert_close(p.detach(), q.detach(), rtol=1e-5, atol=1e-6)


class _CountingTeacher(torch.nn.Module):
    """Wraps a teacher and records, per call, whether autograd was recording."""

    def __init__(self, teacher):
        super().__init__()
        self.teacher, self.calls = teacher, []

    def forward(self, images):
        self.calls.append(torch.is_grad_enabled())
        return self.teacher(images)


@pytest.mark.parametrize("stage,expected", [("stage1", [False]), ("stage2", [False, True]), ("joint", [False, True])])
def test_one_teacher_pass_on_the_real_images_without_autograd(stage, expected):
    """The real images' pass is shared by every loss term (joint: Stage I and II) and records no graph;
    only the pass on the generated images back-propagates."""
    teacher = _CountingTeacher(build_teacher("efficientnet-lite0", resolution=32))
    taps = teacher.teacher.taps
    torch.manual_seed(0)
    generator = Generator(taps, 32, 4, fc_dim=8)
    s1, s2 = Stage1Loss([1.0] * len(taps)), Stage2Loss([1.0] * len(taps))
    loss_fn = {"stage1": s1, "stage2": s2, "joint": SumOfLosses(stage1=s1, stage2=s2)}[stage]
    loss = train_step(generator, teacher, loss_fn, torch.rand(2, 3, 32, 32), torch.randn(2, 4),
                      make_adam(generator.parameters(), 1e-3), torch.device("cpu"), "bf16")["loss"]
    assert math.isfinite(loss)
    assert teacher.calls == expected


def test_losses_accumulate_in_fp32_from_bf16_activations():
    feats = [torch.rand(2, 3, 4, 4, dtype=torch.bfloat16) for _ in range(2)]
    images = torch.rand(2, 1, 3, 8, 8, dtype=torch.bfloat16, requires_grad=True)
    for loss_fn in (Stage1Loss([1.0, 1.0]), Stage2Loss([1.0, 1.0])):
        loss, _ = loss_fn.compare(real=torch.rand(2, 3, 8, 8), images=images, real_feats=feats, fake_feats=feats, generator_acts=feats)
        assert loss.dtype == torch.float32


def test_sampling_in_channels_last_matches_and_leaves_the_generator_trainable():
    torch.manual_seed(0)
    g = Generator(build_teacher("efficientnet-lite0", resolution=32).taps, 32, 4, fc_dim=8)
    text = torch.randn(3, 4)
    plain = generate(g, text, precision="fp32", channels_last=False)
    fast = generate(g, text, precision="fp32", channels_last=True)
    # Drawings are 8-bit: another summation order can move a value across a rounding boundary (seen on
    # one CPU: 1 pixel of 9,216 one level apart); a wrong memory layout moves far more, and by far more.
    assert (fast - plain).abs().max() <= 1 / 255 + 1e-6
    assert ((fast - plain).abs() > 1e-6).float().mean() < 0.01
    g.train()
    images, _ = g(text)  # parameters converted outside inference mode still take part in autograd
    images.mean().backward()
    assert all(p.grad is not None for p in g.parameters())


def test_compile_flag_compiles_both_networks_and_trains(tmp_path, small_data, monkeypatch):
    """Wiring only: a real torch.compile of these networks takes minutes on 2 CPU cores (the
    benchmark's --compile measures it), so torch.compile is replaced by a recorder that returns the
    module unchanged; what is checked is that both networks go through it and training proceeds."""
    compiled = []

    def fake_compile(module, *args, **kwargs):
        compiled.append(type(module).__name__)
        return module

    monkeypatch.setattr(torch, "compile", fake_compile)
    losses = _losses(small_data, tmp_path, scheme="sdn", stage1_epochs=1, stage2_epochs=1, compile=True)
    assert sorted(compiled) == ["FusedEfficientNetTeacher", "Generator"]  # the teacher as fused (sdn.networks.teacher_fusion)
    assert len(losses) == 4 and all(math.isfinite(v) for v in losses)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_memory_lean_l1_has_the_plain_formulas_value_and_gradients(dtype):
    torch.manual_seed(0)
    a = torch.randn(3, 4, 5, 6).to(dtype).contiguous(memory_format=torch.channels_last).requires_grad_()
    b = torch.randn(3, 4, 5, 6).to(dtype).requires_grad_()
    b.data[0, 0, 0, 0] = a.data[0, 0, 0, 0]  # a zero difference: gradient 0, as torch's abs gives
    weights = torch.rand(3)
    lean = l1_per_image(a, b)
    lean_grads = torch.autograd.grad((lean * weights).sum(), (a, b))
    plain = (a.float() - b.float()).abs().flatten(1).mean(1)
    plain_grads = torch.autograd.grad((plain * weights).sum(), (a, b))
    assert lean.dtype == torch.float32
    torch.testing.assert_close(lean, plain, rtol=0, atol=0)
    for lg, pg in zip(lean_grads, plain_grads):
        assert lg.dtype == dtype
        torch.testing.assert_close(lg, pg, rtol=0, atol=0)
