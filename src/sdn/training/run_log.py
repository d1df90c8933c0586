"""The per-step record of a training run: stats.jsonl and, when installed, TensorBoard."""

from __future__ import annotations

import json
import math
import resource
from pathlib import Path

import torch

from sdn.networks.generator import Generator
from sdn.utils import atomic_write_text, autocast


class RunLog:
    """Rank 0's record of a run: stats.jsonl (one line per step) and, when the `tensorboard` package
    is installed, TensorBoard scalars and an image grid per epoch in run_dir/tensorboard."""

    def __init__(self, run_dir: Path, resumed_step: int | None, dev: torch.device):
        self.path, self.dev = run_dir / "stats.jsonl", dev
        if resumed_step is None:
            self.path.unlink(missing_ok=True)  # a fresh run's log starts empty
        elif self.path.exists():  # drop the lines of steps the resumed run will do again
            kept = [line for line in self.path.read_text().splitlines() if _logged_step(line) <= resumed_step]
            atomic_write_text(self.path, "".join(line + "\n" for line in kept))
        self.file = open(self.path, "a")  # noqa: SIM115 - open for the whole run, closed by close()
        self.tensorboard = _summary_writer(run_dir / "tensorboard")

    def step(self, step: int, epoch: int, stage: str, terms: dict[str, float], images_per_s: float, skipped: bool,
             lr: float) -> None:
        """lr: the learning rate this step used (schedules change it)."""
        record = {"step": step, "epoch": epoch, "stage": stage,
                  **{k: v if math.isfinite(v) else None for k, v in terms.items()},
                  "images_per_s": round(images_per_s, 2), "lr": lr, "skipped": skipped, **self.memory()}
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()
        if self.tensorboard is not None:
            for k, v in terms.items():
                self.tensorboard.add_scalar(f"{stage}/{k}", v, step)
            self.tensorboard.add_scalar("images_per_s", images_per_s, step)

    def memory(self) -> dict:
        out = {"peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}  # KiB on Linux
        if self.dev.type == "cuda":
            out["cuda_max_allocated_mb"] = round(torch.cuda.max_memory_allocated(self.dev) / 2**20, 1)
        return out

    @torch.no_grad()
    def epoch_end(self, step: int, generator: Generator, text: torch.Tensor, precision: str) -> None:
        if self.tensorboard is None:
            return
        import torchvision.utils

        with autocast(self.dev, precision):
            images, _ = generator(text)
        grid = torchvision.utils.make_grid(images.flatten(0, 1).float().clamp(0, 1).cpu(), nrow=images.shape[1] * len(text))
        self.tensorboard.add_image("samples", grid, step)

    def close(self) -> None:
        self.file.close()
        if self.tensorboard is not None:
            self.tensorboard.close()


def _logged_step(line: str) -> float:
    try:
        return json.loads(line)["step"]
    except (ValueError, KeyError, TypeError):
        return math.inf  # a line torn by a kill: dropped


def _summary_writer(folder: Path):
    """TensorBoard is optional: without the package there is simply no TensorBoard log."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(str(folder))
