"""What every controller driver shares: the informer caches, expectations, Events and settings.

The drivers read the caches (never the API) to decide, and write through the API; a write
conflicting with a concurrent one fails with ``APIConflict``, a retryable error, and the key is
reconciled again from fresh caches.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field

from shoal.client import Clock, EventRecorder, Informer, ObjectAPI, ResourceRef
from shoal.controllers._objects import Body, namespace_of

__all__ = ["Caches", "Context", "ControllerSettings", "Expectations"]


@dataclass(frozen=True, slots=True)
class ControllerSettings:
    """How the one-machine cluster's controllers run."""

    workers: int = 1
    """Keys each controller reconciles concurrently (one key is never reconciled twice at once)."""
    resync_period: float | None = 300.0
    """Seconds between full re-reconciliations of every object (repairs any drift)."""
    expectations_timeout: float = 300.0
    """Seconds a controller waits to see its own creates and deletes before acting again anyway."""
    field_manager: str = "shoal-controllers"
    """The field manager of the controllers' writes."""
    component: str = "shoal-controller-manager"
    """``source.component`` of the Events the controllers record."""
    namespace: str | None = None
    """Watch only this namespace (None: every namespace)."""


class Caches:
    """The informers' caches by kind, with the lookups controllers need."""

    def __init__(self, informers: Mapping[str, Informer]) -> None:
        self.informers = dict(informers)

    def _cache(self, ref: ResourceRef) -> dict[str, Body]:
        return self.informers[ref.kind].cache

    def get(self, ref: ResourceRef, key: str) -> Body | None:
        return self._cache(ref).get(key)

    def list(self, ref: ResourceRef, namespace: str | None = None) -> list[Body]:
        """The cached objects of a kind (in one namespace), in key order."""
        cache = self._cache(ref)
        return [
            cache[key]
            for key in sorted(cache)
            if namespace is None or namespace_of(cache[key]) == namespace
        ]

    def lookup(self, ref: ResourceRef, namespace: str) -> Callable[[str], Body | None]:
        return lambda name: self._cache(ref).get(f"{namespace}/{name}")


@dataclass(slots=True)
class _Expected:
    created: set[str] = field(default_factory=set)
    deleted: set[str] = field(default_factory=set)
    since: float = 0.0


class Expectations:
    """Writes a controller made and has not yet seen in its cache (client-go's expectations).

    While a key has outstanding expectations, its controller must not create or delete again: the
    cache it would decide from is older than its own writes. They are met once every created
    object is in the cache and every deleted one is gone (or terminating), or after a timeout
    (a lost watch event must not stall the controller forever).
    """

    def __init__(self, time: Callable[[], float], timeout: float = 300.0) -> None:
        self._time = time
        self.timeout = timeout
        self._pending: dict[str, _Expected] = {}

    def expect(
        self, key: str, *, created: Collection[str] = (), deleted: Collection[str] = ()
    ) -> None:
        if not created and not deleted:
            return
        entry = self._pending.setdefault(key, _Expected(since=self._time()))
        entry.created.update(created)
        entry.deleted.update(deleted)
        entry.since = self._time()

    def satisfied(self, key: str, lookup: Callable[[str], Body | None]) -> bool:
        entry = self._pending.get(key)
        if entry is None:
            return True
        entry.created = {name for name in entry.created if lookup(name) is None}
        entry.deleted = {
            name
            for name in entry.deleted
            if (body := lookup(name)) is not None
            and not (body.get("metadata") or {}).get("deletionTimestamp")
        }
        if (entry.created or entry.deleted) and self._time() - entry.since < self.timeout:
            return False
        del self._pending[key]
        return True

    def forget(self, key: str) -> None:
        self._pending.pop(key, None)


@dataclass(slots=True)
class Context:
    """Everything a controller driver uses."""

    api: ObjectAPI
    """Where the controllers write."""
    caches: Caches
    recorder: EventRecorder
    clock: Clock
    settings: ControllerSettings = field(default_factory=ControllerSettings)
    expectations: Expectations = field(init=False)
    now: Callable[[], dt.datetime] = field(default=lambda: dt.datetime.now(dt.UTC))
    """Wall-clock time (conditions' timestamps, minReadySeconds)."""

    def __post_init__(self) -> None:
        self.expectations = Expectations(self.clock.time, self.settings.expectations_timeout)
