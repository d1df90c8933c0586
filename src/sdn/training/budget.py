"""When a training run stops early: a wall-clock budget (`--max-minutes`, and `sdn table1`'s equal
budgets) and the divergence guard (`--max-bad-steps`)."""

from __future__ import annotations

import time
import warnings
from pathlib import Path

from sdn.errors import UserError
from sdn.training import distributed
from sdn.training.checkpoint import checkpoint_files


class WallClockBudget:
    """Counts from its creation. `spent()` is asked at every step boundary; rank 0's clock decides
    for every process, so all stop after the same step (one tiny all-gather per step, only when a
    budget is set and several processes train)."""

    def __init__(self, seconds: float | None, world: distributed.World | None = None):
        self.deadline = None if seconds is None else time.perf_counter() + seconds
        self.world = world or distributed.World()

    def spent(self) -> bool:
        if self.deadline is None:
            return False
        over = time.perf_counter() >= self.deadline
        return bool(distributed.gather_objects(over, self.world)[0])


def stop_if_diverged(bad_in_a_row: int, max_bad_steps: int, step: int, run_dir: Path, world) -> None:
    if world.is_main:
        warnings.warn(f"non-finite loss at step {step}: step skipped ({bad_in_a_row} in a row)")
    if bad_in_a_row >= max_bad_steps:
        kept = "the last good checkpoint is kept there" if checkpoint_files(run_dir) else "no checkpoint had been written yet"
        raise UserError(f"training diverged: {bad_in_a_row} non-finite losses in a row up to step {step}; {kept} ({run_dir}); "
                        "try a lower --lr or --precision fp32")
