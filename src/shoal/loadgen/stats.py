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

Two classes: :class:`Recorder` is what the engine writes to, once per request, on the hot path
(one histogram cell per window and path, integer bucket arithmetic inlined, counters kept where
they are cheapest to bump); :class:`RunStats` is the result, made from a recorder by
``snapshot()``, and what is merged across workers, serialized and summarized.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from shoal.loadgen.histogram import MAX_INDEX, Histogram

__all__ = ["PathStats", "Recorder", "RunStats", "Window"]


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
        self.cpu = 0.0
        """CPU seconds (user + system) the generator's process(es) spent from the start of the
        run to its end (interpreter start-up excluded); 0 when not measured."""

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
        micros = int((now - intended) * 1_000_000.0 + 0.5)  # as Recorder.response rounds
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
        self.cpu += other.cpu
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
            "cpu": self.cpu,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunStats:
        stats = cls(len(data["paths"]), float(data["start"]), window=float(data["window"]))
        stats.end = None if data.get("end") is None else float(data["end"])
        stats.stopped = bool(data.get("stopped", False))
        stats.cpu = float(data.get("cpu", 0.0))
        stats.paths = [PathStats.from_dict(p) for p in data["paths"]]
        stats.windows = [Window.from_dict(w) for w in data["windows"]]
        stats.statuses = {int(k): int(v) for k, v in data["statuses"].items()}
        stats.failures = {str(k): int(v) for k, v in data["failures"].items()}
        for name in ("requests", "errors", "dropped", "late", "sent", "scheduled"):
            setattr(stats, name, int(data[name]))
        return stats


class _Cell:
    """The latencies of one path in one window, as they are recorded (a histogram in the making:
    ``min``/``max`` start out of range so that the hot path needs no None checks)."""

    __slots__ = ("count", "counts", "max", "min", "total")

    def __init__(self) -> None:
        self.counts: list[int] = [0] * 1024
        """Bucket counts (see :mod:`~shoal.loadgen.histogram`); 1024 buckets reach 16 ms, and
        the list doubles when a larger value comes."""
        self.count = 0
        self.total = 0
        self.min = 1 << 62
        self.max = -1

    def grow(self, index: int) -> None:
        size = max(index + 1, min(2 * len(self.counts), MAX_INDEX + 1))
        self.counts.extend([0] * (size - len(self.counts)))

    def histogram(self) -> Histogram:
        histogram = Histogram()
        if self.count:
            counts = self.counts
            last = len(counts)
            while last and not counts[last - 1]:
                last -= 1
            histogram.counts = counts[:last]
            histogram.count = self.count
            histogram.total = self.total
            histogram.min = self.min
            histogram.max = self.max
        return histogram


