"""What the "paraphrase" text scaling does to the demo's captions (sdn.networks.caption_input): how far
the held-out phrasings land from the training captions, as the generator reads them, and how strongly
each shape word still says its shape.

    OMP_NUM_THREADS=1 python benchmarks/demo_paraphrase_reading.py [--seed 0] [--encoder-folder DIR]

1. Distance from each caption to its nearest training caption (median, over the median length of the
   training captions), for the unseen-pair captions (training templates) and the held-out phrasings,
   read with the "dimension" scaling and with the "paraphrase" one. A reading in which held-out captions
   land as near the training captions as templated ones do leaves the generator nothing new to read.
2. Per shape word: an additive model of the paraphrase reading (a constant plus one vector per colour,
   shape, size and position, least squares over the training captions) explains a held-out caption's
   vector, given its true colour, size and position, by a mix of the four shape vectors (centred); the
   mix's weights are printed. A weight near 1 on its own shape and near -1/3 on the others says the shape
   as a training caption does; near 0 says nothing, and a larger weight on another shape says that one.
"""

import argparse

import torch
from demo_caption_probe import demo_captions

from sdn.data.demo_phrasings import HELD_OUT_SHAPE_WORDS
from sdn.networks.caption_input import StandardisedCaptions, paraphrase_directions

ATTRIBUTES = ("colour", "shape", "size", "position")


def reading(scaling: str, train_vectors: torch.Tensor) -> StandardisedCaptions:
    reader = StandardisedCaptions()
    reader.register_caption_statistics(train_vectors.shape[-1], projection=scaling == "paraphrase")
    reader.set_text_statistics(train_vectors, scaling)
    return reader


def design(attributes: list[dict], names: dict, repeat: int = 1, leave_out: str | None = None) -> torch.Tensor:
    """One row per caption: 1, then a one-hot block per attribute (zeros for `leave_out`)."""
    rows = []
    for q in attributes:
        row = [1.0]
        for a in ATTRIBUTES:
            row += [float(q[a] == n and a != leave_out) for n in names[a]]
        rows += [row] * repeat
    return torch.tensor(rows)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--encoder-folder", default=None, metavar="DIR",
                   help="read the captions with the sentence-transformers model in DIR instead of MiniLM (e.g. all-mpnet-base-v2)")
    a = p.parse_args()
    d = demo_captions(a.seed, a.encoder_folder)
    train, test, held_out = d.train, d.test, d.held_out_text
    x, x_unseen, x_held = d.train_vectors, d.unseen, d.held_out
    per_image = x.shape[1]
    kept = int((paraphrase_directions(x).abs().sum(0) > 0).sum())
    print(f"seed {a.seed}: {len(x) * per_image} training captions; the paraphrase reading keeps {kept} of {x.shape[-1]} directions")
    print("distance to the nearest training caption (median, over the training captions' median length):")
    for scaling in ("dimension", "paraphrase"):
        reader = reading(scaling, x)
        with torch.no_grad():
            z, z_unseen, z_held = (reader.standardise_text(v) for v in (x.flatten(0, 1), x_unseen, x_held))
        length = z.norm(dim=1).median()
        near = [torch.cdist(v, z).min(1).values.median() / length for v in (z_unseen, z_held)]
        print(f"  {scaling:<10} unseen-pair captions {near[0]:.2f}   held-out phrasings {near[1]:.2f}")
    # z and z_held are the paraphrase reading's now (the loop's last)
    names = {q: sorted({im[q] for im in train.attributes}) for q in ATTRIBUTES}
    model = torch.linalg.lstsq(design(train.attributes, names, per_image), z).solution
    explained = 1 - (z - design(train.attributes, names, per_image) @ model).square().sum() / z.square().sum()
    lo = 1 + len(names["colour"])
    shape_vectors = model[lo:lo + len(names["shape"])]
    shape_vectors = shape_vectors - shape_vectors.mean(0)
    residual = z_held - design(test.attributes, names, leave_out="shape") @ model
    mix = torch.linalg.lstsq(shape_vectors.T, residual.T).solution.T
    print(f"shape mix of held-out captions (the additive model explains {explained:.0%} of the training captions' reading); "
          f"weights on {', '.join(names['shape'])}:")
    for shape in names["shape"]:
        for word in (shape, HELD_OUT_SHAPE_WORDS[shape]):
            rows = [i for i, (q, c) in enumerate(zip(test.attributes, held_out)) if q["shape"] == shape
                    and (word in c.lower().replace(",", " ").split() if " " not in word else word in c.lower())
                    and (word != shape or HELD_OUT_SHAPE_WORDS[shape] not in c.lower())]
            if rows:
                weights = mix[rows].mean(0)
                print(f"  {shape:<8} as {word!r:<20} {len(rows):3d} captions   " + "  ".join(f"{w:+.2f}" for w in weights))


if __name__ == "__main__":
    main()
