"""The configuration file of shoal's proxy (``shoal proxy --config``), which the shard router uses.

The patterns' compile step writes one for each ShardedService (into a ConfigMap); the data plane
reads it. It is a file format, not an API kind: ``apiVersion``/``kind`` are there to version it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal

from pydantic import Field

from shoal.model._base import Check, ShoalModel
from shoal.model.patterns import Hashing

__all__ = ["AdminSpec", "Backend", "HealthCheckSpec", "Listener", "ProxyConfig", "Route", "Shard"]

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
    rise: int = Field(default=2, ge=1)
    """Consecutive successes that make a backend healthy again."""
    fall: int = Field(default=3, ge=1)
    """Consecutive failures that make a backend unhealthy."""


class Route(ShoalModel):
    """Requests whose path starts with ``pathPrefix`` go to ``backends`` or, hashed, to ``shards``."""

    name: str
    path_prefix: str = "/"
    policy: Literal["round-robin", "least-request", "random", "hash"] = "round-robin"
    """How to pick among backends (within a shard, for a sharded route)."""
    shard_regexp: str | None = None
    """The shard key is its first capture group over the path (see the ShardedService docs)."""
    hashing: Hashing = Field(default_factory=Hashing)
    backends: list[Backend] | None = None
    shards: list[Shard] | None = None
    health: HealthCheckSpec | None = None

    def _checks(self) -> Iterator[Check]:
        if (self.backends is None) == (self.shards is None):
            yield (), "must specify exactly one of: `backends` or `shards`"


class Listener(ShoalModel):
    """A port the proxy accepts connections on (on the host given by ``--host``)."""

    name: str
    port: int = Field(ge=1, le=65535)
    routes: list[Route] = Field(min_length=1)


class AdminSpec(ShoalModel):
    """The admin port: ``/healthz`` and Prometheus ``/metrics``."""

    port: int = Field(default=9901, ge=1, le=65535)


class ProxyConfig(ShoalModel):
    """A whole proxy configuration."""

    api_version: Literal["proxy.shoal.dev/v1"] = "proxy.shoal.dev/v1"
    kind: Literal["ProxyConfig"] = "ProxyConfig"
    listeners: list[Listener] = Field(min_length=1)
    admin: AdminSpec = Field(default_factory=AdminSpec)