class Recorder:
    """What the engine writes to while it runs; :meth:`snapshot` makes the :class:`RunStats`.

    ``response`` is the per-request hot path: the latency in whole microseconds (rounded) goes
    into one cell (this window's, this path's) with the bucket arithmetic of
    :func:`~shoal.loadgen.histogram.bucket_index` written out, and the windows being filled (by
    intended start, and by completion) are cached as ranges so that most requests compute no
    window index at all. Everything per path, per window and overall is summed at snapshot time.
    """

    def __init__(self, paths: int, start: float, *, window: float = 1.0) -> None:
        self.paths = paths
        self.start = start
        self.window = window
        self._cells: list[list[_Cell]] = []
        """Per window (by intended start), per path."""
        self._failed_w: list[int] = []
        """Requests of the window that failed without a status (no latency)."""
        self._errors_w: list[int] = []
        self._dropped_w: list[int] = []
        self._completed_w: list[int] = []
        self._failed_p = [0] * paths
        self._errors_p = [0] * paths
        self.statuses: dict[int, int] = {}
        self.failures: dict[str, int] = {}
        self.errors = 0
        self.dropped = 0
        self.late = 0
        self.sent = 0
        self.scheduled = 0
        self.end: float | None = None
        self.stopped = False
        self.cpu = 0.0
        # The cached windows: [_lo, _hi) by intended start (its cells are _row), and
        # [_done_lo, _done_hi) by completion (_done completions not yet added to _completed_w).
        self._lo = self._hi = start
        self._row: list[_Cell] = []
        self._done_lo = self._done_hi = start
        self._done_index = 0
        self._done = 0

    def restart(self, start: float) -> None:
        """Move the run's zero to ``start`` (nothing recorded yet)."""
        self.start = start
        self._lo = self._hi = self._done_lo = self._done_hi = start

    def _index(self, at: float) -> int:
        index = int((at - self.start) / self.window)
        if index < 0:
            index = 0
        while len(self._cells) <= index:
            self._cells.append([_Cell() for _ in range(self.paths)])
            self._failed_w.append(0)
            self._errors_w.append(0)
            self._dropped_w.append(0)
            self._completed_w.append(0)
        return index

    def _seek(self, intended: float) -> None:
        index = self._index(intended)
        self._row = self._cells[index]
        self._lo = self.start + index * self.window
        self._hi = self._lo + self.window

    def _complete(self, now: float) -> None:
        """Count one completion at ``now``, outside the cached completion window."""
        index = self._index(now)
        self._completed_w[self._done_index] += self._done
        self._done = 0
        self._done_index = index
        self._done_lo = self.start + index * self.window
        self._done_hi = self._done_lo + self.window
        self._completed_w[index] += 1

    def response(self, path: int, intended: float, now: float, status: int) -> None:
        """A response with ``status`` completed at ``now`` for a request due at ``intended``."""
        if not self._lo <= intended < self._hi:
            self._seek(intended)
        cell = self._row[path]
        micros = int((now - intended) * 1_000_000.0 + 0.5)
        if micros < 256:  # exact buckets (histogram.bucket_index, written out)
            if micros < 0:
                micros = 0
            index = micros
        else:
            shift = micros.bit_length() - 8
            index = (shift << 7) + (micros >> shift)
            if index > MAX_INDEX:
                index = MAX_INDEX
        try:
            cell.counts[index] += 1
        except IndexError:
            cell.grow(index)
            cell.counts[index] += 1
        cell.count += 1
        cell.total += micros
        if micros > cell.max:
            cell.max = micros
        if micros < cell.min:
            cell.min = micros
        if self._done_lo <= now < self._done_hi:
            self._done += 1
        else:
            self._complete(now)
        statuses = self.statuses
        statuses[status] = statuses.get(status, 0) + 1
        if not 200 <= status < 400:
            index = self._index(intended)
            self._errors_w[index] += 1
            self._errors_p[path] += 1
            self.errors += 1

    def failure(self, path: int, intended: float, now: float, kind: str) -> None:
        """The request due at ``intended`` failed at ``now`` without a status (``kind``)."""
        index = self._index(intended)
        self._failed_w[index] += 1
        self._errors_w[index] += 1
        self._failed_p[path] += 1
        self._errors_p[path] += 1
        self.errors += 1
        self.failures[kind] = self.failures.get(kind, 0) + 1
        if self._done_lo <= now < self._done_hi:
            self._done += 1
        else:
            self._complete(now)

    def drop(self, path: int, intended: float) -> None:
        """The request due at ``intended`` was dropped (never sent)."""
        self._dropped_w[self._index(intended)] += 1
        self.dropped += 1

    @property
    def requests(self) -> int:
        """Requests answered or failed so far."""
        answered = sum(cell.count for row in self._cells for cell in row)
        return answered + sum(self._failed_p)

    def snapshot(self) -> RunStats:
        """Everything recorded so far, as :class:`RunStats`."""
        stats = RunStats(self.paths, self.start, window=self.window)
        completed = list(self._completed_w)
        if completed:
            completed[self._done_index] += self._done
        for index, row in enumerate(self._cells):
            window = Window()
            histograms = [cell.histogram() for cell in row]
            window.latency = Histogram.merged(histograms)
            window.requests = window.latency.count + self._failed_w[index]
            window.errors = self._errors_w[index]
            window.dropped = self._dropped_w[index]
            window.completed = completed[index]
            stats.windows.append(window)
            for path, histogram in zip(stats.paths, histograms, strict=True):
                path.latency.merge(histogram)
        for path, failed, errors in zip(stats.paths, self._failed_p, self._errors_p, strict=True):
            path.requests = path.latency.count + failed
            path.errors = errors
        stats.requests = sum(path.requests for path in stats.paths)
        stats.statuses = dict(self.statuses)
        stats.failures = dict(self.failures)
        stats.errors = self.errors
        stats.dropped = self.dropped
        stats.late = self.late
        stats.sent = self.sent
        stats.scheduled = self.scheduled
        stats.end = self.end
        stats.stopped = self.stopped
        stats.cpu = self.cpu
        return stats
