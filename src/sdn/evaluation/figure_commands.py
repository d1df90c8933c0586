"""`sdn figure` and `sdn interpolate`: one of the paper's figures for a model, as an image file."""

from __future__ import annotations

from pathlib import Path

from sdn.data.cache import load_cache
from sdn.errors import UserError
from sdn.evaluation import figures
from sdn.evaluation.evaluate import draw_all, load_for_evaluation
from sdn.networks.classifiers import build_classifier, extract
from sdn.sampling import one_per_class
from sdn.training.checkpoint import generator_from_checkpoint, load_checkpoint
from sdn.utils import default_device, image_output


def single_figure(kind: str, checkpoint, cache, out, split: str = "test", count: int = 8, classifier: str = "efficientnet-lite0",
                  classifier_weights: str | None = None, device: str | None = None) -> Path:
    """`sdn figure KIND`: one of the paper's figures for `count` captions of the split, as an image file."""
    out = image_output(out)
    if count < 1:
        raise UserError("--count must be at least 1")
    ckpt, generator, data = load_for_evaluation(checkpoint, cache, split)
    dev = default_device(device)
    pick = one_per_class(data.labels, count)
    part = data.take(pick)
    generated = draw_all(generator, part, 1, device=dev, precision=ckpt["config"].get("precision", "fp32"))
    everyone = list(range(len(pick)))
    if kind == "compare":
        figures.real_vs_generated(part, generated, everyone, out, f"{split} split: real images and drawings of their captions")
    elif kind == "diverse":
        if generated.shape[2] < 2:
            raise UserError("this model draws one image per caption; diverse synthesis needs one trained with --scheme diverse")
        figures.diverse(part, generated, everyone, out)
    elif kind == "retrieval":
        net = build_classifier(classifier, classifier_weights)
        train = load_cache(cache).subset("train")
        if len(train) == 0:
            raise UserError(f"the cache {cache} has no training images to retrieve from")
        _, query_feats = extract(net, generated[:, 0, 0], device=dev, precision="bf16")
        _, train_feats = extract(net, train.images, device=dev, progress=True, desc="train features", precision="bf16")
        figures.retrieval(generated[:, 0, 0], query_feats, [c[0] for c in part.captions], train.images, train_feats, out, feature_name=net.name)
    else:
        raise UserError(f"unknown figure {kind!r}; choose from compare, diverse, retrieval")
    return out


def interpolate_captions(checkpoint, caption_a: str, caption_b: str, steps: int, out, device: str | None = None) -> Path:
    """`sdn interpolate`: images for embeddings on the line from caption A to caption B."""
    from sdn.networks.text import build_text_encoder, check_captions

    out = image_output(out)
    if not 2 <= steps <= 64:
        raise UserError("--steps must be between 2 and 64")
    caption_a, caption_b = check_captions([caption_a, caption_b])
    ckpt = load_checkpoint(checkpoint)
    generator = generator_from_checkpoint(ckpt)
    encoder = build_text_encoder(ckpt["config"]["text_encoder"])
    text = encoder.encode([caption_a, caption_b])
    figures.interpolation(generator.to(default_device(device)), text[0], text[1], caption_a, caption_b, steps, out, ckpt["config"].get("precision", "fp32"))
    return out
