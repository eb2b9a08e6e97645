"""
Prometheus text exposition (format 0.0.4), written by hand: the proxy needs no client library.

:class:`Exposition` collects metric families (``counter``, ``gauge``, ``histogram``) and renders
them: a ``# HELP`` and ``# TYPE`` line per family, then one line per sample, label values escaped
as the format asks (backslash, double quote, newline). Histogram buckets are given per bucket and
rendered cumulatively with the ``+Inf`` bucket, ``_sum`` and ``_count``. Pure: no I/O, no clock.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Final

__all__ = ["CONTENT_TYPE", "Exposition"]

CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"

Labels = Mapping[str, str]
_LE_INF: Final = 'le="+Inf"'


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _escape_help(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n")


def _labels(labels: Labels, extra: str = "") -> str:
    parts = [f'{name}="{_escape(value)}"' for name, value in labels.items()]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


def _number(value: float) -> str:
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(value)


class Exposition:
    """Metric families in the order they were added; :meth:`render` gives the text."""

    def __init__(self) -> None:
        self._lines: list[str] = []
        self._names: set[str] = set()

    def _family(self, name: str, kind: str, help_text: str) -> None:
        if name in self._names:
            raise ValueError(f"metric family {name} added twice")
        self._names.add(name)
        self._lines.append(f"# HELP {name} {_escape_help(help_text)}")
        self._lines.append(f"# TYPE {name} {kind}")

    def counter(self, name: str, help_text: str, samples: Iterable[tuple[Labels, float]]) -> None:
        """A counter family; ``name`` ends in ``_total`` as the samples are named."""
        # The text format names a counter family as its samples are named, ``_total`` included
        # (as prometheus_client writes it); parsers strip the suffix for the family name.
        sample = name if name.endswith("_total") else f"{name}_total"
        self._family(sample, "counter", help_text)
        for labels, value in samples:
            self._lines.append(f"{sample}{_labels(labels)} {_number(value)}")

    def gauge(self, name: str, help_text: str, samples: Iterable[tuple[Labels, float]]) -> None:
        self._family(name, "gauge", help_text)
        for labels, value in samples:
            self._lines.append(f"{name}{_labels(labels)} {_number(value)}")

    def histogram(
        self,
        name: str,
        help_text: str,
        bounds: Sequence[float],
        series: Iterable[tuple[Labels, Sequence[int], float]],
    ) -> None:
        """``series``: labels, counts per bucket (``len(bounds) + 1``, the last above every
        bound) and the sum of the observations."""
        self._family(name, "histogram", help_text)
        for labels, counts, total in series:
            if len(counts) != len(bounds) + 1:
                raise ValueError(f"{name}: {len(counts)} counts for {len(bounds)} bounds")
            cumulative = 0
            for bound, count in zip(bounds, counts, strict=False):
                cumulative += count
                le = f'le="{_number(float(bound))}"'
                self._lines.append(f"{name}_bucket{_labels(labels, le)} {cumulative}")
            cumulative += counts[-1]
            self._lines.append(f"{name}_bucket{_labels(labels, _LE_INF)} {cumulative}")
            self._lines.append(f"{name}_sum{_labels(labels)} {_number(total)}")
            self._lines.append(f"{name}_count{_labels(labels)} {cumulative}")

    def render(self) -> str:
        return "\n".join(self._lines) + "\n" if self._lines else ""
