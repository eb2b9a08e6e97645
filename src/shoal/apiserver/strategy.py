"""The pure rules of writes: what the server sets, keeps and refuses on create, update and delete.

These follow Kubernetes' ``rest.RESTCreateStrategy``/``RESTUpdateStrategy`` and the custom
resource strategy (``apiextensions-apiserver/pkg/registry/customresource/strategy.go``):

* **create**: the server sets ``uid``, ``creationTimestamp`` (RFC 3339, UTC), ``generation: 1``
  and the namespace from the URL; ``generateName`` gets a random 5-character suffix; a kind with
  a status subresource loses the ``status`` it was created with.
* **update** of the main resource keeps the old ``status`` (with a status subresource) and the
  server-set metadata; ``generation`` goes up by one when anything outside ``metadata`` (and
  ``status``, with the subresource) changed.
* **update of /status** changes ``status`` only.
* **deletion**: once ``deletionTimestamp`` is set, no finalizer may be added.

No I/O here: the handlers read the old object, call these, and write the result.
"""

from __future__ import annotations

import copy
import datetime as dt
import os
import secrets
import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any

from shoal.apiserver.records import copy_json
from shoal.apiserver.resources import Resource
from shoal.apiserver.status import APIError, Cause

__all__ = [
    "SERVER_METADATA",
    "already_exists",
    "bad_request",
    "conflict",
    "generated_name",
    "invalid",
    "not_found",
    "now_rfc3339",
    "pod_deletion_grace",
    "prepare_create",
    "prepare_status_update",
    "prepare_update",
    "qualified_resource",
    "spec_changed",
]

Body = dict[str, Any]

SERVER_METADATA = (
    "uid",
    "creationTimestamp",
    "generation",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
)
"""Metadata that only the server sets: an update keeps the stored values."""

_SUFFIX_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # Kubernetes' utilrand alphabet (no vowels)


_last_second: tuple[int, str] = (-1, "")


def now_rfc3339(now: dt.datetime | None = None) -> str:
    """A timestamp as Kubernetes writes it: UTC, second precision, ``Z``."""
    global _last_second  # the text of the current second, formatted once
    if now is not None:
        return now.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    second = int(time.time())
    if _last_second[0] != second:
        moment = dt.datetime.fromtimestamp(second, dt.UTC)
        _last_second = (second, moment.strftime("%Y-%m-%dT%H:%M:%SZ"))
    return _last_second[1]


_random_pool = bytearray()
_random_lock = threading.Lock()


def new_uid() -> str:
    """A random (version 4) UUID, as :func:`uuid.uuid4` makes, from the OS's random bytes read
    256 UUIDs at a time: one ``getrandom`` call per object costs more than the rest of its uid."""
    with _random_lock:
        if not _random_pool:
            _random_pool.extend(os.urandom(16 * 256))
        raw = _random_pool[-16:]
        del _random_pool[-16:]
    return uuid4_text(raw)


def uuid4_text(raw: bytes | bytearray) -> str:
    """``str(uuid.UUID(bytes=raw, version=4))`` (the version and variant bits set), formatted
    directly: the UUID object costs ~5 µs per created object, this ~1."""
    octets = bytearray(raw)
    octets[6] = (octets[6] & 0x0F) | 0x40  # version 4
    octets[8] = (octets[8] & 0x3F) | 0x80  # the RFC 4122 variant
    text = octets.hex()
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


def generated_name(prefix: str) -> str:
    """``prefix`` plus 5 random characters (the prefix is cut so the name fits 63 characters)."""
    suffix = "".join(secrets.choice(_SUFFIX_ALPHABET) for _ in range(5))
    return prefix[: 63 - len(suffix)] + suffix


# -- error bodies, in Kubernetes' words -------------------------------------------------------


def qualified_resource(resource: Resource) -> str:
    """``deployments.apps``, ``configmaps``: how Kubernetes names a resource in messages."""
    group = resource.storage_group
    return f"{resource.plural}.{group}" if group else resource.plural


def not_found(resource: Resource, name: str) -> APIError:
    return APIError(
        "NotFound",
        f'{qualified_resource(resource)} "{name}" not found',
        name=name,
        group=resource.storage_group,
        kind=resource.plural,
    )


def already_exists(resource: Resource, name: str) -> APIError:
    return APIError(
        "AlreadyExists",
        f'{qualified_resource(resource)} "{name}" already exists',
        name=name,
        group=resource.storage_group,
        kind=resource.plural,
    )


