"""The generator's pure core: which request goes on which connection, and when.

Theory of operation
-------------------
The engine holds no sockets and reads no clock: the driver passes ``now`` into every call and
opens, writes to and closes connections on the engine's behalf. So the whole policy runs the same
under a real event loop and in a discrete-event simulation with a fake clock (the tests do both).

* ``pump(now)`` releases every request whose intended time has come (the open model: due is due,
  whatever the responses do). A due request goes to an idle keep-alive connection; else, below
  ``connections``, to a new connection (the request waits on it while it connects); else it joins
  the backlog. It returns when it wants to be called again.
* A backlog entry older than ``drop_after`` is *dropped*: counted, never sent. The backlog is
  served oldest first as connections free up, so it is bounded by ``rate * drop_after``.
* Each connection carries one request at a time (no pipelining, as browsers and wrk).
  A response frees it (or closes it, when the server says ``Connection: close``); a failure or a
  timeout counts an error for its request and closes it; the slot it held is then refilled from
  the backlog.
* Latency is ``completion - intended start``; sending later than ``late_after`` counts as late.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Literal, Protocol

from shoal.loadgen.plan import LoadPlan
from shoal.loadgen.stats import RunStats

__all__ = ["Connection", "Engine", "Slot"]

SlotState = Literal["connecting", "idle", "busy", "closed"]


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
        self.stats = RunStats(len(plan.requests), start, window=plan.settings.window)
        self._open_connection = open_connection
        self._data = [request.encode(plan.target.authority) for request in plan.requests]
        self._head = [request.method == "HEAD" for request in plan.requests]
        self._picker = plan.picker()
        self._schedule = plan.schedule
        self._step = workers
        self._k = worker
        """The next request of this worker's share (requests k, k+workers, ...)."""
        self._next_time: float | None = None
        if worker < plan.schedule.total:
            self._next_time = start + plan.schedule.time_of(worker)
        self.idle: list[Slot] = []
        self.busy: set[Slot] = set()
        self.open = 0
        """Connections open or opening."""
        self.backlog: deque[tuple[float, int]] = deque()
        self.stopped = False
        self._next_timeout_check = start

    @property
    def finished(self) -> bool:
        """Nothing left to send or wait for."""
        return self.stopped or (
            self._next_time is None and not self.backlog and not self.busy and self._connecting == 0
        )

    @property
    def _connecting(self) -> int:
        return self.open - len(self.idle) - len(self.busy)

    def pump(self, now: float) -> float | None:
        """Do everything due at ``now``; the time to be called next (None: finished)."""
        if self.stopped:
            return None
        settings = self.settings
        intended = self._next_time
        if intended is not None and intended <= now:
            # The hot loop: every request due by now, in order (locals for speed).
            schedule, pick, step, total = (
                self._schedule,
                self._picker.pick,
                self._step,
                self._schedule.total,
            )
            start, k, dispatch, sent = self.start, self._k, self._dispatch, 0
            while intended is not None and intended <= now:
                dispatch(pick(k), intended, now)
                sent += 1
                k += step
                intended = start + schedule.time_of(k) if k < total else None
            self._k = k
            self._next_time = intended
            self.stats.scheduled += sent
        backlog = self.backlog
        while backlog and backlog[0][0] + settings.drop_after <= now:
            intended, path = backlog.popleft()
            self.stats.record_drop(path, intended)
        if now >= self._next_timeout_check:
            self._expire(now)
            self._next_timeout_check = now + min(0.1, settings.timeout / 10)
        if self.finished:
            self.stats.end = now if self.stats.end is None else self.stats.end
            return None
        wake = self._next_timeout_check if (self.busy or self._connecting) else float("inf")
        if self._next_time is not None:
            wake = min(wake, self._next_time)
        if backlog:
            wake = min(wake, backlog[0][0] + settings.drop_after)
        return wake if wake != float("inf") else now + 0.1

    def _dispatch(self, path: int, intended: float, now: float) -> None:
        if self.idle:
            self._send(self.idle.pop(), path, intended, now)
        elif self.open < self.settings.connections:
            self._connect(path, intended, now)
        else:
            self.backlog.append((intended, path))

    def _connect(self, path: int, intended: float, now: float) -> None:
        slot = Slot()
        slot.path = path
        slot.intended = intended
        slot.sent = now
        self.open += 1
        self._open_connection(slot)

    def _send(self, slot: Slot, path: int, intended: float, now: float) -> None:
        slot.state = "busy"
        slot.path = path
        slot.intended = intended
        slot.sent = now
        self.busy.add(slot)
        self.stats.record_sent(intended, now, self.settings.late_after)
        assert slot.conn is not None
        slot.conn.send(self._data[path], self._head[path])

    def _release(self, slot: Slot, now: float) -> None:
        """A connection is free again: serve the oldest waiting request, or park it."""
        if self.stopped:
            self._close(slot)
            return
        if self.backlog:
            intended, path = self.backlog.popleft()
            self._send(slot, path, intended, now)
        else:
            slot.state = "idle"
            self.idle.append(slot)

    def _close(self, slot: Slot) -> None:
        if slot.state == "closed":
            return
        if slot.state == "busy":
            self.busy.discard(slot)
        elif slot.state == "idle":
            self.idle.remove(slot)
        slot.state = "closed"
        self.open -= 1
        if slot.conn is not None:
            slot.conn.close()

    def _refill(self, now: float) -> None:
        """A connection went away: open another for the oldest waiting request, if any."""
        if not self.stopped and self.backlog and self.open < self.settings.connections:
            intended, path = self.backlog.popleft()
            self._connect(path, intended, now)

    def _expire(self, now: float) -> None:
        limit = now - self.settings.timeout
        for slot in [s for s in self.busy if s.sent <= limit]:
            self.stats.record_failure(slot.path, slot.intended, now, "timeout")
            self._close(slot)
            self._refill(now)

    # -- what the driver reports ------------------------------------------------------------------

    def connected(self, slot: Slot, conn: Connection, now: float) -> None:
        """The connection opened for ``slot`` is up: send the request that waited for it."""
        slot.conn = conn
        if self.stopped:
            slot.state = "idle"  # so that _close counts it
            self.idle.append(slot)
            self._close(slot)
            return
        self._send(slot, slot.path, slot.intended, now)

    def connect_failed(self, slot: Slot, now: float, kind: str = "connect") -> None:
        """Opening failed: the request that waited for it fails."""
        self.open -= 1
        slot.state = "closed"
        if self.stopped:
            return
        self.stats.record_sent(slot.intended, slot.sent, self.settings.late_after)
        self.stats.record_failure(slot.path, slot.intended, now, kind)
        self._refill(now)

    def response(self, slot: Slot, now: float, status: int, keep_alive: bool) -> None:
        """A complete response arrived on ``slot``'s connection."""
        if slot.state != "busy":
            return  # timed out or stopped meanwhile
        self.busy.discard(slot)
        self.stats.record_response(slot.path, slot.intended, now, status)
        if keep_alive:
            self._release(slot, now)
        else:
            slot.state = "idle"
            self.idle.append(slot)
            self._close(slot)
            self._refill(now)

    def lost(self, slot: Slot, now: float, kind: str = "reset") -> None:
        """The connection closed or broke (``kind``: reset, protocol); a request on it fails."""
        if slot.state == "closed":
            return
        if slot.state == "busy":
            self.stats.record_failure(slot.path, slot.intended, now, kind)
        slot.conn = None  # already gone: nothing to close
        self._close(slot)
        self._refill(now)

    def stop(self, now: float) -> None:
        """Stop sending: close every connection; requests in flight or waiting are not counted."""
        if self.stopped:
            return
        if not self.finished:
            self.stats.stopped = True
        self.stopped = True
        self.backlog.clear()
        for slot in [*self.idle, *self.busy]:
            self._close(slot)
        if self.stats.end is None:
            self.stats.end = now
