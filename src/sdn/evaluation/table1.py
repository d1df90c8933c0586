"""`sdn table1`: the paper's Table 1 side by side. SDN, GAN-INT-CLS and StackGAN Stage-I train on the
same cache and caption embeddings under one equal wall-clock budget each, and are scored by the same
evaluation (sdn.evaluation.evaluate.evaluate): one table, one grid of the same captions drawn by every method.

Each run stops at its paper's schedule or its budget, whichever comes first, at a step boundary with
a checkpoint. SDN gets half of its budget for Stage I and the rest for Stage II (the paper: 100 + 100
epochs). A rerun reuses finished runs and their evaluations and continues unfinished ones with the
time they have left; the wall time each run has used is kept in <run>/budget.json (written every 15
s, so a killed run is charged for the time it had spent).
"""

from __future__ import annotations

import json
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import torch

from sdn.baselines import METHODS
from sdn.baselines.loop import gan_training_loop
from sdn.data.cache import load_cache
from sdn.training.config import PAPER, PRESETS
from sdn.training.checkpoint import checkpoint_files, generator_from_checkpoint, load_checkpoint
from sdn.errors import UserError
from sdn.evaluation.evaluate import evaluate, file_sha256
from sdn.evaluation.metrics import default_metrics
from sdn.evaluation.plots import captioned_grid, loss_plot
from sdn.evaluation.report import image, markdown_table, table, write_report
from sdn.sampling import generate, one_per_class
from sdn.training.resume import resume_position
from sdn.training.loop import training_loop
from sdn.utils import atomic_write_text, default_device

ALL_METHODS = ("sdn", *METHODS)
NAMES = {"sdn": "SDN (Yuan & Peng, MM 2018)", **{k: v.what for k, v in METHODS.items()}}
COLUMNS = ["method", "ssim", "fsim", "is", "is_std", "fid", "variety", "collapsed", "d_real", "d_fake", "images_per_s", "hours",
           "steps", "epochs"]
ABLATION = PRESETS["ablation"]  # SDN's settings here, as in `sdn ablate`


