"""One lever of the demo, measured: train on the built-in data with the demo's settings plus the
given changes, for at most --seconds of wall time, then score colour, shape and position on unseen
pairs, training pairs and held-out phrasings (sdn.evaluation.demo_scores) and append one JSON line.

    OMP_NUM_THREADS=1 python benchmarks/demo_levers.py default
    OMP_NUM_THREADS=1 python benchmarks/demo_levers.py image-only --set scheme=image
    OMP_NUM_THREADS=1 python benchmarks/demo_levers.py s1-both --set stage1_inputs=both pixel_weight=5 stage2_pixel_weight=50

Two runs side by side with one thread each use a 2-core machine fully; a lever's figures are
compared only with runs of the same budget (epochs), and --seconds only guards the wall time.

--caption-span FRAC is a probe, not a training switch (it did not help, session 10): the generator
reads its standardised caption projected onto the principal subspace that holds FRAC of the training
captions' variance, in training and in scoring alike, so an unseen wording cannot move directions
the first layer never saw move (where its weights are still their random start).
--image-term-pool K [--image-term-pool-add] is another probe (session 10, it traded shape for colour):
the image term compares K x K average-pooled images instead of (or, with --image-term-pool-add, besides)
the full-resolution ones, so that it constrains colour and position but not edges.
--fc-dropout P, a third probe (session 10, it traded shape for colour): dropout of rate P after g-fc8
and g-fc7, where VGG19 has it after fc6 and fc7 (off when drawing).
--shape-words, a fourth (session 12, it did not help the held-out synonyms): each training caption names
its shape by one of three words (TRAINING_SHAPE_WORDS), to see whether a generator taught that a shape
has several names reads the held-out ones ("disc", "box", "rhombus"...).
FiLM in every layer was first measured here as a probe too (session 12, rows film-s1/s2 and
film-words-s1/s2: a patch of this file, key names caption_film.N); it is now the training switch
`caption_film` (`--set caption_film=true`, sdn.networks.generator).
--more-templates, a fifth (session 13, it did not help the held-out phrasings): the training captions are
written in 20 templates instead of 7 (EXTRA_TRAINING_TEMPLATES; the run stops if any training caption uses a
held-out phrase), to see whether a generator taught more sentence frames reads unseen ones.
The paraphrase reader was first measured here as a probe too (session 14, rows para1-s0/s1, key
"paraphrase_reader (probe)": 1.0, the ratio; the whitened discriminant's directions): it is now the training
switch `text_scaling=paraphrase` (sdn.networks.caption_input.paraphrase_directions), which keeps the meanings'
principal axes instead. Rows para-ridge10-s0/s1 ran `--set text_scaling=paraphrase` at commit 9e2d700 (the
switch's first, whitened form) with its ridge and ratio patched to 10 and 0.095 (recorded in the rows).
--meaning-jitter LOW [--meaning-mix], a sixth (session 15, it cost shape everywhere): while training, each
direction of G's read caption is scaled by its own factor from [LOW, 1] (or, with --meaning-mix, the caption
is moved towards another caption of the batch by a share from [0, 1 - LOW]), to see whether a generator
taught to draw a weakened reading in full draws the held-out synonyms, which MiniLM says weakly.
--encoder-folder DIR, a seventh (session 16): the captions are read by another sentence encoder, a
sentence-transformers model saved in DIR (all-mpnet-base-v2 in session 16), instead of the package's
MiniLM, to see whether a larger encoder's sense of the unseen words lifts the held-out synonyms; with
--paraphrase-ratio R the paraphrase reading keeps fewer directions (Fisher ratio above R instead of 1);
with --with-minilm G reads both encoders' vectors, concatenated.
"""

from __future__ import annotations

import argparse
import functools
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from demo_caption_probe import probe_encoder
from measure import append_result

