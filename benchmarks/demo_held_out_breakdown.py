"""Where a trained demo generator loses the held-out phrasings' shapes, and whether the caption vector
itself says what was lost.

For each unseen-pair image captioned in a held-out phrasing (sdn.data.demo_phrasings), three facts
about the drawing (shape, position judged as `sdn demo` judges them) and two about the caption vector
alone: does a linear probe on MiniLM's vector (benchmarks/demo_caption_probe.py, the "decayed" probe,
trained on the training captions) read the caption's shape and its position? Printed: the drawn shape's
accuracy split by those facts, so the part of the held-out shape figure that is bounded by the text
encoder (captions whose vector does not say the shape or the place) is separated from the part the
generator loses on captions whose vector does say both; and, for captions that name the shape by a
synonym, which shape was drawn. With --json, the same figures as one JSON object.

    OMP_NUM_THREADS=1 python benchmarks/demo_held_out_breakdown.py runs/demo 0   # run folder or checkpoint, its seed
"""

from __future__ import annotations

import argparse
import collections
import json

from demo_caption_probe import fit_probe, labels, training_vectors

from sdn.data.demo_data import make_demo_data
from sdn.data.demo_phrasings import HELD_OUT_TEMPLATES, held_out_captions
from sdn.evaluation.metrics.position import cell_of, object_centres
from sdn.networks.shape_classifier import classify_shapes, load_or_train
from sdn.networks.text import build_text_encoder, encode_unique
from sdn.sampling import Sampler
from sdn.training.checkpoint import generator_from_checkpoint, load_checkpoint


def _share(hits: list[bool]) -> str:
    return f"{sum(hits) / len(hits):6.1%} of {len(hits):3d}" if hits else "     -       "


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run", help="a demo run folder or checkpoint")
    p.add_argument("seed", type=int, help="the seed the run's data was made with")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    a = p.parse_args()
    checkpoint = load_checkpoint(a.run)
    generator = generator_from_checkpoint(checkpoint)
    data = make_demo_data(64, a.seed, background="flat")
    train, test = data.subset("train"), data.subset("test")
    encoder = build_text_encoder("all-minilm-l6-v2")
    classifier, _ = load_or_train()
    captions, synonym = held_out_captions(test.attributes, a.seed)
    vectors = encode_unique(encoder, captions).float()
    drawn = Sampler(generator, checkpoint["config"]["precision"])(vectors)[:, 0]
    shape_drawn, _ = classify_shapes(classifier, drawn)
    place_drawn = [cell_of(c) for c in object_centres(drawn)]

    # What the caption vector says, read as the generator reads it (standardised with the training captions).
    x, mean, std = training_vectors(encoder, train)
    read = {}
    for attribute in ("shape", "position"):
        names, y = labels(train.attributes, attribute, len(train.captions[0]))
        predict = fit_probe(x, y, len(names), decayed=True, seed=a.seed)
        read[attribute] = [names[i] for i in predict((vectors - mean) / std).tolist()]

    rows = []
    for i, q in enumerate(test.attributes):
        rows.append({"synonym": synonym[i], "shape_right": shape_drawn[i] == q["shape"],
                     "place_right": place_drawn[i] == q["position"], "vector_says_shape": read["shape"][i] == q["shape"],
                     "vector_says_place": read["position"][i] == q["position"]})
    split = {
        "all": rows,
        "training shape word": [r for r in rows if not r["synonym"]],
        "synonym": [r for r in rows if r["synonym"]],
        "drawn in the right place": [r for r in rows if r["place_right"]],
        "drawn in a wrong place": [r for r in rows if not r["place_right"]],
        "vector says shape and place": [r for r in rows if r["vector_says_shape"] and r["vector_says_place"]],
        "vector says shape, not place": [r for r in rows if r["vector_says_shape"] and not r["vector_says_place"]],
        "vector does not say the shape": [r for r in rows if not r["vector_says_shape"]],
        "training word, vector says place": [r for r in rows if not r["synonym"] and r["vector_says_place"]],
    }
    for template in HELD_OUT_TEMPLATES:  # captions with the training shape word, by their held-out template
        skeleton = [w.strip(" ,").lower() for w in template.replace("}", "{").split("{")[::2] if w.strip(" ,")]
        split[f"training word, template '{template[:24]}...'"] = [
            r for r, c in zip(rows, captions) if not r["synonym"] and all(w in c.lower() for w in skeleton)]
    asked_seen = collections.Counter((test.attributes[i]["shape"], shape_drawn[i]) for i in range(len(rows)) if synonym[i])
    if a.json:
        print(json.dumps({"run": a.run, "seed": a.seed,
                          "shape_accuracy": {k: {"share": round(sum(r["shape_right"] for r in v) / max(len(v), 1), 4), "captions": len(v)}
                                             for k, v in split.items()},
                          "synonym_asked_drawn": {f"{k[0]} -> {k[1]}": n for k, n in sorted(asked_seen.items())}}, indent=1))
        return
    print(f"{a.run}, seed {a.seed}: drawn shape right, held-out phrasings of the {len(rows)} unseen-pair images")
    for name, part in split.items():
        print(f"  {name:<50} {_share([r['shape_right'] for r in part])}")
    print("captions naming the shape by a synonym, (asked, drawn):")
    for (asked, seen), n in sorted(asked_seen.items()):
        print(f"  {asked:<9} -> {seen:<9} {n}")


if __name__ == "__main__":
    main()
