"""
The proxy's runtime configuration: plain frozen values that :class:`shoal.dataplane.runtime.Proxy`
is built from and swapped to.

This is what embedders (the one-machine cluster's service proxy, the shard router) construct in
Python; ``shoal proxy --config`` turns the YAML ``ProxyConfig`` (:mod:`shoal.model.proxy`) into
one (:mod:`shoal.dataplane.configfile`). Everything is checked by :meth:`RuntimeConfig.validate`
(also called by ``Proxy`` before it builds or swaps anything), so a bad configuration is refused
whole and the running one stays.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Final

from shoal.dataplane.balancing import POLICIES
from shoal.dataplane.hashing import ALGORITHMS, HashingSettings
from shoal.dataplane.health import (
    ActiveCheckSettings,
    OutlierSettings,
    PendingSettings,
    RetrySettings,
)

__all__ = [
    "HASH_SOURCES",
    "BackendConfig",
    "HashKey",
    "ListenerConfig",
    "RouteConfig",
    "RuntimeConfig",
    "ShardConfig",
    "split_address",
]

HASH_SOURCES: Final = ("path", "header", "cookie", "client-address")
"""What a ``hash`` policy can hash (see :class:`HashKey`)."""


def split_address(text: str) -> tuple[str, int]:
    """``host:port`` (``[v6]:port`` too) as ``(host, port)``; ValueError says what is wrong."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"expected HOST:PORT, got {text!r}")
    return host.strip("[]"), int(port)


@dataclass(frozen=True, slots=True)
class BackendConfig:
    """One upstream endpoint."""

    address: str
    """``host:port``."""
    weight: int = 1
    """Relative share of requests (a positive integer)."""


@dataclass(frozen=True, slots=True)
class ShardConfig:
    """One shard of a sharded route: a name the hasher knows and its replicas."""

    name: str
    backends: tuple[BackendConfig, ...] = ()
    """May be empty for a while (a Service without ready endpoints): its keys get 503."""


@dataclass(frozen=True, slots=True)
class HashKey:
    """What the ``hash`` policy hashes.

    ``path``: the request path (without the query), or the first capture group of ``regexp`` over
    it; ``header``/``cookie``: the value of the one named ``name``; ``client-address``: the
    client's IP address. A request without the key is balanced at random.
    """

    source: str = "path"
    """One of :data:`HASH_SOURCES`."""
    name: str = ""
    """The header or cookie name."""
    regexp: str | None = None
    """For ``path``: hash the first capture group (or the whole match) instead of the path."""


@dataclass(frozen=True, slots=True)
class RouteConfig:
    """Requests whose target starts with ``path_prefix`` go to ``backends`` or to ``shards``.

    The longest matching prefix wins among a listener's routes.
    """

    name: str
    path_prefix: str = "/"
    backends: tuple[BackendConfig, ...] = ()
    """The replicas (for a route without shards)."""
    shards: tuple[ShardConfig, ...] = ()
    """When given, the route is sharded: key by ``shard_regexp``, hash to a shard, balance."""
    shard_regexp: str | None = None
    """The shard key is its first capture group over the path (the whole path when None)."""
    hashing: HashingSettings = field(default_factory=HashingSettings)
    """How shard keys map to shards."""
    policy: str = "round-robin"
    """How replicas (of the route, or of a shard) share requests: one of ``balancing.POLICIES``."""
    hash_key: HashKey = field(default_factory=HashKey)
    """For ``policy="hash"`` on a route without shards."""
    health: ActiveCheckSettings | None = None
    """Active health checks; None: every endpoint takes traffic unless ejected."""
    outlier: OutlierSettings = field(default_factory=OutlierSettings)
    """Passive ejection after consecutive failures."""
    retry: RetrySettings = field(default_factory=RetrySettings)
    """Retries on another endpoint."""
    pending: PendingSettings = field(default_factory=PendingSettings)
    """Per-endpoint concurrency and queue limits."""

    @property
    def sharded(self) -> bool:
        return bool(self.shards)

    def addresses(self) -> Iterator[str]:
        """Every endpoint address of the route (shards included)."""
        for backend in self.backends:
            yield backend.address
        for shard in self.shards:
            for backend in shard.backends:
                yield backend.address


