"""``LoadTest``: the talk's example of an intent-based API.

You state a service, a rate and paths; a controller makes it so and reports in ``status``. The
talk's YAML is accepted verbatim, with its short group and its odd ``tests`` shape::

    apiVersion: loadtest/v1          # short for loadtest.shoal.dev/v1
    kind: LoadTest
    metadata: {name: my-cool-loadtest}
    spec:
      service: my-cool-service
      requestPerSecond: 10k          # a Kubernetes quantity: 10000
      tests:
        - test:                      # a group of paths, each weighted 1
          - /some/path
          - /some/other/path

Each item of ``tests`` is either such a group (``test``: paths, or path objects) or one path object
(``path``, ``method``, ``headers``, ``body``, ``weight``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from shoal.model import _syntax
from shoal.model._base import Check, ShoalModel
from shoal.model.meta import Condition, KindInfo, KubeObject, PrinterColumn
from shoal.model.quantity import Duration, Quantity

__all__ = [
    "LoadTest",
    "LoadTestCase",
    "LoadTestPath",
    "LoadTestSpec",
    "LoadTestStatus",
    "Stage",
    "Threshold",
    "parse_threshold",
]

LOADTEST_GROUP = "loadtest.shoal.dev"
DEFAULT_DURATION = "30s"
DEFAULT_CONNECTIONS = 64

HTTPMethod = Literal["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


class LoadTestPath(ShoalModel):
    """One request the test sends: a path (with query), and optionally method, headers and body."""

    path: str
    method: HTTPMethod = "GET"
    headers: dict[str, str] | None = None
    body: str | None = None
    weight: int = Field(default=1, ge=1)
    """Relative share of requests among all paths."""

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, data: Any) -> Any:
        return {"path": data} if isinstance(data, str) else data

    @field_validator("path")
    @classmethod
    def _absolute(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError(f"must start with '/', got {value!r}")
        return value


class LoadTestCase(ShoalModel):
    """An item of ``tests``: one path object, or the talk's group form ``{test: [paths]}``."""

    path: str | None = None
    method: HTTPMethod | None = None
    """``GET`` when left out."""
    headers: dict[str, str] | None = None
    body: str | None = None
    weight: int | None = Field(default=None, ge=1)
    """Relative share of requests; 1 when left out."""
    test: list[LoadTestPath] | None = None
    """The talk's form: a group of paths (strings or path objects), each its own request."""

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, data: Any) -> Any:
        return {"path": data} if isinstance(data, str) else data

    @field_validator("path")
    @classmethod
    def _absolute(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith("/"):
            raise ValueError(f"must start with '/', got {value!r}")
        return value

    def _checks(self) -> Iterator[Check]:
        if (self.path is None) == (self.test is None):
            yield (), "must specify exactly one of: `path` or `test`"
        elif self.test is not None:
            if not self.test:
                yield ("test",), "Required value: at least one path"
            for field in ("method", "headers", "body", "weight"):
                if getattr(self, field) is not None:
                    yield (
                        (field,),
                        "may not be specified with `test`: set it on each path of the group",
                    )

    def paths(self) -> list[LoadTestPath]:
        """The requests this item stands for."""
        if self.test is not None:
            return list(self.test)
        assert self.path is not None
        return [
            LoadTestPath(
                path=self.path,
                method=self.method or "GET",
                headers=self.headers,
                body=self.body,
                weight=self.weight or 1,
            )
        ]


class Stage(ShoalModel):
    """A ramp: move the arrival rate linearly to ``target`` over ``duration`` (as k6 stages)."""

    duration: Duration
    target: Quantity
    """Requests per second at the end of the stage."""

    def _checks(self) -> Iterator[Check]:
        if self.target.value < 0:
            yield ("target",), f"Invalid value: {self.target.text!r}: must be >= 0"


_THRESHOLD = re.compile(
    r"\s*(?P<metric>error_ratio|http_req_failed|p\((?P<pct>[0-9]+(?:\.[0-9]+)?)\)|avg|med|min|max)"
    r"\s*(?P<op><=|<|>=|>)\s*(?P<value>[0-9]+(?:\.[0-9]+)?)\s*(?P<unit>ms|s)?\s*"
)


@dataclass(frozen=True, slots=True)
class Threshold:
    """A parsed pass/fail criterion: ``metric op value`` (latencies in milliseconds)."""

    expression: str
    metric: str
    """``error_ratio``, ``p95``, ``p99.9``, ``avg``, ``med``, ``min`` or ``max``."""
    operator: Literal["<", "<=", ">", ">="]
    value: float

    def holds(self, observed: float) -> bool:
        return {
            "<": observed < self.value,
            "<=": observed <= self.value,
            ">": observed > self.value,
            ">=": observed >= self.value,
        }[self.operator]


def parse_threshold(expression: str) -> Threshold:
    """Parse a k6-style threshold: ``error_ratio<0.01``, ``p(95)<200``, ``p(99) < 0.5s``."""
    match = _THRESHOLD.fullmatch(expression)
    if match is None:
        raise ValueError(
            f"invalid threshold {expression!r}: write `METRIC OP VALUE` where METRIC is "
            "error_ratio, p(N), avg, med, min or max, OP is <, <=, > or >=, and latencies are in "
            "ms (default) or s, e.g. 'p(95)<200' or 'error_ratio<0.01'"
        )
    metric = match["metric"]
    value = float(match["value"])
    if metric == "http_req_failed":
        metric = "error_ratio"
    if metric == "error_ratio":
        if match["unit"]:
            raise ValueError(f"invalid threshold {expression!r}: error_ratio takes no unit")
        if value > 1:
            raise ValueError(f"invalid threshold {expression!r}: error_ratio is between 0 and 1")
    else:
        if match["pct"] is not None:
            pct = float(match["pct"])
            if not 0 < pct <= 100:
                raise ValueError(
                    f"invalid threshold {expression!r}: percentile must be in (0, 100]"
                )
            metric = f"p{match['pct']}"
        if match["unit"] == "s":
            value *= 1000
    operator: Literal["<", "<=", ">", ">="] = match["op"]  # type: ignore[assignment]
    return Threshold(expression.strip(), metric, operator, value)


class LoadTestSpec(ShoalModel):
    """What load to send, where, and what counts as passing."""

    service: str
    """The Service to load, in the LoadTest's namespace."""
    request_per_second: Quantity
    """The arrival rate, a quantity (``10k`` = 10,000 requests per second); the talk's name."""
    tests: list[LoadTestCase] = Field(min_length=1)
    """The paths to request; requests are spread by weight."""
    duration: Duration = Field(default_factory=lambda: Duration.parse(DEFAULT_DURATION))
    """How long to send load at the requested rate (after any ``stages``)."""
    connections: int = Field(default=DEFAULT_CONNECTIONS, ge=1, le=100_000)
    """Keep-alive connections the generator may open."""
    stages: list[Stage] | None = None
    """Ramps before the steady part, as k6's ramping-arrival-rate stages."""
    thresholds: list[str] | None = None
    """Pass/fail criteria as k6 writes them: ``p(95)<200``, ``error_ratio<0.01``."""

    def _checks(self) -> Iterator[Check]:
        for message in _syntax.dns1035_label(self.service):
            yield ("service",), f"Invalid value: {self.service!r}: {message}"
        if self.request_per_second.value <= 0:
            yield (
                ("requestPerSecond",),
                f"Invalid value: {self.request_per_second.text!r}: must be greater than 0",
            )
        if self.duration.nanoseconds <= 0:
            yield ("duration",), f"Invalid value: {self.duration.text!r}: must be greater than 0"
        for index, expression in enumerate(self.thresholds or ()):
            try:
                parse_threshold(expression)
            except ValueError as error:
                yield ("thresholds", index), str(error)

    def paths(self) -> list[LoadTestPath]:
        """Every request of the test, groups expanded, in order."""
        return [path for case in self.tests for path in case.paths()]

    def parsed_thresholds(self) -> list[Threshold]:
        return [parse_threshold(expression) for expression in self.thresholds or ()]


class LatencySummary(ShoalModel):
    """Latency percentiles in milliseconds, measured from each request's intended start."""

    p50: float | None = None
    p90: float | None = None
    p99: float | None = None
    p999: float | None = None


class PathResult(ShoalModel):
    path: str
    method: str = "GET"
    requests: int = 0
    errors: int = 0
    latency: LatencySummary | None = None


class ThresholdResult(ShoalModel):
    expression: str
    passed: bool
    observed: float | None = None


class LoadTestStatus(ShoalModel):
    """What the run achieved; written while it runs and at the end."""

    observed_generation: int | None = None
    conditions: list[Condition] | None = None
    start_time: str | None = None
    completion_time: str | None = None
    requests: int | None = None
    achieved_requests_per_second: float | None = None
    error_ratio: float | None = None
    latency: LatencySummary | None = None
    paths: list[PathResult] | None = None
    thresholds: list[ThresholdResult] | None = None


class LoadTest(KubeObject):
    """An open-loop load test of a Service, run by the cluster and reported in ``status``."""

    INFO: ClassVar[KindInfo] = KindInfo(
        group=LOADTEST_GROUP,
        version="v1",
        kind="LoadTest",
        plural="loadtests",
        short_names=("lt",),
        categories=("all", "shoal"),
        status_subresource=True,
        printer_columns=(
            PrinterColumn("Service", "string", ".spec.service"),
            PrinterColumn("Rate", "string", ".spec.requestPerSecond"),
            PrinterColumn("Achieved", "number", ".status.achievedRequestsPerSecond"),
            PrinterColumn("P99-ms", "number", ".status.latency.p99"),
            PrinterColumn(
                "Succeeded", "string", '.status.conditions[?(@.type=="Succeeded")].status'
            ),
            PrinterColumn("Age", "date", ".metadata.creationTimestamp"),
        ),
        group_aliases=("loadtest",),
    )

    spec: LoadTestSpec
    status: LoadTestStatus | None = None
