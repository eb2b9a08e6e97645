"""``?watch=1``: newline-delimited JSON events over chunked HTTP, with Kubernetes' semantics.

* ``resourceVersion`` unset or ``"0"``: a synthetic ``ADDED`` for every current object, then the
  changes after that state; any other revision: only the changes after it.
* a revision that was compacted away: HTTP 200 and one ``ERROR`` event whose object is a
  ``Status`` with reason ``Expired`` (code 410), as the Kubernetes API server answers; the client
  lists again and watches from the list's revision.
* ``allowWatchBookmarks=true``: idle watches get ``BOOKMARK`` events (only
  ``metadata.resourceVersion`` set).
* the watch-list request (``sendInitialEvents=true`` with ``resourceVersionMatch=NotOlderThan``):
  the initial ``ADDED`` events, then a ``BOOKMARK`` annotated ``k8s.io/initial-events-end:
  "true"``, then changes.
* label and field selectors: an object that stops matching is sent as ``DELETED``, one that starts
  matching as ``ADDED`` (the matching set is known from the start revision on).
* ``timeoutSeconds`` ends the stream (default: 30 minutes).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from shoal.apiserver.records import Event, EventType, item_text
from shoal.apiserver.resources import Resource
from shoal.apiserver.selectors import FieldSelector, LabelSelector
from shoal.apiserver.service import ObjectService
from shoal.apiserver.status import APIError
from shoal.apiserver.storage_errors import ExpiredError, StorageError
from shoal.apiserver.watching import Bookmark

__all__ = ["WatchRequest", "serve_watch"]

DEFAULT_TIMEOUT = 1800.0
INITIAL_EVENTS_END = "k8s.io/initial-events-end"

Body = dict[str, Any]


@dataclass(frozen=True, slots=True)
class WatchRequest:
    resource: Resource
    namespace: str | None
    labels: LabelSelector
    fields: FieldSelector
    resource_version: str | None
    bookmarks: bool = False
    send_initial_events: bool | None = None
    timeout: float = DEFAULT_TIMEOUT
    plain_json: bool = False
    """Objects go out as stored (no Table or metadata-only form): events are then written from
    the stored texts, without decoding and re-encoding them for every watcher."""


def check_watch_list(params: Mapping[str, str]) -> bool | None:
    """``sendInitialEvents`` as a bool (None when absent); 400 when it is misused."""
    raw = params.get("sendInitialEvents")
    if raw is None:
        return None
    if raw not in ("true", "false"):
        raise APIError("BadRequest", f"invalid sendInitialEvents {raw!r}: must be true or false")
    if params.get("resourceVersionMatch") != "NotOlderThan":
        raise APIError(
            "BadRequest",
            "sendInitialEvents is forbidden for watch unless resourceVersionMatch is set to "
            "NotOlderThan",
        )
    if raw == "true" and params.get("allowWatchBookmarks") != "true":
        raise APIError(
            "BadRequest", "sendInitialEvents requires setting allowWatchBookmarks to true"
        )
    return raw == "true"


class _Stream:
    def __init__(self, response: web.StreamResponse, encode: Callable[[Body], Body]) -> None:
        self.response = response
        self.encode = encode

    async def send_text(self, kind: str, text: str) -> None:
        """An event whose object is already JSON text."""
        await self.response.write(f'{{"type":"{kind}","object":{text}}}\n'.encode())

    async def send(self, kind: str, obj: Body, *, raw: bool = False) -> None:
        event = {"type": kind, "object": obj if raw else self.encode(obj)}
        data = json.dumps(event, separators=(",", ":"), ensure_ascii=False) + "\n"
        await self.response.write(data.encode())


def _matches(request: WatchRequest, obj: Mapping[str, Any]) -> bool:
    return request.labels.matches(obj.get("metadata", {}).get("labels")) and (
        request.fields.matches(obj)
    )


def _bookmark(resource: Resource, revision: int, *, initial_end: bool = False) -> Body:
    metadata: Body = {"resourceVersion": str(revision)}
    if initial_end:
        metadata["annotations"] = {INITIAL_EVENTS_END: "true"}
    return {"kind": resource.kind, "apiVersion": resource.api_version, "metadata": metadata}


async def serve_watch(
    http: web.Request,
    service: ObjectService,
    request: WatchRequest,
    encode: Callable[[Body], Body],
) -> web.StreamResponse:
    """Answer a watch request; returns when the watch ends (timeout, close, client gone)."""
    resource = request.resource
    rv = request.resource_version
    if rv not in (None, "") and not rv.isdigit():
        raise APIError("BadRequest", f"invalid resourceVersion {rv!r}: must be a storage revision")
    initial = request.send_initial_events
    replay_state = rv in (None, "", "0") if initial is None else initial
    selective = bool(request.labels.requirements or request.fields.terms)
    start: int | None = None if rv in (None, "", "0") else int(rv)

    current: list[Body] = []
    matching: set[str] = set()
    if replay_state or selective:
        try:
            listed = await service.list(
                resource,
                request.namespace,
                revision=None if replay_state else start,
            )
        except APIError as error:
            if error.reason != "Expired":
                raise
            return await _expired(http, error)
        current = listed.items
        if start is None or replay_state:
            start = listed.revision
        matching = {_identity(item) for item in current if _matches(request, item)}
    assert start is not None

    watch = service.store.watch(service.prefix(resource, request.namespace), start)
    try:
        await watch.start()
    except ExpiredError as error:
        return await _expired(http, APIError("Expired", str(error)))
    except StorageError as error:
        raise APIError(error.reason, str(error)) from None

    response = web.StreamResponse(
        status=200,
        headers={"Content-Type": "application/json", "Cache-Control": "no-cache, private"},
    )
    response.enable_chunked_encoding()
    await response.prepare(http)
    stream = _Stream(response, encode)
    try:
        with contextlib.suppress(TimeoutError, ConnectionResetError, asyncio.CancelledError):
            async with asyncio.timeout(request.timeout):
                if replay_state:
                    for item in current:
                        if _matches(request, item):
                            await stream.send("ADDED", item)
                if initial:
                    await stream.send(
                        "BOOKMARK", _bookmark(resource, start, initial_end=True), raw=True
                    )
                await response.write(b"")
                await _follow(stream, service, request, watch, matching)
    finally:
        watch.close()
    with contextlib.suppress(ConnectionResetError, RuntimeError):
        await response.write_eof()
    return response


def _identity(obj: Mapping[str, Any]) -> str:
    metadata = obj.get("metadata", {})
    return f"{metadata.get('namespace') or ''}/{metadata.get('name')}"


async def _follow(
    stream: _Stream,
    service: ObjectService,
    request: WatchRequest,
    watch: Any,
    matching: set[str],
) -> None:
    resource = request.resource
    try:
        async for item in watch:
            if isinstance(item, Bookmark):
                if request.bookmarks:
                    await stream.send("BOOKMARK", _bookmark(resource, item.revision), raw=True)
                continue
            await _send_event(stream, service, request, item, matching)
    except StorageError as error:
        await stream.send("ERROR", APIError(error.reason, str(error)).to_status(), raw=True)


async def _send_event(
    stream: _Stream,
    service: ObjectService,
    request: WatchRequest,
    event: Event,
    matching: set[str],
) -> None:
    selecting = bool(request.labels.requirements or request.fields.terms)
    if request.plain_json and not selecting:
        text = item_text(event.raw, event.revision, request.resource.api_version)
        if text is not None:
            await stream.send_text(event.type.value, text)
            return
    obj = service.output(request.resource, event.value, event.revision)
    if not selecting:
        await stream.send(event.type.value, obj)
        return
    identity = _identity(obj)
    now = _matches(request, obj)
    before = identity in matching
    if event.type == EventType.DELETED:
        matching.discard(identity)
        if before or now:
            await stream.send("DELETED", obj)
        return
    if now:
        matching.add(identity)
        await stream.send(
            "MODIFIED" if before and event.type == EventType.MODIFIED else "ADDED", obj
        )
    elif before:
        matching.discard(identity)
        await stream.send("DELETED", obj)


async def _expired(http: web.Request, error: APIError) -> web.StreamResponse:
    response = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
    response.enable_chunked_encoding()
    await response.prepare(http)
    event = {"type": "ERROR", "object": error.to_status()}
    await response.write(json.dumps(event).encode() + b"\n")
    await response.write_eof()
    return response
