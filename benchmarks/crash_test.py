"""Crash test: kill `sdn train` with SIGKILL at random moments, resume it each time with
`--resume auto`, and check that nothing was lost.

    python benchmarks/crash_test.py            # 20 kills (about 5 minutes on 2 busy CPU cores)
    python benchmarks/crash_test.py --kills 2 --batch-size 96 --stage1-epochs 1 --stage2-epochs 0

It first trains the same configuration once without interruption (the reference), then starts a
second run, kills it after a random delay (anywhere from inside start-up to well into training, so
some kills land while a checkpoint is being written), restarts it with `--resume auto`, N times,
and lets the last restart finish. It then checks that training completed, that every checkpoint
left behind loads, and that the final weights and the per-step losses equal the reference's bit for
bit. Exit status 0 when all checks pass.

By default the children run `sdn train` with a tiny hash text encoder registered first (as the
tests do): the real caption encoder costs ~45 s of start-up per restart on 2 cores, which would
be most of the test's time. `--text-encoder all-minilm-l6-v2` runs the plain `python -m sdn`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

CHILD_FLAG = "--child-run-sdn"


class HashEncoder:
    """Deterministic 16-d caption vectors from a hash: instant, and enough to train on the demo data."""

    name = "test-hash"
    dim = 16

    def encode(self, captions):
        rows = []
        for c in captions:
            seed = int.from_bytes(hashlib.sha256(c.encode()).digest()[:8], "little")
            rows.append(torch.randn(self.dim, generator=torch.Generator().manual_seed(seed)))
        return torch.stack(rows)


def child_main(argv: list[str]) -> int:
    from sdn.cli import main
    from sdn.data import demo_data
    from sdn.networks import text

    text.TEXT_ENCODERS[HashEncoder.name] = HashEncoder
    every = int(os.environ.get("SDN_CRASH_TEST_DEMO_EVERY", "1"))
    if every > 1:  # a smaller demo set, for the short version in the tests
        full = demo_data.make_demo_data

        def every_nth(*args, **kwargs):
            data = full(*args, **kwargs)
            keep = list(range(0, len(data), every))
            data.images, data.masks = data.images[keep], data.masks[keep]
            for name in ("captions", "labels", "split", "attributes"):
                setattr(data, name, [getattr(data, name)[i] for i in keep])
            return data

        demo_data.make_demo_data = every_nth
    return main(argv)


def train_command(a, out: Path) -> list[str]:
    args = ["train", "--data", "demo", "--out", str(out), "--resume", "auto", "--no-progress",
            "--size", str(a.size), "--fc-dim", str(a.fc_dim), "--teacher", "efficientnet-lite0", "--text-encoder", a.text_encoder,
            "--batch-size", str(a.batch_size), "--stage1-epochs", str(a.stage1_epochs), "--stage2-epochs", str(a.stage2_epochs),
            "--checkpoint-every", str(a.checkpoint_every), "--keep-checkpoints", str(a.keep_checkpoints), "--seed", str(a.seed)]
    if a.text_encoder == HashEncoder.name:
        return [sys.executable, str(Path(__file__).resolve()), CHILD_FLAG, *args]
    return [sys.executable, "-m", "sdn", *args]


def child_env(a) -> dict:
    return {**os.environ, "SDN_CRASH_TEST_DEMO_EVERY": str(a.demo_every)}


def logged_steps(out: Path) -> int:
    try:
        return len((out / "stats.jsonl").read_text().splitlines())
    except FileNotFoundError:
        return 0


def run_to_end(a, out: Path) -> tuple[float, float]:
    """Train without interruption; returns (seconds to the first logged step, total seconds)."""
    started = time.perf_counter()
    proc = subprocess.Popen(train_command(a, out), env=child_env(a), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    first = None
    while proc.poll() is None:
        if first is None and logged_steps(out) > 0:
            first = time.perf_counter() - started
        time.sleep(0.05)
    if proc.returncode != 0:
        raise SystemExit(f"the run in {out} failed (exit {proc.returncode}):\n{proc.stderr.read()}")
    total = time.perf_counter() - started
    return (first or total), total


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == [CHILD_FLAG]:
        return child_main(argv[1:])
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--kills", type=int, default=20, help="how many times to SIGKILL the run")
    p.add_argument("--out", default="runs/crash-test", help="work folder (emptied first)")
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--fc-dim", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=12)
    p.add_argument("--stage1-epochs", type=int, default=2, help="81 steps each with the demo data and batch 12")
    p.add_argument("--stage2-epochs", type=int, default=1)
    p.add_argument("--checkpoint-every", type=int, default=5)
    p.add_argument("--keep-checkpoints", type=int, default=3)
    p.add_argument("--text-encoder", default=HashEncoder.name)
    p.add_argument("--demo-every", type=int, default=1, help="train on every n-th demo image only (with the hash encoder)")
    p.add_argument("--seed", type=int, default=0, help="training seed")
    p.add_argument("--kill-seed", type=int, default=1, help="seed of the kill moments")
    p.add_argument("--kill-while-saving-every", type=int, default=4, metavar="K",
                   help="every K-th kill strikes while the run writes its first checkpoint (0: never)")
    a = p.parse_args(argv)
    if a.demo_every > 1 and a.text_encoder != HashEncoder.name:
        p.error("--demo-every works with the hash text encoder only")

    from sdn.training.checkpoint import checkpoint_files, load_checkpoint

    wall = time.perf_counter()
    work = Path(a.out)
    if work.exists():
        import shutil

        shutil.rmtree(work)
    work.mkdir(parents=True)
    reference, crashed = work / "reference", work / "crashed"
    startup, total = run_to_end(a, reference)
    print(f"reference run: {total:.1f} s ({startup:.1f} s until its first step)")

    rng = random.Random(a.kill_seed)
    window = startup + 1.5 * (total - startup) / a.kills  # kills spread so that the run still ends after the last one
    kills = finished_early = kills_while_saving = 0
    progress = []
    def half_written() -> set[Path]:
        return set(crashed.glob(".checkpoint-*.tmp"))

    for n in range(1, a.kills + 1):
        earlier = half_written()  # left by the previous kill, until the new run clears them
        proc = subprocess.Popen(train_command(a, crashed), env=child_env(a), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        aimed = a.kill_while_saving_every and n % a.kill_while_saving_every == 0
        deadline = time.perf_counter() + rng.uniform(0.5 * startup, window)
        while proc.poll() is None and not aimed and time.perf_counter() < deadline:
            time.sleep(0.01)
        # Writes are short, so random moments seldom fall inside one: aimed kills strike during the run's first write.
        while aimed and proc.poll() is None and not half_written() - earlier:
            time.sleep(0.002)
        if proc.poll() is not None:  # it finished (or failed) before its kill
            finished_early += 1
            if proc.returncode != 0:
                print(f"a restarted run failed with exit {proc.returncode}")
                return 1
            break
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        kills += 1
        kills_while_saving += bool(half_written() - earlier)
        files = checkpoint_files(crashed) if crashed.exists() else []
        progress.append(int(files[0].stem.split("-")[1]) if files and files[0].stem[-1].isdigit() else 0)
    print(f"kills: {kills}; newest checkpoint step after each: {progress}")
    _, last = run_to_end(a, crashed)
    print(f"final resumed run: {last:.1f} s")

    problems = []
    ref, got = load_checkpoint(reference), load_checkpoint(crashed)
    if got["step"] != ref["step"]:
        problems.append(f"the resumed run ended at step {got['step']}, the reference at {ref['step']}")
    left = checkpoint_files(crashed)
    for path in left:
        try:
            load_checkpoint(path)
        except Exception as e:  # noqa: BLE001 - every failure is a finding here
            problems.append(f"{path.name} does not load: {e}")
    unreadable = sorted(p.name for p in crashed.glob("*.unreadable"))
    if unreadable:
        problems.append(f"checkpoints found unreadable on resume: {unreadable}")
    differ = [k for k, w in ref["generator"].items() if not torch.equal(got["generator"][k], w)]
    if differ:
        problems.append(f"final weights differ from the reference in {len(differ)} tensors, e.g. {differ[0]}")
    exported = load_checkpoint(crashed / "generator.safetensors")["generator"]
    if any(not torch.equal(exported[k], w) for k, w in ref["generator"].items()):
        problems.append("the safetensors export differs from the reference weights")
    if [h[2] for h in got["history"]] != [h[2] for h in ref["history"]]:
        problems.append("the per-step losses differ from the reference's")
    steps_logged = [json.loads(line)["step"] for line in (crashed / "stats.jsonl").read_text().splitlines()]
    if steps_logged != list(range(1, ref["step"] + 1)):
        problems.append("stats.jsonl does not hold each step exactly once")

    print(f"summary: {kills} SIGKILLs ({kills_while_saving} left a half-written checkpoint behind), "
          f"{finished_early} run(s) finished before their kill; final step {got['step']} of {ref['step']}; "
          f"{len(left)} checkpoint files left, all loaded: {not any('does not load' in p for p in problems)}; "
          f"weights equal to the uninterrupted run bit for bit: {not differ}; wall time {time.perf_counter() - wall:.0f} s")
    for problem in problems:
        print(f"FAIL: {problem}")
    print("PASS" if not problems else "FAILED")
    return 0 if not problems else 1


if __name__ == "__main__":
    sys.exit(main())
