"""The 64-px speed switches (teacher fusion, fused L1, matmul convolutions, retained host memory)
compute what the plain path computes: to fp32 rounding in fp32, within bf16's own error in bf16."""

import copy
import json
import math
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from sdn.data.demo_data import make_demo_data
from sdn.networks.generator import Generator
from sdn.networks.teacher_fusion import FusedEfficientNetTeacher, fuse_teacher
from sdn.networks.teachers import build_teacher, teacher_taps
from sdn.training.fused_l1 import scaled_l1_per_image
from sdn.training.loop import training_loop
from sdn.training.losses import ImageLoss, Stage1Loss, Stage2Loss, l1_per_image
from sdn.utils import autocast

CPU = torch.device("cpu")


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean relative difference of a from the reference b."""
    return ((a.float() - b.float()).abs().mean() / b.float().abs().mean()).item()


def _taps_and_input_grad(teacher, images, precision, memory_format=torch.contiguous_format):
    x = images.clone().contiguous(memory_format=memory_format).requires_grad_()
    with autocast(CPU, precision):
        taps = teacher(x)
    sum(t.float().square().mean() for t in taps).backward()  # every tap back-propagates to the image
    return [t.detach().float() for t in taps], x.grad


@pytest.fixture(scope="module")
def efficientnet():
    return build_teacher("efficientnet-lite0", resolution=64)


@pytest.mark.parametrize("size", [32, 64])
def test_fused_efficientnet_matches_the_original_in_fp32(efficientnet, size):
    teacher = efficientnet if size == 64 else build_teacher("efficientnet-lite0", resolution=size)
    fused = fuse_teacher(teacher, "fp32")
    assert isinstance(fused, FusedEfficientNetTeacher) and not any(m.training for m in fused.modules())
    images = torch.rand(3, 3, size, size, generator=torch.Generator().manual_seed(size))
    taps, grad = _taps_and_input_grad(teacher, images, "fp32")
    fused_taps, fused_grad = _taps_and_input_grad(fused, images, "fp32")
    assert [t.shape for t in fused_taps] == [t.shape for t in taps]
    for a, b in zip(fused_taps, taps):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4 * b.abs().max().item())
    # The input gradient is compared as a whole, not element by element: a unit sitting on a ReLU6
    # kink (0 or 6) in the 2x2 deepest taps can fall on either side in the two computations (fp32
    # rounding; which side depends on the thread count), and its receptive field's gradient then
    # differs. Measured: 1e-6 relative with 2 threads, 1.6e-3 with 1 thread at 64 px; a wrong fold
    # errs by order 1.
    assert ((fused_grad - grad).norm() / grad.norm()).item() < 1e-2


def test_fused_efficientnet_in_bf16_errs_no_more_than_autocast_does(efficientnet):
    """bf16 has its own error (the original under autocast errs by 0.1-5 % per tap and ~25 % in the
    input gradient, mean relative); the fused teacher (bf16 weights and activations, stride-2
    depthwise convolutions as stride-1 ones) must stay within 1.5x of that."""
    images = torch.rand(4, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    ref_taps, ref_grad = _taps_and_input_grad(efficientnet, images, "fp32")
    cl = torch.channels_last
    auto_taps, auto_grad = _taps_and_input_grad(copy.deepcopy(efficientnet).to(memory_format=cl), images, "bf16", cl)
    fused = fuse_teacher(efficientnet, "bf16").to(memory_format=cl)
    assert fused.w0.dtype == torch.bfloat16
    fused_taps, fused_grad = _taps_and_input_grad(fused, images, "bf16", cl)
    for f, a, r in zip(fused_taps, auto_taps, ref_taps):
        assert _rel(f, r) <= 1.5 * _rel(a, r) + 2e-3
    assert _rel(fused_grad, ref_grad) <= 1.5 * _rel(auto_grad, ref_grad)


def test_fused_vgg_holds_bf16_weights_and_matches():
    teacher = build_teacher("vgg19", init="random", resolution=32)
    images = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    fused32 = fuse_teacher(teacher, "fp32")
    for a, b in zip(fused32(images), teacher(images)):
        torch.testing.assert_close(a, b)
    fused16 = fuse_teacher(teacher, "bf16")
    assert fused16.features[0].weight.dtype == torch.bfloat16 and teacher.features[0].weight.dtype == torch.float32
    with autocast(CPU, "bf16"):
        for a, b in zip(fused16(images), teacher(images)):
            torch.testing.assert_close(a.float(), b.float())  # autocast casts the same weights to bf16


@pytest.mark.parametrize("k", [3, 5])
def test_strided_depthwise_is_the_stride1_one_at_odd_positions(k):
    """The identity the fused teacher uses for its bf16 stride-2 depthwise convolutions."""
    x = torch.randn(2, 4, 8, 8, requires_grad=True)
    w = torch.randn(4, 1, k, k)
    strided = F.conv2d(F.pad(x, (k // 2 - 1, k // 2, k // 2 - 1, k // 2)), w, None, 2, 0, 1, 4)
    sliced = F.conv2d(x, w, None, 1, k // 2, 1, 4)[..., 1::2, 1::2]
    torch.testing.assert_close(sliced, strided)
    g1, = torch.autograd.grad(strided.square().sum(), x)
    g2, = torch.autograd.grad(sliced.square().sum(), x)
    torch.testing.assert_close(g2, g1)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("target_scale,result_scale", [(1.0, 1.0), (0.5, 1.0), (1.0, 0.25)])
def test_fused_l1_has_the_plain_formulas_values_and_gradients(dtype, target_scale, result_scale):
    torch.manual_seed(0)
    out = torch.randn(3, 4, 5, 6).to(dtype).contiguous(memory_format=torch.channels_last).requires_grad_()
    target = torch.randn(3, 4, 5, 6).to(dtype).requires_grad_()
    target.data[0, 0, 0, 0] = out.data[0, 0, 0, 0] / target_scale  # a zero difference: zero gradient, as abs gives
    weights = torch.rand(3)
    fused = scaled_l1_per_image(out, target, target_scale, result_scale)
    fused_grads = torch.autograd.grad((fused * weights).sum(), (out, target))
    plain = l1_per_image(out, target.float() * target_scale) * result_scale
    plain_grads = torch.autograd.grad((plain * weights).sum(), (out, target))
    assert fused.dtype == torch.float32 and fused_grads[0].dtype == dtype
    tol = 1e-6 if dtype == torch.float32 else 4e-3  # bf16: the difference itself is rounded to bf16
    torch.testing.assert_close(fused, plain, rtol=tol, atol=1e-7)
    assert fused_grads[0][0, 0, 0, 0] == 0
    for f, p in zip(fused_grads, plain_grads):
        torch.testing.assert_close(f.float(), p.float(), rtol=tol, atol=1e-9)


def test_fused_l1_sums_a_broadcast_targets_gradient():
    images = torch.rand(2, 3, 3, 4, 4, requires_grad=True)  # (B, n, 3, H, W)
    real = torch.rand(2, 1, 3, 4, 4, requires_grad=True)
    fused = scaled_l1_per_image(images, real, batch_dims=2)
    plain = (images - real).abs().flatten(2).mean(2)
    assert fused.shape == (2, 3)
    torch.testing.assert_close(fused, plain)
    for f, p in zip(torch.autograd.grad(fused.sum(), (images, real)), torch.autograd.grad(plain.sum(), (images, real))):
        torch.testing.assert_close(f, p)


def _loss_and_grads(loss_cls, fused, dtype, n):
    torch.manual_seed(0)
    b, shapes = 2, [(4, 8, 8), (6, 4, 4)]
    real = torch.rand(b, 3, 16, 16)
    images = torch.rand(b, n, 3, 16, 16).to(dtype).requires_grad_()
    real_feats = [torch.randn(b, *s).to(dtype) for s in shapes]
    outs = [torch.randn(b * n if loss_cls is Stage2Loss else b, *s).to(dtype).requires_grad_() for s in shapes]
    loss_fn = loss_cls([0.3, 0.7], pixel_weight=2.0, diverse_mean_weight=0.01, tap_scales=[0.5, 3.0], fused_l1=fused)
    loss, terms = loss_fn.compare(real=real, images=images, real_feats=real_feats, fake_feats=outs, generator_acts=outs)
    grads = torch.autograd.grad(loss, [images, *outs], allow_unused=True)
    return loss, terms, [g for g in grads if g is not None]


@pytest.mark.parametrize("loss_cls", [ImageLoss, Stage1Loss, Stage2Loss])
@pytest.mark.parametrize("dtype,n", [(torch.float32, 1), (torch.float32, 3), (torch.bfloat16, 1)])
def test_fused_and_plain_losses_agree(loss_cls, dtype, n):
    if loss_cls is Stage1Loss and n > 1:
        n = 1  # Stage I pairs one set of activations per caption
    plain, plain_terms, plain_grads = _loss_and_grads(loss_cls, False, dtype, n)
    fused, fused_terms, fused_grads = _loss_and_grads(loss_cls, True, dtype, n)
    tol = 1e-6 if dtype == torch.float32 else 4e-3
    torch.testing.assert_close(fused, plain, rtol=tol, atol=0)
    assert fused_terms.keys() == plain_terms.keys()
    for k in plain_terms:
        torch.testing.assert_close(fused_terms[k], plain_terms[k], rtol=tol, atol=0)
    assert len(fused_grads) == len(plain_grads) > 0
    for f, p in zip(fused_grads, plain_grads):
        assert f.dtype == p.dtype
        torch.testing.assert_close(f.float(), p.float(), rtol=tol, atol=1e-3 * p.float().abs().max().item() if dtype != torch.float32 else 1e-9)


def test_matmul_convs_compute_the_same_outputs_and_gradients(monkeypatch):
    import sdn.networks.generator as generator_module

    calls = []
    plain_matmul = generator_module.conv3x3_as_matmul
    monkeypatch.setattr(generator_module, "conv3x3_as_matmul", lambda x, conv: calls.append(tuple(x.shape)) or plain_matmul(x, conv))
    torch.manual_seed(0)
    g = Generator(teacher_taps("efficientnet-lite0"), 64, text_dim=6, fc_dim=16).to(memory_format=torch.channels_last)
    text = torch.randn(3, 6)
    results = []
    for matmul in (False, True):
        for step in g.steps:
            step.matmul_convs = matmul
        g.zero_grad()
        images, acts = g(text)
        (images.square().mean() + sum(a.abs().mean() for a in acts)).backward()
        results.append((images.detach(), [a.detach() for a in acts], [p.grad.clone() for p in g.parameters()]))
    # batch 3: only the convolutions with more output channels than output positions (B x H x W)
    assert calls == [(3, 1280, 2, 2), (3, 320, 2, 2), (3, 192, 4, 4), (3, 112, 4, 4)]
    (images0, acts0, grads0), (images1, acts1, grads1) = results
    assert all(a.is_contiguous(memory_format=torch.channels_last) for a in acts1[:-1])  # the layout stays NHWC
    torch.testing.assert_close(images1, images0, rtol=1e-5, atol=1e-6)
    for a0, a1 in zip(acts0, acts1):
        torch.testing.assert_close(a1, a0, rtol=1e-5, atol=1e-5 * a0.abs().max().item())
    for g0, g1 in zip(grads0, grads1):
        torch.testing.assert_close(g1, g0, rtol=1e-5, atol=1e-5 * g0.abs().max().item())


def test_retained_freed_memory_keeps_large_blocks_in_the_heap_instead_of_mapping_them():
    """In a fresh process (the setting is process-wide), read glibc's own accounting (mallinfo2): by
    default an 8 MB tensor gets fresh mmap pages (which fault in page by page every time), and once
    memory is retained it comes from the heap, which keeps it after the tensor is freed. (An earlier
    form of this test counted page faults; on a loaded machine the heap sometimes grows once more
    when a freed block does not fit the next aligned request, so the counts were not reliable.)"""
    code = """
