"""OpenAPI v3: the index at ``/openapi/v3`` and one document per group version.

kubectl reads these for two things: to learn that the server validates fields itself (a PATCH
operation tagged with the kind's ``x-kubernetes-group-version-kind`` that takes a
``fieldValidation`` query parameter; then it sends ``fieldValidation=Strict`` instead of
validating on the client), and for ``kubectl explain`` (the schema tagged with the kind).

Schemas come from the models (:func:`shoal.kube.crds.openapi_schema`) and from the CRDs'
``openAPIV3Schema``. Documents are cached per registry state; the index's ``hash`` changes when
a CRD changes what is served, so clients refetch.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from functools import lru_cache
from typing import Any

from shoal.apiserver.resources import Registry, Resource
from shoal.apiserver.status import APIError
from shoal.kube.crds import openapi_schema
from shoal.model.meta import KubeObject

__all__ = ["answer", "document", "index"]

Body = dict[str, Any]

_QUERY_PARAMETERS = {
    "dryRun": "When present, indicates that modifications should not be persisted (All).",
    "fieldManager": "A name associated with the actor or entity that is making these changes.",
    "fieldValidation": "How the server treats unknown fields: Ignore, Warn (default) or Strict.",
}
_LIST_PARAMETERS = (
    "labelSelector",
    "fieldSelector",
    "limit",
    "continue",
    "resourceVersion",
    "resourceVersionMatch",
    "watch",
    "allowWatchBookmarks",
    "sendInitialEvents",
    "timeoutSeconds",
)


def _group_versions(registry: Registry) -> dict[str, list[Resource]]:
    out: dict[str, list[Resource]] = {}
    for resource in registry:
        prefix = f"apis/{resource.group}/{resource.version}" if resource.group else "api/v1"
        out.setdefault(prefix, []).append(resource)
    return out


def _schema_name(resource: Resource) -> str:
    group = ".".join(reversed(resource.group.split("."))) if resource.group else "core"
    return f"{group}.{resource.version}.{resource.kind}"


@lru_cache(maxsize=64)
def _model_schema(model: type[KubeObject]) -> str:
    return json.dumps(openapi_schema(model))


def _schema(resource: Resource) -> Body:
    if resource.model is not None:
        schema: Body = json.loads(_model_schema(resource.model))
    elif resource.schema is not None:
        schema = json.loads(json.dumps(resource.schema))
    else:
        schema = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    schema["x-kubernetes-group-version-kind"] = [
        {"group": resource.group, "version": resource.version, "kind": resource.kind}
    ]
    return schema


def _parameters(names: Iterable[str]) -> list[Body]:
    return [
        {
            "name": name,
            "in": "query",
            "description": _QUERY_PARAMETERS.get(name, name),
            "schema": {"type": "string"},
            "uniqueItems": True,
        }
        for name in names
    ]


def _operation(resource: Resource, action: str, ref: str, parameters: Iterable[str]) -> Body:
    return {
        "description": f"{action} {resource.kind}",
        "operationId": f"{action}{resource.kind}",
        "parameters": _parameters(parameters),
        "responses": {
            "200": {
                "description": "OK",
                "content": {"application/json": {"schema": {"$ref": ref}}},
            }
        },
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": {
            "group": resource.group,
            "version": resource.version,
            "kind": resource.kind,
        },
    }


def _paths(resource: Resource, prefix: str) -> Body:
    ref = f"#/components/schemas/{_schema_name(resource)}"
    base = f"/{prefix}/namespaces/{{namespace}}/" if resource.namespaced else f"/{prefix}/"
    collection = base + resource.plural
    item = collection + "/{name}"
    writes = tuple(_QUERY_PARAMETERS)
    paths: Body = {
        collection: {
            "get": _operation(resource, "list", ref, _LIST_PARAMETERS),
            "post": _operation(resource, "post", ref, writes),
            "delete": _operation(resource, "deletecollection", ref, ("labelSelector", "dryRun")),
        },
        item: {
            "get": _operation(resource, "get", ref, ()),
            "put": _operation(resource, "put", ref, writes),
            "patch": _operation(resource, "patch", ref, (*writes, "force")),
            "delete": _operation(resource, "delete", ref, ("dryRun", "propagationPolicy")),
        },
    }
    if resource.status_subresource:
        paths[item + "/status"] = {
            "get": _operation(resource, "get", ref, ()),
            "put": _operation(resource, "put", ref, writes),
            "patch": _operation(resource, "patch", ref, (*writes, "force")),
        }
    return paths


def _fingerprint(resources: list[Resource]) -> str:
    parts = [
        (r.group, r.version, r.plural, r.kind, r.namespaced, json.dumps(r.schema, sort_keys=True))
        for r in resources
    ]
    return json.dumps(parts)


_CACHE: dict[tuple[str, str], tuple[str, Body]] = {}


def document(registry: Registry, prefix: str) -> tuple[str, Body] | None:
    """``(hash, document)`` for ``api/v1`` or ``apis/G/V``; None if nothing is served there."""
    resources = _group_versions(registry).get(prefix)
    if not resources:
        return None
    key = (prefix, _fingerprint(resources))
    cached = _CACHE.get(key)
    if cached is not None:
        return cached
    paths: Body = {}
    schemas: Body = {}
    for resource in resources:
        paths.update(_paths(resource, prefix))
        schemas[_schema_name(resource)] = _schema(resource)
    doc: Body = {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.37.0-shoal"},
        "paths": paths,
        "components": {"schemas": schemas},
    }
    digest = hashlib.sha512(json.dumps(doc, sort_keys=True).encode()).hexdigest().upper()
    if len(_CACHE) > 256:
        _CACHE.clear()
    _CACHE[key] = (digest, doc)
    return digest, doc


def index(registry: Registry) -> Body:
    """``GET /openapi/v3``: where each group version's document is, with its hash."""
    paths: Body = {}
    for prefix in _group_versions(registry):
        found = document(registry, prefix)
        if found is not None:
            paths[prefix] = {"serverRelativeURL": f"/openapi/v3/{prefix}?hash={found[0]}"}
    return {"paths": paths}


def answer(registry: Registry, path: str) -> Body:
    """The body for a GET of ``path`` under ``/openapi/v3``; 404 Status for anything else."""
    rest = path[len("/openapi/v3") :].strip("/")
    if not rest:
        return index(registry)
    found = document(registry, rest)
    if found is None:
        raise APIError("NotFound", "the server could not find the requested resource")
    return found[1]
