"""What one case of benchmarks/train_step.py runs, in its own process (so that its peak memory and
its allocator settings are its own): a training step along one path, the networks' own passes
alone (the practical roofline), or sampling. Each returns a dict of measurements."""

from __future__ import annotations

import inspect
import math
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from measure import count_flops, memory_probe, sync, timed

TEXT_DIM = 384  # all-MiniLM-L6-v2's embedding size
FC_DIM = {"vgg19": 4096, "efficientnet-lite0": 1024}  # the paper's g-fc8/g-fc7; what runs with Lite0 use
INIT = {"vgg19": "random", "efficientnet-lite0": "pretrained"}  # no VGG weights ship in a package
SPEED_SWITCHES = ("teacher_fusion", "fused_l1", "matmul_convs", "retain_freed_memory")


def training_defaults() -> dict:
    from sdn.training.loop import training_loop

    return {k: p.default for k, p in inspect.signature(training_loop).parameters.items()}


def build_networks(spec: dict, switches: dict, dev: torch.device):
    """(teacher, generator, memory format) as `sdn train` builds them with these switches."""
    from sdn.networks.generator import Generator
    from sdn.training.host_memory import retain_freed_memory
    from sdn.networks.teacher_fusion import fuse_teacher
    from sdn.networks.teachers import build_teacher

    d = training_defaults()
    if switches["retain_freed_memory"] and dev.type == "cpu":
        retain_freed_memory()
    torch.manual_seed(0)
    name, size = spec["teacher"], spec["size"]
    teacher = build_teacher(name, None, INIT[name], d["teacher_pooling"], size).to(dev)
    generator = Generator(teacher.taps, size, TEXT_DIM, FC_DIM[name], grad_checkpointing=spec.get("grad_checkpointing", False),
                          matmul_convs=switches["matmul_convs"]).to(dev)
    memory_format = torch.channels_last if d["channels_last"] else torch.contiguous_format
    if switches["teacher_fusion"]:
        teacher = fuse_teacher(teacher, d["precision"])
    return teacher.to(memory_format=memory_format), generator.to(memory_format=memory_format), memory_format


def naive_step(generator, teacher, loss_fn, stage, real, text, optimizer) -> float:
    """A straightforward port's step: fp32, and the teacher's real pass inside the loss term with
    autograd on (the teacher was never frozen, so a graph through its weights is recorded)."""
    images, acts = generator(text)
    real_feats = teacher(real)
    fake_feats = teacher(images.flatten(0, 1)) if stage == "stage2" else None
    loss, _ = loss_fn.compare(real=real, images=images, real_feats=real_feats, fake_feats=fake_feats, generator_acts=acts)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss.item()


def make_train_step(spec: dict, dev: torch.device):
    """-> (step() returning the loss, eager_step, precision) along spec["path"]: "naive", "switches off"
    (sdn train's defaults with the four speed switches off: the path before them), "sdn train", or
    "sdn train --no-<switch>" (every default but that one switch)."""
    from sdn.training.losses import Stage1Loss, Stage2Loss
    from sdn.networks.teachers import build_teacher
    from sdn.training.optim import make_adam
    from sdn.data.batches import host_to_device
    from sdn.training.step import tap_mean_activations, train_step

    d = training_defaults()
    size, batch, stage = spec["size"], spec["batch"], spec["stage"]
    switches = {k: spec["path"].startswith("sdn train") and d[k] for k in SPEED_SWITCHES}
    if spec["path"].startswith("sdn train --no-"):
        switches[spec["path"].removeprefix("sdn train --no-").replace("-", "_")] = False
    images_u8 = torch.randint(0, 256, (batch, 3, size, size), dtype=torch.uint8)
    text = torch.randn(batch, TEXT_DIM)
    if spec["path"] == "naive":
        torch.manual_seed(0)
        from sdn.networks.generator import Generator

        teacher = build_teacher(spec["teacher"], None, INIT[spec["teacher"]], d["teacher_pooling"], size).to(dev)
        generator = Generator(teacher.taps, size, TEXT_DIM, FC_DIM[spec["teacher"]]).to(dev)
        scales = tap_mean_activations(teacher, images_u8, dev, "fp32")
        loss_fn = (Stage1Loss if stage == "stage1" else Stage2Loss)(torch.full((len(scales),), 1 / len(scales)), d["pixel_weight"],
                                                                     tap_scales=scales)
        teacher.requires_grad_(True)
        optimizer = torch.optim.Adam(generator.parameters(), lr=d["lr"], foreach=False)

        def step():
            real = images_u8.to(dev).float() / 255
            return naive_step(generator, teacher, loss_fn, stage, real, text.to(dev), optimizer)

        return step, step, "fp32"
    teacher, generator, memory_format = build_networks(spec, switches, dev)
    scales = tap_mean_activations(teacher, images_u8, dev, d["precision"])
    loss_fn = (Stage1Loss if stage == "stage1" else Stage2Loss)(torch.full((len(scales),), 1 / len(scales)), d["pixel_weight"],
                                                                 tap_scales=scales, fused_l1=switches["fused_l1"])
    optimizer = make_adam(generator.parameters(), d["lr"], d["adam"])
    compile_ = spec.get("compile", d["compile"])
    step_generator, step_teacher = (torch.compile(generator), torch.compile(teacher)) if compile_ else (generator, teacher)

    def make(g, t):
        def step():
            real = (host_to_device(images_u8, dev).float() / 255).contiguous(memory_format=memory_format)
            return train_step(g, t, loss_fn, real, host_to_device(text, dev), optimizer, dev, d["precision"])["loss"]
        return step

    return make(step_generator, step_teacher), make(generator, teacher), d["precision"]


