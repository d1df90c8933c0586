"""The demo's shape judge: a small CNN that names the shape in a demo image, or says "no shape".

It is trained by the package on real demo images (a data seed of its own, every colour-shape pair)
plus a fifth class, "no shape": soft Gaussian blobs of every palette colour, and backgrounds with no
object or only coloured noise. That fifth class is what keeps it from being fooled: the old demo drew
soft round blobs of the right colour, which a four-way classifier must call one of the four shapes
(often "circle"), and an untrained generator draws noise, which it would label at chance (25 %).
Training is seeded and takes seconds; the weights are cached (see `cache_dir`) so later demos only
load them.

Augmentation makes it judge shape, not colour or crispness: random channel order and desaturation
(a muted or wrong-coloured square is still a square), mild blur and noise (drawings are softer than
the anti-aliased originals).
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from sdn.data.demo_data import COLOURS, POSITIONS, SHAPES, SIZES, make_demo_data

NO_SHAPE = "no shape"
CLASSES = (*SHAPES, NO_SHAPE)
INPUT_SIZE = 64  # drawings of any size are resized to this
VERSION = 2  # bump when the data, the network or the training changes: the cache key
TRAIN_SEEDS = (1001,)  # data seeds of the classifier's own images, never a demo seed's images
CHECK_SEED = 2001


class ShapeNet(nn.Module):
    """Four 3x3 conv layers (three of stride 2) with batch norm, global mean pool, 5-way linear."""

    def __init__(self, width: int = 32):
        super().__init__()
        chans = (3, width // 2, width, 2 * width, 2 * width)
        layers = []
        for i, (a, b) in enumerate(zip(chans[:-1], chans[1:])):
            layers += [nn.Conv2d(a, b, 3, stride=2 if i < 3 else 1, padding=1, bias=False), nn.BatchNorm2d(b), nn.ReLU()]
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(chans[-1], len(CLASSES))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """float (B, 3, H, W) in [0, 1] -> logits (B, 5)."""
        if images.shape[-1] != INPUT_SIZE:
            images = F.interpolate(images, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", antialias=True, align_corners=False)
        return self.head(self.features(images - 0.5).mean((2, 3)))


def gaussian_blob(rgb, cx: float, cy: float, sx: float, sy: float, background, resolution: int, peak: float = 1.0) -> torch.Tensor:
    """One soft Gaussian blob (uint8 (3, H, W)) of colour `rgb` centred at (cx, cy) with standard
    deviations (sx, sy), all as fractions of the side, on a vertical gradient (top, bottom RGB)."""
    grid = (torch.arange(resolution, dtype=torch.float32) + 0.5) / resolution
    alpha = peak * torch.exp(-((grid[None, :] - cx) ** 2 / (2 * sx**2) + (grid[:, None] - cy) ** 2 / (2 * sy**2)))
    top, bottom = (torch.tensor(c, dtype=torch.float32) for c in background)
    ramp = grid[:, None, None]
    image = (1 - alpha[..., None]) * ((1 - ramp) * top + ramp * bottom) + alpha[..., None] * torch.tensor(rgb, dtype=torch.float32)
    return image.permute(2, 0, 1).round().clamp(0, 255).to(torch.uint8)


def gaussian_blobs(count: int, seed: int, resolution: int = INPUT_SIZE) -> tuple[torch.Tensor, list[str]]:
    """`count` soft Gaussian blobs (uint8 (N, 3, H, W)), palette colours in turn, at the demo's sizes and
    positions on its kind of near-grey gradient background; returns the images and their colours."""
    rng = random.Random(seed)
    images, colours = [], []
    for i in range(count):
        name = list(COLOURS)[i % len(COLOURS)]
        rgb = [min(255.0, max(0.0, v + rng.uniform(-15, 15))) for v in COLOURS[name]]
        _, x, y, _ = rng.choice(POSITIONS)
        r = rng.choice(list(SIZES.values()))
        sx, sy = r * rng.uniform(0.4, 0.8), r * rng.uniform(0.4, 0.8)
        cx, cy = x + rng.uniform(-0.03, 0.03), y + rng.uniform(-0.03, 0.03)
        base = rng.uniform(80, 200)
        background = [[base + rng.uniform(-12, 12) for _ in range(3)] for _ in range(2)]
        images.append(gaussian_blob(rgb, cx, cy, sx, sy, background, resolution, peak=rng.uniform(0.85, 1.0)))
        colours.append(name)
    return torch.stack(images), colours


def empty_images(count: int, seed: int, resolution: int = INPUT_SIZE) -> torch.Tensor:
    """uint8 demo-like backgrounds with no object: plain, or under coloured noise of random grain
    (what an untrained generator draws)."""
    gen = torch.Generator().manual_seed(seed)
    images = []
    for i in range(count):
        base = 80 + 120 * torch.rand(1, generator=gen)
        top, bottom = (base + 24 * torch.rand(3, generator=gen) - 12 for _ in range(2))
        ramp = ((torch.arange(resolution) + 0.5) / resolution)[None, :, None]
        image = ((1 - ramp) * top[:, None, None] + ramp * bottom[:, None, None]).expand(3, resolution, resolution) / 255
        if i % 2:  # noise at a grain of 2-16 px, some of it coloured
            grain = 2 ** int(torch.randint(1, 5, (1,), generator=gen))
            noise = torch.randn(3, resolution // grain, resolution // grain, generator=gen)
            noise = torch.nn.functional.interpolate(noise[None], size=resolution, mode="nearest" if i % 4 == 1 else "bilinear")[0]
            image = image + 0.15 * float(torch.rand(1, generator=gen)) * noise
        images.append((image.clamp(0, 1) * 255).round().to(torch.uint8))
    return torch.stack(images)


def _augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """float (B, 3, H, W) in [0, 1]: random channel order, desaturation, blur and noise."""
    b = len(x)
    perm = torch.stack([torch.randperm(3, generator=gen) for _ in range(b)])
    x = x.gather(1, perm[:, :, None, None].expand_as(x))
    grey = x.mean(1, keepdim=True)
    keep = 1 - 0.7 * torch.rand(b, 1, 1, 1, generator=gen)
    x = grey + keep * (x - grey)
    sigma = float(torch.rand(1, generator=gen)) * 1.2
    if sigma > 0.3:  # one blur strength per batch: cheap, and batches cover the range
        import torchvision.transforms.functional as TF

        x = TF.gaussian_blur(x, kernel_size=7, sigma=sigma)
    return (x + 0.03 * torch.rand(b, 1, 1, 1, generator=gen) * torch.randn(x.shape, generator=gen)).clamp(0, 1)


def training_set() -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 images and class indices: real demo images of every pair (seeds TRAIN_SEEDS) and as many
    "no shape" images: as many blobs as there are images of one shape, and half as many empty or noisy backgrounds."""
    images, labels = [], []
    for seed in TRAIN_SEEDS:
        data = make_demo_data(INPUT_SIZE, seed)
        images.append(data.images)
        labels += [CLASSES.index(a["shape"]) for a in data.attributes]
    per_shape = len(labels) // len(SHAPES)
    blobs, _ = gaussian_blobs(per_shape, seed=sum(TRAIN_SEEDS))
    images += [blobs, empty_images(per_shape // 2, seed=sum(TRAIN_SEEDS))]
    labels += [CLASSES.index(NO_SHAPE)] * (per_shape + per_shape // 2)
    return torch.cat(images), torch.tensor(labels)


def train_shape_classifier(epochs: int = 12, batch_size: int = 64, seed: int = 0) -> ShapeNet:
    """Seeded training on `training_set()` (1,782 images)."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    images, labels = training_set()
    net = ShapeNet()
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    steps = epochs * (len(images) // batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps)
    net.train()
    for _ in range(epochs):
        order = torch.randperm(len(images), generator=gen)
        for i in range(0, len(images) - batch_size + 1, batch_size):
            idx = order[i : i + batch_size]
            x = _augment(images[idx].float() / 255, gen)
            loss = F.cross_entropy(net(x), labels[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    return net.eval()


@torch.no_grad()
def classify_shapes(net: ShapeNet, images: torch.Tensor, batch_size: int = 256) -> tuple[list[str], torch.Tensor]:
    """float (N, 3, H, W) in [0, 1] -> (class name per image, its softmax probability)."""
    probs = torch.cat([net(images[i : i + batch_size].float()).softmax(1) for i in range(0, len(images), batch_size)])
    conf, idx = probs.max(1)
    return [CLASSES[i] for i in idx.tolist()], conf


def no_shape_check(net: ShapeNet, count: int = 240, seed: int = CHECK_SEED) -> dict:
    """Fresh Gaussian blobs of every colour and empty or noisy backgrounds (a seed training never
    used): the shares called "no shape" (blobs overall and per colour; empty images), and the highest
    probability any blob got for one of the four shapes."""
    blobs, colours = gaussian_blobs(count, seed)
    names, _ = classify_shapes(net, blobs.float() / 255)
    empty, _ = classify_shapes(net, empty_images(count // 4, seed).float() / 255)
    with torch.no_grad():
        probs = net(blobs.float() / 255).softmax(1)
    per_colour = {c: sum(n == NO_SHAPE for n, k in zip(names, colours) if k == c) / colours.count(c) for c in COLOURS}
    return {"blobs_called_no_shape": names.count(NO_SHAPE) / count, "per_colour": per_colour,
            "max_shape_probability_on_a_blob": round(float(probs[:, : len(SHAPES)].max()), 4), "blobs": count,
            "empty_or_noise_called_no_shape": empty.count(NO_SHAPE) / len(empty)}


def cache_dir() -> Path:
    """$SDN_CACHE_DIR, else $XDG_CACHE_HOME/sdn, else ~/.cache/sdn."""
    if os.environ.get("SDN_CACHE_DIR"):
        return Path(os.environ["SDN_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "sdn"


def load_or_train(folder: str | Path | None = None) -> tuple[ShapeNet, dict]:
    """The cached classifier and its record (the no-shape check), trained and cached on first use."""
    from safetensors.torch import load_file, save_file

    path = Path(folder or cache_dir()) / f"demo-shape-classifier-v{VERSION}.safetensors"
    net = ShapeNet()
    if path.is_file():
        try:
            net.load_state_dict(load_file(path))
            record = json.loads(path.with_suffix(".json").read_text())
            return net.eval(), record
        except Exception:  # a torn or foreign file: train again and replace it
            pass
    net = train_shape_classifier()
    record = {"classes": list(CLASSES), "version": VERSION, "train_seeds": list(TRAIN_SEEDS), "no_shape_check": no_shape_check(net)}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(tmp))
        path.with_suffix(".json").write_text(json.dumps(record, indent=2))
        os.replace(tmp, path)
    except OSError:
        pass  # an unwritable cache only costs retraining next time
    return net, record
