"""Which shape the demo's shape classifier sees in a trained generator's drawings of the held-out captions that
name the shape by a synonym ("disc", "box", "triangular shape", "rhombus"): counts of (asked, seen).

    OMP_NUM_THREADS=1 python benchmarks/demo_synonyms.py runs/demo 0     # run folder or checkpoint, its seed
"""
import sys, collections
from sdn.data.demo_data import make_demo_data
from sdn.data.demo_phrasings import held_out_captions
from sdn.networks.shape_classifier import load_or_train, classify_shapes
from sdn.networks.text import build_text_encoder, encode_unique
from sdn.sampling import Sampler
from sdn.training.checkpoint import generator_from_checkpoint, load_checkpoint
run, seed = sys.argv[1], int(sys.argv[2])
ckpt = load_checkpoint(run)
g = generator_from_checkpoint(ckpt)
data = make_demo_data(64, seed, background="flat"); test = data.subset("test")
enc = build_text_encoder("all-minilm-l6-v2"); clf, _ = load_or_train()
caps, syn = held_out_captions(test.attributes, seed)
drawn = Sampler(g, "bf16")(encode_unique(enc, caps))[:, 0]
got, conf = classify_shapes(clf, drawn)
c = collections.Counter()
for i, s in enumerate(syn):
    if s: c[(test.attributes[i]["shape"], got[i])] += 1
for k, v in sorted(c.items()): print(k, v)