import ctypes, json, torch
from sdn.training.host_memory import retain_freed_memory
class Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]
libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = Info
def served():
    before = libc.mallinfo2()
    t = torch.ones(2**21)  # 8 MB
    mapped = libc.mallinfo2().hblkhd - before.hblkhd
    del t
    return mapped, libc.mallinfo2().arena - before.arena
default = served()
took = retain_freed_memory()
print(json.dumps([default, took, served()]))
"""
    if not sys.platform.startswith("linux"):
        pytest.skip("glibc only")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if run.returncode and "mallinfo2" in run.stderr:
        pytest.skip("this C library has no mallinfo2 (glibc before 2.33, or not glibc)")
    (mapped, kept), took, (mapped_retained, kept_retained) = json.loads(run.stdout.strip().splitlines()[-1])
    if mapped == 0:
        pytest.skip("this allocator does not map large blocks afresh (not glibc's defaults)")
    assert took is True
    assert mapped >= 2**23 and kept < 2**23  # default: mapped afresh, handed back on free
    assert mapped_retained == 0 and kept_retained >= 2**23 - 2**20  # retained: from the heap, kept after free


RUN = {"teacher": "efficientnet-lite0", "text_encoder": "test-hash", "fc_dim": 16, "batch_size": 6, "progress": False,
       "seed": 3, "scheme": "sdn", "stage1_epochs": 1, "stage2_epochs": 1}
OLD_PATH = {"teacher_fusion": False, "fused_l1": False, "matmul_convs": False, "retain_freed_memory": False}


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_training_with_and_without_the_switches_gives_the_same_losses(tmp_path, precision):
    """Two epochs (Stage I, then Stage II) of 12 demo images at 32 px, the old path against the new."""
    from sdn.training.checkpoint import load_checkpoint

    data = make_demo_data(32, seed=0, backgrounds_per_layout=1, captions_per_image=1)
    keep = [i for i, s in enumerate(data.split) if s == "train"][:12]
    data.images, data.masks = data.images[torch.tensor(keep)], data.masks[torch.tensor(keep)]
    for attr in ("captions", "labels", "split", "attributes"):
        setattr(data, attr, [getattr(data, attr)[i] for i in keep])
    histories = []
    for name, switches in (("old", OLD_PATH), ("new", {})):
        path = training_loop(data, tmp_path / name, precision=precision, **RUN, **switches)
        histories.append([v for *_, v in load_checkpoint(path)["history"]])
    old, new = histories
    assert len(new) == 4 and all(math.isfinite(v) for v in new)
    # fp32: the same arithmetic reordered; bf16: the folded teacher rounds differently
    assert new == pytest.approx(old, rel=1e-4 if precision == "fp32" else 0.05)


@pytest.mark.parametrize("device_type, expected", [("cpu", True), ("cuda", False)])
def test_speed_switches_are_cpu_only_and_the_config_records_what_ran(device_type, expected):
    """On a GPU the three CPU optimisations are off (they halved an H200's 64-px step rate); on the
    CPU the user's choice stands; retain_freed_memory is left to the loop (it acts on CPUs only)."""
    from types import SimpleNamespace

    from sdn.training.settings import CPU_SPEED_SWITCHES, settle_speed_switches

    a = SimpleNamespace(teacher_fusion=True, fused_l1=True, matmul_convs=True, retain_freed_memory=True)
    settle_speed_switches(a, device_type)
    assert [getattr(a, name) for name in CPU_SPEED_SWITCHES] == [expected] * 3
    assert a.retain_freed_memory is True
    off = SimpleNamespace(teacher_fusion=False, fused_l1=False, matmul_convs=False)
    settle_speed_switches(off, "cpu")
    assert not (off.teacher_fusion or off.fused_l1 or off.matmul_convs)  # the CPU never turns one on
