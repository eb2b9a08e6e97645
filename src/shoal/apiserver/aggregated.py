"""Aggregated discovery (``apidiscovery.k8s.io/v2``): every group, version and resource in one
answer to ``GET /api`` and one to ``GET /apis``.

kubectl asks for it first (``Accept: application/json;g=apidiscovery.k8s.io;v=v2;
as=APIGroupDiscoveryList,...``) and, when a server answers with the legacy documents instead,
makes one more request per group version (``/api/v1``, ``/apis/apps/v1``...) before every
command whose discovery cache is cold. Answering the aggregated form saves those round trips.

The documents are built from the registry's legacy ones (:class:`~shoal.apiserver.resources.
Registry`), so the two forms list the same resources: a legacy ``plural/sub`` entry becomes a
``subresources`` item of its resource (``status`` answering the resource's own kind, ``scale``
an ``autoscaling/v1`` ``Scale``).
"""

from __future__ import annotations

from typing import Any

from shoal.apiserver.resources import Registry

__all__ = ["MEDIA_TYPES", "aggregated_discovery", "wants_aggregated"]

Body = dict[str, Any]

MEDIA_TYPES = {
    "v2": "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList",
    "v2beta1": "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList",
}
"""The Content-Type of the answer, by the version the client asked for."""


def wants_aggregated(accept: str) -> str | None:
    """The aggregated discovery version the Accept header asks for first (``v2`` or
    ``v2beta1``), or None when it prefers something else (the legacy documents)."""
    for part in accept.split(","):
        pieces = [p.strip() for p in part.split(";")]
        if pieces[0] not in ("application/json", "*/*", "application/*"):
            continue
        params = dict(p.split("=", 1) for p in pieces[1:] if "=" in p)
        if params.get("g") == "apidiscovery.k8s.io" and params.get("as") == (
            "APIGroupDiscoveryList"
        ):
            version = params.get("v")
            if version in MEDIA_TYPES:
                return version
            continue  # a version not served: maybe a later entry
        if "as" not in params:
            return None  # plain JSON comes first: the legacy document
    return None


def _resources(registry: Registry, group: str, version: str) -> list[Body]:
    legacy = registry.resource_list(group, version)
    if legacy is None:
        return []
    out: dict[str, Body] = {}
    for entry in legacy["resources"]:
        name = entry["name"]
        if "/" not in name:
            resource: Body = {
                "resource": name,
                "responseKind": {"group": group, "version": version, "kind": entry["kind"]},
                "scope": "Namespaced" if entry["namespaced"] else "Cluster",
                "singularResource": entry.get("singularName", ""),
                "verbs": entry["verbs"],
            }
            for key in ("shortNames", "categories"):
                if entry.get(key):
                    resource[key] = entry[key]
            out[name] = resource
            continue
        parent, sub = name.split("/", 1)
        owner = out.get(parent)
        if owner is None:
            continue
        owner.setdefault("subresources", []).append(
            {
                "subresource": sub,
                "responseKind": {
                    "group": entry.get("group", group),
                    "version": entry.get("version", version),
                    "kind": entry["kind"],
                },
                "verbs": entry["verbs"],
            }
        )
    return list(out.values())


def aggregated_discovery(registry: Registry, what: str, version: str = "v2") -> Body:
    """The ``APIGroupDiscoveryList`` of ``/api`` (``what="api"``: the core group) or of
    ``/apis`` (``what="apis"``: the named groups, their preferred version first)."""
    items: list[Body] = []
    if what == "api":
        items.append(
            {
                "metadata": {"creationTimestamp": None},
                "versions": [
                    {
                        "version": "v1",
                        "resources": _resources(registry, "", "v1"),
                        "freshness": "Current",
                    }
                ],
            }
        )
    else:
        for group in registry.group_list()["groups"]:
            versions = [v["version"] for v in group["versions"]]
            preferred = group["preferredVersion"]["version"]
            ordered = [preferred] + [v for v in versions if v != preferred]
            items.append(
                {
                    "metadata": {"name": group["name"], "creationTimestamp": None},
                    "versions": [
                        {
                            "version": v,
                            "resources": _resources(registry, group["name"], v),
                            "freshness": "Current",
                        }
                        for v in ordered
                    ],
                }
            )
    return {
        "kind": "APIGroupDiscoveryList",
        "apiVersion": f"apidiscovery.k8s.io/{version}",
        "metadata": {},
        "items": items,
    }