def table1(
    cache: str | Path,
    out: str | Path,
    budget_minutes: float,  # wall-clock training budget of every method
    methods: tuple[str, ...] = ALL_METHODS,
    teacher: str = ABLATION.teacher,  # SDN's teacher (vgg19 with --teacher-weights: the paper's)
    teacher_weights: str | None = None,
    pixel_weight: float = ABLATION.pixel_weight,  # SDN: as `sdn ablate` (sdn.training.config's "ablation" preset)
    fc_dim: int = ABLATION.fc_dim,
    text_encoder: str = ABLATION.text_encoder,  # its embeddings must be in the cache
    classifier: str = "efficientnet-lite0",  # IS network (inception-v3 with --classifier-weights: comparable with published IS)
    classifier_weights: str | None = None,
    captions_per_image: int | None = None,  # None: all (the paper's protocol)
    feature_precision: str = "fp32",
    metrics: tuple[str, ...] | None = None,  # keys of sdn.evaluation.metrics.METRICS; None = its default ones
    precision: str = ABLATION.precision,  # training precision of every method
    seed: int = ABLATION.seed,
    device: str | None = None,
    progress: bool = True,
) -> dict:
    """Writes `out`/table1.md, table1.json, table1.png (the grid) and report.html; returns the results."""
    if not budget_minutes > 0:
        raise UserError("--budget-minutes must be positive")
    unknown = [m for m in methods if m not in ALL_METHODS]
    if unknown or not methods:
        raise UserError(f"unknown method(s) {', '.join(unknown) or '(none given)'}; choose from {', '.join(ALL_METHODS)}")
    metrics = default_metrics() if metrics is None else metrics
    data = load_cache(cache, text_encoder)
    if data.embeddings is None:
        raise UserError(f"the cache {cache} has no {text_encoder} caption embeddings; run: sdn data prepare ... --text-encoder {text_encoder}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    budget = budget_minutes * 60
    common = dict(text_encoder=text_encoder, precision=precision, seed=seed, device=device, progress=progress)
    sdn_settings = dict(teacher=teacher, teacher_weights=teacher_weights, pixel_weight=pixel_weight, fc_dim=fc_dim)
    rows, results, shared = [], {}, {}
    for method in methods:
        run_dir = out / method
        checkpoint, spent = train_within_budget(method, data, run_dir, budget, common, sdn_settings)
        ckpt = load_checkpoint(checkpoint)
        result = _earlier_evaluation(run_dir / "eval", checkpoint, classifier, feature_precision, metrics)
        if result is None:
            result = evaluate(checkpoint, cache, run_dir / "eval", metrics=metrics, classifier=classifier, classifier_weights=classifier_weights,
                              captions_per_image=captions_per_image, feature_precision=feature_precision, device=device,
                              with_figures=False, progress=progress, shared_cache=shared)
        m, images = result["metrics"], images_trained(ckpt, data.split.count("train"))
        row = {"method": method, **{k: m.get(k, "") for k in COLUMNS[1:8]}, **_discriminator_spread(run_dir / "stats.jsonl"),
               "images_per_s": round(images / max(spent, 1e-9), 1), "hours": round(spent / 3600, 3), "steps": ckpt["step"],
               "epochs": round(images / data.split.count("train"), 2)}
        rows.append(row)
        results[method] = {"what": NAMES[method], "row": row, "metrics": m, "train_seconds": round(spent, 1), "config": ckpt["config"],
                           "checkpoint_sha256": result["checkpoint_sha256"], "evaluation": {k: v for k, v in result.items() if k != "metrics"}}
        _write_tables(out, rows, results, cache, budget_minutes, classifier, feature_precision)  # after every run: nothing lost on a crash
    _write_figures(out, methods, data, rows, results, device)
    return results


@contextmanager
def _ledger(path: Path, already: float):
    """Keeps `path` up to date with the wall seconds spent, every 15 s while the body runs and at its end."""
    started, stop = time.perf_counter(), threading.Event()

    def write() -> None:
        state = json.loads(path.read_text()) if path.is_file() else {}
        atomic_write_text(path, json.dumps({**state, "seconds": round(already + time.perf_counter() - started, 1)}))

    def loop() -> None:
        while not stop.wait(15):
            write()

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        write()


def train_within_budget(method: str, data, run_dir: Path, budget: float, common: dict, sdn_settings: dict,
                        stage1_share: float = 0.5) -> tuple[Path, float]:
    """Trains, continues or reuses `run_dir` for `budget` wall seconds; returns its newest checkpoint and
    the seconds spent. common: training keyword arguments of every method; sdn_settings: SDN's own
    (training_loop's); stage1_share: SDN's share of the budget in Stage I (the paper's 100 + 100 epochs: 0.5)."""
    if not 0 < stage1_share < 1:
        raise UserError(f"the Stage I share of the budget must be between 0 and 1, not {stage1_share}")
    ledger = run_dir / "budget.json"
    run_dir.mkdir(parents=True, exist_ok=True)
    state = json.loads(ledger.read_text()) if ledger.is_file() else {"seconds": 0.0}
    if not checkpoint_files(run_dir):
        state = {"seconds": 0.0}  # nothing kept: start afresh
        ledger.write_text(json.dumps(state))
    if not state.get("done") and state["seconds"] < budget:
        if method == "sdn":
            n_train = data.split.count("train")
            kwargs = {**common, **sdn_settings, "scheme": "sdn", "stage2_epochs": PAPER.stage2_epochs}
            if state.get("stage1_epochs") is None:  # Stage I: the first part of the budget
                with _ledger(ledger, state["seconds"]):
                    path = training_loop(data, run_dir, resume="auto", stage1_epochs=PAPER.stage1_epochs,
                                         max_seconds=max(budget * stage1_share - state["seconds"], 0), **kwargs)
                epoch, _ = resume_position(load_checkpoint(path), n_train)
                state = {**json.loads(ledger.read_text()), "stage1_epochs": epoch}  # the rest of a cut epoch goes to Stage II
                ledger.write_text(json.dumps(state))
            with _ledger(ledger, state["seconds"]):
                training_loop(data, run_dir, resume="auto", stage1_epochs=state["stage1_epochs"], max_seconds=budget - state["seconds"], **kwargs)
        else:
            with _ledger(ledger, state["seconds"]):
                gan_training_loop(data, run_dir, method=method, resume="auto", max_seconds=budget - state["seconds"], **common)
        state = {**json.loads(ledger.read_text()), "done": True}
        ledger.write_text(json.dumps(state))
    return checkpoint_files(run_dir)[0], state["seconds"]


def images_trained(ckpt: dict, n_train: int) -> int:
    cfg = ckpt["config"]
    if cfg.get("method", "sdn") != "sdn":
        return ckpt["step"] * cfg["batch_size"]  # every GAN step is a full batch (the short last one is dropped)
    return ckpt["position"]["epoch"] * n_train + ckpt["position"]["images"]


def _discriminator_spread(stats: Path, last: int = 100) -> dict:
    """A GAN's mean D(real, right text) and D(fake) probabilities over its last `last` steps."""
    if not stats.is_file():
        return {"d_real": "", "d_fake": ""}
    lines = [json.loads(line) for line in stats.read_text().splitlines() if '"p_real"' in line][-last:]
    if not lines:
        return {"d_real": "", "d_fake": ""}
    return {k: round(sum(r[f"p_{k[2:]}"] or 0 for r in lines) / len(lines), 3) for k in ("d_real", "d_fake")}


def _earlier_evaluation(folder: Path, checkpoint: Path, classifier: str, feature_precision: str, metrics) -> dict | None:
    try:
        result = json.loads((folder / "metrics.json").read_text())
    except (OSError, ValueError):
        return None
    same = (result.get("checkpoint_sha256") == file_sha256(Path(checkpoint)) and result.get("feature_precision") == feature_precision
            and all(m in result["metrics"] for m in metrics) and result["metrics"].get("is_classifier", classifier) == classifier)
    return result if same else None


def _write_tables(out: Path, rows: list[dict], results: dict, cache, budget_minutes: float, classifier: str, feature_precision: str) -> None:
    any_eval = next(iter(results.values()))["evaluation"]
    header = (f"# Table 1 on {Path(str(cache)).name} ({any_eval['resolution']} px)\n\n"
              f"Every method trained on the same cache and caption embeddings for at most **{budget_minutes:g} minutes of wall time** "
              f"(or its paper's schedule, if shorter), then scored alike on the {any_eval['split']} split: "
              f"{any_eval['captions_per_image']} caption(s) per image, {any_eval['real_images']} images; SSIM/FSIM against the "
              f"image whose caption drew it; IS with {classifier} (published IS use an Inception-v3: not comparable unless that is the "
              f"classifier), FID with the TF Inception pool3 against the same split; {feature_precision} features. "
              f"`variety` is sdn.evaluation.collapse's ratio (about 1: as varied as the photographs; `collapsed` below {0.1}); d_real/d_fake: a "
              f"GAN's mean discriminator probabilities over its last 100 steps. images/s and hours: training wall time.\n\n")
    for name, text in (("table1.md", header + markdown_table(rows, COLUMNS)), ("table1.json", json.dumps(results, indent=2, default=str))):
        atomic_write_text(out / name, text)


@torch.no_grad()
def _write_figures(out: Path, methods, data, rows: list[dict], results: dict, device) -> None:
    """One grid: the real test images, then a row per method drawing the same captions (via Sampler)."""
    test = data.subset("test")
    pick = one_per_class(test.labels, 8)
    grid = [("real", test.images[pick].float() / 255)]
    for method in methods:
        ckpt = load_checkpoint(out / method)
        generator = generator_from_checkpoint(ckpt).to(default_device(device))
        grid.append((method, generate(generator, test.embeddings[pick, 0].float(), precision=ckpt["config"]["precision"])[:, 0]))
    captioned_grid(grid, [test.captions[i][0] for i in pick], out / "table1.png", title="The same unseen-class test captions, every method")
    sections = [("Table 1", table(rows, COLUMNS)), ("Drawings", image(out / "table1.png"))]
    for method in methods:
        history = load_checkpoint(out / method).get("history")
        if history:
            loss_plot(history, out / method / "loss.png")
            sections.append((f"Losses: {method}", image(out / method / "loss.png")))
    write_report(out / "report.html", "Table 1: SDN, GAN-INT-CLS and StackGAN Stage-I under one budget", sections, details=results)