def profile_table(step, rows: int = 15) -> str:
    """torch.profiler over 3 steps: the top operators by self CPU time."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(3):
            step()
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows)


def run_train_case(spec: dict) -> dict:
    dev = torch.device(spec["device"])
    step, eager_step, precision = make_train_step(spec, dev)
    start, finish = memory_probe(dev)
    before = start()
    result = {}
    if spec.get("compile"):
        # FLOPs are counted on the eager modules (the counter does not see inside compiled kernels);
        # the first compiled step includes the compilation; then compiled and eager steps alternate,
        # so that a busy machine slows both alike and their ratio holds.
        flops = count_flops(eager_step)
        t = time.perf_counter()
        step()
        sync(dev)
        result["first_step_s"] = time.perf_counter() - t
        compiled_s, eager_s = [], []
        for _ in range(spec["timed"]):
            for fn, times in ((step, compiled_s), (eager_step, eager_s)):
                times.append(timed(fn, dev, 0, 1)[0])
        seconds, cpu_seconds = sum(compiled_s) / len(compiled_s), None
        result["eager_seconds_per_step"] = sum(eager_s) / len(eager_s)
        losses = [step()]
    else:
        flops = count_flops(step)  # doubles as the first warm-up step
        losses = []
        seconds, cpu_seconds = timed(lambda: losses.append(step()), dev, spec["warmup"] - 1, spec["timed"])
    peak, above = finish(before)
    if spec.get("profile"):
        result["profile"] = profile_table(step)
    result.update(seconds_per_step=seconds, cpu_seconds_per_step=cpu_seconds, images_per_s=spec["batch"] / seconds,
                  flops_per_step=flops, precision=precision, peak_memory_mb=peak, step_memory_mb=above,
                  finite=all(math.isfinite(v) for v in losses))
    return result


def run_roofline_case(spec: dict) -> dict:
    """The networks' own passes alone, as `sdn train` runs them (bf16 autocast, channels-last, the
    speed switches on), same batch: teacher forward; teacher forward + backward to its input (Stage
    II's pass on the drawn images); generator forward; generator forward + backward with weight
    gradients. -> {"passes": {pass: (FLOPs, wall seconds, CPU seconds)}}."""
    from sdn.utils import autocast

    dev, d = torch.device(spec["device"]), training_defaults()
    teacher, generator, memory_format = build_networks(spec, {k: d[k] for k in SPEED_SWITCHES}, dev)
    images = torch.rand(spec["batch"], 3, spec["size"], spec["size"], device=dev).contiguous(memory_format=memory_format)
    text = torch.randn(spec["batch"], TEXT_DIM, device=dev)
    leaf = images.clone().requires_grad_()

    def teacher_forward():
        with torch.no_grad(), autocast(dev, d["precision"]):
            teacher(images)

    def teacher_backward():
        with autocast(dev, d["precision"]):
            taps = teacher(leaf)
        sum(t.sum() for t in taps).backward()  # a plain sum seeds the gradient: no loss arithmetic
        leaf.grad = None

    def generator_forward():
        with torch.no_grad(), autocast(dev, d["precision"]):
            generator(text)

    def generator_backward():
        with autocast(dev, d["precision"]):
            drawn, acts = generator(text)
        (drawn.sum() + sum(a.sum() for a in acts)).backward()

    out = {}
    for name, fn in (("teacher forward", teacher_forward), ("teacher forward+backward", teacher_backward),
                     ("generator forward", generator_forward), ("generator forward+backward", generator_backward)):
        flops = count_flops(fn)
        out[name] = (flops, *timed(fn, dev, spec["warmup"], spec["timed"]))
    return {"passes": out}


def run_sample_case(spec: dict) -> dict:
    from sdn.networks.generator import Generator
    from sdn.sampling import Sampler
    from sdn.networks.teachers import teacher_taps

    dev, size, batch = torch.device(spec["device"]), spec["size"], spec["batch"]
    torch.manual_seed(0)
    generator = Generator(teacher_taps(spec["teacher"]), size, TEXT_DIM, FC_DIM[spec["teacher"]]).to(dev)
    text = torch.randn(batch, TEXT_DIM)
    sampler = Sampler(generator, precision="bf16", channels_last=True)  # what `sdn sample` builds once per model
    start, finish = memory_probe(dev)
    before = start()
    flops = count_flops(lambda: sampler(text, batch_size=batch))
    seconds, _ = timed(lambda: sampler(text, batch_size=batch), dev, spec["warmup"] - 1, spec["timed"])
    peak, above = finish(before)
    return {"seconds_per_call": seconds, "latency_ms": 1000 * seconds, "images_per_s": batch / seconds, "flops_per_step": flops,
            "precision": "bf16", "peak_memory_mb": peak, "step_memory_mb": above}


def run_case(spec: dict) -> dict:
    import warnings

    warnings.filterwarnings("ignore", message=".*RANDOM weights.*")
    if spec.get("threads"):
        torch.set_num_threads(spec["threads"])
    runner = {"train": run_train_case, "roofline": run_roofline_case, "sample": run_sample_case}[spec["kind"]]
    return runner(spec)
