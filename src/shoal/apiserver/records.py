"""
What the store holds and returns: keys, object versions, events, pages and writes.

Key format
----------
``/registry/<group>/<resource>/<namespace>/<name>`` for a namespaced object and
``/registry/<group>/<resource>/<name>`` for a cluster-scoped one. ``<group>`` is the API group, with
the core group (``""``) spelled ``core`` (no other group can be: they contain a dot); ``<resource>``
is the plural resource name. A collection's prefix ends in ``/``, so ``.../pods/ns1/`` never
matches ``ns10``. Versions are not in the key: an object is stored once, in one version.

Records are frozen: an object's body is kept as the JSON text that was stored (``raw``), and
``value`` decodes a fresh dict on each access, so one event can be handed to many watchers.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

try:
    import orjson
except ImportError:  # pragma: no cover - a runtime dependency; the json module says the same
    orjson = None  # type: ignore[assignment]

__all__ = [
    "Create",
    "Delete",
    "Entry",
    "Event",
    "EventType",
    "Page",
    "Update",
    "Write",
    "collection_key",
    "copy_json",
    "dumps",
    "encode",
    "loads",
    "object_key",
    "prefix_bounds",
]


def _check_segment(kind: str, value: str) -> str:
    if not value or "/" in value or value in {".", ".."} or "\x00" in value:
        raise ValueError(f"{kind} {value!r} must be non-empty and must not contain '/'")
    return value


def collection_key(group: str, resource: str, namespace: str | None = None) -> str:
    """The key prefix of a collection, ending in ``/``: ``/registry/<group>/<resource>/[<ns>/]``.

    The core group (``""``) is spelled ``core``, which no other API group can be (they contain
    a dot). Without ``namespace``, the prefix covers every namespace of a namespaced resource.
    """
    parts = ["", "registry", _check_segment("group", group or "core")]
    parts.append(_check_segment("resource", resource))
    if namespace is not None:
        parts.append(_check_segment("namespace", namespace))
    return "/".join(parts) + "/"


def object_key(group: str, resource: str, name: str, namespace: str | None = None) -> str:
    """The key of one object: ``/registry/<group>/<resource>/[<namespace>/]<name>``."""
    return collection_key(group, resource, namespace) + _check_segment("name", name)


def prefix_bounds(prefix: str) -> tuple[str, str | None]:
    """The key range ``[low, high)`` holding exactly the keys that start with ``prefix``."""
    if not prefix:
        return "", None
    return prefix, prefix[:-1] + chr(ord(prefix[-1]) + 1)


class EventType(StrEnum):
    """What a log row did to its key, in Kubernetes watch-event words."""

    ADDED = "ADDED"
    MODIFIED = "MODIFIED"
    DELETED = "DELETED"


_SCALARS = (str, int, float, bool, type(None))


def copy_json(value: Any) -> Any:
    """A deep copy of JSON data (dicts, lists and scalars), several times faster than
    :func:`copy.deepcopy`, which it falls back to for anything else."""
    kind = type(value)
    if kind is dict:
        return {key: copy_json(item) for key, item in value.items()}
    if kind is list:
        return [copy_json(item) for item in value]
    if kind in _SCALARS:
        return value
    return copy.deepcopy(value)


def loads(text: str, parse_constant: Callable[[str], Any] | None = None) -> Any:
    """:func:`json.loads`, through orjson (2-3 times faster) when it is installed.

    Anything orjson refuses goes to :func:`json.loads`, which decides as it always did: lone
    surrogates are read, ``NaN``/``Infinity`` go to ``parse_constant``, and invalid JSON raises
    its usual :class:`ValueError` (so error messages are unchanged). orjson reads integers
    beyond 64 bits as floats, so a text with a run of 19 digits goes to :func:`json.loads` too,
    which keeps them exact. Duplicate keys keep the last value either way."""
    if orjson is not None and _LONG_DIGITS.search(text) is None:
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError:
            pass
    return json.loads(text, parse_constant=parse_constant)


_LONG_DIGITS = re.compile(r"[0-9]{19}")


if orjson is not None:
    # datetimes, dataclasses and subclasses of str/int/dict/list go to json.dumps, which
    # renders them (or refuses them) as it always did; orjson would render them its own way.
    _ORJSON_OPTIONS = (
        orjson.OPT_PASSTHROUGH_DATETIME
        | orjson.OPT_PASSTHROUGH_DATACLASS
        | orjson.OPT_PASSTHROUGH_SUBCLASS
    )


def dumps(value: Any) -> str:
    """Compact JSON text of ``value`` (UTF-8 characters unescaped; ``NaN`` and infinities are
    not JSON: :class:`ValueError`), through orjson when it is installed.

    orjson writes NaN and infinities as ``null``, so a text containing ``null`` is made again by
    :func:`json.dumps`, which refuses them; so is everything orjson refuses (integers beyond 64
    bits, non-string keys, the types above). Stored objects rarely hold a ``null``."""
    if orjson is not None:
        try:
            data = orjson.dumps(value, option=_ORJSON_OPTIONS)
        except TypeError:
            pass
        else:
            if b"null" not in data:
                return data.decode()
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _decode(raw: str) -> dict[str, Any]:
    value = loads(raw)
    assert isinstance(value, dict)
    return value


@dataclass(frozen=True, slots=True)
class Entry:
    """One stored object: its JSON text, its revision (resourceVersion) and creation revision.

    The body is stored exactly as written; the server sets ``metadata.resourceVersion`` to
    ``str(revision)`` on the way out.
    """

    key: str
    raw: str
    """The object's JSON text, as stored."""
    revision: int
    """The revision of the write that produced this version (for a deleted object: the delete's)."""
    create_revision: int
    """The revision that created the object."""

    @property
    def value(self) -> dict[str, Any]:
        """The object, decoded afresh on every access (the caller owns the dict)."""
        return _decode(self.raw)


