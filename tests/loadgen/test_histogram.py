"""The histogram's arithmetic: buckets, percentile bounds, merging, serialization."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shoal.loadgen.histogram import MAX_INDEX, SUB_BITS, Histogram, bucket_bounds, bucket_index

values = st.integers(min_value=0, max_value=10**10)
samples = st.lists(values, min_size=1, max_size=300)
percents = st.floats(min_value=0.01, max_value=99.999, allow_nan=False)


def true_percentile(data: list[int], percent: float) -> int:
    """Nearest rank: the smallest sample with at least percent% of samples at or below it."""
    ordered = sorted(data)
    rank = max(1, math.ceil(percent / 100 * len(ordered) - 1e-9))
    return ordered[rank - 1]


def histogram_of(data: list[int]) -> Histogram:
    histogram = Histogram()
    for value in data:
        histogram.record(value)
    return histogram


def test_small_values_are_exact() -> None:
    for value in range(1 << SUB_BITS):
        assert bucket_index(value) == value
        assert bucket_bounds(value) == (value, value)


def test_bucket_boundaries_are_contiguous() -> None:
    previous_high = -1
    for index in range(3000):
        low, high = bucket_bounds(index)
        assert low == previous_high + 1
        assert bucket_index(low) == index
        assert bucket_index(high) == index
        assert (high - low + 1) <= max(1, low / 128)
        previous_high = high


@given(values)
def test_every_value_is_in_its_bucket(value: int) -> None:
    low, high = bucket_bounds(bucket_index(value))
    assert low <= value <= high
    assert high - value <= value / 128


def test_huge_values_land_in_the_last_bucket() -> None:
    histogram = Histogram()
    histogram.record(2**60)
    assert bucket_index(2**60) == MAX_INDEX
    assert histogram.max == 2**60
    assert histogram.percentile(50) == 2**60


def test_known_percentiles() -> None:
    histogram = histogram_of(list(range(1, 101)))  # 1..100 µs, exact buckets
    assert histogram.percentile(50) == 50
    assert histogram.percentile(90) == 90
    assert histogram.percentile(99) == 99
    assert histogram.percentile(99.9) == 100
    assert histogram.percentile(100) == 100
    assert histogram.percentile(0) == 1
    assert histogram.mean == 50.5
    assert histogram.count == 100
    assert Histogram().percentile(50) is None


def test_negative_values_count_as_zero() -> None:
    histogram = histogram_of([-5, 3])
    assert histogram.min == 0
    assert histogram.percentile(50) == 0


@given(samples, percents)
def test_percentile_is_never_below_and_at_most_1_in_128_above(
    data: list[int], percent: float
) -> None:
    histogram = histogram_of(data)
    reported = histogram.percentile(percent)
    expected = true_percentile(data, percent)
    assert reported is not None
    assert expected <= reported <= expected + expected / 128
    assert min(data) <= reported <= max(data)


@given(samples, samples)
def test_merge_is_the_histogram_of_the_union(a: list[int], b: list[int]) -> None:
    merged = histogram_of(a)
    merged.merge(histogram_of(b))
    assert merged == histogram_of(a + b)
    assert Histogram.merged([histogram_of(b), histogram_of(a)]) == merged
    assert merged.count == len(a) + len(b)
    assert merged.total == sum(a) + sum(b)


@given(samples)
def test_serialization_round_trips(data: list[int]) -> None:
    histogram = histogram_of(data)
    again = Histogram.from_dict(histogram.to_dict())
    assert again == histogram
    assert again.percentile(99) == histogram.percentile(99)


def test_merging_an_empty_histogram_changes_nothing() -> None:
    histogram = histogram_of([5, 500])
    histogram.merge(Histogram())
    assert histogram == histogram_of([5, 500])


@pytest.mark.parametrize(
    "document",
    [
        {"count": 2, "buckets": [[1, 1]]},
        {"count": 1, "buckets": [[-1, 1]]},
        {"count": 1, "buckets": [[MAX_INDEX + 1, 1]]},
    ],
)
def test_inconsistent_documents_are_refused(document: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="histogram"):
        Histogram.from_dict(document)
