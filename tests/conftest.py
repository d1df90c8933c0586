import hashlib
from pathlib import Path

import pytest
import torch

from sdn import text

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


@pytest.fixture(autouse=True)
def _hash_encoder(monkeypatch):
    monkeypatch.setitem(text.TEXT_ENCODERS, HashEncoder.name, HashEncoder)


@pytest.fixture(scope="session")
def oxford_root() -> Path:
    if not (OXFORD / "jpg").is_dir():
        pytest.skip(f"the shared Oxford-102 data is absent ({OXFORD.resolve()})")
    return OXFORD
