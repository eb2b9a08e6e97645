"""Time for the runtime: the real loop clock, or a fake one that tests move by hand.

Waiting is expressed as "until this event is set or this deadline passes", which both clocks can
honour: the real clock with a timeout, the fake clock by setting the event when time is advanced
past the deadline. So code under test never sleeps for real, and tests never wait for real time.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from typing import Protocol

__all__ = ["Clock", "FakeClock", "LoopClock"]


class Clock(Protocol):
    def time(self) -> float:
        """Seconds on a monotonic scale."""
        ...

    async def wait(self, event: asyncio.Event, deadline: float | None) -> None:
        """Return when ``event`` is set or ``deadline`` (on this clock) has passed."""
        ...


class LoopClock:
    """The running event loop's monotonic clock."""

    def time(self) -> float:
        return asyncio.get_running_loop().time()

    async def wait(self, event: asyncio.Event, deadline: float | None) -> None:
        if deadline is None:
            await event.wait()
            return
        timeout = deadline - self.time()
        if timeout <= 0:
            return
        try:
            await asyncio.wait_for(event.wait(), timeout)
        except TimeoutError:
            return


class FakeClock:
    """A clock that moves only when told to (``advance``); waiters wake as their deadlines pass."""

    def __init__(self, start: float = 0.0) -> None:
        self._now = start
        self._timers: list[tuple[float, int, asyncio.Event]] = []
        self._sequence = itertools.count()

    def time(self) -> float:
        return self._now

    async def wait(self, event: asyncio.Event, deadline: float | None) -> None:
        if deadline is not None:
            if deadline <= self._now:
                return
            heapq.heappush(self._timers, (deadline, next(self._sequence), event))
        await event.wait()

    def advance(self, seconds: float) -> None:
        """Move time forward and wake everything whose deadline has now passed."""
        if seconds < 0:
            raise ValueError("time only moves forward")
        self._now += seconds
        while self._timers and self._timers[0][0] <= self._now:
            _, _, event = heapq.heappop(self._timers)
            event.set()

    def next_deadline(self) -> float | None:
        """The earliest deadline anybody waits for (to advance exactly to it)."""
        return self._timers[0][0] if self._timers else None