def conflict(resource: Resource, name: str, why: str) -> APIError:
    """``Operation cannot be fulfilled on deployments.apps "web": <why>``."""
    return APIError(
        "Conflict",
        f'Operation cannot be fulfilled on {qualified_resource(resource)} "{name}": {why}',
        name=name,
        group=resource.storage_group,
        kind=resource.plural,
    )


def bad_request(message: str) -> APIError:
    return APIError("BadRequest", message)


_CAUSE_TYPES = (
    ("Required value", "FieldValueRequired"),
    ("Unsupported value", "FieldValueNotSupported"),
    ("Forbidden", "FieldValueForbidden"),
    ("Too long", "FieldValueTooLong"),
    ("Too many", "FieldValueTooMany"),
    ("Duplicate value", "FieldValueDuplicate"),
)


def _cause(field: str, message: str) -> Cause:
    kind = next((t for prefix, t in _CAUSE_TYPES if message.startswith(prefix)), None)
    return Cause(kind or "FieldValueInvalid", message, field)


def invalid(resource: Resource, name: str, problems: Iterable[tuple[str, str]]) -> APIError:
    """422 ``Invalid`` listing ``(field path, message)`` problems as causes."""
    causes = [_cause(field, message) for field, message in problems]
    texts = [f"{c.field}: {c.message}" if c.field else c.message for c in causes]
    summary = texts[0] if len(texts) == 1 else "[" + ", ".join(texts) + "]"
    group = resource.storage_group
    kind = f"{resource.kind}.{group}" if group else resource.kind
    return APIError(
        "Invalid",
        f'{kind} "{name}" is invalid: {summary}',
        name=name,
        group=group,
        kind=resource.kind,
        causes=causes,
    )


def split_problem(text: str) -> tuple[str, str]:
    """``"spec.replicas: must be >= 0"`` as ``("spec.replicas", "must be >= 0")``."""
    field, separator, message = text.partition(": ")
    if not separator or " " in field or field == "<root>":
        return ("", message if separator else text)
    return field, message


# -- create -----------------------------------------------------------------------------------


def prepare_create(
    resource: Resource, body: Body, *, namespace: str | None, now: str, owned: bool = False
) -> Body:
    """The object to store for a create (before validation); raises BadRequest on a bad request.

    ``body`` is left as it was, unless ``owned`` says the caller gives it up (a request's own
    parsed body): then it becomes the result, which spares a copy."""
    obj: Body = body if owned else copy_json(body)
    # Kubernetes takes the endpoint's apiVersion and kind when the body leaves them out.
    obj.setdefault("apiVersion", resource.api_version)
    obj.setdefault("kind", resource.kind)
    metadata = obj.setdefault("metadata", {})
    if not isinstance(metadata, dict):
        raise bad_request("metadata: must be an object")
    if resource.namespaced:
        given = metadata.get("namespace")
        if given not in (None, "", namespace):
            raise bad_request(
                "the namespace of the provided object does not match the namespace sent on the "
                "request"
            )
        metadata["namespace"] = namespace
    else:
        metadata.pop("namespace", None)
    if metadata.get("resourceVersion"):
        raise bad_request("resourceVersion should not be set on objects to be created")
    if not metadata.get("name") and isinstance(metadata.get("generateName"), str):
        metadata["name"] = generated_name(metadata["generateName"])
    for key in ("deletionTimestamp", "deletionGracePeriodSeconds", "selfLink"):
        metadata.pop(key, None)
    metadata["uid"] = new_uid()
    metadata["creationTimestamp"] = now
    metadata["generation"] = 1
    if resource.status_subresource:
        obj.pop("status", None)
    return obj


# -- update -----------------------------------------------------------------------------------


def _desired_part(obj: Mapping[str, Any], resource: Resource) -> dict[str, Any]:
    skip = {"metadata", "apiVersion", "kind"}
    if resource.status_subresource:
        skip.add("status")
    return {key: value for key, value in obj.items() if key not in skip}


