"""How the loss looks through the teacher: at what input scale, and how much each tap counts.

Input scale. An ImageNet network is trained on objects about 224 px across; at 64 px its deepest
EfficientNet-Lite0 taps are 2x2 and its mid-level filters see shapes a few pixels wide.
`ResizedInputTeacher` lets the teacher look at the image up-sampled to `input_size` (the generator
still draws at its own resolution) and area-pools every tap back to the shape it has at the native
resolution. Stage I keeps its one-to-one pairing (G is mirrored from the native tap shapes) and
Stage II compares real and drawn images through the very same view, so both stages stay consistent;
only what the features *mean* changes: features of an object at a scale the teacher knows.

Tap weight profiles. With inverse-mean scaling every tap is one relative error and, in the "flat"
profile, weighs 1 / (number of taps). "mid" favours the mid-level taps, where shape lives (edges and
corners at strides 4-16), over the first (close to pixels and colour) and the deepest (whole-image
class evidence, 2x2 at 64 px). "mid-narrow" gives nearly all the weight to the taps a quarter to a
half of the way down (EfficientNet-Lite0: blocks 2, 4 and 7, maps 16, 8 and 4 cells wide at 64 px);
on the demo it drew the unseen pairs' shapes for 64.8 / 74.4 % (seeds 1 / 2) against "mid"'s 45.1 /
42.3 % at the same budget (docs/demo-levers.md, session 8). A profile is normalised to add up to what
the flat one adds up to, so switching profiles moves weight between taps without changing the taps'
total against the pixel term.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from sdn.errors import UserError
from sdn.networks.teachers import Tap, Teacher

TAP_PROFILES = ("flat", "mid", "mid-narrow")
# "mid-narrow" as measured on EfficientNet-Lite0's nine taps; other teachers' taps read the same curve
# at their own relative depths (linear between these points)
MID_NARROW = (0.05, 0.1, 1.0, 1.0, 1.0, 0.3, 0.1, 0.05, 0.05)


class ResizedInputTeacher(Teacher):
    """`inner` (built for `input_size` px) sees every image resized to `input_size`; its taps are
    area-pooled back to their shapes at `resolution` px. Same taps, same output shapes as a teacher
    built for `resolution`."""

    def __init__(self, inner: Teacher, resolution: int, input_size: int):
        super().__init__()
        self.inner, self.taps = inner, inner.taps
        self.input_size = input_size
        self.tap_sizes = [resolution // t.stride for t in inner.taps]

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        x = F.interpolate(images, size=(self.input_size, self.input_size), mode="bilinear", align_corners=False)
        return [f if f.shape[-1] == s else F.adaptive_avg_pool2d(f, s) for f, s in zip(self.inner(x), self.tap_sizes)]


def viewed_at(teacher: Teacher, resolution: int, input_size: int | None) -> Teacher:
    """`teacher` (built for `input_size`) as seen from `resolution` px images; itself when no up-sampling."""
    return teacher if input_size in (None, resolution) else ResizedInputTeacher(teacher, resolution, input_size)


def check_input_size(input_size: int | None, resolution: int) -> None:
    if input_size is None:
        return
    if not isinstance(input_size, int) or input_size < resolution or input_size % 32:
        raise UserError(f"--teacher-input-size must be a multiple of 32 and at least the image size {resolution}, not {input_size}")


def tap_weight_profile(profile: str, taps: tuple[Tap, ...]) -> torch.Tensor:
    """One weight per tap, adding up to 1: "flat" (1 / number of taps each), "mid" (a raised cosine
    over the tap order, peaking at the middle tap, ends at a quarter of the peak), "mid-narrow" (see
    the module's docstring), or a comma-separated list of one relative weight per tap (normalised to
    add up to 1)."""
    n = len(taps)
    if profile == "flat":
        w = torch.ones(n)
    elif profile == "mid":
        position = torch.linspace(0, 1, n)
        w = 0.25 + 0.75 * 0.5 * (1 - torch.cos(2 * torch.pi * position))
    elif profile == "mid-narrow":
        w = torch.from_numpy(np.interp(np.linspace(0, 1, n), np.linspace(0, 1, len(MID_NARROW)), MID_NARROW)).float()
    else:
        try:
            w = torch.tensor([float(v) for v in profile.split(",")])
        except ValueError:
            raise UserError(f"--tap-profile must be {' or '.join(TAP_PROFILES)} or {n} comma-separated numbers, not {profile!r}") from None
        if len(w) != n or (w < 0).any() or w.sum() <= 0:
            raise UserError(f"--tap-profile needs {n} non-negative numbers (taps {', '.join(t.name for t in taps)}), "
                            f"with a positive sum; got {profile!r}")
    return w / w.sum()
