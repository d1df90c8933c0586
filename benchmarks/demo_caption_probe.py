"""Is the demo's caption encoder the bottleneck? A linear probe (softmax regression on the
standardised MiniLM vectors of all five training captions of each image, as a generator with the
`dimension` text scaling sees them; the demo's now reads them with `paraphrase`, see demo_paraphrase_reading.py)
predicts each caption's shape, colour and position; printed: its accuracy on training captions, on
unseen-pair captions and on the held-out phrasings (and, for shape, on those naming it by a synonym).

    OMP_NUM_THREADS=1 python benchmarks/demo_caption_probe.py

Two probes: "decayed" starts from zero with a small weight decay, so it ignores directions the
training captions never move; "as trained" starts from random weights without decay, as the
generator's first layer does, so what an unseen wording adds along those directions reaches it as noise.
The gap between the two is what a generator could gain from projecting captions onto the training span.
"""

import argparse
from pathlib import Path
from types import SimpleNamespace

import torch
import torch.nn.functional as F

from sdn.data.demo_data import make_demo_data
from sdn.data.demo_phrasings import held_out_captions
from sdn.networks.text import ConcatenatedEncoders, build_text_encoder, encode_unique


def fit_probe(x, y, classes: int, decayed: bool, seed: int, steps: int = 300):
    """Softmax regression of labels y on caption vectors x: a function from vectors to predicted labels."""
    torch.manual_seed(seed)
    w = torch.zeros(x.shape[1], classes) if decayed else torch.randn(x.shape[1], classes) / x.shape[1] ** 0.5
    w.requires_grad_()
    b = torch.zeros(classes, requires_grad=True)
    opt = torch.optim.Adam([w, b], 1e-2)
    for _ in range(steps):
        opt.zero_grad()
        (F.cross_entropy(x @ w + b, y) + (1e-3 if decayed else 0.0) * w.square().sum()).backward()
        opt.step()
    w, b = w.detach(), b.detach()
    return lambda xs: (xs @ w + b).argmax(1)


def probe(x, y, sets, classes: int, decayed: bool, seed: int, steps: int = 300) -> list[float]:
    predict = fit_probe(x, y, classes, decayed, seed, steps)
    return [(predict(xs) == ys).float().mean().item() for xs, ys in sets]


def training_vectors(encoder, train, x: torch.Tensor | None = None):
    """All training captions' vectors, standardised per dimension (the `dimension` text scaling), and the mean and spread
    that standardise any other caption the same way. x: their raw vectors, if already encoded."""
    x = encode_unique(encoder, [c for cs in train.captions for c in cs]).float() if x is None else x.flatten(0, -2)
    mean, std = x.mean(0), x.std(0)
    return (x - mean) / std, mean, std


class SentenceTransformerFolder:
    """Any sentence-transformers model saved in a local folder (e.g. all-mpnet-base-v2), as a text encoder
    for these probes: unit-length embeddings, as the package's MiniLM gives. Needs sentence-transformers
    (the test extras); nothing is downloaded (HF_HUB_OFFLINE)."""

    def __init__(self, folder: str):
        import os

        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from sentence_transformers import SentenceTransformer

        self.model = SentenceTransformer(folder, device="cpu")
        self.name, self.dim = Path(folder).name, int(self.encode(["a"]).shape[1])

    def encode(self, captions) -> torch.Tensor:
        return torch.as_tensor(self.model.encode(list(captions), batch_size=256, normalize_embeddings=True)).float()


def probe_encoder(folder: str | None, with_minilm: bool = False):
    """MiniLM, or the sentence-transformers model in `folder` (concatenated with MiniLM if `with_minilm`)."""
    minilm = build_text_encoder("all-minilm-l6-v2") if with_minilm or not folder else None
    if not folder:
        return minilm
    other = SentenceTransformerFolder(folder)
    return ConcatenatedEncoders([minilm, other]) if with_minilm else other


