"""Measuring helpers of the benchmarks: memory probes, FLOP counting, synchronised timing."""

from __future__ import annotations

import math
import os
import resource
import sys
import time

import torch


def _rss_mb() -> float | None:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return None


def _peak_rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes on macOS, KiB on Linux


def memory_probe(dev: torch.device):
    """-> (start(), finish(before) -> (peak MB, peak above the start MB))."""
    if dev.type == "cuda":
        def start():
            torch.cuda.synchronize(dev)
            torch.cuda.reset_peak_memory_stats(dev)
            return torch.cuda.memory_allocated(dev) / 2**20

        def finish(before):
            peak = torch.cuda.max_memory_allocated(dev) / 2**20
            return peak, peak - before
    else:
        def start():
            return _rss_mb()

        def finish(before):
            peak = _peak_rss_mb()
            return peak, (None if before is None else max(0.0, peak - before))
    return start, finish


def _conv_backward_flops(grad_out_shape, x_shape, w_shape, _bias, _stride, _padding, _dilation, transposed, _output_padding,
                         _groups, output_mask, out_shape=None, **kwargs) -> int:
    """Each of grad_input and grad_weight costs what the forward convolution costs. torch's own
    formula (2.14) leaves `groups` out of grad_weight and counts a depthwise convolution's weight
    gradient C times over (the naive path's EfficientNet teacher would show 30 GFLOP too many)."""
    forward = 2 * math.prod(x_shape if transposed else grad_out_shape) * math.prod(w_shape[1:])
    return forward * (int(bool(output_mask[0])) + int(bool(output_mask[1])))


def count_flops(fn) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False, custom_mapping={torch.ops.aten.convolution_backward: _conv_backward_flops}) as counter:
        fn()
    return float(counter.get_total_flops())


def sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def timed(fn, dev, warmup: int, reps: int) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) per call of fn, after `warmup` calls."""
    for _ in range(warmup):
        fn()
    sync(dev)
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(reps):
        fn()
    sync(dev)
    return (time.perf_counter() - wall) / reps, (time.process_time() - cpu) / reps


def append_result(path: str, row: dict) -> None:
    """Print one result row as JSON and append it to the JSON-lines file `path`."""
    import json
    from pathlib import Path

    print(json.dumps(row))
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        f.write(json.dumps(row) + "\n")
