"""Is a generator drawing the same picture whatever the caption? (A GAN's mode collapse, or SDN's
"one mean image" failure with a random teacher.) Measured, not guessed:

- variety: the mean pairwise distance between drawings of *different* captions, as a fraction of
  the same distance between the real images those captions describe. Distances are root-mean-square
  per-pixel differences on RGB in [0, 1] (no feature network: a number that needs no weights and
  means the same on every machine). About 1 for drawings as varied as the photographs; near 0 when
  every caption gets nearly the same drawing.
- nearest-neighbour variety: the mean distance from each drawing to its nearest other drawing, as a
  fraction of the same for the real images; near 0 when many captions share near-identical drawings
  even though the set as a whole still varies (partial collapse).
- for a GAN, the spread of the discriminator's outputs (sdn.baselines.step logs it every step).

A generator is flagged collapsed when either fraction is below COLLAPSE_BELOW.
"""

from __future__ import annotations

import warnings

import torch

COLLAPSE_BELOW = 0.1
MAX_IMAGES = 512  # pairwise distances of at most this many drawings (about 130k pairs)


def _distances(images: torch.Tensor) -> torch.Tensor:
    """(N, N) root-mean-square per-pixel distances of float images (N, 3, H, W) in [0, 1]."""
    flat = images.flatten(1).float()
    return torch.cdist(flat, flat) / flat.shape[1] ** 0.5


def mean_pairwise_distance(images: torch.Tensor) -> float:
    n = len(images)
    if n < 2:
        return 0.0
    d = _distances(images)
    return (d.sum() / (n * (n - 1))).item()  # the diagonal is 0


def mean_nearest_distance(images: torch.Tensor) -> float:
    if len(images) < 2:
        return 0.0
    d = _distances(images)
    d.fill_diagonal_(float("inf"))
    return d.min(1).values.mean().item()


def evenly_spaced(n: int, count: int = MAX_IMAGES) -> torch.Tensor:
    return torch.linspace(0, n - 1, min(n, count)).round().long().unique()


def variety_report(drawings: torch.Tensor, reals: torch.Tensor, threshold: float = COLLAPSE_BELOW) -> dict:
    """drawings[i] was drawn from a caption of reals[i] (different i: different captions); float in
    [0, 1] or uint8. Uses at most MAX_IMAGES of them, evenly spaced."""
    pick = evenly_spaced(len(drawings))
    fake, real = _unit(drawings[pick]), _unit(reals[pick])
    real_mean, real_nn = mean_pairwise_distance(real), mean_nearest_distance(real)
    fake_mean, fake_nn = mean_pairwise_distance(fake), mean_nearest_distance(fake)
    ratio = fake_mean / max(real_mean, 1e-8)
    nn_ratio = fake_nn / max(real_nn, 1e-8)
    return {
        "variety": ratio, "variety_nearest": nn_ratio, "variety_drawings_rms": fake_mean, "variety_real_rms": real_mean,
        "variety_images": len(pick), "collapsed": bool(ratio < threshold or nn_ratio < threshold),
        "variety_settings": (f"mean pairwise (and nearest-neighbour) RMS pixel distance between drawings of different captions "
                             f"over the same for their real images, {len(pick)} images, RGB in [0, 1]; collapsed if either is below {threshold}"),
    }


def warn_if_collapsed(report: dict, what: str) -> None:
    if report["collapsed"]:
        warnings.warn(f"{what} looks collapsed: its drawings of different captions vary {report['variety']:.3f}x as much as the real "
                      f"images (nearest neighbours {report['variety_nearest']:.3f}x); numbers scored on it describe one or few images")


def _unit(images: torch.Tensor) -> torch.Tensor:
    return images.float() / 255 if images.dtype == torch.uint8 else images.float()