def demo_captions(seed: int, encoder_folder: str | None = None) -> SimpleNamespace:
    """The demo data of `seed` and its captions' raw vectors (MiniLM's, or those of the sentence-transformers
    model in `encoder_folder`): train, test, encoder, train_vectors (images, captions per image, dim), unseen
    (each test image's first caption), held_out (one held-out phrasing per test image, `held_out_captions`),
    and synonym (whether it names the shape by a synonym)."""
    data = make_demo_data(64, seed, background="flat")
    encoder = SentenceTransformerFolder(encoder_folder) if encoder_folder else build_text_encoder("all-minilm-l6-v2")
    train, test = data.subset("train"), data.subset("test")
    held_out_text, synonym = held_out_captions(test.attributes, seed)
    train_vectors = encode_unique(encoder, [c for cs in train.captions for c in cs]).float().unflatten(0, (len(train), -1))
    return SimpleNamespace(train=train, test=test, encoder=encoder, train_vectors=train_vectors,
                           unseen=encode_unique(encoder, [c[0] for c in test.captions]).float(),
                           held_out_text=held_out_text, held_out=encode_unique(encoder, held_out_text).float(),
                           synonym=torch.tensor(synonym))


def labels(attributes: list[dict], attribute: str, repeat: int = 1) -> tuple[list[str], torch.Tensor]:
    """The attribute's sorted class names, and each image's class index (repeated per caption)."""
    names = sorted({q[attribute] for q in attributes})
    return names, torch.tensor([names.index(q[attribute]) for q in attributes for _ in range(repeat)])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--encoder-folder", default=None, metavar="DIR", help="a sentence-transformers model folder instead of MiniLM")
    a = p.parse_args()
    d = demo_captions(a.seed, a.encoder_folder)
    train, test, synonym = d.train, d.test, d.synonym
    per_image = d.train_vectors.shape[1]
    x, mean, std = training_vectors(d.encoder, train, d.train_vectors)
    x_test, x_held = ((v - mean) / std for v in (d.unseen, d.held_out))
    print(f"{len(x)} training captions, {len(x_test)} unseen-pair captions, {len(x_held)} held-out phrasings "
          f"({int(synonym.sum())} naming the shape by a synonym)")
    for decayed in (True, False):
        print("decayed probe (zero start, weight decay)" if decayed else "as-trained probe (random start, no decay)")
        for attribute in ("shape", "colour", "position"):
            names, y = labels(train.attributes, attribute, per_image)
            _, y_test = labels(test.attributes, attribute)
            sets = [(x, y), (x_test, y_test), (x_held, y_test), (x_held[synonym], y_test[synonym])]
            acc = probe(x, y, sets, len(names), decayed, a.seed)
            extra = f"   held-out, synonym-named {acc[3]:.1%}" if attribute == "shape" else ""
            print(f"  {attribute:<9} training {acc[0]:.1%}   unseen pairs {acc[1]:.1%}   held-out phrasings {acc[2]:.1%}{extra}")
    # How strongly each vector points along its own shape: projection onto the centred class means of the
    # training captions' shapes (a reader that follows the shape direction sees this much of it).
    names, y = labels(train.attributes, "shape", per_image)
    _, y_test = labels(test.attributes, "shape")
    centred = torch.stack([x[y == k].mean(0) for k in range(len(names))])
    centred = centred - centred.mean(0)
    directions = centred / centred.norm(dim=1, keepdim=True)
    print("projection onto the own shape's direction (training-caption shape means), nearest-mean accuracy:")
    for label, xs, ys in (("training", x, y), ("unseen pairs", x_test, y_test), ("held-out, training shape word", x_held[~synonym], y_test[~synonym]),
                          ("held-out, synonym", x_held[synonym], y_test[synonym])):
        proj = xs @ directions.T
        print(f"  {label:<30} {proj.gather(1, ys[:, None]).mean():5.2f}   {(proj.argmax(1) == ys).float().mean():.1%}")


if __name__ == "__main__":
    main()
