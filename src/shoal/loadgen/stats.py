"""What a run measured: counts, latency histograms overall, per path and per second; mergeable.

Latency is measured from each request's *intended* start (its place in the schedule), not from
when it was actually sent, so a stalled server or a busy generator shows up in the percentiles
instead of hiding in fewer samples (coordinated omission corrected, as wrk2 and vegeta do).

Counting rules (the summary documents them too):

* a *request* is one that was sent (or whose connection was attempted) and then answered, failed
  or timed out; *dropped* ones (no free connection within ``drop_after``) were never sent;
* an *error* is a status outside 200-399 (k6's ``http_req_failed`` default), a connection that
  failed or closed before the answer, a malformed answer, or a timeout;
* latency histograms hold every request that got a status, errors included;
* a request is *late* when it left more than ``late_after`` after its intended time.

Every figure is kept by the second of the intended start (``windows``), and completions also by
the second they completed (for the achieved rate over time).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from shoal.loadgen.histogram import Histogram

__all__ = ["PathStats", "RunStats", "Window"]


class PathStats:
    __slots__ = ("errors", "latency", "requests")

    def __init__(self) -> None:
        self.requests = 0
        self.errors = 0
        self.latency = Histogram()

    def merge(self, other: PathStats) -> None:
        self.requests += other.requests
        self.errors += other.errors
        self.latency.merge(other.latency)

    def to_dict(self) -> dict[str, Any]:
        return {"requests": self.requests, "errors": self.errors, "latency": self.latency.to_dict()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PathStats:
        stats = cls()
        stats.requests = int(data["requests"])
        stats.errors = int(data["errors"])
        stats.latency = Histogram.from_dict(data["latency"])
        return stats


class Window:
    """One second (``window``) of the run, by intended start."""

    __slots__ = ("completed", "dropped", "errors", "latency", "requests")

    def __init__(self) -> None:
        self.requests = 0
        self.errors = 0
        self.dropped = 0
        self.completed = 0
        """Requests that *completed* during this window (whenever they were due)."""
        self.latency = Histogram()

    def merge(self, other: Window) -> None:
        self.requests += other.requests
        self.errors += other.errors
        self.dropped += other.dropped
        self.completed += other.completed
        self.latency.merge(other.latency)

    def to_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "errors": self.errors,
            "dropped": self.dropped,
            "completed": self.completed,
            "latency": self.latency.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Window:
        window = cls()
        window.requests = int(data["requests"])
        window.errors = int(data["errors"])
        window.dropped = int(data["dropped"])
        window.completed = int(data["completed"])
        window.latency = Histogram.from_dict(data["latency"])
        return window


class RunStats:
    """Everything one worker (or, merged, the whole run) measured. Times are seconds on the
    clock the caller uses; ``start`` is the schedule's zero."""

    def __init__(self, paths: int, start: float, *, window: float = 1.0) -> None:
        self.start = start
        self.window = window
        self.paths = [PathStats() for _ in range(paths)]
        self.windows: list[Window] = []
        self.statuses: dict[int, int] = {}
        self.failures: dict[str, int] = {}
        self.requests = 0
        self.errors = 0
        self.dropped = 0
        self.late = 0
        self.sent = 0
        self.scheduled = 0
        self.end: float | None = None
        """When the last request completed (or the run was stopped)."""
        self.stopped = False
        """The run was stopped before its schedule ended."""

    @property
    def latency(self) -> Histogram:
        """Every path's latency together (merged on demand: one less record per request)."""
        return Histogram.merged(path.latency for path in self.paths)

    def _window(self, at: float) -> Window:
        index = int((at - self.start) / self.window)
        if index < 0:
            index = 0
        windows = self.windows
        while len(windows) <= index:
            windows.append(Window())
        return windows[index]

    def record_sent(self, intended: float, now: float, late_after: float) -> None:
        self.sent += 1
        if now - intended > late_after:
            self.late += 1

    def record_response(self, path: int, intended: float, now: float, status: int) -> None:
        micros = round((now - intended) * 1_000_000)
        error = not 200 <= status < 400
        self.requests += 1
        self.statuses[status] = self.statuses.get(status, 0) + 1
        stats = self.paths[path]
        stats.requests += 1
        stats.latency.record(micros)
        window = self._window(intended)
        window.requests += 1
        window.latency.record(micros)
        if error:
            self.errors += 1
            stats.errors += 1
            window.errors += 1
        self._window(now).completed += 1

    def record_failure(self, path: int, intended: float, now: float, kind: str) -> None:
        self.requests += 1
        self.errors += 1
        self.failures[kind] = self.failures.get(kind, 0) + 1
        stats = self.paths[path]
        stats.requests += 1
        stats.errors += 1
        window = self._window(intended)
        window.requests += 1
        window.errors += 1
        self._window(now).completed += 1

    def record_drop(self, path: int, intended: float) -> None:
        self.dropped += 1
        self._window(intended).dropped += 1

    # -- merging and serializing ------------------------------------------------------------------

    def merge(self, other: RunStats) -> None:
        """Add ``other`` (same paths and window; its ``start`` may differ by clock offset only if
        both use one clock, as worker processes on one machine do)."""
        if len(other.paths) != len(self.paths) or other.window != self.window:
            raise ValueError("cannot merge stats of different plans")
        for mine, theirs in zip(self.paths, other.paths, strict=True):
            mine.merge(theirs)
        while len(self.windows) < len(other.windows):
            self.windows.append(Window())
        for mine_w, theirs_w in zip(self.windows, other.windows, strict=False):
            mine_w.merge(theirs_w)
        for status, count in other.statuses.items():
            self.statuses[status] = self.statuses.get(status, 0) + count
        for kind, count in other.failures.items():
            self.failures[kind] = self.failures.get(kind, 0) + count
        self.requests += other.requests
        self.errors += other.errors
        self.dropped += other.dropped
        self.late += other.late
        self.sent += other.sent
        self.scheduled += other.scheduled
        self.stopped = self.stopped or other.stopped
        if other.end is not None:
            self.end = other.end if self.end is None else max(self.end, other.end)

    @classmethod
    def merged(cls, parts: Iterable[RunStats]) -> RunStats:
        parts = list(parts)
        if not parts:
            raise ValueError("nothing to merge")
        result = cls(len(parts[0].paths), parts[0].start, window=parts[0].window)
        for part in parts:
            result.merge(part)
        return result

    def to_dict(self) -> dict[str, Any]:
        return {
            "start": self.start,
            "end": self.end,
            "window": self.window,
            "latency": self.latency.to_dict(),
            "paths": [p.to_dict() for p in self.paths],
            "windows": [w.to_dict() for w in self.windows],
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "failures": dict(sorted(self.failures.items())),
            "requests": self.requests,
            "errors": self.errors,
            "dropped": self.dropped,
            "late": self.late,
            "sent": self.sent,
            "scheduled": self.scheduled,
            "stopped": self.stopped,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunStats:
        stats = cls(len(data["paths"]), float(data["start"]), window=float(data["window"]))
        stats.end = None if data.get("end") is None else float(data["end"])
        stats.stopped = bool(data.get("stopped", False))
        stats.paths = [PathStats.from_dict(p) for p in data["paths"]]
        stats.windows = [Window.from_dict(w) for w in data["windows"]]
        stats.statuses = {int(k): int(v) for k, v in data["statuses"].items()}
        stats.failures = {str(k): int(v) for k, v in data["failures"].items()}
        for name in ("requests", "errors", "dropped", "late", "sent", "scheduled"):
            setattr(stats, name, int(data[name]))
        return stats
