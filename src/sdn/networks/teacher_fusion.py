"""A frozen teacher rewritten for speed: the same function, fewer and cheaper operations.

A teacher never trains, so everything that is constant at inference can be folded once:

- EfficientNet-Lite0: each eval-mode batch norm is folded into the convolution before it (a weight
  and a bias; about a third of the network's operations, forward and backward, disappear); the
  symmetric "same" zero paddings of the stride-1 depthwise convolutions become the convolutions'
  own padding (no separate padded copy of every depthwise input); the input scaling
  `(x * 255 - 127) / 128` is folded into the stem convolution (its padding then takes the value
  that scales to 0); and each block is one function call instead of nine module calls.
- Every teacher (VGG too): the weights are held in the step's precision (bf16 under bf16 autocast).
  Autocast casts a frozen weight to bf16 at *every* call (it caches the casts of trainable leaves
  only), twice per Stage II step, so holding them in bf16 saves that traffic; the convolutions see
  the same bf16 weights as before, rounded once after folding instead of once before.

The result agrees with the original teacher to rounding: exactly in fp32 up to the order of float
operations, within bf16 tolerance in bf16 (tests/test_speed_switches.py).
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_weights

from sdn.networks.teachers import (
    EFFICIENTNET_LITE0_BLOCKS,
    EfficientNetTeacher,
    Teacher,
    VGGTeacher,
    run_to_taps,
)
from sdn.utils import LITE_INPUT_CENTRE, LITE_INPUT_SCALE


def fuse_teacher(teacher: Teacher, precision: str) -> Teacher:
    """A frozen copy of `teacher` for training steps in `precision` ("bf16" or "fp32")."""
    from sdn.networks.teacher_views import ResizedInputTeacher

    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    if isinstance(teacher, ResizedInputTeacher):  # the view stays, the network inside it is fused
        return ResizedInputTeacher(fuse_teacher(teacher.inner, precision), teacher.tap_sizes[0] * teacher.taps[0].stride,
                                   teacher.input_size).freeze()
    if isinstance(teacher, EfficientNetTeacher):
        fused = FusedEfficientNetTeacher(teacher, dtype)
    elif isinstance(teacher, VGGTeacher):
        fused = FusedVGGTeacher(teacher, dtype)
    else:
        raise TypeError(f"no fused form of {type(teacher).__name__}")
    return fused.freeze()


class FusedVGGTeacher(Teacher):
    """VGG with its weights held in `dtype`; the input is normalised in fp32, then cast once."""

    def __init__(self, teacher: VGGTeacher, dtype: torch.dtype):
        super().__init__()
        self.taps, self.tap_after = teacher.taps, list(teacher.tap_after)
        self.features = copy.deepcopy(teacher.features).to(dtype)
        self.register_buffer("mean", teacher.mean.clone())
        self.register_buffer("std", teacher.std.clone())

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        return run_to_taps(self.features, self.tap_after, ((images - self.mean) / self.std).to(self.features[0].weight.dtype))


class _Conv:
    """A convolution with its batch norm folded in; `pad` is applied by F.pad first when the
    "same" padding is asymmetric (stride 2), else it is the convolution's own symmetric padding."""

    def __init__(self, conv: nn.Conv2d, bn: nn.BatchNorm2d, in_scale: float = 1.0, in_shift: float = 0.0):
        weight, bias = fuse_conv_bn_weights(conv.weight, conv.bias, bn.running_mean, bn.running_var, bn.eps, bn.weight, bn.bias)
        weight, bias = weight.detach(), bias.detach()
        if in_scale != 1.0 or in_shift != 0.0:  # conv(W, s*x + t) = conv(s*W, x) + t*sum(W), padding aside
            bias = bias + in_shift * weight.sum((1, 2, 3))
            weight = weight * in_scale
        self.weight, self.bias = weight, bias  # moved into the teacher's buffers, then dropped here
        self.stride, self.groups, self.index = tuple(conv.stride), conv.groups, -1
        pad = tuple(getattr(conv.static_padding, "padding", (0, 0, 0, 0)))  # (left, right, top, bottom)
        self.full_pad = pad
        symmetric = pad[0] == pad[1] == pad[2] == pad[3]
        self.padding = pad[0] if symmetric else 0
        self.pad = None if symmetric else pad
        k = weight.shape[-1]
        # A stride-2 depthwise convolution with TF's (k//2 - 1, k//2) padding is the stride-1 one
        # with symmetric padding k//2, read at the odd positions (tests/test_speed_switches.py).
        self.odd_positions_of_stride1 = (conv.groups > 1 and self.stride == (2, 2)
                                         and pad == (k // 2 - 1, k // 2, k // 2 - 1, k // 2))


class FusedEfficientNetTeacher(Teacher):
    """EfficientNet-Lite0 with folded batch norms (see the module's docstring)."""

    def __init__(self, teacher: EfficientNetTeacher, dtype: torch.dtype):
        super().__init__()
        net = teacher.net
        if not isinstance(net._swish, nn.ReLU6):
            raise TypeError("only the Lite models (ReLU6, no squeeze-excitation) are fused")
        self.taps = teacher.taps
        # stem: sdn.utils.lite_input folded in; the padding value 127/255 is what scales to 0
        self.stem = _Conv(net._conv_stem, net._bn0, 255 / LITE_INPUT_SCALE, -LITE_INPUT_CENTRE / LITE_INPUT_SCALE)
        self.stem_pad_value = LITE_INPUT_CENTRE / 255
        self.blocks, self.skips = [], []
        for block in net._blocks:
            if block.has_se:
                raise TypeError("only the Lite models (ReLU6, no squeeze-excitation) are fused")
            expand = _Conv(block._expand_conv, block._bn0) if block._block_args.expand_ratio != 1 else None
            self.blocks.append((expand, _Conv(block._depthwise_conv, block._bn1), _Conv(block._project_conv, block._bn2)))
            args = block._block_args  # the package's own skip condition, verbatim (a list stride [1] means no skip)
            self.skips.append(bool(args.id_skip and args.stride == 1 and args.input_filters == args.output_filters))
        self.head = _Conv(net._conv_head, net._bn1)
        # Register every folded tensor as a buffer so that .to(device / memory_format) moves them.
        convs = [self.stem, self.head] + [c for b in self.blocks for c in b if c is not None]
        for i, c in enumerate(convs):
            self.register_buffer(f"w{i}", c.weight.to(dtype))
            self.register_buffer(f"b{i}", c.bias.to(dtype))
            c.index, c.weight, c.bias = i, None, None
        self.dtype = dtype

    def _apply(self, fn, recurse=True):
        out = super()._apply(fn, recurse)
        self.dtype = self.w0.dtype
        return out

    def _conv(self, c: _Conv, x: torch.Tensor) -> torch.Tensor:
        w, b = getattr(self, f"w{c.index}"), getattr(self, f"b{c.index}")
        if c.pad is not None:
            if c.odd_positions_of_stride1 and w.dtype == torch.bfloat16 and x.shape[-1] % 2 == 0 == x.shape[-2] % 2:
                # oneDNN's bf16 backward pass of the strided form ran 10-30x slower than of the
                # stride-1 form (4x the arithmetic of a cheap layer) on 2 CPU cores
                return F.conv2d(x, w, b, 1, w.shape[-1] // 2, 1, c.groups)[..., 1::2, 1::2]
            x = F.pad(x, c.pad)
        return F.conv2d(x, w, b, c.stride, c.padding, 1, c.groups)

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        x = F.pad(images.to(self.dtype), self.stem.full_pad, value=self.stem_pad_value)
        x = F.relu6(F.conv2d(x, self.w0, self.b0, self.stem.stride))
        out = [x]
        for i, ((expand, depthwise, project), skip) in enumerate(zip(self.blocks, self.skips)):
            y = F.relu6(self._conv(expand, x)) if expand is not None else x
            y = self._conv(project, F.relu6(self._conv(depthwise, y)))
            x = y + x if skip else y
            if i in EFFICIENTNET_LITE0_BLOCKS:
                out.append(x)
        out.append(F.relu6(self._conv(self.head, x)))
        return out
