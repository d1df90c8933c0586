"""Exact resume: which checkpoint a run continues from, where in its data it stands, and the random
states of every process, saved with each checkpoint and put back on resume (see sdn.training.checkpoint for
the files themselves)."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch

from sdn.training import distributed
from sdn.training.checkpoint import (checkpoint_files, checkpoint_step, load_checkpoint, newest_checkpoint, remove_run_files,
                            remove_stale_temporaries)
from sdn.errors import UserError


def find_resume_checkpoint(resume, run_dir: Path, overwrite: bool, world) -> dict | None:
    """The checkpoint to continue from (None: a fresh start). Rank 0 chooses the file and every
    process reads that one, so they cannot pick different ones."""
    chosen = ckpt = message = None
    if world.is_main:
        try:
            chosen, ckpt = _choose_resume_file(resume, run_dir, overwrite)
        except UserError as e:
            message = str(e)
    shared_choice, message = distributed.gather_objects((chosen, message), world)[0]
    if message is not None:
        raise UserError(message)
    if ckpt is None and shared_choice is not None:  # the other processes read the file rank 0 chose
        ckpt = load_checkpoint(shared_choice)
    return ckpt


def _choose_resume_file(resume, run_dir: Path, overwrite: bool) -> tuple[str | None, dict | None]:
    if resume is None:
        if checkpoint_files(run_dir):
            if not overwrite:
                raise UserError(f"{run_dir} already holds a run: continue it with --resume auto, or pass --overwrite to start afresh")
            remove_run_files(run_dir)
        return None, None
    remove_stale_temporaries(run_dir)
    if str(resume) == "auto":
        found = newest_checkpoint(run_dir)
        if found is None:
            return None, None
        for newer in checkpoint_files(run_dir)[: checkpoint_files(run_dir).index(found[0])]:
            newer.rename(newer.with_name(newer.name + ".unreadable"))  # kept for a post-mortem, out of the way
        return str(found[0]), found[1]
    path = Path(resume)
    if path.is_dir():
        found = newest_checkpoint(path)
        if found is None:
            raise UserError(f"no checkpoint in {path} to resume from")
        path, ckpt = found
    else:
        ckpt = load_checkpoint(path)  # a clear error here, before the other processes try
    later = [p for p in checkpoint_files(run_dir) if (checkpoint_step(p) or 0) > ckpt["step"]]
    if later:
        raise UserError(f"{run_dir} already holds checkpoints past step {ckpt['step']} ({later[0].name}): continue with "
                        "--resume auto, or train from this checkpoint into another --out folder")
    return str(path), ckpt


def resume_position(ckpt: dict, n_images: int) -> tuple[int, int]:
    """(epoch, images of it already trained on) to continue from. Counting images rather than
    steps keeps the position meaningful if the batch size changes on resume."""
    position = ckpt.get("position")
    if position is None:  # written by an older version, at the end of an epoch
        return ckpt["epoch"] + 1, 0
    if position["images"] >= n_images:
        return position["epoch"] + 1, 0
    return position["epoch"], position["images"]


def rng_states() -> dict:
    """Every random state a step could draw from. Training itself draws none today (the data order
    comes from its own seeded generator), but an exact resume must not depend on that staying so."""
    state = {"torch": torch.get_rng_state(), "python": random.getstate(),
             "numpy": {k: torch.from_numpy(v.astype(np.int64)) if isinstance(v, np.ndarray) else v
                       for k, v in zip(("kind", "keys", "pos", "has_gauss", "cached"), np.random.get_state())}}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_states(per_rank: list | None, world) -> None:
    if not per_rank:
        return
    state = per_rank[world.rank % len(per_rank)]
    torch.set_rng_state(state["torch"])
    random.setstate((state["python"][0], tuple(state["python"][1]), state["python"][2]))
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])
