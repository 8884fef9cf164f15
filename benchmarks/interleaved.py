"""Interleaved A/B timing for the throughput benchmarks: every repeat times each implementation once, in an
order that alternates between repeats, so slow drift of a shared machine's load hits all of them alike.
Results are medians per implementation and the median of the per-repeat ratios to a baseline."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping

import torch


def synchronize(device: torch.device) -> None:
    """Waits for queued GPU work; nothing on CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def interleaved_seconds(calls: Mapping[str, Callable[[], object]], device: torch.device, repeats: int,
                        warmup: int = 1) -> dict[str, list[float]]:
    """Seconds of each call per repeat: `warmup` untimed rounds, then `repeats` rounds A B C, C B A, A B C, ..."""
    names = list(calls)
    for _ in range(warmup):
        for name in names:
            calls[name]()
    synchronize(device)
    seconds: dict[str, list[float]] = {name: [] for name in names}
    for repeat in range(repeats):
        for name in names if repeat % 2 == 0 else reversed(names):
            start = time.perf_counter()
            calls[name]()
            synchronize(device)
            seconds[name].append(time.perf_counter() - start)
    return seconds


def median_ratio(seconds: Mapping[str, list[float]], name: str, baseline: str) -> float:
    """Median over repeats of the speed ratio `name` / `baseline` (baseline seconds / name seconds)."""
    return statistics.median(base / ours for ours, base in zip(seconds[name], seconds[baseline], strict=True))
