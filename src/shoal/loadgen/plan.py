"""What a load run sends and when: the arrival schedule, the requests, and the run's settings.

Theory of operation
-------------------
The schedule is an *open* model: request ``k`` (counting from 0) is due at the time ``t`` where
the cumulative arrivals ``N(t)`` reach ``k``, whatever the responses do. The rate is piecewise
linear (k6's ramping-arrival-rate stages, then the steady part), so inside a segment that goes
from rate ``r0`` to ``r1`` over ``D`` seconds ``N(t) = r0*t + (r1-r0)*t**2/(2*D)``, and the time
of the ``n``-th arrival in it is the positive root ``t = 2n / (r0 + sqrt(r0**2 + 2n(r1-r0)/D))``
(written this way it stays exact when ``r1 == r0`` and stable when the rate falls).

Workers split the schedule by residue: worker ``i`` of ``W`` sends requests ``i, i+W, i+2W...``,
so the merged arrivals of all workers are exactly the single-process schedule.

Requests are picked per ``k`` from a smooth weighted round robin cycle (nginx's algorithm) of the
paths' weights, so every prefix of the run holds each path in proportion to its weight, in every
worker alike.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlsplit

from shoal.errors import PermanentError
from shoal.model.loadtest import LoadTestSpec

__all__ = [
    "ArrivalSchedule",
    "LoadPlan",
    "LoadSettings",
    "PathPicker",
    "PlanError",
    "RequestSpec",
    "Segment",
    "Target",
    "parse_target",
    "plan_for_loadtest",
]


class PlanError(PermanentError):
    """The load asked for cannot be run as stated (the message says what to change)."""


@dataclass(frozen=True, slots=True)
class Segment:
    """A part of the schedule: the rate moves linearly from ``start_rate`` to ``end_rate``."""

    duration: float
    start_rate: float
    end_rate: float

    @property
    def arrivals(self) -> float:
        """Requests due during the segment (not necessarily whole)."""
        return (self.start_rate + self.end_rate) / 2 * self.duration

    def time_of(self, n: float) -> float:
        """Seconds into the segment at which the ``n``-th arrival of the segment is due."""
        if n <= 0:
            return 0.0
        slope = (self.end_rate - self.start_rate) / self.duration
        root = math.sqrt(max(0.0, self.start_rate**2 + 2 * n * slope))
        denominator = self.start_rate + root
        return self.duration if denominator <= 0 else min(self.duration, 2 * n / denominator)


class ArrivalSchedule:
    """The intended start time (seconds from the run's start) of every request of the run."""

    def __init__(self, segments: Sequence[Segment]) -> None:
        if not segments:
            raise PlanError("a schedule needs at least one segment")
        for segment in segments:
            if segment.duration <= 0 or segment.start_rate < 0 or segment.end_rate < 0:
                raise PlanError(f"invalid schedule segment {segment}: durations > 0, rates >= 0")
        self.segments = tuple(segments)
        self.duration = sum(segment.duration for segment in segments)
        starts, offsets = [], []
        arrivals = time = 0.0
        for segment in segments:
            starts.append(arrivals)
            offsets.append(time)
            arrivals += segment.arrivals
            time += segment.duration
        self._starts = starts
        self._offsets = offsets
        self.arrivals = arrivals
        # Request k is due at N(t) = k, for k in [0, arrivals): ceil, with a float guard so that
        # exactly 10.0 arrivals means requests 0..9.
        self.total = max(0, math.ceil(arrivals - 1e-9))
        self._cursor = 0
        first = self.segments[0]
        # The common case, one constant rate, takes a short path (one division per request).
        self._constant = len(self.segments) == 1 and first.start_rate == first.end_rate > 0
        self._rate = first.start_rate

    @classmethod
    def constant(cls, rate: float, duration: float) -> ArrivalSchedule:
        return cls([Segment(duration, rate, rate)])

    @classmethod
    def with_stages(
        cls, stages: Sequence[tuple[float, float]], rate: float, duration: float
    ) -> ArrivalSchedule:
        """k6-style: ramp from 0 through each ``(duration, target)`` stage, then hold ``rate``
        for ``duration`` (skipped when 0)."""
        segments = []
        previous = 0.0
        for stage_duration, target in stages:
            if stage_duration > 0:
                segments.append(Segment(stage_duration, previous, target))
            previous = target
        if duration > 0:
            segments.append(Segment(duration, rate, rate))
        return cls(segments)

    def time_of(self, k: int) -> float:
        """When request ``k`` is due; requests are asked for in increasing order mostly, so the
        segment search starts from the last one found."""
        if self._constant:
            return k / self._rate
        index = self._cursor
        starts = self._starts
        if k < starts[index]:
            index = 0
        last = len(starts) - 1
        while index < last and starts[index + 1] <= k:
            index += 1
        self._cursor = index
        return self._offsets[index] + self.segments[index].time_of(k - starts[index])

    def rate_at(self, t: float) -> float:
        """The requested rate ``t`` seconds into the run (0 after its end)."""
        for offset, segment in zip(self._offsets, self.segments, strict=True):
            if t < offset + segment.duration:
                fraction = (t - offset) / segment.duration
                return segment.start_rate + (segment.end_rate - segment.start_rate) * fraction
        return 0.0

    def arrivals_until(self, t: float) -> float:
        """``N(t)``: requests due in ``[0, t)``."""
        total = 0.0
        for offset, segment in zip(self._offsets, self.segments, strict=True):
            if t <= offset:
                break
            span = min(t - offset, segment.duration)
            slope = (segment.end_rate - segment.start_rate) / segment.duration
            total += segment.start_rate * span + slope * span * span / 2
        return total

    def to_list(self) -> list[list[float]]:
        return [[s.duration, s.start_rate, s.end_rate] for s in self.segments]

    @classmethod
    def from_list(cls, data: Sequence[Sequence[float]]) -> ArrivalSchedule:
        return cls([Segment(float(d), float(a), float(b)) for d, a, b in data])


@dataclass(frozen=True, slots=True)
class RequestSpec:
    """One kind of request the run sends."""

    path: str
    """Path and query, starting with ``/``."""
    method: str = "GET"
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""
    weight: int = 1
    """Relative share of the requests."""

    def __post_init__(self) -> None:
        if not self.path.startswith("/"):
            raise PlanError(f"path {self.path!r} must start with '/'")
        if self.weight < 1:
            raise PlanError(f"path {self.path!r}: weight must be >= 1, got {self.weight}")
        if any(c in self.path for c in " \r\n") or not self.method.isalpha():
            raise PlanError(f"request {self.method} {self.path!r} is not a valid request line")
        for name, value in self.headers:
            if not name or any(c in name for c in ":\r\n ") or any(c in value for c in "\r\n"):
                raise PlanError(f"header {name!r} is not a valid header")

    @property
    def label(self) -> str:
        return f"{self.method} {self.path}"

    def encode(self, host: str) -> bytes:
        """The request's bytes on the wire (HTTP/1.1, keep-alive)."""
        lines = [f"{self.method} {self.path} HTTP/1.1", f"Host: {host}"]
        names = {name.lower() for name, _ in self.headers}
        if "user-agent" not in names:
            lines.append("User-Agent: shoal-load")
        lines.extend(f"{name}: {value}" for name, value in self.headers if name.lower() != "host")
        if self.body or self.method in ("POST", "PUT", "PATCH"):
            lines.append(f"Content-Length: {len(self.body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + self.body

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "method": self.method,
            "headers": [list(pair) for pair in self.headers],
            "body": self.body.decode("latin-1"),
            "weight": self.weight,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RequestSpec:
        return cls(
            path=str(data["path"]),
            method=str(data.get("method", "GET")),
            headers=tuple((str(n), str(v)) for n, v in data.get("headers", ())),
            body=str(data.get("body", "")).encode("latin-1"),
            weight=int(data.get("weight", 1)),
        )


class PathPicker:
    """Which request kind request ``k`` is: a smooth weighted round robin cycle of the weights."""

    def __init__(self, weights: Sequence[int]) -> None:
        if not weights or any(w < 1 for w in weights):
            raise PlanError("every request needs a weight >= 1")
        divisor = math.gcd(*weights)
        reduced = [w // divisor for w in weights]
        total = sum(reduced)
        if total > 100_000:
            # Too long a cycle to keep: scale down (proportions kept to 1e-5).
            reduced = [max(1, round(w * 100_000 / total)) for w in reduced]
            total = sum(reduced)
        current = [0] * len(reduced)
        cycle: list[int] = []
        for _ in range(total):
            for index, weight in enumerate(reduced):
                current[index] += weight
            best = max(range(len(reduced)), key=lambda i: current[i])
            current[best] -= total
            cycle.append(best)
        self.cycle = cycle

    def pick(self, k: int) -> int:
        return self.cycle[k % len(self.cycle)]


@dataclass(frozen=True, slots=True)
class Target:
    """Where requests go: a plain-HTTP host and port, and the ``Host`` header to send."""

    host: str
    port: int
    authority: str

    def __str__(self) -> str:
        return f"http://{self.authority}"


def parse_target(url: str) -> tuple[Target, str]:
    """Split ``http://host:port/path?query`` into the target and the path (``/`` if none)."""
    parts = urlsplit(url if "://" in url else f"http://{url}")
    if parts.scheme != "http":
        raise PlanError(
            f"{url}: only http:// targets are supported (the generator speaks plain HTTP/1.1; "
            "put a TLS-terminating proxy in front for https)"
        )
    if not parts.hostname:
        raise PlanError(f"{url}: no host")
    try:
        port = parts.port or 80
    except ValueError:
        raise PlanError(f"{url}: invalid port") from None
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    host = parts.hostname
    authority = f"[{host}]" if ":" in host else host
    if port != 80:
        authority += f":{port}"
    return Target(host, port, authority), path


@dataclass(frozen=True, slots=True)
class LoadSettings:
    """How the generator behaves, beyond what to send."""

    connections: int = 64
    """Keep-alive connections it may hold open at once (each carries one request at a time)."""
    timeout: float = 10.0
    """Seconds a request (connect included) may take before it counts as an error."""
    drop_after: float = 1.0
    """Seconds a due request may wait for a free connection before it is dropped (never sent)."""
    late_after: float = 0.01
    """A request sent more than this many seconds after its intended time counts as late."""
    timer_slack: float = 0.0002
    """The driver's timer wakes at least this many seconds apart at 20k req/s per process and
    above (proportionally less below, at least 20 µs), so that one wake-up sends several due
    requests; each is still timed from its intended start, so the wait shows in the latency."""
    window: float = 1.0
    """Seconds per point of the time series (latency over time, rate achieved)."""
    progress_interval: float = 1.0
    """Seconds between progress callbacks."""
    engine: str = "auto"
    """``native`` (the compiled epoll loop), ``python`` (the asyncio driver), or ``auto``: the
    ``SHOAL_LOADGEN_ENGINE`` environment variable if set, else native when it is built."""

    def __post_init__(self) -> None:
        if self.engine not in ("auto", "native", "python"):
            raise PlanError(f"unknown engine {self.engine!r}: auto, native or python")
        if self.connections < 1:
            raise PlanError(f"connections must be >= 1, got {self.connections}")
        for name in ("timeout", "drop_after", "window", "progress_interval"):
            if getattr(self, name) <= 0:
                raise PlanError(f"{name} must be > 0, got {getattr(self, name)}")


@dataclass(frozen=True, slots=True)
class LoadPlan:
    """A whole run: where, what, when, and how."""

    target: Target
    requests: tuple[RequestSpec, ...]
    schedule: ArrivalSchedule = field(compare=False)
    settings: LoadSettings = field(default_factory=LoadSettings)

    def __post_init__(self) -> None:
        if not self.requests:
            raise PlanError("a load plan needs at least one request")

    @property
    def duration(self) -> float:
        return self.schedule.duration

    @property
    def requested_rate(self) -> float:
        """The mean requested rate over the whole schedule."""
        return self.schedule.arrivals / self.schedule.duration

    def picker(self) -> PathPicker:
        return PathPicker([request.weight for request in self.requests])

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": [self.target.host, self.target.port, self.target.authority],
            "requests": [request.to_dict() for request in self.requests],
            "schedule": self.schedule.to_list(),
            "settings": {
                name: getattr(self.settings, name) for name in LoadSettings.__dataclass_fields__
            },
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LoadPlan:
        host, port, authority = data["target"]
        return cls(
            target=Target(str(host), int(port), str(authority)),
            requests=tuple(RequestSpec.from_dict(r) for r in data["requests"]),
            schedule=ArrivalSchedule.from_list(data["schedule"]),
            settings=LoadSettings(**data.get("settings", {})),
        )

    def iter_due(self, worker: int = 0, workers: int = 1) -> Iterator[tuple[int, float]]:
        """``(k, seconds from start)`` of this worker's requests, in order."""
        schedule = self.schedule
        for k in range(worker, schedule.total, workers):
            yield k, schedule.time_of(k)


def plan_for_loadtest(
    spec: LoadTestSpec, target: Target, *, settings: LoadSettings | None = None
) -> LoadPlan:
    """The plan a ``LoadTest`` spec states, against ``target`` (its Service, resolved)."""
    requests = tuple(
        RequestSpec(
            path=path.path,
            method=path.method,
            headers=tuple((path.headers or {}).items()),
            body=(path.body or "").encode(),
            weight=path.weight,
        )
        for path in spec.paths()
    )
    stages = [(stage.duration.seconds, float(stage.target.value)) for stage in spec.stages or ()]
    schedule = ArrivalSchedule.with_stages(
        stages, float(spec.request_per_second.value), spec.duration.seconds
    )
    base = settings or LoadSettings()
    return LoadPlan(
        target=target,
        requests=requests,
        schedule=schedule,
        settings=replace(base, connections=spec.connections),
    )
