import hashlib
import shutil
from pathlib import Path

import pytest
import torch

from sdn.networks import text


@pytest.fixture(scope="module")
def module_tmp(tmp_path_factory, request):
    """`module_tmp(name)`: a new folder for a module's shared fixtures, all removed once the module's
    tests are done. With tmp_path_retention_policy (pyproject.toml) the suite's disk use stays near
    one module's (a training test's checkpoints are tens of MB), so it fits a small CI disk."""
    root = tmp_path_factory.mktemp(request.module.__name__.rsplit(".", 1)[-1])

    def make(name: str) -> Path:
        folder = root / name
        folder.mkdir()
        return folder

    yield make
    shutil.rmtree(root, ignore_errors=True)


OXFORD = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "oxford102"


class HashEncoder:
    """A tiny deterministic text encoder for fast tests (the real one is tested in test_text.py)."""

    name = "test-hash"
    dim = 16

    def encode(self, captions):
        captions = text.check_captions(captions)
        rows = []
        for c in captions:
            seed = int.from_bytes(hashlib.sha256(c.encode()).digest()[:8], "little")
            rows.append(torch.randn(self.dim, generator=torch.Generator().manual_seed(seed)))
        return torch.stack(rows)


class ColourEncoder:
    """A bag of colour words (one dimension per colour, one for "no colour word"): for a test model
    whose drawings must depend on the caption in a way a test can check."""

    name = "test-colour"
    colours = {"red": (0.85, 0.1, 0.1), "yellow": (0.95, 0.85, 0.1), "blue": (0.1, 0.2, 0.85), "green": (0.1, 0.65, 0.2),
               "white": (0.95, 0.95, 0.95)}
    dim = len(colours) + 1

    def encode(self, captions):
        rows = []
        for c in text.check_captions(captions):
            words = c.lower().replace(",", " ").split()
            row = torch.tensor([float(colour in words) for colour in self.colours] + [0.0])
            rows.append(row if row.any() else torch.eye(self.dim)[-1])
        return torch.stack(rows)


@pytest.fixture(autouse=True)
def _hash_encoder(monkeypatch):
    monkeypatch.setitem(text.TEXT_ENCODERS, HashEncoder.name, HashEncoder)
    monkeypatch.setitem(text.TEXT_ENCODERS, ColourEncoder.name, ColourEncoder)


def fit_colour_model(out: Path, seed: int = 0, steps: int = 60) -> Path:
    """A tiny 32-px generator fitted (pixel L1, a few seconds) to draw each colour word of
    ColourEncoder as a plain field of that colour, grey for none; exported as generator.safetensors.
    It shows that a caption reaches the model and its drawing comes back, not image quality."""
    from sdn.networks.generator import Generator
    from sdn.networks.teachers import teacher_taps
    from sdn.training.checkpoint import export_generator

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a busy 2-core machine: one thread is several times faster for so small a net
    try:
        torch.manual_seed(seed)
        config = {"teacher": "efficientnet-lite0", "resolution": 32, "text_encoder": ColourEncoder.name,
                  "text_dim": ColourEncoder.dim, "fc_dim": 32, "n_outputs": 1, "precision": "fp32", "step": steps}
        generator = Generator(teacher_taps(config["teacher"]), 32, ColourEncoder.dim, 32, 1)
        text_in = torch.eye(ColourEncoder.dim)
        target = torch.tensor([*ColourEncoder.colours.values(), (0.5, 0.5, 0.5)])[:, :, None, None].expand(-1, -1, 32, 32)
        opt = torch.optim.Adam(generator.parameters(), 1e-3)
        for _ in range(steps):
            images, _ = generator(text_in)
            loss = (images[:, 0] - target).abs().mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
    finally:
        torch.set_num_threads(threads)
    out.mkdir(parents=True, exist_ok=True)
    return export_generator(generator, config, out / "generator.safetensors")


@pytest.fixture(scope="session")
def oxford_root() -> Path:
    if not (OXFORD / "jpg").is_dir():
        pytest.skip(f"the shared Oxford-102 data is absent ({OXFORD.resolve()})")
    return OXFORD
