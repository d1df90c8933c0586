"""How close does a trained generator get to the teacher's taps? For every tap: G's paired activation
vs the teacher's tap of the real image (both in the loss's units, each tap divided by its mean
|activation|), as a mean L1, beside two references: a zero map, and the training set's mean map.

    OMP_NUM_THREADS=1 python benchmarks/demo_tap_errors.py runs/demo/checkpoint-latest.pt [flat|gradient]

(the second argument: the run's demo backgrounds, `sdn demo`'s flat by default; runs before session 6 used gradient)

A generator whose Stage I learned the taps is well below both; one no closer than zeros learned none.
"""

import sys

import torch

from sdn.data.demo_data import make_demo_data
from sdn.networks.teachers import build_teacher
from sdn.networks.text import build_text_encoder, encode_unique
from sdn.training.checkpoint import generator_from_checkpoint, load_checkpoint
from sdn.training.step import tap_mean_activations


@torch.no_grad()
def main(path: str, background: str = "flat", every: int = 8) -> None:
    ckpt = load_checkpoint(path)
    generator = generator_from_checkpoint(ckpt).float().eval()
    config = ckpt["config"]
    data = make_demo_data(config["resolution"], config["seed"], background=background).subset("train")
    idx = torch.arange(0, len(data), every)
    teacher = build_teacher(config["teacher"], resolution=config["resolution"])
    real = data.images[idx].float() / 255
    scales = tap_mean_activations(teacher, data.images[:512], torch.device("cpu"), "fp32")
    text = encode_unique(build_text_encoder(config["text_encoder"]), [data.captions[i][0] for i in idx.tolist()])
    images, acts = generator(text)
    print(f"{'tap':<10} {'shape':<16} {'G':>6} {'zeros':>6} {'mean map':>9}")
    for tap, feat, act, scale in zip(teacher.taps, teacher(real), acts, scales):
        target = feat / scale
        mean_map = target.mean(0, keepdim=True)
        print(f"{tap.name:<10} {str(tuple(feat.shape[1:])):<16} {(act - target).abs().mean():6.3f} {target.abs().mean():6.3f} "
              f"{(target - mean_map).abs().mean():9.3f}")
    print(f"pixels: G {(images[:, 0] - real).abs().mean():.3f}, mean image {(real - real.mean(0)).abs().mean():.3f}")


if __name__ == "__main__":
    main(*sys.argv[1:3])
