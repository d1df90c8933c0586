"""`sdn evaluate`: the paper's protocol on a prepared cache, every number labelled, an HTML report."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

from sdn.evaluation import figures
from sdn.data.cache import load_cache
from sdn.training.checkpoint import check_compatible, generator_from_checkpoint, load_checkpoint
from sdn.networks.classifiers import build_classifier, extract
from sdn.data.captioned_images import CaptionedImages
from sdn.errors import UserError
from sdn.networks.generator import Generator
from sdn.evaluation.metrics import METRICS, EvalContext, default_metrics
from sdn.evaluation.metrics.inception_score import check_enough_images
from sdn.evaluation.plots import loss_plot
from sdn.evaluation.report import image, table, write_report
from sdn.sampling import Sampler, one_per_class, save_png
from sdn.utils import atomic_write_text, default_device



def load_for_evaluation(checkpoint: str | Path, cache: str | Path, split: str) -> tuple[dict, Generator, CaptionedImages]:
    """The checkpoint, its generator, and the split of the cache, checked against each other."""
    ckpt = load_checkpoint(checkpoint)
    cfg = ckpt["config"]
    data = load_cache(cache, cfg["text_encoder"])
    if data.resolution != cfg["resolution"]:
        raise UserError(f"the checkpoint draws {cfg['resolution']} px images but the cache {cache} holds {data.resolution} px images")
    check_compatible(cfg, {"resolution": data.resolution}, f"the cache {cache}")
    if data.embeddings is None:
        raise UserError(f"the cache {cache} has no caption embeddings of the checkpoint's text encoder {cfg['text_encoder']!r}; "
                        f"run: sdn data prepare ... --text-encoder {cfg['text_encoder']}")
    if data.embeddings.shape[-1] != cfg["text_dim"]:
        raise UserError(f"the cache's {cfg['text_encoder']} embeddings are {data.embeddings.shape[-1]}-d, the checkpoint expects {cfg['text_dim']}")
    part = data.subset(split)
    if len(part) == 0:
        raise UserError(f"the {split} split of {cache} is empty")
    return ckpt, generator_from_checkpoint(ckpt), part


def draw_all(generator: Generator, data: CaptionedImages, captions_per_image: int | None, batch_size: int = 64,
             device: torch.device | str = "cpu", precision: str = "bf16", progress: bool = False) -> torch.Tensor:
    """uint8 (N, C, n, 3, H, W): every image's first C captions drawn (C = all by default)."""
    available = data.embeddings.shape[1]
    c = available if captions_per_image is None else captions_per_image
    if not 1 <= c <= available:
        raise UserError(f"--captions-per-image must be between 1 and {available}")
    sampler = Sampler(generator.to(torch.device(device)), precision)
    text = data.embeddings[:, :c].flatten(0, 1)
    out = torch.empty(len(text), generator.n_outputs, 3, data.resolution, data.resolution, dtype=torch.uint8)
    for i in tqdm(range(0, len(text), batch_size), disable=not progress, desc="drawing", unit="batch", leave=False):
        drawn = sampler.uint8(text[i : i + batch_size].float(), batch_size)
        out[i : i + len(drawn)] = drawn
    return out.view(len(data), c, generator.n_outputs, 3, data.resolution, data.resolution)


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def evaluate(
    checkpoint: str | Path,
    cache: str | Path,
    out: str | Path,
    split: str = "test",  # which split of the cache (the paper: the unseen test classes)
    metrics: tuple[str, ...] | None = None,  # keys of sdn.evaluation.metrics.METRICS; None = its default ones
    classifier: str = "efficientnet-lite0",  # Inception Score network (sdn.networks.classifiers.CLASSIFIERS)
    classifier_weights: str | None = None,  # local weights for the classifier (inception-v3 offline)
    captions_per_image: int | None = None,  # None = all (the paper: 10 per image, 11,550 on Oxford-102)
    is_splits: int = 10,  # the paper's eq. 6 uses 10 splits
    feature_precision: str = "fp32",  # IS/FID classifier features: "fp32" (standard) or "bf16" (about 5x faster on
    # CPUs with AMX; moves FID, so compare bf16 numbers only with bf16 numbers)
    batch_size: int = 64,
    device: str | None = None,
    with_figures: bool = True,  # the qualitative figures (retrieval needs classifier features of the train split)
    progress: bool = True,
    shared_cache: dict | None = None,  # features reused between calls on the same data (e.g. real-image FID features)
    save_drawings: bool = False,  # also write every drawing as out/drawings/<image>_<caption>[_<output>].png, e.g.
    # for other tools (clean-fid, torch-fidelity) that read folders of images
) -> dict:
    """Writes `out`/metrics.json, `out`/report.html and `out`/figures/*.png; returns the metrics."""
    started = time.perf_counter()
    if feature_precision not in ("fp32", "bf16"):
        raise UserError(f"feature precision must be 'fp32' or 'bf16', not {feature_precision!r}")
    metrics = default_metrics() if metrics is None else metrics
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise UserError(f"unknown metric(s) {', '.join(unknown)}; choose from {', '.join(METRICS)}")
    out = Path(out)
    try:
        (out / "figures").mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot write to output folder {out}: {e.strerror or e}") from None
    dev = default_device(device)
    ckpt, generator, data = load_for_evaluation(checkpoint, cache, split)
    cfg = ckpt["config"]
    precision = cfg.get("precision", "fp32")
    if "is" in metrics:  # fail on a missing classifier before the slow part
        build_classifier(classifier, classifier_weights)
    generated = draw_all(generator, data, captions_per_image, batch_size, dev, precision, progress)
    drawn_seconds = time.perf_counter() - started
    if save_drawings:
        _save_drawings(generated, out / "drawings")
    if "is" in metrics:
        check_enough_images(generated.shape[0] * generated.shape[1], is_splits)
    ctx = EvalContext(generated, data, dev, batch_size, classifier, classifier_weights, is_splits, feature_precision, progress,
                      shared_cache if shared_cache is not None else {})
    results: dict = {}
    for name in metrics:
        results.update(METRICS[name].fn(ctx))
    result = {
        "metrics": results,
        "checkpoint": str(checkpoint), "checkpoint_sha256": file_sha256(_checkpoint_file(checkpoint)),
        "cache": str(cache), "split": split, "real_images": len(data), "captions_per_image": generated.shape[1],
        "outputs_per_caption": generated.shape[2], "scored_output": "output 0 of each caption",
        "resolution": data.resolution, "colour": "RGB", "feature_precision": feature_precision, "drawing_precision": precision, "config": cfg,
        "seconds": {"drawing": round(drawn_seconds, 1), "total": round(time.perf_counter() - started, 1)},
    }
    sections = [("Metrics", _metrics_html(results))]
    if with_figures:
        sections += draw_figures(ckpt, generator, cache, data, generated, out / "figures", classifier, classifier_weights,
                                 dev, batch_size, progress)
    result["seconds"]["total"] = round(time.perf_counter() - started, 1)
    atomic_write_text(out / "metrics.json", json.dumps(result, indent=2))
    write_report(out / "report.html", f"SDN evaluation: {Path(str(checkpoint)).name} on the {split} split of {Path(str(cache)).name}",
                 sections, details=result)
    return result


