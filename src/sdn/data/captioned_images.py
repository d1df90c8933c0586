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
        """The images of one split ("train" or "test"), in their order."""
        return self.take([i for i, s in enumerate(self.split) if s == split])

    def take(self, idx, captions_per_image: int | None = None) -> "CaptionedImages":
        """The images at the indices `idx` (a list or a 1-d tensor, repeats allowed), every per-image
        field selected alike; captions_per_image: keep only each image's first that many captions."""
        idx = torch.as_tensor(idx, dtype=torch.long).reshape(-1)
        rows = idx.tolist()
        c = captions_per_image
        return CaptionedImages(
            images=self.images[idx],
            captions=[self.captions[i][:c] for i in rows],
            labels=[self.labels[i] for i in rows],
            split=[self.split[i] for i in rows],
            masks=None if self.masks is None else self.masks[idx],
            attributes=[self.attributes[i] for i in rows] if self.attributes else [],
            embeddings=None if self.embeddings is None else self.embeddings[idx, :c],
            embeddings_name=self.embeddings_name,
        )