@dataclass(frozen=True, slots=True)
class Event:
    """One committed write, as a watcher sees it. DELETED carries the object's last value."""

    type: EventType
    key: str
    raw: str
    """The object's JSON text, as stored."""
    revision: int
    create_revision: int

    @property
    def value(self) -> dict[str, Any]:
        """The object, decoded afresh on every access (the caller owns the dict)."""
        return _decode(self.raw)

    @property
    def entry(self) -> Entry:
        """The object version this event produced."""
        return Entry(self.key, self.raw, self.revision, self.create_revision)


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a list: objects in key order, all as of ``revision``."""

    entries: tuple[Entry, ...]
    revision: int
    """The snapshot revision: the list's resourceVersion, the same for every page of a list."""
    continue_token: str | None
    """Opaque; pass it back to get the next page. None on the last page."""


@dataclass(frozen=True, slots=True)
class Create:
    """Store a new object at ``key`` (:class:`AlreadyExistsError` if one is live there)."""

    key: str
    raw: str


@dataclass(frozen=True, slots=True)
class Update:
    """Replace the object at ``key``; with ``expected_revision``, only if that is still current."""

    key: str
    raw: str
    expected_revision: int | None


@dataclass(frozen=True, slots=True)
class Delete:
    """Delete the object at ``key``; with ``expected_revision``, only if that is still current."""

    key: str
    expected_revision: int | None = None


Write = Create | Update | Delete


def encode(value: Mapping[str, Any]) -> str:
    """The compact JSON text stored for ``value`` (NaN and infinities are not JSON: ValueError).

    ``apiVersion``, ``kind`` and ``metadata`` come first, so a list answer can splice the
    revision into the text instead of decoding it (:func:`item_text`)."""
    if "metadata" in value:
        ordered = {key: value[key] for key in _HEAD if key in value}
        ordered.update(value)  # the head keys keep their places; the others follow in order
        value = ordered
    return dumps(value)


_HEAD = ("apiVersion", "kind", "metadata")
_HEAD_TEXT = re.compile(r'\{"apiVersion":"[^"\\]*","kind":"([^"\\]*)","metadata":\{')


def item_text(raw: str, revision: int, api_version: str) -> str | None:
    """The stored JSON text ``raw`` as a client sees it (``apiVersion`` replaced by the
    request's, ``metadata.resourceVersion`` set to ``revision``), built without decoding it; or
    None when the text does not start with the head :func:`encode` writes, or may already name
    a resourceVersion somewhere (the caller then decodes it)."""
    head = _HEAD_TEXT.match(raw)
    if head is None or '"resourceVersion":' in raw or '"' in api_version or "\\" in api_version:
        return None
    rest = raw[head.end() :]
    comma = "" if rest.startswith("}") else ","
    return (
        f'{{"apiVersion":"{api_version}","kind":"{head.group(1)}",'
        f'"metadata":{{"resourceVersion":"{revision}"{comma}{rest}'
    )
