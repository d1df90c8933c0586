"""Feeding a training loop: the caption embeddings, each epoch's fixed order, and batches moved to the device."""

from __future__ import annotations

import torch

from sdn.errors import UserError
from sdn.networks.text import TextEncoder, build_text_encoder, encode_unique


def encode_captions(encoder: TextEncoder, captions: list[list[str]]) -> torch.Tensor:
    """(N, captions per image, dim) embeddings, each distinct caption encoded once."""
    per_image = {len(c) for c in captions}
    if len(per_image) != 1:
        raise UserError(f"every image needs the same number of captions, found {sorted(per_image)}")
    flat = encode_unique(encoder, [c for caps in captions for c in caps])
    return flat.view(len(captions), per_image.pop(), -1)


def caption_embeddings(data, encoder_name: str, encoder: TextEncoder | None = None) -> torch.Tensor:
    """(N, captions per image, dim) float embeddings of `data`'s captions: the cache's own when it holds
    `encoder_name`'s (prepared by `sdn data prepare`; the encoder, whose weights may be absent, is then
    never built), else encoded now by `encoder` or a freshly built one."""
    if data.embeddings is not None and data.embeddings_name == encoder_name:
        return data.embeddings.float()
    return encode_captions(encoder or build_text_encoder(encoder_name), data.captions)


def epoch_order(seed: int, epoch: int, n_images: int, captions_per_image: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The epoch's image order and the caption drawn for each image: fixed by (seed, epoch) alone, so
    every process and every resumed run sees the same ones."""
    order_rng = torch.Generator().manual_seed(seed * 100003 + epoch)
    order = torch.randperm(n_images, generator=order_rng)
    caption_pick = torch.randint(captions_per_image, (n_images,), generator=order_rng)
    return order, caption_pick


def epoch_blend(seed: int, epoch: int, n_images: int, captions_per_image: int) -> tuple[torch.Tensor, torch.Tensor]:
    """For `caption_blend`: each image's offset from its drawn caption to a second one (never itself
    when it has several) and the first caption's weight, uniform in [0, 1]; fixed by (seed, epoch) on a
    stream of their own, so the images and captions `epoch_order` draws stay those of a run without blends."""
    rng = torch.Generator().manual_seed(seed * 100003 + epoch + 7_000_000_019)
    offset = torch.randint(1, captions_per_image, (n_images,), generator=rng) if captions_per_image > 1 else torch.zeros(n_images, dtype=torch.long)
    return offset, torch.rand(n_images, generator=rng)


def caption_blend(vectors: torch.Tensor, pick: torch.Tensor, offset: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """vectors (B, captions, D): w * caption[pick] + (1 - w) * caption[pick + offset], rescaled to the
    blend of the two vectors' lengths, because the mean of two unit sentence vectors is shorter than
    any sentence's and G would otherwise train on inputs no caption gives it."""
    rows = torch.arange(len(vectors))
    first = vectors[rows, pick].float()
    second = vectors[rows, (pick + offset) % vectors.shape[1]].float()
    w = weight.float()[:, None]
    blend = w * first + (1 - w) * second
    length = w * first.norm(dim=1, keepdim=True) + (1 - w) * second.norm(dim=1, keepdim=True)
    return (blend * length / blend.norm(dim=1, keepdim=True).clamp_min(1e-12)).to(vectors.dtype)


def host_to_device(batch: torch.Tensor, dev: torch.device) -> torch.Tensor:
    """A freshly gathered CPU batch -> `dev`. On CUDA it is staged in pinned memory first (the
    caching host allocator reuses the buffers), so the copy is a real asynchronous DMA rather than a
    synchronous copy through a pageable bounce buffer; uint8 images cross the bus, 4x less than fp32."""
    if dev.type == "cuda":
        batch = batch.pin_memory()
    return batch.to(dev, non_blocking=True)
