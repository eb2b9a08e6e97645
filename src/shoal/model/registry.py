"""Every kind shoal knows, by ``apiVersion`` and ``kind``."""

from __future__ import annotations

import difflib

from shoal.model.apps import ReplicaSet
from shoal.model.core import ConfigMap, Deployment, Event, Namespace, Pod, Secret, Service
from shoal.model.discovery import EndpointSlice
from shoal.model.loadtest import LoadTest
from shoal.model.meta import KubeObject
from shoal.model.patterns import ReplicatedService, ShardedService

__all__ = ["ALL_KINDS", "UnknownKind", "kind_for"]

ALL_KINDS: tuple[type[KubeObject], ...] = (
    Namespace,
    ConfigMap,
    Secret,
    Service,
    Pod,
    Deployment,
    ReplicaSet,
    EndpointSlice,
    Event,
    ReplicatedService,
    ShardedService,
    LoadTest,
)
"""In the order objects are best applied: namespaces and configuration before their users."""

_BY_KIND: dict[str, list[type[KubeObject]]] = {}
for _cls in ALL_KINDS:
    _BY_KIND.setdefault(_cls.INFO.kind, []).append(_cls)


class UnknownKind(LookupError):
    """``apiVersion``/``kind`` names no kind shoal knows; the message suggests what was meant."""


def kind_for(api_version: str, kind: str) -> type[KubeObject]:
    """The class for an ``apiVersion`` and ``kind``, accepting short group aliases."""
    candidates = _BY_KIND.get(kind)
    if not candidates:
        close = difflib.get_close_matches(kind, _BY_KIND, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        known = ", ".join(sorted(_BY_KIND))
        raise UnknownKind(f"unknown kind {kind!r}{hint} (known kinds: {known})")
    for cls in candidates:
        if cls.INFO.accepts_api_version(api_version):
            return cls
    expected = " or ".join(repr(cls.INFO.api_version) for cls in candidates)
    raise UnknownKind(f"kind {kind} is served at apiVersion {expected}, not {api_version!r}")
