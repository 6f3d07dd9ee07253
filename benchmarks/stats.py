"""The arithmetic of the reports: percentiles, latency summaries, throughput, skew. Pure functions."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) by linear interpolation between closest ranks (numpy's default)."""
    if not values:
        raise ValueError("percentile of no values")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile must be within 0..100, got {q}")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass(frozen=True)
class LatencySummary:
    """Latencies in milliseconds."""

    count: int
    min: float
    mean: float
    p50: float
    p95: float
    p99: float
    max: float

    @classmethod
    def of_seconds(cls, seconds: Sequence[float]) -> LatencySummary:
        ms = [s * 1000 for s in seconds]
        return cls(
            count=len(ms),
            min=round(min(ms), 3),
            mean=round(sum(ms) / len(ms), 3),
            p50=round(percentile(ms, 50), 3),
            p95=round(percentile(ms, 95), 3),
            p99=round(percentile(ms, 99), 3),
            max=round(max(ms), 3),
        )

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def throughput(count: int, elapsed: float) -> float:
    if elapsed <= 0:
        raise ValueError("elapsed time must be positive")
    return count / elapsed


def skew(sizes: Sequence[float]) -> float:
    """max / mean: 1.0 is a perfect spread; 2.0 means the fullest part holds twice its share."""
    if not sizes:
        raise ValueError("skew of no sizes")
    mean = sum(sizes) / len(sizes)
    return max(sizes) / mean if mean else 0.0


def coefficient_of_variation(sizes: Sequence[float]) -> float:
    if not sizes:
        raise ValueError("variation of no sizes")
    mean = sum(sizes) / len(sizes)
    if not mean:
        return 0.0
    return math.sqrt(sum((s - mean) ** 2 for s in sizes) / len(sizes)) / mean


def per_second(events: Sequence[tuple[float, bool]], start: float, end: float) -> list[tuple[int, int, int]]:
    """(second, successes, failures) for each whole second from start to end (events are (time, ok))."""
    seconds = max(0, math.ceil(end - start))
    ok = [0] * seconds
    failed = [0] * seconds
    for at, success in events:
        index = int(at - start)
        if 0 <= index < seconds:
            (ok if success else failed)[index] += 1
    return [(i, ok[i], failed[i]) for i in range(seconds)]
