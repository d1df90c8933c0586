"""The metric registry: each metric module registers `name -> Metric` here (see sdn.evaluation.metrics).

Every metric reads one `EvalContext` (the drawings, the real images, the settings) and returns a
flat dict of numbers plus the settings that made them, so no figure leaves without its label.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch

from sdn.data.captioned_images import CaptionedImages


@dataclass
class EvalContext:
    """generated: uint8 (N, C, n, 3, H, W): for each of the N real images of `data`, the drawings of
    its first C captions, n per caption (a diverse model's outputs). Scores use output 0 of every
    caption, so a diverse model is scored on as many images as a plain one.
    """

    generated: torch.Tensor
    data: CaptionedImages
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    batch_size: int = 64
    classifier: str = "efficientnet-lite0"  # network for the Inception Score (see sdn.networks.classifiers)
    classifier_weights: str | None = None
    is_splits: int = 10
    feature_precision: str = "fp32"  # classifier features for IS and FID: "fp32" (standard) or "bf16" (fast)
    progress: bool = False
    cache: dict = field(default_factory=dict)  # features shared between metrics (e.g. of the real images)

    def drawings(self) -> torch.Tensor:
        """uint8 (N * C, 3, H, W): output 0 of every caption, image-major."""
        return self.generated[:, :, 0].flatten(0, 1)

    def paired_real_index(self) -> torch.Tensor:
        """For each drawing of `drawings()`, the index of its real image."""
        return torch.arange(self.generated.shape[0]).repeat_interleave(self.generated.shape[1])


@dataclass(frozen=True)
class Metric:
    fn: Callable[[EvalContext], dict]  # returns the score under the metric's own name, with its details
    description: str  # one line for people: printed by `sdn evaluate --list-metrics`
    default: bool = True  # computed when no --metrics are given (False: e.g. a metric for the demo data only)


METRICS: dict[str, Metric] = {}


def register(name: str, description: str, default: bool = True):
    def wrap(fn):
        METRICS[name] = Metric(fn, description, default)
        return fn

    return wrap


def default_metrics() -> tuple[str, ...]:
    return tuple(name for name, metric in METRICS.items() if metric.default)


def metrics_help() -> str:
    """`sdn evaluate --list-metrics`: one line per metric."""
    width = max(map(len, METRICS))
    return "".join(f"{name:<{width}}  {m.description}{'' if m.default else ' (not by default)'}\n" for name, m in METRICS.items())

