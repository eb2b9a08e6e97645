"""Recording Events about objects, so ``kubectl describe`` shows what controllers did.

Like client-go's recorder, an Event repeated for the same object (same reason, message and type)
is not created again: the first Event's ``count`` and ``lastTimestamp`` are updated, so a
crash-looping pod makes one line ``Back-off restarting failed container (x12 over 3m)``, not a
thousand objects.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from shoal.client.protocol import APIConflict, APINotFound, ObjectAPI, ResourceRef
from shoal.errors import ShoalError

__all__ = ["EventRecorder", "EventSettings"]

log = logging.getLogger("shoal.events")

EventType = Literal["Normal", "Warning"]


@dataclass(frozen=True, slots=True)
class EventSettings:
    """How events are recorded."""

    component: str = "shoal"
    """Who reports (``source.component``, ``reportingComponent``)."""
    instance: str = ""
    """Which replica of the component reports (``reportingInstance``)."""


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class EventRecorder:
    """Creates (or counts up) core/v1 Events through any :class:`~shoal.client.ObjectAPI`."""

    def __init__(
        self,
        api: ObjectAPI,
        settings: EventSettings | None = None,
        *,
        now: Callable[[], str] = _now,
    ) -> None:
        self.api = api
        self.settings = settings or EventSettings()
        self._now = now
        self._seen: dict[tuple[str, str, str, str, str], str] = {}

    async def record(
        self, obj: Mapping[str, Any], type_: EventType, reason: str, message: str
    ) -> dict[str, Any] | None:
        """Record that ``reason`` happened to ``obj``; never raises (an Event is best effort)."""
        try:
            return await self._record(obj, type_, reason, message)
        except ShoalError as error:
            log.warning("could not record event %s for %s: %s", reason, _describe(obj), error)
            return None

    async def _record(
        self, obj: Mapping[str, Any], type_: EventType, reason: str, message: str
    ) -> dict[str, Any]:
        metadata = obj.get("metadata", {})
        namespace = metadata.get("namespace") or "default"
        ref = ResourceRef("v1", "Event", namespace)
        key = (str(metadata.get("uid", metadata.get("name"))), namespace, reason, message, type_)
        now = self._now()
        known = self._seen.get(key)
        if known is not None:
            try:
                event = await self.api.get(ref, known)
                event["count"] = int(event.get("count") or 1) + 1
                event["lastTimestamp"] = now
                return await self.api.update(ref, event)
            except (APINotFound, APIConflict):
                self._seen.pop(key, None)  # gone or raced: start a fresh Event
        name = f"{metadata.get('name', 'object')}.{secrets.token_hex(8)}"
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": name, "namespace": namespace},
            "involvedObject": {
                key_: value
                for key_, value in {
                    "apiVersion": obj.get("apiVersion"),
                    "kind": obj.get("kind"),
                    "name": metadata.get("name"),
                    "namespace": metadata.get("namespace"),
                    "uid": metadata.get("uid"),
                    "resourceVersion": metadata.get("resourceVersion"),
                }.items()
                if value is not None
            },
            "reason": reason,
            "message": message,
            "type": type_,
            "count": 1,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "source": {"component": self.settings.component},
            "reportingComponent": self.settings.component,
            "reportingInstance": self.settings.instance,
        }
        created = await self.api.create(ref, body)
        self._seen[key] = name
        return created


def _describe(obj: Mapping[str, Any]) -> str:
    metadata = obj.get("metadata", {})
    return f"{obj.get('kind')}/{metadata.get('namespace', '')}/{metadata.get('name')}"
