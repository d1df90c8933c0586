"""In-memory captioned images: the form every dataset reader hands to training and evaluation."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class CaptionedImages:
    """images: uint8 (N, 3, H, W) RGB. captions: N lists of strings (same count each).
    labels: class name per image. split: "train" or "test" per image (class-disjoint).
    masks: optional bool (N, H, W) object masks (the demo data has them; used by its colour metric).
    attributes: optional per-image dicts (e.g. {"colour": "red", "shape": "circle"}).
    embeddings: optional precomputed caption embeddings (N, captions per image, dim) of the text
        encoder named `embeddings_name` (a prepared cache has them).
    """

    images: torch.Tensor
    captions: list[list[str]]
    labels: list[str]
    split: list[str]
    masks: torch.Tensor | None = None
    attributes: list[dict] = field(default_factory=list)
    embeddings: torch.Tensor | None = None
    embeddings_name: str | None = None

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def resolution(self) -> int:
        return self.images.shape[-1]

    def subset(self, split: str) -> "CaptionedImages":
        idx = [i for i, s in enumerate(self.split) if s == split]
        t = torch.tensor(idx, dtype=torch.long)
        return CaptionedImages(
            images=self.images[t],
            captions=[self.captions[i] for i in idx],
            labels=[self.labels[i] for i in idx],
            split=[split] * len(idx),
            masks=None if self.masks is None else self.masks[t],
            attributes=[self.attributes[i] for i in idx] if self.attributes else [],
            embeddings=None if self.embeddings is None else self.embeddings[t],
            embeddings_name=self.embeddings_name,
        )
