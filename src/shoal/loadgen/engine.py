"""The generator's pure core: which request goes on which connection, and when.

Theory of operation
-------------------
The engine holds no sockets and reads no clock: the driver passes ``now`` into every call and
opens, writes to and closes connections on the engine's behalf. So the whole policy runs the same
under a real event loop and in a discrete-event simulation with a fake clock (the tests do both).

* ``pump(now)`` releases every request whose intended time has come (the open model: due is due,
  whatever the responses do). A due request goes to an idle keep-alive connection; else, below
  ``connections``, to a new connection (the request waits on it while it connects); else it joins
  the backlog. It returns when it wants to be called again (``next_due`` is the next request's
  intended time alone, for a driver that wants to check cheaply).
* A response frees its connection for the oldest request of the backlog, if any; requests newly
  due wait for the next ``pump`` (the driver calls it within its timer slack), so that they leave
  in bursts (see ``response``).
* ``preconnect`` opens connections ahead of the first request, and ``begin_at`` then moves the
  schedule's zero to when they are up: the first requests do not wait for connects.
* A backlog entry older than ``drop_after`` is *dropped*: counted, never sent. The backlog is
  served oldest first as connections free up, so it is bounded by ``rate * drop_after``.
* Each connection carries one request at a time (no pipelining, as browsers and wrk).
  A response frees it (or closes it, when the server says ``Connection: close``); a failure or a
  timeout counts an error for its request and closes it; the slot it held is then refilled from
  the backlog.
* Latency is ``completion - intended start``; sending later than ``late_after`` counts as late.

The per-request path (``_send_due`` and ``response``) is written for CPython's speed: locals, no
per-request objects beyond what the driver writes, counters summed once per batch, and one
:class:`~shoal.loadgen.stats.Recorder` call per response.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Literal, Protocol

from shoal.loadgen.plan import LoadPlan
from shoal.loadgen.stats import Recorder, RunStats

__all__ = ["Connection", "Engine", "Slot"]

SlotState = Literal["connecting", "idle", "busy", "closed"]
_NEVER = float("inf")


class Connection(Protocol):
    """What the engine asks of a connection the driver opened for it."""

    def send(self, data: bytes, head_only: bool) -> None:
        """Write one request; ``head_only``: its answer has no body (a HEAD request)."""
        ...

    def close(self) -> None: ...


class Slot:
    """One connection's place in the pool, and the request it carries."""

    __slots__ = ("conn", "intended", "path", "sent", "state")

    def __init__(self) -> None:
        self.conn: Connection | None = None
        self.state: SlotState = "connecting"
        self.path = -1
        self.intended = 0.0
        self.sent = 0.0


