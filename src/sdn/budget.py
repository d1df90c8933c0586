"""A wall-clock budget for a training run (`--max-minutes`, and `sdn table1`'s equal budgets)."""

from __future__ import annotations

import time

from sdn import distributed


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
