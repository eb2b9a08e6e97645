"""The garbage collector and the namespace finalizer, as one sweep over the stored objects.

Theory of operation
-------------------
After every deletion (and at start, and every ``interval`` while work is pending) the collector
reads every stored object once and acts on what it finds:

* a **dependent whose owners are all gone** (no live object has the uid of any of its
  ``ownerReferences``) is deleted, in the background; a dependent with some owners gone and some
  alive loses the references to the gone ones (Kubernetes' "dangling references");
* an **owner in foreground deletion** (``deletionTimestamp`` and the ``foregroundDeletion``
  finalizer) has its dependents deleted (in the foreground too); once none is left, the
  finalizer is removed and the owner goes;
* a **terminating namespace** has everything in it deleted; once it is empty, its ``kubernetes``
  finalizer is removed and the namespace goes.

Every write is a compare-and-swap on the revision just read: a concurrent client write wins,
and the next sweep sees it. Orphaning (``propagationPolicy: Orphan``) is done by the delete
itself, before the owner goes, so the collector never sees the owner missing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from shoal.apiserver.records import Entry
from shoal.apiserver.service import (
    FOREGROUND,
    NAMESPACE_FINALIZER,
    DeleteOptions,
    ObjectService,
)
from shoal.apiserver.status import APIError
from shoal.apiserver.storage_errors import ConflictError, NotFoundError, StorageError

__all__ = ["Collector"]

logger = logging.getLogger(__name__)


class Collector:
    """Garbage collection of dependents and cleanup of terminating namespaces."""

    def __init__(self, service: ObjectService, *, interval: float = 0.5) -> None:
        self.service = service
        self.interval = interval
        self._wake = asyncio.Event()
        self.sweeps = 0
        """How many sweeps ran (tests wait on it)."""
        service.on_delete = self.poke

    def poke(self) -> None:
        """Something was deleted: sweep soon."""
        self._wake.set()

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Collector]:
        """Run the collector's loop for the duration of a block."""
        task = asyncio.get_running_loop().create_task(self._loop(), name="shoal-gc")
        try:
            yield self
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _loop(self) -> None:
        pending = True  # sweep once at start: a crash may have left work behind
        while True:
            if not pending:
                await self._wake.wait()
            else:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.interval):
                        await self._wake.wait()
            self._wake.clear()
            try:
                pending = await self.sweep()
            except StorageError as error:
                logger.warning("garbage collection sweep failed, will retry: %s", error)
                pending = True
            except Exception:
                logger.exception("garbage collection sweep failed")
                pending = True

    async def sweep(self) -> bool:
        """One pass over every object; True when work is left for a later pass."""
        self.sweeps += 1
        service = self.service
        entries = await service.all_entries()
        live: dict[str, Entry] = {}
        for entry in entries:
            uid = entry.value.get("metadata", {}).get("uid")
            if isinstance(uid, str):
                live[uid] = entry
        pending = False
        dependents: dict[str, list[Entry]] = {}
        for entry in entries:
            value = entry.value
            refs = value.get("metadata", {}).get("ownerReferences") or []
            if not refs:
                continue
            for ref in refs:
                dependents.setdefault(str(ref.get("uid")), []).append(entry)
            alive = [ref for ref in refs if ref.get("uid") in live]
            if not alive:
                pending |= await self._delete(entry, "Background")
            elif len(alive) < len(refs):
                value["metadata"]["ownerReferences"] = alive
                await self._write(entry, value)
        for uid, owner in live.items():
            meta = owner.value.get("metadata", {})
            if not meta.get("deletionTimestamp"):
                continue
            if FOREGROUND in (meta.get("finalizers") or ()):
                pending = True
                waiting = dependents.get(uid, [])
                for dependent in waiting:
                    if not dependent.value.get("metadata", {}).get("deletionTimestamp"):
                        await self._delete(dependent, "Foreground")
                if not waiting:
                    value = owner.value
                    value["metadata"]["finalizers"] = [
                        f for f in meta.get("finalizers") or () if f != FOREGROUND
                    ]
                    await self._finish(owner, value)
            if owner.value.get("kind") == "Namespace" and owner.value.get("apiVersion") == "v1":
                pending = True
                await self._empty_namespace(owner, entries)
        return pending

    async def _empty_namespace(self, namespace: Entry, entries: list[Entry]) -> None:
        name = namespace.value["metadata"]["name"]
        inside = [
            e
            for e in entries
            if e.value.get("metadata", {}).get("namespace") == name and e.key != namespace.key
        ]
        for entry in inside:
            if not entry.value.get("metadata", {}).get("deletionTimestamp"):
                await self._delete(entry, "Background")
        if inside:
            return
        value = namespace.value
        spec = value.get("spec") or {}
        spec["finalizers"] = [f for f in spec.get("finalizers") or () if f != NAMESPACE_FINALIZER]
        if not spec["finalizers"]:
            del spec["finalizers"]
        value["spec"] = spec
        await self._finish(namespace, value)

    async def _finish(self, entry: Entry, value: dict[str, Any]) -> None:
        """Store ``value`` (finalizers removed); delete it if nothing holds it any more."""
        meta = value["metadata"]
        holds = bool(meta.get("finalizers")) or bool((value.get("spec") or {}).get("finalizers"))
        if not meta.get("finalizers"):
            meta.pop("finalizers", None)
        store = self.service.store
        try:
            stored = await store.update(entry.key, value, entry.revision)
            if not holds:
                await store.delete(entry.key, stored.revision)
                resource = self.service.resource_of(value)
                if resource is not None:
                    self.service.deleted(resource, value)
        except (ConflictError, NotFoundError):
            return

    async def _write(self, entry: Entry, value: dict[str, Any]) -> None:
        try:
            await self.service.store.update(entry.key, value, entry.revision)
        except (ConflictError, NotFoundError):
            return

    async def _delete(self, entry: Entry, propagation: str) -> bool:
        """Delete a stored object as a client would; True if it is held by finalizers."""
        service = self.service
        resource = service.resource_of(entry.value)
        if resource is None:
            try:
                await service.store.delete(entry.key, entry.revision)
            except (ConflictError, NotFoundError):
                return False
            service.on_delete()
            return False
        options = DeleteOptions(
            propagation="Foreground" if propagation == "Foreground" else "Background"
        )
        try:
            _, gone = await service.delete_entry(resource, entry, options)
        except APIError as error:
            if error.reason in ("NotFound", "Conflict"):
                return True
            raise
        return not gone
