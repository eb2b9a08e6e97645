"""What controllers need from an API: list, watch, get, create, update, delete.

Two implementations satisfy it: the HTTP client (shoal's API server or a real Kubernetes API
server) and ``shoal.testing.InMemoryAPI`` for tests. Objects travel as plain dicts, exactly as
the API serves them; controllers parse them into model objects where they need types.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from shoal.errors import PermanentError, RetryableError

__all__ = [
    "APIConflict",
    "APINotFound",
    "ListResult",
    "ObjectAPI",
    "ResourceRef",
    "WatchEvent",
    "WatchExpired",
    "object_key",
]

Body = dict[str, Any]


@dataclass(frozen=True, slots=True)
class ResourceRef:
    """A kind of object in one place: ``apiVersion``, ``kind`` and, optionally, a namespace."""

    api_version: str
    kind: str
    namespace: str | None = None


@dataclass(frozen=True, slots=True)
class ListResult:
    """A consistent list: the items and the revision they were read at (to watch from)."""

    items: list[Body]
    resource_version: str


@dataclass(frozen=True, slots=True)
class WatchEvent:
    """One change: ``ADDED``, ``MODIFIED``, ``DELETED``, or ``BOOKMARK`` (a revision only)."""

    type: Literal["ADDED", "MODIFIED", "DELETED", "BOOKMARK"]
    object: Body

    @property
    def resource_version(self) -> str:
        return str(self.object.get("metadata", {}).get("resourceVersion", ""))


class WatchExpired(RetryableError):
    """The revision to watch from was compacted away (HTTP 410): list again, then watch."""

    def __init__(self, message: str = "too old resource version") -> None:
        super().__init__(message, retry_after=0.0)


class APINotFound(PermanentError):
    """The object does not exist (HTTP 404)."""


class APIConflict(RetryableError):
    """The object changed since it was read (HTTP 409): read it again and retry."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retry_after=0.0)


class ObjectAPI(Protocol):
    """The calls controllers make."""

    async def list(self, ref: ResourceRef, *, label_selector: str | None = None) -> ListResult: ...

    def watch(
        self, ref: ResourceRef, resource_version: str, *, label_selector: str | None = None
    ) -> AsyncIterator[WatchEvent]:
        """Changes after ``resource_version``; with a selector, an object that starts matching
        arrives as ``ADDED`` and one that stops matching as ``DELETED``, as Kubernetes does."""
        ...

    async def get(self, ref: ResourceRef, name: str) -> Body: ...

    async def create(self, ref: ResourceRef, body: Mapping[str, Any]) -> Body: ...

    async def update(self, ref: ResourceRef, body: Mapping[str, Any]) -> Body: ...

    async def update_status(self, ref: ResourceRef, body: Mapping[str, Any]) -> Body: ...

    async def delete(self, ref: ResourceRef, name: str) -> None: ...


def object_key(body: Mapping[str, Any]) -> str:
    """``namespace/name`` (or ``name`` for cluster-scoped objects), as client-go's cache keys."""
    metadata = body.get("metadata", {})
    namespace, name = metadata.get("namespace"), metadata.get("name", "")
    return f"{namespace}/{name}" if namespace else str(name)
