"""An in-memory implementation of the client protocol, for tests."""

from __future__ import annotations

import asyncio
import copy
import itertools
import uuid
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime
from typing import Any

# The API server's own selector parser, so the stand-in selects exactly as the server does.
from shoal.apiserver.selectors import LabelSelector, parse_label_selector
from shoal.client.protocol import (
    APIConflict,
    APINotFound,
    ListResult,
    ResourceRef,
    WatchEvent,
    WatchExpired,
)

Body = dict[str, Any]
_Key = tuple[str, str, str | None, str]
_CLOSE: Any = object()


class InMemoryAPI:
    """Objects in a dict, with the API's revision, conflict and watch semantics."""

    def __init__(self) -> None:
        self._objects: dict[_Key, Body] = {}
        self._revision = itertools.count(1)
        self._current = 0
        self._history: list[tuple[int, WatchEvent]] = []
        self._compacted = 0
        self._watchers: set[asyncio.Queue[Any]] = set()
        self.requests: list[tuple[str, str, str]] = []
        """Every call made, as (verb, kind, name), for assertions."""

    # -- test controls ---------------------------------------------------------------------

    def compact(self) -> None:
        """Forget the history: watches from an older revision now fail with WatchExpired."""
        self._compacted = self._current
        self._history.clear()

    def close_watches(self) -> None:
        """End every open watch normally (as a server's watch timeout does)."""
        for queue in self._watchers:
            queue.put_nowait(_CLOSE)

    @property
    def watch_count(self) -> int:
        return len(self._watchers)

    # -- the protocol ----------------------------------------------------------------------

    async def list(self, ref: ResourceRef, *, label_selector: str | None = None) -> ListResult:
        self.requests.append(("list", ref.kind, ""))
        wanted = parse_label_selector(label_selector)
        items = [
            copy.deepcopy(body)
            for key, body in sorted(self._objects.items(), key=lambda kv: kv[0])
            if _matches(ref, body) and _labels_match(body, wanted)
        ]
        return ListResult(items=items, resource_version=str(self._current))

    async def watch(
        self, ref: ResourceRef, resource_version: str, *, label_selector: str | None = None
    ) -> AsyncIterator[WatchEvent]:
        self.requests.append(("watch", ref.kind, resource_version))
        wanted = parse_label_selector(label_selector)
        matching = self._matching_at(int(resource_version or 0), wanted)
        since = int(resource_version or 0)
        if since < self._compacted:
            raise WatchExpired(f"too old resource version: {since} ({self._compacted})")
        queue: asyncio.Queue[Any] = asyncio.Queue()
        self._watchers.add(queue)
        try:
            last = since
            for revision, event in list(self._history):
                if revision > last and _matches(ref, event.object):
                    last = revision
                    seen = _filtered(event, wanted, matching)
                    if seen is not None:
                        yield seen
            while True:
                item = await queue.get()
                if item is _CLOSE:
                    return
                revision, event = item
                if revision > last and _matches(ref, event.object):
                    last = revision
                    seen = _filtered(event, wanted, matching)
                    if seen is not None:
                        yield seen
        finally:
            self._watchers.discard(queue)

    async def get(self, ref: ResourceRef, name: str) -> Body:
        self.requests.append(("get", ref.kind, name))
        body = self._objects.get(_key(ref, name))
        if body is None:
            raise APINotFound(f'{ref.kind} "{name}" not found')
        return copy.deepcopy(body)

    async def create(self, ref: ResourceRef, body: Mapping[str, Any]) -> Body:
        stored = copy.deepcopy(dict(body))
        metadata = stored.setdefault("metadata", {})
        if ref.namespace is not None:
            metadata.setdefault("namespace", ref.namespace)
        name = (
            metadata.get("name") or f"{metadata.get('generateName', 'obj-')}{uuid.uuid4().hex[:5]}"
        )
        metadata["name"] = name
        self.requests.append(("create", ref.kind, name))
        key = _key(ResourceRef(ref.api_version, ref.kind, metadata.get("namespace")), name)
        if key in self._objects:
            raise APIConflict(f'{ref.kind} "{name}" already exists')
        metadata["uid"] = str(uuid.uuid4())
        metadata["generation"] = 1
        metadata["creationTimestamp"] = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        stored.setdefault("apiVersion", ref.api_version)
        stored.setdefault("kind", ref.kind)
        self._store(key, stored, "ADDED")
        return copy.deepcopy(stored)

    async def update(self, ref: ResourceRef, body: Mapping[str, Any]) -> Body:
        return self._update(ref, body, status_only=False)

    async def update_status(self, ref: ResourceRef, body: Mapping[str, Any]) -> Body:
        return self._update(ref, body, status_only=True)

    async def delete(self, ref: ResourceRef, name: str) -> None:
        self.requests.append(("delete", ref.kind, name))
        key = _key(ref, name)
        body = self._objects.pop(key, None)
        if body is None:
            raise APINotFound(f'{ref.kind} "{name}" not found')
        self._record(body, "DELETED")

    # -- internals -------------------------------------------------------------------------

    def _matching_at(self, revision: int, wanted: LabelSelector) -> dict[str, bool]:
        """Which objects matched ``wanted`` at ``revision`` (to tell entering from leaving)."""
        state: dict[str, Body | None] = {}
        for body in self._objects.values():
            if int(body["metadata"]["resourceVersion"]) <= revision:
                state[_watch_key(body)] = body
        for event_revision, event in self._history:
            if event_revision <= revision:
                state[_watch_key(event.object)] = None if event.type == "DELETED" else event.object
        return {
            key: body is not None and _labels_match(body, wanted) for key, body in state.items()
        }

    def _update(self, ref: ResourceRef, body: Mapping[str, Any], *, status_only: bool) -> Body:
        metadata = body.get("metadata", {})
        name = metadata.get("name", "")
        self.requests.append(("update_status" if status_only else "update", ref.kind, name))
        key = _key(
            ResourceRef(ref.api_version, ref.kind, metadata.get("namespace", ref.namespace)), name
        )
        current = self._objects.get(key)
        if current is None:
            raise APINotFound(f'{ref.kind} "{name}" not found')
        if metadata.get("resourceVersion") != current["metadata"]["resourceVersion"]:
            raise APIConflict(
                "the object has been modified; please apply your changes to the latest version "
                "and try again"
            )
        new = copy.deepcopy(current)
        if status_only:
            if "status" in body:
                new["status"] = copy.deepcopy(body["status"])
        else:
            incoming = copy.deepcopy(dict(body))
            incoming["metadata"] = {**current["metadata"], **incoming.get("metadata", {})}
            incoming["status"] = current.get("status")
            if incoming.get("spec") != current.get("spec"):
                incoming["metadata"]["generation"] = current["metadata"]["generation"] + 1
            if incoming["status"] is None:
                incoming.pop("status")
            new = incoming
        self._store(key, new, "MODIFIED")
        return copy.deepcopy(new)

    def _store(self, key: _Key, body: Body, kind: str) -> None:
        self._objects[key] = body
        self._record(body, kind)

    def _record(self, body: Body, kind: str) -> None:
        revision = next(self._revision)
        self._current = revision
        body["metadata"]["resourceVersion"] = str(revision)
        event = WatchEvent(kind, copy.deepcopy(body))  # type: ignore[arg-type]
        self._history.append((revision, event))
        for queue in self._watchers:
            queue.put_nowait((revision, event))


