"""
Watches: committed events fanned out to watchers, each after a gap-free replay from the log.

Theory of operation
-------------------
The store's writer publishes the events of each committed batch to the :class:`Broadcaster`, on
the event loop, in revision order, *before* it acknowledges the writes. ``Broadcaster.revision``
is the last revision published: every event up to it has been offered to every subscription.

A :class:`Watch` from revision *R* delivers every event after *R* under its prefix, exactly once,
in order. It first catches up from the log (pages of at most ``page_size`` events, each read only
up to the revision published when the read started, so a page never runs ahead of the stream).
When the published revision *H* is within one page of its position, it subscribes and, in the
same step of the event loop (nothing can be published in between), notes *H*: the subscription
receives exactly the events after *H*, and one last read from the log returns those up to *H*.
Replay and live stream meet at *H* with no gap and no duplicate.

Each subscription holds at most ``queue_size`` events. A watcher that falls further behind is
closed, and its next read raises :class:`~shoal.apiserver.storage.WatchOverflowError` (410 Gone)
naming the last revision it received; nothing is ever dropped silently. A watch that is idle for
``bookmark_interval`` yields a :class:`Bookmark`: every event up to its revision was delivered.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from dataclasses import dataclass
from typing import Protocol

from shoal.apiserver.storage import Event, RevisionTooLargeError, WatchOverflowError

__all__ = ["Bookmark", "Broadcaster", "ChangeLog", "Subscription", "Watch"]


@dataclass(frozen=True, slots=True)
class Bookmark:
    """The watch has delivered every event under its prefix up to ``revision``."""

    revision: int


class ChangeLog(Protocol):
    """Where a watch reads the events it missed: the store's log."""

    async def changes(
        self, prefix: str, *, after: int, upto: int | None = None, limit: int | None = None
    ) -> list[Event]:
        """Events with ``after < revision <= upto`` under ``prefix``, oldest first; raises
        :class:`~shoal.apiserver.storage.ExpiredError` if some were compacted away."""
        ...


class Subscription:
    """The live events under one prefix, for one watch; bounded."""

    __slots__ = ("_wake", "capacity", "ended", "events", "overflowed", "prefix")

    def __init__(self, prefix: str, capacity: int) -> None:
        self.prefix = prefix
        self.capacity = capacity
        self.events: collections.deque[Event] = collections.deque()
        self.overflowed = False
        """The watcher fell more than ``capacity`` events behind; the queue was discarded."""
        self.ended = False
        """The broadcaster closed (the store is shutting down)."""
        self._wake = asyncio.Event()

    def offer(self, event: Event) -> bool:
        """Queue ``event``; False (and overflowed) when the queue is already full."""
        if len(self.events) >= self.capacity:
            self.overflowed = True
            self.events.clear()
            self._wake.set()
            return False
        self.events.append(event)
        self._wake.set()
        return True

    def end(self) -> None:
        self.ended = True
        self._wake.set()

    async def wait(self) -> None:
        """Wait until something is offered or the subscription ends."""
        self._wake.clear()
        await self._wake.wait()


class Broadcaster:
    """Fans committed events out to subscriptions filtered by key prefix (event-loop only)."""

    def __init__(self, revision: int) -> None:
        self.revision = revision
        """The last revision published: every event up to it was offered to every subscription."""
        self.closed = False
        self._subscriptions: set[Subscription] = set()
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []

    def __len__(self) -> int:
        return len(self._subscriptions)

    def subscribe(self, prefix: str, capacity: int) -> Subscription:
        """A subscription to the events published from now on (ended at once if closed)."""
        subscription = Subscription(prefix, capacity)
        if self.closed:
            subscription.end()
        else:
            self._subscriptions.add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        self._subscriptions.discard(subscription)

    def publish(self, events: list[Event]) -> None:
        """Offer the events of one commit, in revision order, to every matching subscription."""
        if not events:
            return
        if events[0].revision <= self.revision:
            raise RuntimeError(
                f"events must be published in revision order: {events[0].revision} after "
                f"{self.revision}"
            )
        overflowed = []
        for subscription in self._subscriptions:
            prefix = subscription.prefix
            for event in events:
                if event.key.startswith(prefix) and not subscription.offer(event):
                    overflowed.append(subscription)
                    break
        self._subscriptions.difference_update(overflowed)
        self.revision = events[-1].revision
        if self._waiters:
            waiting = []
            for revision, future in self._waiters:
                if revision <= self.revision:
                    if not future.done():
                        future.set_result(None)
                else:
                    waiting.append((revision, future))
            self._waiters = waiting

    async def wait_for(self, revision: int) -> bool:
        """Wait until ``revision`` is published (True) or the broadcaster closes (False)."""
        if self.revision >= revision:
            return True
        if self.closed:
            return False
        future = asyncio.get_running_loop().create_future()
        self._waiters.append((revision, future))
        try:
            await future
        finally:
            if not future.done():
                future.cancel()
        return self.revision >= revision

    def close(self) -> None:
        """End every subscription (their watches stop after the events already queued)."""
        self.closed = True
        for subscription in self._subscriptions:
            subscription.end()
        self._subscriptions.clear()
        for _, future in self._waiters:
            if not future.done():
                future.set_result(None)
        self._waiters.clear()