from sdn.data.demo_data import BACKGROUNDS, make_demo_data
from sdn.data.demo_phrasings import phrases_found_in
from sdn.demo import _two_per_pair
from sdn.evaluation.demo_scores import score_generator
from sdn.evaluation.plots import captioned_grid
from sdn.networks import caption_input
from sdn.networks.caption_input import StandardisedCaptions
from sdn.networks.generator import Generator
from sdn.networks.shape_classifier import load_or_train
from sdn.networks.text import build_text_encoder, encode_unique
from sdn.training import losses
from sdn.training.checkpoint import generator_from_checkpoint, load_checkpoint
from sdn.training.config import preset_kwargs
from sdn.training.loop import training_loop


def _value(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def project_captions_onto_training_span(data, encoder, fraction: float) -> int:
    """Patches every Generator of this process to project its standardised captions (see --caption-span);
    the generator is built inside training_loop and again from the checkpoint, so the class is patched."""
    x = encode_unique(encoder, [c for cs in data.subset("train").captions for c in cs]).float()
    reader = StandardisedCaptions()  # standardised as the generator will read them ("dimension")
    reader.register_caption_statistics(x.shape[1])
    reader.set_text_statistics(x)
    _, s, v = torch.linalg.svd(reader.standardise_text(x), full_matrices=False)
    k = int(((s ** 2).cumsum(0) / (s ** 2).sum() < fraction).sum()) + 1
    projection = v[:k].T @ v[:k]
    standardise = Generator.standardise_text
    Generator.standardise_text = lambda self, text: standardise(self, text) @ projection.to(text.device)
    return k


def pool_the_image_term(k: int, add: bool) -> None:
    """Patches the image term of every loss of this process (see --image-term-pool)."""
    full_resolution = losses._Weighted.image_loss

    def image_loss(self, real, images):
        b, n = images.shape[:2]
        pooled = losses.image_loss(F.avg_pool2d(real.float(), k), F.avg_pool2d(images.float().flatten(0, 1), k).unflatten(0, (b, n)),
                                   "mean", self.pixel_distance)
        return full_resolution(self, real, images) + pooled if add else pooled

    losses._Weighted.image_loss = image_loss


def drop_out_in_the_fc_layers(rate: float) -> None:
    """Patches every Generator of this process (see --fc-dropout); the state dict's fc indices shift."""
    build = Generator.__init__

    def __init__(self, *args, **kwargs):
        build(self, *args, **kwargs)
        fc8, relu8, fc7, relu7, fc6 = self.fc
        self.fc = nn.Sequential(fc8, relu8, nn.Dropout(rate), fc7, relu7, nn.Dropout(rate), fc6)

    Generator.__init__ = __init__


TRAINING_SHAPE_WORDS = {"circle": ("circle", "round shape", "ball"), "square": ("square", "block", "tile"),
                        "triangle": ("triangle", "wedge", "three-sided shape"), "diamond": ("diamond", "lozenge", "kite")}


def vary_the_shape_words() -> None:
    """Patches the demo data (see --shape-words): each training caption names its shape by one of three
    words (TRAINING_SHAPE_WORDS, none of them a held-out phrase), drawn from a separate generator so the
    images and the rest of every caption stay as they were."""
    import random

    from sdn.data import demo_data
    caption = demo_data._caption
    words = random.Random(12345)
    demo_data._caption = lambda rng, colour, shape, size, phrasings: caption(
        rng, colour, words.choice(TRAINING_SHAPE_WORDS[shape]), size, phrasings)


# Thirteen more training templates (20 in all), none using a held-out phrase (checked at run time).
EXTRA_TRAINING_TEMPLATES = (
    "{pos} there is a {size} {colour} {shape}",
    "a {colour} {size} {shape} {pos}",
    "the {size} {colour} {shape} is {pos}",
    "{pos}, a {colour} {shape}",
    "a {size} {shape}, {colour}, {pos}",
    "look at the {colour} {shape} {pos}, it is {size}",
    "we see a {size} {shape} of {colour} colour {pos}",
    "a {size} {colour} {shape} has been drawn {pos}",
    "the only thing here is a {colour} {shape}, {size}, {pos}",
    "{pos} we find a {colour} {shape} that looks {size}",
    "a flat {colour} {shape} {pos}, {size} in size",
    "there is a single {colour} {shape} {pos} and it is {size}",
    "simple picture: {size} {colour} {shape} {pos}",
)


def more_templates() -> None:
    """Patches the demo data (see --more-templates): each training caption is written with one of the 7
    templates or one of 13 more (EXTRA_TRAINING_TEMPLATES), picked by a separate generator so the images
    stay as they were; size words and position phrases are the training ones."""
    import random

    from sdn.data import demo_data
    caption = demo_data._caption
    pick = random.Random(54321)
    every = demo_data.TEMPLATES + EXTRA_TRAINING_TEMPLATES

    def _caption(rng, colour, shape, size, phrasings):
        text = caption(rng, colour, shape, size, phrasings)
        template = pick.choice(every)
        if template in demo_data.TEMPLATES:
            return text
        text = template.format(size=pick.choice(demo_data.SIZE_WORDS[size]), colour=colour, shape=shape, pos=pick.choice(phrasings))
        return text[0].upper() + text[1:] if pick.random() < 0.5 else text

    demo_data._caption = _caption


def attenuate_the_meaning(low: float, mix: bool) -> None:
    """Patches Generator to read, while training, each caption's meaning attenuated: every direction of
    its standardised caption scaled by its own factor drawn from [low, 1] (--meaning-jitter), or, with
    mix, the whole caption moved towards another caption of the batch by a share drawn from [0, 1 - low]
    (the image drawn stays the caption's own). A caption worded as training never worded it says its
    shape at a third to two thirds of a training word's strength (docs/demo-levers.md, session 14): a
    generator that has learnt to draw a weak reading in full might draw it."""
    original = Generator.standardise_text

    def standardise_text(self, text):
        caption = original(self, text)
        if not (self.training and torch.is_grad_enabled()):
            return caption
        if mix:
            share = torch.rand(len(caption), 1, device=caption.device) * (1 - low)
            return caption + share * (caption.roll(1, 0) - caption)
        return caption * torch.empty_like(caption).uniform_(low, 1.0)

    Generator.standardise_text = standardise_text


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("name", help="the row's name (also its run folder)")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="training_loop settings changed from the demo preset")
    p.add_argument("--seconds", type=float, default=600, help="wall-time guard of the training")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--background", default="gradient", choices=BACKGROUNDS,
                   help="the demo data's backgrounds (`sdn demo` draws flat ones; the rows before session 6 used gradient)")
    p.add_argument("--runs", default="runs/demo-levers", help="folder of the run folders")
    p.add_argument("--results", default="benchmarks/results/demo-levers.jsonl")
    p.add_argument("--caption-span", type=float, default=None, metavar="FRAC", help="probe: project G's captions onto the training span")
    p.add_argument("--image-term-pool", type=int, default=None, metavar="K", help="probe: the image term on K x K-pooled images")
    p.add_argument("--image-term-pool-add", action="store_true", help="probe: the pooled image term besides the full-resolution one")
    p.add_argument("--fc-dropout", type=float, default=None, metavar="P", help="probe: dropout after g-fc8 and g-fc7")
    p.add_argument("--shape-words", action="store_true", help="probe: training captions name shapes in three ways")
    p.add_argument("--more-templates", action="store_true", help="probe: training captions in 20 templates instead of 7")
    p.add_argument("--meaning-jitter", type=float, default=None, metavar="LOW", help="probe: while training, scale each caption direction by U(LOW, 1)")
    p.add_argument("--meaning-mix", action="store_true", help="probe: with --meaning-jitter, move each caption towards another's by U(0, 1 - LOW) instead")
    p.add_argument("--encoder-folder", default=None, metavar="DIR", help="probe: captions read by the sentence-transformers model in DIR")
    p.add_argument("--with-minilm", action="store_true", help="probe: with --encoder-folder, MiniLM's vector and that model's, concatenated")
    p.add_argument("--paraphrase-ratio", type=float, default=None, metavar="R",
                   help="probe: the paraphrase reading keeps the directions whose Fisher ratio exceeds R (default 1)")
    p.add_argument("--session", type=int, default=None, help="the working session, recorded in the row")
    a = p.parse_args()
    if a.meaning_mix and a.meaning_jitter is None:
        p.error("--meaning-mix needs --meaning-jitter LOW (the blend's share is drawn from [0, 1 - LOW])")
    changes = {k: _value(v) for k, v in (s.split("=", 1) for s in a.set)}
    settings = {k: v for k, v in preset_kwargs("demo").items() if k not in ("seed", "checkpoint_every")}
    settings.update(changes)
    out = Path(a.runs) / a.name
    if a.shape_words:
        changes["shape_words (probe)"] = 3
        vary_the_shape_words()
    if a.more_templates:
        changes["more_templates (probe)"] = len(EXTRA_TRAINING_TEMPLATES)
        more_templates()
    data = make_demo_data(64, a.seed, background=a.background)
    leaked = phrases_found_in([c for cs in data.subset("train").captions for c in cs])
    if leaked:
        raise SystemExit(f"training captions use held-out phrases: {leaked}")
    encoder_name = settings.pop("text_encoder")
    encoder = probe_encoder(a.encoder_folder, a.with_minilm) if a.encoder_folder else build_text_encoder(encoder_name)
    if a.encoder_folder:
        changes["text_encoder (probe)"] = encoder.name
    classifier, _ = load_or_train()
    if a.caption_span is not None:
        changes["caption_span (probe)"] = a.caption_span
        dims = project_captions_onto_training_span(data, encoder, a.caption_span)
        print(f"captions projected onto {dims} principal directions of the training captions", flush=True)
    if a.image_term_pool:
        changes["image_term_pool (probe)"] = f"{'add' if a.image_term_pool_add else 'replace'} {a.image_term_pool}"
        pool_the_image_term(a.image_term_pool, a.image_term_pool_add)
    if a.fc_dropout:
        changes["fc_dropout (probe)"] = a.fc_dropout
        drop_out_in_the_fc_layers(a.fc_dropout)
    if a.meaning_jitter is not None:
        changes[f"meaning_{'mix' if a.meaning_mix else 'jitter'} (probe)"] = a.meaning_jitter
        attenuate_the_meaning(a.meaning_jitter, a.meaning_mix)
    if a.paraphrase_ratio is not None:
        changes["paraphrase_ratio (probe)"] = a.paraphrase_ratio
        caption_input.paraphrase_directions = functools.partial(caption_input.paraphrase_directions, ratio=a.paraphrase_ratio)
    started = time.perf_counter()
    path = training_loop(data, out, seed=a.seed, progress=False, text_encoder_instance=encoder, overwrite=True,
                         max_seconds=a.seconds, checkpoint_every=None, **settings)
    seconds = time.perf_counter() - started
    ckpt = load_checkpoint(path)
    results, drawn = score_generator(generator_from_checkpoint(ckpt), encoder, data, classifier, a.seed, ckpt["config"]["precision"])
    test = data.subset("test")
    pick = _two_per_pair(test.attributes)
    captioned_grid([("real", test.images[pick].float() / 255), ("drawn", drawn[pick, 0])], [test.captions[i][0] for i in pick],
                   out / "samples.png", title=f"{a.name}: unseen pairs")
    epochs = ckpt["step"] * settings["batch_size"] / len(data.subset("train"))
    row = {**({"session": a.session} if a.session is not None else {}), "name": a.name, "changes": changes, "seed": a.seed, "background": a.background, "train_seconds": round(seconds), "steps": ckpt["step"],
           "epochs": round(epochs, 1), **{f"{part}/{m}": results[part][m] for part in results for m in ("colour", "shape", "position")},
           "held_out_phrasings/shape_when_named_by_synonym": results["held_out_phrasings"]["shape_when_named_by_synonym"]}
    append_result(a.results, row)


if __name__ == "__main__":
    main()
