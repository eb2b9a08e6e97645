"""The ``/scale`` subresource: an ``autoscaling/v1`` ``Scale`` view of a kind's replica count.

Pure functions (object in, object out); the HTTP layer reads and writes the object through
the service, as for any patch, so a scale write is a compare-and-swap like every other write.

* :func:`scale_of` builds the ``Scale`` of an object from the kind's
  :class:`~shoal.apiserver.resources.ScalePaths` (``.spec.replicas``, ``.status.replicas``
  and the label selector, which ``status.selector`` shows in its string form, as ``kubectl
  get --selector`` takes it).
* :func:`with_replicas` writes a ``Scale``'s ``spec.replicas`` back into the object; a
  ``metadata.resourceVersion`` in the ``Scale`` is a precondition, as in Kubernetes.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from shoal.apiserver.resources import Resource, ScalePaths
from shoal.apiserver.status import APIError, Cause

__all__ = ["scale_of", "selector_string", "with_replicas"]

Body = dict[str, Any]


def _paths(resource: Resource) -> ScalePaths:
    if resource.scale is None:
        raise APIError("NotFound", "the server could not find the requested resource")
    return resource.scale


def _segments(path: str) -> list[str]:
    return [part for part in path.split(".") if part]


def _get(obj: Mapping[str, Any], path: str) -> Any:
    value: Any = obj
    for part in _segments(path):
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


def _set(obj: Body, path: str, value: Any) -> None:
    parts = _segments(path)
    target = obj
    for part in parts[:-1]:
        child = target.get(part)
        if not isinstance(child, dict):
            child = {}
            target[part] = child
        target = child
    target[parts[-1]] = value


def selector_string(selector: Any) -> str:
    """A label selector (object or string) in the string form Kubernetes prints."""
    if isinstance(selector, str):
        return selector
    if not isinstance(selector, Mapping):
        return ""
    parts: list[tuple[str, str]] = []
    for key, value in (selector.get("matchLabels") or {}).items():
        parts.append((key, f"{key}={value}"))
    for requirement in selector.get("matchExpressions") or ():
        key = requirement.get("key", "")
        operator = requirement.get("operator", "")
        values = ",".join(sorted(requirement.get("values") or ()))
        text = {
            "In": f"{key} in ({values})",
            "NotIn": f"{key} notin ({values})",
            "Exists": key,
            "DoesNotExist": f"!{key}",
        }.get(operator, "")
        parts.append((key, text))
    return ",".join(text for _, text in sorted(parts))


def scale_of(resource: Resource, obj: Mapping[str, Any]) -> Body:
    """The ``Scale`` of ``obj``."""
    paths = _paths(resource)
    metadata = obj.get("metadata") or {}
    scale_meta = {
        key: metadata[key]
        for key in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
        if key in metadata
    }
    spec: Body = {}
    replicas = _get(obj, paths.spec_replicas)
    if isinstance(replicas, int) and replicas:
        spec["replicas"] = replicas
    status: Body = {"replicas": 0}
    observed = _get(obj, paths.status_replicas)
    if isinstance(observed, int):
        status["replicas"] = observed
    if paths.label_selector is not None:
        selector = selector_string(_get(obj, paths.label_selector))
        if selector:
            status["selector"] = selector
    return {
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": scale_meta,
        "spec": spec,
        "status": status,
    }


def _invalid(name: str, field: str, message: str, cause: str = "FieldValueInvalid") -> APIError:
    return APIError(
        "Invalid",
        f'Scale.autoscaling "{name}" is invalid: {field}: {message}',
        name=name,
        group="autoscaling",
        kind="Scale",
        causes=[Cause(cause, message, field)],
    )


def with_replicas(resource: Resource, obj: Mapping[str, Any], scale: Any) -> Body:
    """``obj`` with the replica count of ``scale`` (a ``Scale`` as a client sent it)."""
    paths = _paths(resource)
    name = str((obj.get("metadata") or {}).get("name", ""))
    if not isinstance(scale, dict):
        raise APIError("BadRequest", "the Scale must be a JSON object")
    kind = scale.get("kind")
    if kind not in (None, "Scale"):
        raise APIError("BadRequest", f'the kind in the data ({kind}) does not match "Scale"')
    metadata = scale.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise APIError("BadRequest", "metadata must be an object")
    if metadata.get("name") not in (None, "", name):
        raise APIError(
            "BadRequest",
            f"the name of the Scale ({metadata['name']}) does not match the name in the URL "
            f"({name})",
        )
    spec = scale.get("spec") or {}
    if not isinstance(spec, dict):
        raise _invalid(name, "spec", "Invalid value: must be an object")
    replicas = spec.get("replicas", 0)
    if isinstance(replicas, bool) or not isinstance(replicas, int):
        raise _invalid(name, "spec.replicas", f"Invalid value: {replicas!r}: must be an integer")
    if replicas < 0:
        raise _invalid(
            name, "spec.replicas", f"Invalid value: {replicas}: must be greater than or equal to 0"
        )
    if replicas > 2**31 - 1:
        raise _invalid(name, "spec.replicas", f"Invalid value: {replicas}: must fit in int32")
    updated: Body = copy.deepcopy(dict(obj))
    _set(updated, paths.spec_replicas, replicas)
    given = metadata.get("resourceVersion")
    if given not in (None, ""):
        # The service refuses the write with 409 when this is not the current version.
        updated.setdefault("metadata", {})["resourceVersion"] = str(given)
    return updated