def spec_changed(resource: Resource, old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    """Whether ``generation`` must go up: anything outside metadata (and status) changed."""
    return _desired_part(old, resource) != _desired_part(new, resource)


def prepare_update(
    resource: Resource, old: Mapping[str, Any], body: Body, *, owned: bool = False
) -> Body:
    """The object to store for an update of the main resource (before validation); ``owned`` as
    for :func:`prepare_create`."""
    obj: Body = body if owned else copy_json(body)
    obj.setdefault("apiVersion", resource.api_version)
    obj.setdefault("kind", resource.kind)
    metadata = obj.setdefault("metadata", {})
    if not isinstance(metadata, dict):
        raise bad_request("metadata: must be an object")
    old_metadata = old.get("metadata", {})
    name = old_metadata.get("name")
    if metadata.get("name") not in (None, name):
        raise bad_request(
            f"the name of the object ({metadata.get('name')}) does not match the name on the URL "
            f"({name})"
        )
    metadata["name"] = name
    if resource.namespaced:
        if metadata.get("namespace") not in (None, "", old_metadata.get("namespace")):
            raise bad_request(
                "the namespace of the provided object does not match the namespace sent on the "
                "request"
            )
        metadata["namespace"] = old_metadata.get("namespace")
    else:
        metadata.pop("namespace", None)
    metadata.pop("generateName", None)
    if "generateName" in old_metadata:
        metadata["generateName"] = old_metadata["generateName"]
    for key in SERVER_METADATA:
        if key in old_metadata:
            metadata[key] = old_metadata[key]
        else:
            metadata.pop(key, None)
    metadata.pop("selfLink", None)
    if resource.status_subresource:
        if "status" in old:
            obj["status"] = copy.deepcopy(old["status"])
        else:
            obj.pop("status", None)
    check_finalizers(resource, old, obj)
    if spec_changed(resource, old, obj):
        metadata["generation"] = int(old_metadata.get("generation") or 0) + 1
    return obj


def prepare_status_update(old: Mapping[str, Any], body: Mapping[str, Any]) -> Body:
    """The object to store for an update of ``/status``: the old object with the new status."""
    obj: Body = copy_json(dict(old))
    if "status" in body:
        obj["status"] = copy_json(body["status"])
    else:
        obj.pop("status", None)
    return obj


def check_finalizers(resource: Resource, old: Mapping[str, Any], new: Mapping[str, Any]) -> None:
    """Refuse new finalizers on an object being deleted (422, as Kubernetes)."""
    old_metadata = old.get("metadata", {})
    if not old_metadata.get("deletionTimestamp"):
        return
    before = set(old_metadata.get("finalizers") or ())
    added = [f for f in new.get("metadata", {}).get("finalizers") or () if f not in before]
    if added:
        raise invalid(
            resource,
            str(old_metadata.get("name")),
            [
                (
                    "metadata.finalizers",
                    f"Forbidden: no new finalizers can be added if the object is being deleted, "
                    f"found new finalizers {added}",
                )
            ],
        )


def pod_deletion_grace(
    pod: Mapping[str, Any], requested: int | None, now: dt.datetime | None = None
) -> tuple[int, Body | None]:
    """Graceful deletion of a Pod, as Kubernetes' pod strategy (``CheckGracefulDelete``) does it.

    Returns ``(grace, metadata)``: ``grace`` is the period in seconds; when it is above zero the
    pod is kept, and ``metadata`` is the pod's metadata with ``deletionTimestamp`` (now plus the
    grace) and ``deletionGracePeriodSeconds`` set; its node stops the containers and then
    deletes it with ``gracePeriodSeconds=0``. ``metadata`` is None when nothing is to be written
    (delete now, or a pod already terminating with a shorter or equal grace).

    A pod never bound to a node (no ``spec.nodeName``) or already finished (``Succeeded`` or
    ``Failed``) has nothing to stop: grace 0. Otherwise the grace is the DELETE's
    ``gracePeriodSeconds`` or the pod's ``terminationGracePeriodSeconds`` (default 30). A second
    DELETE may shorten the grace, never lengthen it.
    """
    spec = pod.get("spec") or {}
    phase = (pod.get("status") or {}).get("phase")
    if not spec.get("nodeName") or phase in ("Succeeded", "Failed"):
        return 0, None
    grace = requested
    if grace is None:
        grace = int(spec.get("terminationGracePeriodSeconds", 30))
    grace = max(grace, 0)
    metadata = copy.deepcopy(dict(pod.get("metadata") or {}))
    current = metadata.get("deletionGracePeriodSeconds")
    if metadata.get("deletionTimestamp") and current is not None and int(current) <= grace:
        return int(current), None
    if grace == 0:
        return 0, None
    moment = (now or dt.datetime.now(dt.UTC)) + dt.timedelta(seconds=grace)
    metadata["deletionTimestamp"] = now_rfc3339(moment)
    metadata["deletionGracePeriodSeconds"] = grace
    return grace, metadata
