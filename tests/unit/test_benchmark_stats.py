"""Percentile, skew and timeline arithmetic on fixed data, checked against values worked out by hand."""

import pytest

from benchmarks.stats import LatencySummary, coefficient_of_variation, per_second, percentile, skew, throughput


def test_percentiles_interpolate_between_ranks() -> None:
    values = list(range(1, 101))  # 1..100
    assert percentile(values, 50) == pytest.approx(50.5)
    assert percentile(values, 95) == pytest.approx(95.05)
    assert percentile(values, 99) == pytest.approx(99.01)
    assert percentile(values, 0) == 1 and percentile(values, 100) == 100
    assert percentile([7.0], 99) == 7.0
    assert percentile([3, 1, 2], 50) == 2  # order of input does not matter


@pytest.mark.parametrize(("values", "q"), [([], 50), ([1.0], 101), ([1.0], -1)])
def test_percentile_refuses_nonsense(values: list[float], q: float) -> None:
    with pytest.raises(ValueError):
        percentile(values, q)


def test_latency_summary_is_in_milliseconds() -> None:
    summary = LatencySummary.of_seconds([0.001, 0.002, 0.003, 0.004])
    assert (summary.count, summary.min, summary.max, summary.mean) == (4, 1.0, 4.0, 2.5)
    assert summary.p50 == 2.5 and summary.p95 == pytest.approx(3.85)


def test_skew_and_variation() -> None:
    assert skew([10, 10, 10, 10]) == 1.0
    assert skew([30, 10, 10, 10, 0]) == 2.5  # mean 12
    assert coefficient_of_variation([5, 5]) == 0.0
    assert coefficient_of_variation([0, 10]) == pytest.approx(1.0)
    assert throughput(50, 2.0) == 25.0
    with pytest.raises(ValueError):
        skew([])


def test_per_second_buckets_successes_and_failures() -> None:
    events = [(0.1, True), (0.9, True), (1.5, False), (2.2, True), (2.3, False), (9.0, True)]
    assert per_second(events, 0.0, 3.0) == [(0, 2, 0), (1, 0, 1), (2, 1, 1)]
