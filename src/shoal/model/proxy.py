"""The configuration file of shoal's proxy (``shoal proxy --config``), which the shard router uses.

The patterns' compile step writes one for each ShardedService (into a ConfigMap); the data plane
reads it. It is a file format, not an API kind: ``apiVersion``/``kind`` are there to version it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any, Literal

from pydantic import Field, ValidationError

from shoal.errors import InvalidObjectsError, Issue
from shoal.model._base import Check, ShoalModel, iter_issues
from shoal.model._errors import translate
from shoal.model._paths import format_path, raw_segments
from shoal.model.patterns import Hashing
from shoal.model.yamlio import parse_documents

__all__ = [
    "AdminSpec",
    "Backend",
    "HashKeySpec",
    "HealthCheckSpec",
    "LimitsSpec",
    "Listener",
    "OutlierSpec",
    "ProxyConfig",
    "RetrySpec",
    "Route",
    "Shard",
    "proxy_config_from_text",
]

PROXY_API_VERSION = "proxy.shoal.dev/v1"


class Backend(ShoalModel):
    """Where requests go: a fixed ``address`` (host:port), or a Service's endpoints by name."""

    address: str | None = None
    """``host:port``, used as is."""
    service: str | None = None
    """A Service in the proxy's namespace; its ready endpoints are the backends."""
    port: int | None = Field(default=None, ge=1, le=65535)
    """The Service port (with ``service``)."""
    weight: int = Field(default=1, ge=1, le=1000)

    def _checks(self) -> Iterator[Check]:
        if (self.address is None) == (self.service is None):
            yield (), "must specify exactly one of: `address` or `service`"
        if self.service is not None and self.port is None:
            yield ("port",), "Required value: the Service port to use"
        if self.address is not None:
            host, sep, port = self.address.rpartition(":")
            if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
                yield ("address",), f"Invalid value: {self.address!r}: must be host:port"


class Shard(ShoalModel):
    """One shard: a name and the backends (replicas) that serve its keys."""

    name: str
    backends: list[Backend] = Field(min_length=1)


class HealthCheckSpec(ShoalModel):
    """Active health checking of backends."""

    path: str | None = None
    """HTTP path to GET; a TCP connect check when left out."""
    interval_seconds: float = Field(default=1.0, gt=0)
    timeout_seconds: float = Field(default=1.0, gt=0)
    """How long one check may take before it counts as failed."""
    rise: int = Field(default=2, ge=1)
    """Consecutive successes that make a backend healthy again."""
    fall: int = Field(default=3, ge=1)
    """Consecutive failures that make a backend unhealthy."""


class HashKeySpec(ShoalModel):
    """What the ``hash`` policy hashes (a route without shards)."""

    source: Literal["path", "header", "cookie", "client-address"] = "path"
    name: str | None = None
    """The header or cookie name."""
    regexp: str | None = None
    """For ``path``: hash the first capture group of this regexp over the path."""

    def _checks(self) -> Iterator[Check]:
        if self.source in ("header", "cookie") and not self.name:
            yield ("name",), f"Required value: the {self.source} to hash"
        if self.regexp is not None:
            try:
                re.compile(self.regexp)
            except re.error as error:
                yield ("regexp",), f"Invalid value: {self.regexp!r}: {error}"


class OutlierSpec(ShoalModel):
    """Passive ejection of backends that fail real requests."""

    consecutive5xx: int = Field(default=5, ge=1, alias="consecutive5xx")
    """Failures in a row (5xx responses or connect errors) that eject a backend."""
    consecutive_connect_errors: int = Field(default=3, ge=1)
    base_ejection_seconds: float = Field(default=5.0, gt=0)
    """Time out for a first ejection; the n-th lasts n times as long."""
    max_ejected_percent: int = Field(default=50, ge=0, le=100)


class RetrySpec(ShoalModel):
    """Retries on another backend (connect failures always; resets and 502-504 when idempotent)."""

    max_retries: int = Field(default=1, ge=0, le=10)


class LimitsSpec(ShoalModel):
    """Per-backend concurrency: beyond ``maxInFlight`` requests queue, beyond ``maxPending`` 503."""

    max_in_flight: int = Field(default=1024, ge=1)
    max_pending: int = Field(default=1024, ge=0)


