"""Latency histograms every worker fills the same way, so they merge exactly."""

from __future__ import annotations

import math
from collections.abc import Sequence

# Latency histograms: log bins 2 % wide from 50 µs to ~10 s (exactly mergeable across workers).
LAT_MIN = 50e-6
LAT_STEP = math.log(1.02)
LAT_BINS = 620
COARSE = 5  # per-second histograms use bins 5x wider (~10 %)


def lat_bin(seconds: float) -> int:
    if seconds <= LAT_MIN:
        return 0
    return min(LAT_BINS - 1, int(math.log(seconds / LAT_MIN) / LAT_STEP))


def bin_upper_ms(b: int) -> float:
    return LAT_MIN * math.exp(LAT_STEP * (b + 1)) * 1000.0


def hist_percentile(hist: Sequence[int], q: float, width: int = 1) -> float:
    """Upper edge (ms) of the bin holding the q-th percentile (conservative by one bin)."""
    total = sum(hist)
    if total == 0:
        return math.nan
    rank = max(1, math.ceil(q / 100.0 * total))
    running = 0
    for b, n in enumerate(hist):
        running += n
        if running >= rank:
            return bin_upper_ms((b + 1) * width - 1)
    return bin_upper_ms(len(hist) * width - 1)
