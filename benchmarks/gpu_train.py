"""Flowers runs side by side on one borrowed GPU, their quality curve, and the generators brought back.

    python benchmarks/gpu_train.py --pack .gpu/pack --work /tmp/gpu --out $OUT --minutes 6 [--runs NAME ...] [--dry-run]

A device machine is lent for minutes, starts bare and sends back at most 64 MiB, so this script does
the whole job in one call: it rebuilds the Oxford-102 cache from `benchmarks/gpu_pack.py`'s pack,
starts every run in RUNS at once as its own `sdn train` process (small 64-px models leave most of a
big GPU idle; each run stops after `--minutes` of wall time, with a checkpoint every 5 epochs), then
scores every checkpoint on the test split (unseen classes, first caption of each image): SSIM, FSIM,
IS (EfficientNet-Lite0; `sdn evaluate`'s metrics) and fd_effnet, the Frechet distance of
EfficientNet-Lite0's pooled features (a proxy that needs no Inception download; not FID), each run's
last checkpoint first, the others while --deadline allows. Into --out go curve.json (every scored
checkpoint against its training seconds), the runs' logs (logs.tgz), and the exported generators
(weight average) of the paper's run and the other run with the lowest fd_effnet, in 15 MB parts
(`cat generator-NAME.safetensors.part* > generator.safetensors` joins them); FID and the paper's
protocol are computed afterwards with `sdn evaluate --checkpoint generator.safetensors`.

--dry-run: the same steps on the CPU, 2 runs of a few steps at 32 px batch 8, to rehearse the script.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Every run: the README's Oxford-102 SDN settings (EfficientNet-Lite0 teacher, fc 1024, pixel weight 10)
# at the batch and learning rate a GPU wants, with a weight average; 5 Stage-I epochs, then Stage II
# until the time is up.
COMMON = ["--teacher", "efficientnet-lite0", "--fc-dim", "1024", "--pixel-weight", "10", "--batch-size", "64", "--lr", "3e-4",
          "--ema-decay", "0.999", "--stage1-epochs", "5", "--stage2-epochs", "995", "--checkpoint-epochs", "5",
          "--checkpoint-every", "0", "--keep-checkpoints", "1000", "--no-progress"]
RUNS = {
    "sdn": ["--scheme", "sdn"],
    "projected-0.2": ["--scheme", "projected", "--adversarial-weight", "0.2"],
    "projected-1": ["--scheme", "projected", "--adversarial-weight", "1.0"],
}
RUNS_BACK = 2  # the paper's scheme and the other run with the lowest fd_effnet (2 x 22.5 MB of the 64 MiB)
DRY = ["--stage1-epochs", "1", "--stage2-epochs", "1", "--batch-size", "8", "--checkpoint-epochs", "1"]


def train_all(cache: Path, work: Path, names: list[str], minutes: float, device: str, dry: bool) -> dict:
    procs, logs, started = {}, [], time.time()
    for name in names:
        run = work / "runs" / name
        run.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "sdn", "train", "--data", str(cache), "--out", str(run), "--max-minutes", str(minutes),
               "--device", device, "--resume", "auto", *COMMON, *RUNS[name], *(DRY if dry else [])]
        logs.append(open(run / "train.log", "w"))  # noqa: SIM115 (closed once the runs end)
        procs[name] = subprocess.Popen(cmd, stdout=logs[-1], stderr=subprocess.STDOUT)
    codes = {name: p.wait() for name, p in procs.items()}
    for log in logs:
        log.close()
    print(f"[{time.time() - started:.0f} s] trained: exit codes {codes}", flush=True)
    return {"exit_codes": codes, "started": started}


def score(path: Path, cache: Path, device: str, started: float, net, shared: dict) -> dict:
    """One checkpoint: the test split's first captions drawn and scored."""
    import torch

    from sdn.evaluation.evaluate import draw_all, load_for_evaluation
    from sdn.evaluation.metrics import METRICS, EvalContext
    from sdn.evaluation.metrics.fid import frechet_distance
    from sdn.networks.classifiers import extract

    ckpt, generator, test = load_for_evaluation(path, cache, "test")
    drawn = draw_all(generator, test, 1, device=device, precision="bf16")
    ctx = EvalContext(drawn, test, torch.device(device), cache=shared)
    row = {"checkpoint": path.name, "step": ckpt["step"], "epoch": ckpt["epoch"] + 1,
           "stage": "stage1" if ckpt["epoch"] < ckpt["config"]["stage1_epochs"] else "stage2", "seconds": round(path.stat().st_mtime - started, 1)}
    for metric in ("ssim", "fsim", "is"):
        try:
            row.update({k: v for k, v in METRICS[metric].fn(ctx).items() if not k.endswith("_settings")})
        except Exception as e:  # a missing package must not hide the other scores
            row[metric] = f"failed: {type(e).__name__}: {e}"
    if "real" not in shared:
        _, shared["real"] = extract(net, test.images, device=device)
    _, fake = extract(net, ctx.drawings(), device=device)
    row["fd_effnet"] = frechet_distance(fake, shared["real"])
    return row


