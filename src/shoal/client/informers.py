"""Informers: a local cache of one kind of object, kept current by list-then-watch.

Theory of operation
-------------------
1. **List** the objects and the revision the list was read at; replace the cache and report every
   key whose object appeared, changed or vanished since the last cache.
2. **Watch** from that revision; apply each event to the cache and report its key. When the stream
   ends normally, watch again from the last revision seen (no events are lost in between: the
   server replays from the revision).
3. When the server answers that the revision is too old (``410 Expired``: history was compacted),
   go back to 1: a fresh list is the only correct recovery.
4. On a connection failure, wait (exponential back-off on the clock) and go back to 1.
5. Every ``resync_period``, report every cached key again, so controllers repair any drift.

Handlers receive keys (``namespace/name``), never events: controllers are level-triggered.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from shoal.client.clock import Clock, LoopClock
from shoal.client.protocol import ObjectAPI, ResourceRef, WatchEvent, WatchExpired, object_key
from shoal.client.queueing import QueueSettings, backoff_delay
from shoal.errors import RetryableError

__all__ = ["Informer", "InformerSettings"]

log = logging.getLogger("shoal.informers")

Handler = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class InformerSettings:
    """How an informer keeps its cache."""

    resync_period: float | None = 300.0
    """Seconds between reports of every cached key; ``None`` never resyncs."""
    retry: QueueSettings = field(
        default_factory=lambda: QueueSettings(base_delay=0.1, max_delay=30.0)
    )
    """Back-off after a failed list or watch."""
    label_selector: str | None = None
    """Only objects with these labels."""


class Informer:
    """A cache of the objects of ``ref``, with handlers called with each changed key."""

    def __init__(
        self,
        api: ObjectAPI,
        ref: ResourceRef,
        *,
        settings: InformerSettings | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.api = api
        self.ref = ref
        self.settings = settings or InformerSettings()
        self.clock: Clock = clock or LoopClock()
        self.cache: dict[str, dict[str, Any]] = {}
        self.synced = asyncio.Event()
        """Set once the first list has filled the cache."""
        self.lists = 0
        """How many times the informer has listed (1 plus one per recovery)."""
        self._handlers: list[Handler] = []
        self._stop = asyncio.Event()

    def add_handler(self, handler: Handler) -> None:
        self._handlers.append(handler)

    def get(self, key: str) -> dict[str, Any] | None:
        return self.cache.get(key)

    def stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        """List and watch until :meth:`stop`."""
        async with asyncio.TaskGroup() as group:
            tasks = [
                group.create_task(self._list_and_watch()),
                group.create_task(self._resync_loop()),
            ]
            await self._stop.wait()
            for task in tasks:
                task.cancel()

    async def _list_and_watch(self) -> None:
        failures = 0
        while True:
            try:
                revision = await self._list()
                failures = 0
                while True:
                    revision = await self._watch(revision)
            except WatchExpired:
                log.info("%s: watch expired; listing again", self.ref.kind)
            except RetryableError as error:
                delay = backoff_delay(failures, self.settings.retry)
                failures += 1
                log.warning(
                    "%s: list/watch failed (%s); retrying in %.2fs", self.ref.kind, error, delay
                )
                await self.clock.wait(asyncio.Event(), self.clock.time() + delay)

    async def _list(self) -> str:
        result = await self.api.list(self.ref, label_selector=self.settings.label_selector)
        self.lists += 1
        fresh = {object_key(item): item for item in result.items}
        changed = [
            key
            for key in fresh.keys() | self.cache.keys()
            if _revision(fresh.get(key)) != _revision(self.cache.get(key))
        ]
        self.cache = fresh
        self.synced.set()
        self._notify(sorted(changed))
        return result.resource_version

    async def _watch(self, revision: str) -> str:
        async for event in self.api.watch(
            self.ref, revision, label_selector=self.settings.label_selector
        ):
            revision = event.resource_version or revision
            if event.type != "BOOKMARK":
                self._apply(event)
        return revision

    def _apply(self, event: WatchEvent) -> None:
        key = object_key(event.object)
        if event.type == "DELETED":
            self.cache.pop(key, None)
        else:
            self.cache[key] = event.object
        self._notify([key])

    async def _resync_loop(self) -> None:
        period = self.settings.resync_period
        if period is None:
            return
        while True:
            await self.clock.wait(asyncio.Event(), self.clock.time() + period)
            self._notify(sorted(self.cache))

    def _notify(self, keys: Iterable[str]) -> None:
        for key in keys:
            for handler in self._handlers:
                handler(key)


def _revision(body: dict[str, Any] | None) -> str | None:
    return None if body is None else str(body.get("metadata", {}).get("resourceVersion"))