class Watch:
    """The events after ``from_revision`` under ``prefix``, then live ones; an async iterator.

    Use as ``async with store.watch(prefix, revision) as watch: async for event in watch``.
    Entering checks the revision: ExpiredError if it was compacted, RevisionTooLargeError if it
    is not reached within ``revision_wait`` seconds. Iteration yields :class:`Event` and, when idle,
    :class:`Bookmark`; it stops when the store closes and raises WatchOverflowError (410 Gone) if
    the watcher fell more than ``queue_size`` events behind.
    """

    def __init__(
        self,
        broadcaster: Broadcaster,
        log: ChangeLog,
        prefix: str,
        from_revision: int,
        *,
        queue_size: int = 1_000,
        page_size: int = 1_000,
        bookmark_interval: float | None = None,
        revision_wait: float = 3.0,
    ) -> None:
        self.prefix = prefix
        self.revision = from_revision
        """The revision of the last event or bookmark delivered (where to resume from)."""
        self._broadcaster = broadcaster
        self._log = log
        self._position = from_revision  # the log has been read up to here
        self._queue_size = queue_size
        self._page_size = max(page_size, 1)
        self._bookmark_interval = bookmark_interval
        self._revision_wait = revision_wait
        self._buffer: collections.deque[Event] = collections.deque()
        self._subscription: Subscription | None = None
        self._started = False
        self._closed = False

    async def start(self) -> None:
        """Check the revision and read the first page of history (once; iteration calls it)."""
        if self._started:
            return
        self._started = True
        broadcaster = self._broadcaster
        if self._position > broadcaster.revision:
            reached = False
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._revision_wait):
                    reached = await broadcaster.wait_for(self._position)
            if not reached:
                raise RevisionTooLargeError(self._position, broadcaster.revision)
        await self._catch_up()

    async def _catch_up(self) -> None:
        head = self._broadcaster.revision
        last_page = head - self._position <= self._page_size
        if last_page:
            # Same step of the loop as reading ``head``: the subscription gets exactly the
            # events after ``head``, and the read below returns the ones up to it.
            self._subscription = self._broadcaster.subscribe(self.prefix, self._queue_size)
        try:
            events = await self._log.changes(
                self.prefix,
                after=self._position,
                upto=head,
                limit=None if last_page else self._page_size,
            )
        except BaseException:
            self.close()
            raise
        self._buffer.extend(events)
        if last_page or len(events) < self._page_size:
            self._position = head
        else:
            self._position = events[-1].revision

    def close(self) -> None:
        """Stop watching (idempotent); iteration then stops, also in a task waiting on it."""
        self._closed = True
        self._buffer.clear()
        if self._subscription is not None:
            self._broadcaster.unsubscribe(self._subscription)
            self._subscription.end()
            self._subscription = None

    async def __aenter__(self) -> Watch:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()

    def __aiter__(self) -> Watch:
        return self

    async def __anext__(self) -> Event | Bookmark:
        if not self._started:
            await self.start()
        while not self._closed:
            if self._buffer:
                return self._deliver(self._buffer.popleft())
            subscription = self._subscription
            if subscription is None:
                if self._broadcaster.closed:
                    break
                await self._catch_up()
                continue
            if subscription.events:
                return self._deliver(subscription.events.popleft())
            if subscription.overflowed:
                self.close()
                raise WatchOverflowError(self.prefix, self._queue_size, self.revision)
            if subscription.ended:
                break
            try:
                async with asyncio.timeout(self._bookmark_interval):
                    await subscription.wait()
            except TimeoutError:
                if not (subscription.events or subscription.overflowed or subscription.ended):
                    self.revision = max(self.revision, self._broadcaster.revision)
                    return Bookmark(self.revision)
        self.close()
        raise StopAsyncIteration

    def _deliver(self, event: Event) -> Event:
        self.revision = event.revision
        return event
