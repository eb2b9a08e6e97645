"""A discrete-event simulation of a server for the engine: fake time, no sockets."""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from shoal.loadgen._engine import NativeEngine
from shoal.loadgen.engine import Engine
from shoal.loadgen.plan import LoadPlan

ENGINES = ["python", "native"]
"""The pure-Python engine and the compiled one (built wherever ``cc`` is): the same tests run on
both through the interface they share (the native one in callback mode; a slot is an int)."""


@dataclass
class FakeConnection:
    sim: Simulation
    slot: Any
    closed: bool = False
    sent: list[bytes] = field(default_factory=list)

    def send(self, data: bytes, head_only: bool) -> None:
        self.sent.append(data)
        self.sim.serve(self)

    def close(self) -> None:
        self.closed = True


class Simulation:
    """Time moves only from event to event; the engine is pumped exactly when it asks."""

    def __init__(
        self,
        plan: LoadPlan,
        *,
        service: Callable[[float], float | None] = lambda now: 0.001,
        status: int = 200,
        keep_alive: bool = True,
        connect: Callable[[float], float | None] = lambda now: 0.0,
        worker: int = 0,
        workers: int = 1,
        engine: str = "python",
    ) -> None:
        self.now = 0.0
        self.events: list[tuple[float, int, Callable[[], None]]] = []
        self.sequence = itertools.count()
        self.service = service
        self.status = status
        self.keep_alive = keep_alive
        self.connect_time = connect
        self.connections: list[FakeConnection] = []
        kind = Engine if engine == "python" else NativeEngine
        self.engine: Any = kind(
            plan, start=0.0, open_connection=self.open, worker=worker, workers=workers
        )
        self.pumps = 0

    def at(self, when: float, action: Callable[[], None]) -> None:
        heapq.heappush(self.events, (when, next(self.sequence), action))

    def open(self, slot: Any) -> None:
        delay = self.connect_time(self.now)
        if delay is None:
            self.at(self.now, lambda: self.engine.connect_failed(slot, self.now))
            return

        def made() -> None:
            conn = FakeConnection(self, slot)
            self.connections.append(conn)
            self.engine.connected(slot, conn, self.now)

        self.at(self.now + delay, made)

    def serve(self, conn: FakeConnection) -> None:
        delay = self.service(self.now)
        if delay is None:
            return  # never answers

        def answer() -> None:
            if not conn.closed:
                self.engine.response(conn.slot, self.now, self.status, self.keep_alive)

        self.at(self.now + delay, answer)

    def warm_up(self, count: int) -> None:
        """Preconnect ``count`` connections, let them come up, and start the schedule then (what
        the driver does before a run)."""
        self.engine.preconnect(count)
        while self.engine.connecting and self.events:
            when, _, action = heapq.heappop(self.events)
            self.now = max(self.now, when)
            action()
        self.engine.begin_at(self.now)

    def run(self, *, stop_at: float | None = None, limit: int = 10_000_000) -> None:
        wake: float | None = self.engine.pump(self.now)
        for _ in range(limit):
            if (
                stop_at is not None
                and (wake is None or wake >= stop_at)
                and (not self.events or self.events[0][0] >= stop_at)
            ):
                self.now = stop_at
                self.engine.stop(self.now)
                return
            if wake is None and not self.events:
                return
            next_event = self.events[0][0] if self.events else float("inf")
            if wake is not None and wake <= next_event:
                self.now = max(self.now, wake)
                wake = self.engine.pump(self.now)
                self.pumps += 1
                continue
            self.now = max(self.now, next_event)
            _, _, action = heapq.heappop(self.events)
            action()
            wake = self.engine.pump(self.now)
        raise AssertionError("simulation did not finish")
