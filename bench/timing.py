"""Paired timing: every round times each contender once, back to back, in an order that rotates
every round, so a busy machine slows all of them alike. A ratio is then the median over rounds
of that round's ratio, which cancels drifts slower than one round."""
from __future__ import annotations

import statistics
import time
from typing import Callable


def paired_rounds(runs: dict[str, Callable[[int], object]], rounds: int,
                  sync: Callable[[], None] = lambda: None) -> dict[str, list[float]]:
    """Seconds per round of each run (called with the round index); `sync` waits for a device."""
    names = list(runs)
    seconds: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        k = r % len(names)
        for name in names[k:] + names[:k]:
            sync()
            start = time.perf_counter()
            runs[name](r)
            sync()
            seconds[name].append(time.perf_counter() - start)
    return seconds


def paired_ratio(seconds: dict[str, list[float]], num: str, den: str) -> float:
    """Median over rounds of seconds[num] / seconds[den]."""
    return statistics.median(a / b for a, b in zip(seconds[num], seconds[den]))
