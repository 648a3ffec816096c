"""Wall-clock timing that shares the machine's noise between the things it compares."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Timing:
    """Seconds per call: the best (least disturbed) and the median of the timed calls."""

    best_s: float
    median_s: float
    reps: int


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_interleaved(
    calls: Mapping[str, Callable[[], object]], device: torch.device, reps: int, warmup: int = 1
) -> dict[str, Timing]:
    """Time each call `reps` times, round-robin, after `warmup` untimed calls each.

    Round-robin order spreads a shared machine's load over all the calls, so their
    ratio is fairer than that of two separate runs.
    """
    for fn in calls.values():
        for _ in range(warmup):
            fn()
    samples: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(reps):
        for name, fn in calls.items():
            synchronize(device)
            start = time.perf_counter()
            fn()
            synchronize(device)
            samples[name].append(time.perf_counter() - start)
    return {
        name: Timing(min(times), statistics.median(times), reps) for name, times in samples.items()
    }