class Engine:
    """Scheduling, pooling, dropping and accounting for one worker's share of a plan."""

    def __init__(
        self,
        plan: LoadPlan,
        *,
        start: float,
        open_connection: Callable[[Slot], None],
        worker: int = 0,
        workers: int = 1,
    ) -> None:
        self.plan = plan
        self.start = start
        self.settings = plan.settings
        self.recorder = Recorder(len(plan.requests), start, window=plan.settings.window)
        self._open_connection = open_connection
        self._data = [request.encode(plan.target.authority) for request in plan.requests]
        self._head = [request.method == "HEAD" for request in plan.requests]
        self._cycle = plan.picker().cycle
        self._schedule = plan.schedule
        self._time_of = plan.schedule.time_of
        segment = plan.schedule.segments[0]
        # A constant rate: request k is due at k / rate (what time_of computes), inlined.
        self._rate = (
            segment.start_rate
            if len(plan.schedule.segments) == 1 and segment.start_rate == segment.end_rate > 0
            else 0.0
        )
        self._total = plan.schedule.total
        self._step = workers
        self._k = worker
        """The next request of this worker's share (requests k, k+workers, ...)."""
        self._next_time = start + self._time_of(worker) if worker < self._total else _NEVER
        self.idle: list[Slot] = []
        self.slots: list[Slot] = []
        """Every connection open or opening."""
        self.open = 0
        """Connections open or opening."""
        self.inflight = 0
        """Requests written and not yet answered."""
        self.connecting = 0
        self.backlog: deque[tuple[float, int]] = deque()
        self.stopped = False
        self._next_timeout_check = start

    @property
    def stats(self) -> RunStats:
        """What was measured so far (a snapshot)."""
        return self.recorder.snapshot()

    @property
    def busy(self) -> list[Slot]:
        """The connections carrying a request."""
        return [slot for slot in self.slots if slot.state == "busy"]

    @property
    def next_due(self) -> float:
        """When this worker's next request is due (infinity when none is left)."""
        return self._next_time

    @property
    def finished(self) -> bool:
        """Nothing left to send or wait for."""
        return self.stopped or (
            self._next_time == _NEVER
            and not self.backlog
            and self.inflight == 0
            and self.connecting == 0
        )

    def pump(self, now: float) -> float | None:
        """Do everything due at ``now``; the time to be called next (None: finished)."""
        if self.stopped:
            return None
        settings = self.settings
        if self._next_time <= now:
            self._send_due(now)
        backlog = self.backlog
        if backlog:
            self._drop_expired(now)
        if now >= self._next_timeout_check:
            self._expire(now)
            self._next_timeout_check = now + min(0.1, settings.timeout / 10)
        if self.finished:
            recorder = self.recorder
            recorder.end = now if recorder.end is None else recorder.end
            return None
        wake = self._next_timeout_check if (self.inflight or self.connecting) else _NEVER
        if self._next_time < wake:
            wake = self._next_time
        if backlog:
            wake = min(wake, backlog[0][0] + settings.drop_after)
        return wake if wake != _NEVER else now + 0.1

    def _send_due(self, now: float) -> None:
        """Send (or queue) every request due by ``now``: the hot loop, in locals."""
        intended = self._next_time
        k, step, total, start, rate = self._k, self._step, self._total, self.start, self._rate
        cycle, data, head, idle = self._cycle, self._data, self._head, self.idle
        ncycle = len(cycle)
        late_after = self.settings.late_after
        connections = self.settings.connections
        time_of = self._time_of
        sent = late = scheduled = 0
        while intended <= now:
            path = cycle[k % ncycle]
            if idle:
                slot = idle.pop()
                slot.state = "busy"
                slot.path = path
                slot.intended = intended
                slot.sent = now
                sent += 1
                if now - intended > late_after:
                    late += 1
                slot.conn.send(data[path], head[path])  # type: ignore[union-attr]
            elif self.open < connections:
                self._connect(path, intended, now)
            else:
                self.backlog.append((intended, path))
            scheduled += 1
            k += step
            if k >= total:
                intended = _NEVER
            elif rate:
                intended = start + k / rate
            else:
                intended = start + time_of(k)
        self._k = k
        self._next_time = intended
        self.inflight += sent
        recorder = self.recorder
        recorder.scheduled += scheduled
        recorder.sent += sent
        recorder.late += late

    def _drop_expired(self, now: float) -> None:
        backlog, drop_after, drop = self.backlog, self.settings.drop_after, self.recorder.drop
        while backlog and backlog[0][0] + drop_after <= now:
            intended, path = backlog.popleft()
            drop(path, intended)

    def _connect(self, path: int, intended: float, now: float) -> None:
        slot = Slot()
        slot.path = path
        slot.intended = intended
        slot.sent = now
        self.open += 1
        self.connecting += 1
        self.slots.append(slot)
        self._open_connection(slot)

    def _send(self, slot: Slot, path: int, intended: float, now: float) -> None:
        slot.state = "busy"
        slot.path = path
        slot.intended = intended
        slot.sent = now
        self.inflight += 1
        recorder = self.recorder
        recorder.sent += 1
        if now - intended > self.settings.late_after:
            recorder.late += 1
        assert slot.conn is not None
        slot.conn.send(self._data[path], self._head[path])

    def _release(self, slot: Slot, now: float) -> None:
        """A connection is free again: serve the oldest waiting request, or park it."""
        if self.stopped:
            self._close(slot)
            return
        if self.backlog:
            self._drop_expired(now)
        if self.backlog:
            intended, path = self.backlog.popleft()
            self._send(slot, path, intended, now)
        else:
            slot.state = "idle"
            self.idle.append(slot)

    def _close(self, slot: Slot) -> None:
        state = slot.state
        if state == "closed":
            return
        if state == "busy":
            self.inflight -= 1
        elif state == "idle":
            self.idle.remove(slot)
        elif state == "connecting":
            self.connecting -= 1
        slot.state = "closed"
        self.open -= 1
        self.slots.remove(slot)
        if slot.conn is not None:
            slot.conn.close()

    def _refill(self, now: float) -> None:
        """A connection went away: open another for the oldest waiting request, if any."""
        if self.stopped:
            return
        if self.backlog:
            self._drop_expired(now)
        if self.backlog and self.open < self.settings.connections:
            intended, path = self.backlog.popleft()
            self._connect(path, intended, now)

    def _expire(self, now: float) -> None:
        limit = now - self.settings.timeout
        for slot in [s for s in self.slots if s.state == "busy" and s.sent <= limit]:
            self.recorder.failure(slot.path, slot.intended, now, "timeout")
            self._close(slot)
            self._refill(now)

    # -- what the driver reports ------------------------------------------------------------------

    def connected(self, slot: Slot, conn: Connection, now: float) -> None:
        """The connection opened for ``slot`` is up: send the request that waited for it."""
        if slot.state != "connecting":
            return  # closed meanwhile: the driver closes ``conn``
        slot.conn = conn
        self.connecting -= 1
        if self.stopped:
            slot.state = "idle"  # so that _close counts it
            self.idle.append(slot)
            self._close(slot)
            return
        if slot.path < 0:  # opened ahead (preconnect): waits for a request
            self._release(slot, now)
            return
        self._send(slot, slot.path, slot.intended, now)

    def connect_failed(self, slot: Slot, now: float, kind: str = "connect") -> None:
        """Opening failed: the request that waited for it fails."""
        if slot.state != "connecting":
            return
        self.connecting -= 1
        self.open -= 1
        self.slots.remove(slot)
        slot.state = "closed"
        if self.stopped:
            return
        if slot.path >= 0:
            self._fail_waiting(slot, now, kind)
        self._refill(now)

    def _fail_waiting(self, slot: Slot, now: float, kind: str) -> None:
        """The request that waited for ``slot``'s connection fails (it counts as sent)."""
        recorder = self.recorder
        recorder.sent += 1
        if slot.sent - slot.intended > self.settings.late_after:
            recorder.late += 1
        recorder.failure(slot.path, slot.intended, now, kind)

    def response(self, slot: Slot, now: float, status: int, keep_alive: bool) -> None:
        """A complete response arrived on ``slot``'s connection.

        The connection serves the backlog if requests wait for one; requests that came due since
        the last ``pump`` are left for the next one (within the driver's timer slack), so that
        they leave together: on a shared machine a burst costs the server and the generator one
        wake-up where a trickle costs one per request (about a fifth of the CPU at 30-50k/s)."""
        if slot.state != "busy":
            return  # timed out or stopped meanwhile
        self.recorder.response(slot.path, slot.intended, now, status)
        self.inflight -= 1
        if not keep_alive:
            slot.state = "idle"  # so that _close counts it
            self.idle.append(slot)
            self._close(slot)
            self._refill(now)
        elif self.backlog or self.stopped:
            self._release(slot, now)
        else:
            slot.state = "idle"
            self.idle.append(slot)

    def preconnect(self, count: int) -> None:
        """Open up to ``count`` connections ahead of the first request (as wrk does); they wait
        idle. A failure here is not a request's: it shows when a request needs the connection."""
        for _ in range(min(count, self.settings.connections - self.open)):
            self._connect(-1, 0.0, 0.0)

    def begin_at(self, start: float) -> None:
        """Move the schedule's zero to ``start`` (before anything was due: after preconnecting)."""
        if self.recorder.scheduled:
            raise RuntimeError("the run has begun; its start cannot move")
        self.start = start
        self._next_time = start + self._time_of(self._k) if self._k < self._total else _NEVER
        self._next_timeout_check = start
        self.recorder.restart(start)

    def lost(self, slot: Slot, now: float, kind: str = "reset") -> None:
        """The connection closed or broke (``kind``: reset, protocol); a request on it fails."""
        state = slot.state
        if state == "closed":
            return
        if state == "busy":
            self.recorder.failure(slot.path, slot.intended, now, kind)
        elif state == "connecting" and slot.path >= 0 and not self.stopped:
            self._fail_waiting(slot, now, kind)
        slot.conn = None  # already gone: nothing to close
        self._close(slot)
        self._refill(now)

    def stop(self, now: float) -> None:
        """Stop sending: close every connection; requests in flight or waiting are not counted."""
        if self.stopped:
            return
        recorder = self.recorder
        if not self.finished:
            recorder.stopped = True
        self.stopped = True
        self.backlog.clear()
        for slot in list(self.slots):
            self._close(slot)
        if recorder.end is None:
            recorder.end = now
