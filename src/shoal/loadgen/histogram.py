"""A log-bucketed latency histogram in the style of HdrHistogram: constant relative precision,
O(1) recording, mergeable, and small when serialized.

Theory of operation
-------------------
Values are non-negative integers (the generator records microseconds). Values below
``2**SUB_BITS`` (256) each get their own bucket, so they are exact. Above, a value ``v`` with
``b = v.bit_length()`` is shifted right by ``s = b - SUB_BITS`` so that its top ``SUB_BITS`` bits
(a "mantissa" in ``[128, 255]``) select one of 128 buckets for that power of two. A bucket
therefore spans ``2**s`` values starting at ``mantissa << s``: its width is at most 1/128 of its
lowest value, so any value read back (the bucket's highest equivalent value, as HdrHistogram
reports) is at most 0.79% above the true one and never below it.

Counts live in a flat list indexed by bucket, grown on demand; merging adds lists elementwise, so
the histograms of several workers, paths or seconds combine exactly (the result is the histogram
of the union of their samples). Serialized, only non-zero buckets are kept.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

__all__ = ["MAX_INDEX", "SUB_BITS", "Histogram", "bucket_bounds", "bucket_index"]

SUB_BITS = 8
"""Buckets per power of two are ``2**(SUB_BITS-1)``: relative precision 1/128."""
_EXACT = 1 << SUB_BITS
_HALF = 1 << (SUB_BITS - 1)
_MAX_SHIFT = 40
MAX_INDEX = _EXACT + _MAX_SHIFT * _HALF - 1
"""The last bucket; larger values (above 2**48 µs, nine years) are counted in it."""


def bucket_index(value: int) -> int:
    """The bucket that counts ``value`` (negative values count as 0)."""
    if value < _EXACT:
        return value if value > 0 else 0
    shift = value.bit_length() - SUB_BITS
    index = _EXACT + (shift - 1) * _HALF + (value >> shift) - _HALF
    return index if index <= MAX_INDEX else MAX_INDEX


def bucket_bounds(index: int) -> tuple[int, int]:
    """The lowest and highest value the bucket ``index`` counts."""
    if index < _EXACT:
        return index, index
    offset = index - _EXACT
    shift = offset // _HALF + 1
    low = (offset % _HALF + _HALF) << shift
    return low, low + (1 << shift) - 1


class Histogram:
    """Counts of values by bucket, plus the exact count, sum, minimum and maximum."""

    __slots__ = ("count", "counts", "max", "min", "total")

    def __init__(self) -> None:
        self.counts: list[int] = []
        self.count = 0
        self.total = 0
        """The sum of the values recorded (for the mean)."""
        self.min: int | None = None
        self.max: int | None = None

    def record(self, value: int) -> None:
        """Count one value (the hot path: kept to a few integer operations)."""
        if value < _EXACT:
            if value < 0:
                value = 0
            index = value
        else:
            shift = value.bit_length() - SUB_BITS
            index = _EXACT + (shift - 1) * _HALF + (value >> shift) - _HALF
            if index > MAX_INDEX:
                index = MAX_INDEX
        counts = self.counts
        if index >= len(counts):
            counts.extend([0] * (index + 1 - len(counts)))
        counts[index] += 1
        self.count += 1
        self.total += value
        if self.max is None or value > self.max:
            self.max = value
        if self.min is None or value < self.min:
            self.min = value

    def merge(self, other: Histogram) -> None:
        """Add ``other``'s samples to this histogram."""
        if other.count == 0:
            return
        counts = self.counts
        if len(other.counts) > len(counts):
            counts.extend([0] * (len(other.counts) - len(counts)))
        for index, value in enumerate(other.counts):
            if value:
                counts[index] += value
        self.count += other.count
        self.total += other.total
        assert other.min is not None
        assert other.max is not None
        self.min = other.min if self.min is None else min(self.min, other.min)
        self.max = other.max if self.max is None else max(self.max, other.max)

    @classmethod
    def merged(cls, histograms: Iterable[Histogram]) -> Histogram:
        result = cls()
        for histogram in histograms:
            result.merge(histogram)
        return result

    def percentile(self, percent: float) -> int | None:
        """The value at ``percent`` (0-100): the highest value of the bucket holding the sample of
        rank ``ceil(percent/100 * count)``, clamped to the exact min and max; None when empty.

        Never below the true percentile of the samples, and above it by at most 1/128 of it."""
        if self.count == 0:
            return None
        assert self.min is not None
        assert self.max is not None
        if percent <= 0:
            return self.min
        if percent >= 100:
            return self.max
        # Smallest rank r with r >= percent/100 * count, computed without float rounding surprises.
        rank = max(1, -(-round(percent * 1_000_000) * self.count // 100_000_000))
        seen = 0
        for index, value in enumerate(self.counts):
            seen += value
            if seen >= rank:
                high = bucket_bounds(index)[1]
                return max(self.min, min(high, self.max))
        return self.max  # pragma: no cover - the counts sum to count

    def percentiles(self, percents: Iterable[float]) -> dict[float, int | None]:
        return {percent: self.percentile(percent) for percent in percents}

    @property
    def mean(self) -> float | None:
        return self.total / self.count if self.count else None

    def buckets(self) -> Iterator[tuple[int, int]]:
        """``(index, count)`` for every non-empty bucket, in order."""
        for index, value in enumerate(self.counts):
            if value:
                yield index, value

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form: only non-empty buckets (``[[index, count], ...]``)."""
        return {
            "count": self.count,
            "total": self.total,
            "min": self.min,
            "max": self.max,
            "buckets": [[index, value] for index, value in self.buckets()],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Histogram:
        """The inverse of :meth:`to_dict`; raises ValueError on an inconsistent document."""
        histogram = cls()
        pairs = [(int(index), int(value)) for index, value in data.get("buckets", ())]
        if any(index < 0 or index > MAX_INDEX or value < 0 for index, value in pairs):
            raise ValueError("histogram bucket index or count out of range")
        if pairs:
            histogram.counts = [0] * (max(index for index, _ in pairs) + 1)
            for index, value in pairs:
                histogram.counts[index] += value
        histogram.count = int(data.get("count", 0))
        if histogram.count != sum(value for _, value in pairs):
            raise ValueError("histogram count does not match its buckets")
        histogram.total = int(data.get("total", 0))
        histogram.min = None if data.get("min") is None else int(data["min"])
        histogram.max = None if data.get("max") is None else int(data["max"])
        return histogram

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Histogram):
            return NotImplemented
        return self.to_dict() == other.to_dict()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Histogram(count={self.count}, min={self.min}, max={self.max})"