class Route(ShoalModel):
    """Requests whose path starts with ``pathPrefix`` go to ``backends`` or, hashed, to ``shards``."""

    name: str
    path_prefix: str = "/"
    policy: Literal["round-robin", "least-request", "random", "hash"] = "round-robin"
    """How to pick among backends (within a shard, for a sharded route)."""
    shard_regexp: str | None = None
    """The shard key is its first capture group over the path (see the ShardedService docs)."""
    hashing: Hashing = Field(default_factory=Hashing)
    hash_key: HashKeySpec | None = None
    """For ``policy: hash`` on a route without shards (default: the path)."""
    backends: list[Backend] | None = None
    shards: list[Shard] | None = None
    health: HealthCheckSpec | None = None
    outlier: OutlierSpec | None = None
    retries: RetrySpec | None = None
    limits: LimitsSpec | None = None

    def _checks(self) -> Iterator[Check]:
        if (self.backends is None) == (self.shards is None):
            yield (), "must specify exactly one of: `backends` or `shards`"
        if not self.path_prefix.startswith("/"):
            yield ("pathPrefix",), f"Invalid value: {self.path_prefix!r}: must start with '/'"
        if self.shard_regexp is not None:
            try:
                re.compile(self.shard_regexp)
            except re.error as error:
                yield ("shardRegexp",), f"Invalid value: {self.shard_regexp!r}: {error}"
        if self.shards is not None:
            names = [shard.name for shard in self.shards]
            for index, name in enumerate(names):
                if name in names[:index]:
                    yield ("shards", index, "name"), f"Duplicate value: {name!r}"


class Listener(ShoalModel):
    """A port the proxy accepts connections on (on the host given by ``--host``)."""

    name: str
    port: int = Field(ge=1, le=65535)
    routes: list[Route] = Field(min_length=1)

    def _checks(self) -> Iterator[Check]:
        names = [route.name for route in self.routes]
        for index, name in enumerate(names):
            if name in names[:index]:
                yield ("routes", index, "name"), f"Duplicate value: {name!r}"


class AdminSpec(ShoalModel):
    """The admin port: ``/healthz`` and Prometheus ``/metrics``."""

    port: int = Field(default=9901, ge=1, le=65535)


class ProxyConfig(ShoalModel):
    """A whole proxy configuration."""

    api_version: Literal["proxy.shoal.dev/v1"] = "proxy.shoal.dev/v1"
    kind: Literal["ProxyConfig"] = "ProxyConfig"
    listeners: list[Listener] = Field(min_length=1)
    admin: AdminSpec = Field(default_factory=AdminSpec)

    def _checks(self) -> Iterator[Check]:
        seen: dict[int, str] = {}
        for index, listener in enumerate(self.listeners):
            if listener.port in seen:
                yield (
                    ("listeners", index, "port"),
                    f"Duplicate value: {listener.port} (listener {seen[listener.port]!r} has it)",
                )
            seen.setdefault(listener.port, listener.name)


def proxy_config_from_text(text: str, source: str = "<string>") -> ProxyConfig:
    """The ProxyConfig in a YAML text; :class:`InvalidObjectsError` lists every problem with its
    ``file:line:column: field.path: message``."""
    documents, issues = parse_documents(text, source)
    if not issues and len(documents) != 1:
        issues.append(
            Issue(f"{source}: expected exactly one YAML document, found {len(documents)}")
        )
    if issues:
        raise InvalidObjectsError(issues)
    document = documents[0]
    data: Any = document.data
    if not isinstance(data, dict):
        raise InvalidObjectsError(
            [Issue("a ProxyConfig must be a mapping", "", document.location(()))]
        )
    try:
        config = ProxyConfig.model_validate(data)
    except ValidationError as error:
        found = [
            Issue(
                e.message,
                format_path(e.path),
                document.location(raw_segments(e.path), on_key=e.on_key, offset=e.offset),
            )
            for e in translate(error, ProxyConfig, data)
        ]
        raise InvalidObjectsError(found) from None
    problems = [
        Issue(message, format_path(path), document.location(raw_segments(path)))
        for path, message in iter_issues(config)
    ]
    if problems:
        raise InvalidObjectsError(problems)
    return config
