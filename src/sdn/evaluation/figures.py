"""The paper's qualitative figures: real vs generated (Figs. 3-4), diverse synthesis (Fig. 5),
approximate sample retrieval (Fig. 7) and sentence interpolation (Fig. 8). Each draws one image file."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from sdn.baselines.noise import fixed_noise
from sdn.data.captioned_images import CaptionedImages
from sdn.evaluation.plots import captioned_grid
from sdn.networks.generator import Generator
from sdn.sampling import generate


def real_vs_generated(data: CaptionedImages, generated: torch.Tensor, pick: list[int], path: Path, title: str) -> None:
    """generated: uint8 (N, C, n, 3, H, W) aligned with `data`; draws caption 0 of each picked image."""
    rows = [("real", data.images[pick].float() / 255), ("generated", generated[pick, 0, 0].float() / 255)]
    captioned_grid(rows, [data.captions[i][0] for i in pick], path, title=title)


def diverse(data: CaptionedImages, generated: torch.Tensor, pick: list[int], path: Path) -> None:
    """One row per output of a diverse model: the n images it draws for the same caption."""
    n = generated.shape[2]
    rows = [("real", data.images[pick].float() / 255)]
    rows += [(f"output {p + 1}", generated[pick, 0, p].float() / 255) for p in range(n)]
    captioned_grid(rows, [data.captions[i][0] for i in pick], path, title=f"Diverse synthesis: the {n} images drawn for each caption")


def retrieval(queries: torch.Tensor, query_feats: torch.Tensor, captions: list[str], train_images: torch.Tensor,
              train_feats: torch.Tensor, path: Path, k: int = 5, feature_name: str = "") -> torch.Tensor:
    """For each generated image (uint8 queries), its k nearest training images by cosine similarity of
    classifier features; returns the (Q, k) similarities. A model that copied its training set would
    show near-identical neighbours with similarity close to 1."""
    sims = F.normalize(query_feats.float(), dim=1) @ F.normalize(train_feats.float(), dim=1).T
    top = sims.topk(k, dim=1)
    rows = [("generated", queries.float() / 255)]
    for j in range(k):
        rows.append((f"neighbour {j + 1}", train_images[top.indices[:, j]].float() / 255))
    captioned_grid(rows, [f"{c} (cos {top.values[q, 0]:.2f})" for q, c in enumerate(captions)], path,
                   title=f"Approximate sample retrieval: nearest training images ({feature_name} features, cosine)")
    return top.values


def interpolation(generator: Generator, text_a: torch.Tensor, text_b: torch.Tensor, caption_a: str, caption_b: str,
                  steps: int, path: Path, precision: str = "bf16") -> None:
    """Images for linear interpolations between two caption embeddings (raw encoder space). A GAN
    baseline draws every step with the same noise, so that only the caption changes (Reed et al.)."""
    weights = torch.linspace(0, 1, steps)
    text = torch.stack([(1 - w) * text_a + w * text_b for w in weights])
    with fixed_noise(generator):
        images = generate(generator, text, precision=precision)
    rows = [(f"output {p + 1}" if images.shape[1] > 1 else "", images[:, p]) for p in range(images.shape[1])]
    labels = [f"{1 - w:.2f} A + {w:.2f} B" for w in weights.tolist()]
    captioned_grid(rows, labels, path, title=f"Sentence interpolation. A: {caption_a}   B: {caption_b}")
