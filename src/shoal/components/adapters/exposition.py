"""Prometheus text exposition (format 0.0.4), written from plain values.

Theory of operation
-------------------
An adapter collects :class:`Sample` values into an :class:`Exposition`, family by family; the
exposition keeps the first family of each name and the first sample of each label set, so a
statistics page whose keys sanitize to the same name (``a.b`` and ``a_b``) still yields valid
output (Prometheus refuses a scrape with a repeated series). :meth:`Exposition.render` writes
``# HELP``, ``# TYPE`` and then the samples of each family, in the order they were first added.

Names are made valid here, not by the callers: :func:`metric_name` and :func:`label_name`
turn any text into the ``[a-zA-Z_:][a-zA-Z0-9_:]*`` and ``[a-zA-Z_][a-zA-Z0-9_]*`` alphabets,
camelCase into snake_case, so ``requestsServed`` and ``requests-served`` read alike.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

__all__ = [
    "CONTENT_TYPE",
    "Exposition",
    "MetricFamily",
    "MetricType",
    "Sample",
    "format_value",
    "label_name",
    "metric_name",
]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
"""The Content-Type of text format 0.0.4, which every Prometheus version scrapes."""

MetricType = Literal["counter", "gauge", "untyped"]

_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_INVALID = re.compile(r"[^a-zA-Z0-9_:]+")
_INVALID_LABEL = re.compile(r"[^a-zA-Z0-9_]+")
_UNDERSCORES = re.compile(r"_{2,}")


def metric_name(*parts: str) -> str:
    """A valid metric name from ``parts`` joined by ``_`` (``("app", "http.requests")`` ->
    ``app_http_requests``).

    camelCase becomes snake_case, every run of invalid characters one ``_``, and a name that would
    start with a digit gets a leading ``_``. An empty result is ``_``.
    """
    pieces = []
    for part in parts:
        text = _INVALID.sub("_", _CAMEL.sub("_", part)).lower().strip("_")
        if text:
            pieces.append(text)
    name = _UNDERSCORES.sub("_", "_".join(pieces))
    if not name or name[0].isdigit():
        name = "_" + name
    return name


def label_name(text: str) -> str:
    """A valid label name (no ``:``; a leading ``__`` is reserved by Prometheus, so it is cut)."""
    name = _UNDERSCORES.sub("_", _INVALID_LABEL.sub("_", _CAMEL.sub("_", text)).lower())
    name = name.lstrip("_")
    if not name or name[0].isdigit():
        name = "_" + name
    return name


def format_value(value: float) -> str:
    """A sample value as Go's ``strconv.FormatFloat(v, 'g', -1, 64)`` would write it, near enough:
    integers without a decimal point, ``NaN``, ``+Inf`` and ``-Inf`` spelled as Prometheus does."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == int(value) and abs(value) < 2**63:
        return str(int(value))
    return repr(float(value))


def _escape_label_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


_OTHER_BREAKS = re.compile("[\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")


def _escape_help(text: str) -> str:
    # Only backslash and newline have escapes; other line breaks become spaces, since some
    # readers split lines on them (Python's str.splitlines does).
    return _OTHER_BREAKS.sub(" ", text.replace("\\", "\\\\").replace("\n", "\\n"))


@dataclass(frozen=True, slots=True)
class Sample:
    """One value of a family, with its labels (names already valid, in a fixed order)."""

    labels: tuple[tuple[str, str], ...]
    value: float


@dataclass(slots=True)
class MetricFamily:
    """Every sample of one metric name, with its type and help text."""

    name: str
    type: MetricType
    help: str
    samples: list[Sample] = field(default_factory=list)
    _seen: set[tuple[tuple[str, str], ...]] = field(default_factory=set, repr=False)

    def add(self, value: float, labels: Mapping[str, str] | None = None) -> bool:
        """Add a sample; False (and nothing added) when this label set is already there."""
        named: dict[str, str] = {}
        for k, v in (labels or {}).items():
            named.setdefault(label_name(k), str(v))  # two keys that sanitize alike: the first wins
        key = tuple(named.items())
        if key in self._seen:
            return False
        self._seen.add(key)
        self.samples.append(Sample(key, float(value)))
        return True


class Exposition:
    """Families in the order first added; renders as Prometheus text format 0.0.4."""

    def __init__(self) -> None:
        self._families: dict[str, MetricFamily] = {}
        self._by_name: dict[str, MetricFamily] = {}
        self.dropped: list[str] = []
        """Names of samples refused: the same series twice, or one name with two types."""

    def family(self, name: str, type_: MetricType, help_: str) -> MetricFamily | None:
        """The family called ``name`` (made valid), created if new; None if it exists with
        another type (the caller's sample is then dropped and noted in :attr:`dropped`)."""
        name = metric_name(name)
        if type_ == "counter" and not name.endswith("_total"):
            name += "_total"  # the convention Prometheus' own client libraries enforce
        # A counter ``x_total`` and a gauge ``x`` are one family to Prometheus (OpenMetrics names
        # a counter's family without its suffix), so they clash just as two ``x`` would.
        key = name.removesuffix("_total") if type_ == "counter" else name
        existing = self._families.get(key) or self._by_name.get(name)
        if existing is None:
            existing = self._families[key] = self._by_name[name] = MetricFamily(name, type_, help_)
        elif existing.type != type_ or existing.name != name:
            self.dropped.append(name)
            return None
        return existing

    def add(
        self,
        name: str,
        value: float,
        *,
        type_: MetricType = "gauge",
        help_: str = "",
        labels: Mapping[str, str] | None = None,
    ) -> None:
        """Add one sample to the family ``name``; a repeated series is dropped and noted."""
        family = self.family(name, type_, help_)
        if family is not None and not family.add(value, labels):
            self.dropped.append(family.name)

    def families(self) -> list[MetricFamily]:
        """Every family, in the order first added."""
        return list(self._families.values())

    def render(self) -> str:
        """The exposition text; families without samples are left out."""
        lines: list[str] = []
        for family in self._families.values():
            if not family.samples:
                continue
            lines.append(f"# HELP {family.name} {_escape_help(family.help or family.name)}")
            lines.append(f"# TYPE {family.name} {family.type}")
            for sample in family.samples:
                if sample.labels:
                    body = ",".join(f'{k}="{_escape_label_value(v)}"' for k, v in sample.labels)
                    lines.append(f"{family.name}{{{body}}} {format_value(sample.value)}")
                else:
                    lines.append(f"{family.name} {format_value(sample.value)}")
        return "\n".join(lines) + "\n" if lines else ""