def _save_drawings(generated: torch.Tensor, folder: Path) -> None:
    folder.mkdir(exist_ok=True)
    n_images, n_captions, n_outputs = generated.shape[:3]
    for i in range(n_images):
        for c in range(n_captions):
            for p in range(n_outputs):
                save_png(generated[i, c, p][None], folder / (f"{i:05d}_{c}" + (f"_{p}" if n_outputs > 1 else "") + ".png"))


def _checkpoint_file(checkpoint) -> Path:
    """The file a checkpoint argument resolves to (a run folder: its newest readable checkpoint, else its export)."""
    from sdn.training.checkpoint import EXPORT, newest_checkpoint

    path = Path(checkpoint)
    if not path.is_dir():
        return path
    found = newest_checkpoint(path)
    return found[0] if found is not None else path / EXPORT


def _metrics_html(results: dict) -> str:
    rows = []
    for key in METRICS:
        if key in results:
            std = results.get(f"{key}_std")
            count = results.get(f"{key}_pairs") or results.get(f"{key}_images") or results.get(f"{key}_generated_images") or results.get("images")
            how = results.get(f"{key}_settings", "")
            if key == "is":
                how = f"classifier {results['is_classifier']}; {how}"
            if key == "fid":
                how = f"{results['fid_network']}; {results['fid_real_images']} real images; {how}"
            if key == "variety":
                how = f"{'COLLAPSED' if results['collapsed'] else 'not collapsed'}; nearest-neighbour ratio {results['variety_nearest']:.3f}; {how}"
            rows.append({"metric": key.upper(), "value": results[key], "std": "" if std is None else std, "samples": count, "how": how})
    return table(rows, ["metric", "value", "std", "samples", "how"])


def draw_figures(ckpt, generator, cache, data, generated, folder: Path, classifier: str, classifier_weights,
                 dev, batch_size: int, progress: bool) -> list[tuple[str, str]]:
    """The paper's figures for one model: each written to `folder` and returned as a report section."""
    sections = []
    pick = one_per_class(data.labels, 10)
    path = folder / "real_vs_generated.png"
    figures.real_vs_generated(data, generated, pick, path, "Unseen test classes: real images and drawings of their captions")
    sections.append(("Real and generated (paper Figs. 3-4)", image(path)))
    if generated.shape[2] > 1:
        path = folder / "diverse.png"
        figures.diverse(data, generated, pick[:8], path)
        sections.append(("Diverse synthesis (paper Fig. 5)", image(path)))
    net = build_classifier(classifier, classifier_weights)
    train = load_cache(cache).subset("train")
    if len(train):
        queries = generated[pick[:6], 0, 0]
        # bf16: retrieval only ranks neighbours, and the train split is the largest set to featurise
        (_, query_feats) = extract(net, queries, batch_size, dev, precision="bf16")
        _, train_feats = extract(net, train.images, batch_size, dev, progress, desc="retrieval: train features", precision="bf16")
        path = folder / "retrieval.png"
        sims = figures.retrieval(queries, query_feats, [data.captions[i][0] for i in pick[:6]], train.images, train_feats, path,
                                 feature_name=net.name)
        sections.append(("Approximate sample retrieval (paper Fig. 7)", image(path, f"top-1 cosine similarity {sims[:, 0].mean():.3f} on average")))
    a, b = pick[0], pick[min(1, len(pick) - 1)]
    path = folder / "interpolation.png"
    figures.interpolation(generator, data.embeddings[a, 0].float(), data.embeddings[b, 0].float(), data.captions[a][0],
                          data.captions[b][0], 7, path, ckpt["config"].get("precision", "fp32"))
    sections.append(("Sentence interpolation (paper Fig. 8)", image(path)))
    if ckpt.get("history"):
        path = folder / "loss.png"
        loss_plot(ckpt["history"], path)
        sections.append(("Training loss per stage", image(path)))
    return sections
