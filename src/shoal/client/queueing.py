"""A de-duplicating work queue with per-key exponential back-off, as controllers use.

Theory of operation
-------------------
Controllers are level-triggered: an event only says "look at this key again". The queue keeps a
key in at most one of three places:

* **queued**: waiting for a worker. Adding a queued key again does nothing (de-duplication).
* **processing**: a worker has it. Adding it again marks it **dirty**; when the worker calls
  ``done``, a dirty key is queued again, so a change seen during processing is never lost and a
  key is never processed by two workers at once.
* **delayed**: to be queued at a time (``add_after``); ``add_rate_limited`` delays by an
  exponential back-off that grows with the key's failures until ``forget`` resets it.

Time comes from a :class:`~shoal.client.clock.Clock`, so tests drive delays with a fake clock.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections import deque
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

from shoal.client.clock import Clock, LoopClock

__all__ = ["QueueSettings", "QueueShutDown", "WorkQueue", "backoff_delay"]

K = TypeVar("K", bound=Hashable)


@dataclass(frozen=True, slots=True)
class QueueSettings:
    """Back-off of failing keys (client-go's defaults)."""

    base_delay: float = 0.005
    """Seconds before the first retry of a failed key."""
    max_delay: float = 300.0
    """The back-off never grows beyond this many seconds."""
    factor: float = 2.0
    """Each further failure multiplies the delay by this."""


def backoff_delay(failures: int, settings: QueueSettings) -> float:
    """The delay before retrying a key that has failed ``failures`` times already (from 0)."""
    exponent = min(failures, 64)  # beyond this the cap applies anyway; avoids float overflow
    return float(min(settings.base_delay * settings.factor**exponent, settings.max_delay))


class QueueShutDown(Exception):
    """Raised by ``get`` once the queue is shut down and empty: the worker should exit."""


class WorkQueue(Generic[K]):
    """Keys to reconcile; see the module docstring for the guarantees."""

    def __init__(self, settings: QueueSettings | None = None, clock: Clock | None = None) -> None:
        self.settings = settings or QueueSettings()
        self.clock: Clock = clock or LoopClock()
        self._queue: deque[K] = deque()
        self._queued: set[K] = set()
        self._processing: set[K] = set()
        self._dirty: set[K] = set()
        self._delayed: list[tuple[float, int, K]] = []
        self._sequence = itertools.count()
        self._failures: dict[K, int] = {}
        self._wake = asyncio.Event()
        self._shut_down = False

    def __len__(self) -> int:
        """Keys waiting for a worker now (not counting delayed or processing ones)."""
        return len(self._queue)

    def add(self, key: K) -> None:
        if self._shut_down:
            return
        if key in self._processing:
            self._dirty.add(key)
        elif key not in self._queued:
            self._queued.add(key)
            self._queue.append(key)
            self._wake.set()

    def add_after(self, key: K, delay: float) -> None:
        if delay <= 0:
            self.add(key)
            return
        heapq.heappush(self._delayed, (self.clock.time() + delay, next(self._sequence), key))
        self._wake.set()

    def add_rate_limited(self, key: K) -> float:
        """Queue ``key`` after its back-off; returns the delay chosen."""
        failures = self._failures.get(key, 0)
        self._failures[key] = failures + 1
        delay = backoff_delay(failures, self.settings)
        self.add_after(key, delay)
        return delay

    def forget(self, key: K) -> None:
        """The key succeeded: its next failure starts the back-off from the beginning."""
        self._failures.pop(key, None)

    def failures(self, key: K) -> int:
        return self._failures.get(key, 0)

    async def get(self) -> K:
        """The next key to process; waits for one. Call ``done(key)`` when finished with it."""
        while True:
            self._promote_due()
            if self._queue:
                key = self._queue.popleft()
                self._queued.discard(key)
                self._processing.add(key)
                return key
            if self._shut_down:
                raise QueueShutDown
            deadline = self._delayed[0][0] if self._delayed else None
            self._wake.clear()
            await self.clock.wait(self._wake, deadline)

    def done(self, key: K) -> None:
        self._processing.discard(key)
        if key in self._dirty:
            self._dirty.discard(key)
            self.add(key)

    def shut_down(self) -> None:
        """Stop taking keys; workers get :class:`QueueShutDown` once the queue is empty."""
        self._shut_down = True
        self._delayed.clear()
        self._wake.set()

    def _promote_due(self) -> None:
        now = self.clock.time()
        while self._delayed and self._delayed[0][0] <= now:
            _, _, key = heapq.heappop(self._delayed)
            self.add(key)
