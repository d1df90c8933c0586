"""Is the demo's caption encoder the bottleneck? A linear probe (softmax regression on the
standardised MiniLM vectors of the training captions, as the generator sees them) predicts each
caption's shape, colour and position; printed: its accuracy on training and on unseen-pair captions.

    OMP_NUM_THREADS=1 python benchmarks/demo_caption_probe.py
"""

import torch
import torch.nn.functional as F

from sdn.data.demo_data import make_demo_data
from sdn.networks.text import build_text_encoder, encode_unique


def main(seed: int = 0, steps: int = 300) -> None:
    data = make_demo_data(64, seed)
    encoder = build_text_encoder("all-minilm-l6-v2")
    train, test = data.subset("train"), data.subset("test")
    x = encode_unique(encoder, [c[0] for c in train.captions]).float()
    x_test = encode_unique(encoder, [c[0] for c in test.captions]).float()
    mean, std = x.mean(0), x.std(0)
    x, x_test = (x - mean) / std, (x_test - mean) / std
    for attribute in ("shape", "colour", "position"):
        names = sorted({a[attribute] for a in train.attributes})
        y = torch.tensor([names.index(a[attribute]) for a in train.attributes])
        y_test = torch.tensor([names.index(a[attribute]) for a in test.attributes])
        torch.manual_seed(seed)
        w = torch.zeros(x.shape[1], len(names), requires_grad=True)
        b = torch.zeros(len(names), requires_grad=True)
        opt = torch.optim.Adam([w, b], 1e-2)
        for _ in range(steps):
            opt.zero_grad()
            (F.cross_entropy(x @ w + b, y) + 1e-3 * w.square().sum()).backward()
            opt.step()
        with torch.no_grad():
            acc = ((x @ w + b).argmax(1) == y).float().mean().item()
            acc_test = ((x_test @ w + b).argmax(1) == y_test).float().mean().item()
        print(f"{attribute:<9} training captions {acc:.1%}   unseen-pair captions {acc_test:.1%}")


if __name__ == "__main__":
    main()
