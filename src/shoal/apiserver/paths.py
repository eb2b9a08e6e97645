"""Kubernetes URL paths, parsed into what a request is about.

::

    /api                                     APIVersions
    /api/v1                                  APIResourceList of the core group
    /apis                                    APIGroupList
    /apis/G                                  APIGroup
    /apis/G/V                                APIResourceList
    <gv>/PLURAL                              a collection (cluster-wide for a namespaced kind)
    <gv>/PLURAL/NAME[/SUB]                   a cluster-scoped object (and its subresource)
    <gv>/namespaces/NS/PLURAL                a namespaced collection
    <gv>/namespaces/NS/PLURAL/NAME[/SUB]     a namespaced object (and its subresource)

``/api/v1/namespaces/NAME/status`` is the namespace's own subresource: with three segments after
``namespaces``, the third is a resource only if the group version serves one by that name.
Pure: the registry is asked which plurals exist, nothing else.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Discovery", "ObjectPath", "parse_path"]


@dataclass(frozen=True, slots=True)
class Discovery:
    """A discovery document: ``what`` is ``api``, ``apis``, ``group`` or ``resources``."""

    what: str
    group: str = ""
    version: str = ""


@dataclass(frozen=True, slots=True)
class ObjectPath:
    """A collection or an object of a resource (``name`` None for a collection)."""

    group: str
    version: str
    plural: str
    namespace: str | None = None
    name: str | None = None
    subresource: str | None = None


def _segments(path: str) -> list[str] | None:
    parts = path.split("/")
    if parts[0] != "":
        return None
    parts = parts[1:]
    if parts and parts[-1] == "":
        parts = parts[:-1]
    if any(p == "" for p in parts):
        return None
    return parts


def parse_path(
    path: str, is_resource: Callable[[str, str, str], bool]
) -> Discovery | ObjectPath | None:
    """What ``path`` names, or None when it names nothing the API serves (404).

    ``is_resource(group, version, plural)`` says whether a plural is served at a group version.
    """
    parts = _segments(path)
    if not parts:
        return None
    if parts[0] == "api":
        if len(parts) == 1:
            return Discovery("api")
        if parts[1] != "v1":
            return None
        group, version, rest = "", "v1", parts[2:]
    elif parts[0] == "apis":
        if len(parts) == 1:
            return Discovery("apis")
        if len(parts) == 2:
            return Discovery("group", parts[1])
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return None
    if not rest:
        return Discovery("resources", group, version)
    if rest[0] == "namespaces" and len(rest) >= 3:
        namespaced = len(rest) >= 4 or is_resource(group, version, rest[2])
        if namespaced:
            if len(rest) > 5:
                return None
            return ObjectPath(
                group,
                version,
                rest[2],
                namespace=rest[1],
                name=rest[3] if len(rest) >= 4 else None,
                subresource=rest[4] if len(rest) == 5 else None,
            )
    if len(rest) > 3:
        return None
    return ObjectPath(
        group,
        version,
        rest[0],
        name=rest[1] if len(rest) >= 2 else None,
        subresource=rest[2] if len(rest) == 3 else None,
    )