def _key(ref: ResourceRef, name: str) -> _Key:
    return (ref.api_version, ref.kind, ref.namespace, name)


def _matches(ref: ResourceRef, body: Mapping[str, Any]) -> bool:
    if body.get("apiVersion") != ref.api_version or body.get("kind") != ref.kind:
        return False
    return ref.namespace is None or body.get("metadata", {}).get("namespace") == ref.namespace


def _labels_match(body: Mapping[str, Any], wanted: LabelSelector) -> bool:
    return wanted.matches(body.get("metadata", {}).get("labels"))


def _filtered(
    event: WatchEvent, wanted: LabelSelector, matching: dict[str, bool]
) -> WatchEvent | None:
    """The event as a watch with a label selector sees it (entering: ADDED; leaving: DELETED)."""
    if not wanted.requirements:
        return _copy_event(event)
    key = _watch_key(event.object)
    before = matching.get(key, False)
    now = _labels_match(event.object, wanted) and event.type != "DELETED"
    matching[key] = now
    if now and not before:
        return WatchEvent("ADDED", copy.deepcopy(event.object))
    if before and not now:
        return WatchEvent("DELETED", copy.deepcopy(event.object))
    if now:
        return _copy_event(event)
    return None


def _watch_key(body: Mapping[str, Any]) -> str:
    metadata = body.get("metadata", {})
    return f"{metadata.get('namespace')}/{metadata.get('name')}"


def _copy_event(event: WatchEvent) -> WatchEvent:
    return WatchEvent(event.type, copy.deepcopy(event.object))
