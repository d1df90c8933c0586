"""An exponential moving average of the generator's weights, the one that draws (as in StyleGAN2-ADA
and EDM): Adam's last steps leave the weights scattered around where the loss is low, and their
average draws cleaner images than any one of them (measured on the demo: docs/demo-levers.md).
Built on torch.optim.swa_utils; saved in every checkpoint, so a resumed run averages on exactly."""

from __future__ import annotations

import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn


def weight_average(generator: torch.nn.Module, decay: float, saved: dict | None = None) -> AveragedModel | None:
    """None when decay is 0 (no average: the paper); else the average, restored from a checkpoint's
    `saved` entries when given. The first update copies the weights, each later one moves the average
    1 - decay of the way towards them."""
    if not decay:
        return None
    average = AveragedModel(generator, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)
    average.requires_grad_(False)
    if saved is not None and "generator_average" in saved:
        average.module.load_state_dict(saved["generator_average"])
        average.n_averaged.fill_(saved["average_count"])
    return average


def average_entries(average: AveragedModel | None) -> dict:
    """What a checkpoint keeps of the average."""
    if average is None:
        return {}
    return {"generator_average": average.module.state_dict(), "average_count": int(average.n_averaged)}


def drawing_generator(generator: torch.nn.Module, average: AveragedModel | None) -> torch.nn.Module:
    """The weights that draw: the average when there is one."""
    return generator if average is None else average.module