@dataclass(frozen=True, slots=True)
class ListenerConfig:
    """A listening socket and its routes. Listeners are told apart by ``name``."""

    name: str
    port: int
    """0 picks a free port (see ``Proxy.address``)."""
    routes: tuple[RouteConfig, ...]
    host: str = "127.0.0.1"
    """The address to bind (a Service's clusterIP, a pod IP, ``0.0.0.0``)."""


@dataclass(frozen=True, slots=True)
class RuntimeConfig:
    """A whole proxy configuration."""

    listeners: tuple[ListenerConfig, ...] = ()
    admin: tuple[str, int] | None = None
    """Where to serve ``/healthz`` and ``/metrics`` (None: no admin listener)."""

    def validate(self) -> None:
        """Raise ValueError naming every problem (``listeners[0].routes[1].policy: ...``)."""
        problems = list(self._problems())
        if problems:
            raise ValueError("invalid proxy configuration:\n" + "\n".join(problems))

    def _problems(self) -> Iterator[str]:
        names: set[str] = set()
        for i, listener in enumerate(self.listeners):
            where = f"listeners[{i}]"
            if listener.name in names:
                yield f"{where}.name: Duplicate value: {listener.name!r}"
            names.add(listener.name)
            if not 0 <= listener.port <= 65535:
                yield f"{where}.port: must be between 0 and 65535, got {listener.port}"
            routes: set[str] = set()
            for j, route in enumerate(listener.routes):
                yield from _route_problems(route, f"{where}.routes[{j}]", routes)
        if self.admin is not None and not 0 <= self.admin[1] <= 65535:
            yield f"admin: port must be between 0 and 65535, got {self.admin[1]}"


def _route_problems(route: RouteConfig, where: str, seen: set[str]) -> Iterator[str]:
    if route.name in seen:
        yield f"{where}.name: Duplicate value: {route.name!r}"
    seen.add(route.name)
    if not route.path_prefix.startswith("/"):
        yield f"{where}.pathPrefix: must start with '/', got {route.path_prefix!r}"
    if route.policy not in POLICIES:
        yield f"{where}.policy: must be one of {list(POLICIES)}, got {route.policy!r}"
    if route.backends and route.shards:
        yield f"{where}: must specify exactly one of: `backends` or `shards`"
    if route.hashing.algorithm not in ALGORITHMS:
        yield f"{where}.hashing.algorithm: must be one of {list(ALGORITHMS)}"
    if route.hash_key.source not in HASH_SOURCES:
        yield f"{where}.hashKey.source: must be one of {list(HASH_SOURCES)}"
    if route.hash_key.source in ("header", "cookie") and not route.hash_key.name:
        yield f"{where}.hashKey.name: Required value: the {route.hash_key.source} to hash"
    for label, pattern in (("shardRegexp", route.shard_regexp), ("hashKey", route.hash_key.regexp)):
        if pattern is not None:
            try:
                re.compile(pattern)
            except re.error as error:
                yield f"{where}.{label}: Invalid value: {pattern!r}: {error}"
    shard_names: set[str] = set()
    for k, shard in enumerate(route.shards):
        if shard.name in shard_names:
            yield f"{where}.shards[{k}].name: Duplicate value: {shard.name!r}"
        shard_names.add(shard.name)
    backends = [*route.backends, *(b for s in route.shards for b in s.backends)]
    for backend in backends:
        try:
            split_address(backend.address)
        except ValueError as error:
            yield f"{where}: backend {error}"
        if backend.weight < 1:
            yield f"{where}: backend {backend.address} weight must be a positive integer"
