"""Timing helpers shared by the benchmark scripts (run as `python bench/NAME.py`)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def median_seconds(action: Callable[[], object], repeat: int) -> float:
    """Median wall time of `repeat` calls: robust to one slow run on a shared machine."""
    timings = []
    for _ in range(repeat):
        start = time.perf_counter()
        action()
        timings.append(time.perf_counter() - start)
    return statistics.median(timings)
