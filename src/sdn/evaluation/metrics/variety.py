"""Variety of the drawings across captions, and the collapse flag (see sdn.evaluation.collapse)."""

from __future__ import annotations

from sdn.evaluation.collapse import variety_report, warn_if_collapsed
from sdn.evaluation.metrics.registry import EvalContext, register


@register("variety", "drawings of different captions vs their real images: pairwise RMS pixel distance ratio; flags a collapsed generator")
def variety(ctx: EvalContext) -> dict:
    first_caption = ctx.generated[:, 0, 0]  # one drawing per real image: different images, different captions
    report = variety_report(first_caption, ctx.data.images)
    warn_if_collapsed(report, "the generator")
    return report