def send_generator(work: Path, out: Path, name: str) -> None:
    """A run's exported generator (weight average) in bf16 (22.5 MB; fp32 is 45 MB, and two of those
    do not fit the 64 MiB that comes back) and in 15 MB parts: the device sends back no bigger file."""
    import torch

    from sdn.training.checkpoint import (
        export_generator,
        generator_from_checkpoint,
        load_checkpoint,
    )

    path = work / "runs" / name / "generator.safetensors"
    if not path.is_file():
        print(f"{name}: no exported generator (see its train.log)", flush=True)
        return
    ckpt = load_checkpoint(path)
    small = work / "runs" / name / "generator-bf16.safetensors"
    export_generator(generator_from_checkpoint(ckpt), ckpt["config"], small, weights_dtype=torch.bfloat16)
    data = small.read_bytes()
    for i in range(0, len(data), 15 * 2**20):
        (out / f"generator-{name}.safetensors.part{i // (15 * 2**20)}").write_bytes(data[i : i + 15 * 2**20])


def send_logs(work: Path, out: Path, names: list[str]) -> None:
    with tarfile.open(out / "logs.tgz", "w:gz") as tar:
        for name in names:
            for f in ("train.log", "stats.jsonl", "config.json"):
                if (work / "runs" / name / f).is_file():
                    tar.add(work / "runs" / name / f, arcname=f"{name}/{f}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--pack", type=Path, required=True, help="folder written by benchmarks/gpu_pack.py pack")
    p.add_argument("--work", type=Path, default=Path("/tmp/gpu"))
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--minutes", type=float, default=6.0, help="wall-clock training time of every run")
    p.add_argument("--deadline", type=float, default=540, help="seconds from the start after which no more checkpoints are scored")
    p.add_argument("--runs", nargs="+", default=list(RUNS), choices=list(RUNS))
    p.add_argument("--dry-run", action="store_true")
    a = p.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    deps = a.pack / "deps"
    os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), str(deps), os.environ.get("PYTHONPATH", "")])
    sys.path[:0] = [str(ROOT / "src"), str(deps)]
    device = "cpu" if a.dry_run else "cuda"
    t0 = time.time()
    cache = a.work / "cache"
    if not (cache / "meta.json").is_file():
        subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_pack.py"), "unpack", "--pack", str(a.pack), "--out", str(cache)],
                       check=True)
    if a.dry_run:  # a small 32-px slice of the cache, so the rehearsal takes minutes
        cache = shrink(cache, a.work / "cache-dry")
    print(f"[{time.time() - t0:.0f} s] cache {cache}", flush=True)
    trained = train_all(cache, a.work, a.runs, a.minutes, device, a.dry_run)
    summary = {"minutes": a.minutes, "runs": {n: COMMON + RUNS[n] for n in a.runs}, "exit_codes": trained["exit_codes"],
               "generators_sent_back": [], "curve": {n: [] for n in a.runs}}

    def write() -> None:
        for rows in summary["curve"].values():
            rows.sort(key=lambda r: r["step"])
        (a.out / "curve.json").write_text(json.dumps(summary, indent=2))

    send_logs(a.work, a.out, a.runs)
    # What must come back first: the paper's run, then every run's last checkpoint scored, then the
    # best other run by fd_effnet; the rest of the curve while time is left.
    if "sdn" in a.runs:
        send_generator(a.work, a.out, "sdn")
        summary["generators_sent_back"].append("sdn")
    from sdn.networks.classifiers import build_classifier

    net, shared = build_classifier("efficientnet-lite0"), {}
    todo = {n: sorted((a.work / "runs" / n).glob("checkpoint-0*.pt")) for n in a.runs}
    for name in a.runs:
        if todo[name]:
            summary["curve"][name].append(score(todo[name].pop(), cache, device, trained["started"], net, shared))
            print(name, json.dumps(summary["curve"][name][-1]), flush=True)
    write()
    others = sorted((n for n in a.runs if n != "sdn" and summary["curve"][n]), key=lambda n: summary["curve"][n][-1]["fd_effnet"])
    for name in others[: RUNS_BACK - len(summary["generators_sent_back"])]:
        send_generator(a.work, a.out, name)
        summary["generators_sent_back"].append(name)
    write()
    while any(todo.values()) and time.time() - t0 < a.deadline:
        for name in a.runs:
            if todo[name] and time.time() - t0 < a.deadline:
                summary["curve"][name].append(score(todo[name].pop(), cache, device, trained["started"], net, shared))
                print(name, json.dumps(summary["curve"][name][-1]), flush=True)
                write()
    summary["unscored_checkpoints"] = {n: [p.name for p in todo[n]] for n in a.runs}
    write()
    print(f"[{time.time() - t0:.0f} s] done; sent back {summary['generators_sent_back']}", flush=True)


def shrink(cache: Path, out: Path) -> Path:
    """--dry-run: 48 train and 16 test images at 32 px, as a cache folder."""
    import numpy as np

    from sdn.data.cache import load_cache

    data = load_cache(cache)
    keep = [i for i, s in enumerate(data.split) if s == "train"][:48] + [i for i, s in enumerate(data.split) if s == "test"][:16]
    part = data.take(keep)
    out.mkdir(parents=True, exist_ok=True)
    images = part.images.numpy()[:, :, ::2, ::2]
    np.save(out / "images.npy", np.ascontiguousarray(images))
    meta = json.loads((cache / "meta.json").read_text())
    sub = {k: [v[i] for i in keep] for k, v in meta.items() if isinstance(v, list) and len(v) == len(data)}
    meta.update(sub)
    meta["manifest"] = {**meta["manifest"], "size": 32, "images": len(keep)}
    (out / "meta.json").write_text(json.dumps(meta))
    (out / "embeddings").mkdir(exist_ok=True)
    for f in (cache / "embeddings").glob("*.npy"):
        np.save(out / "embeddings" / f.name, np.load(f)[keep])
    return out


if __name__ == "__main__":
    main()
