"""
An ambassador's settings, from flags or from a YAML file (``--config FILE``).

The file is read with shoal's located YAML loader, so every problem is reported at once as
``FILE:LINE:COLUMN: field: message``::

    listen: 127.0.0.1:6379          # where the app connects (127.0.0.1 unless told otherwise)
    hash: maglev                    # maglev (default) | rendezvous | ring
    hashTag: "{}"                   # "" turns hash tags off
    servers:                        # HOST:PORT[:WEIGHT][ NAME], or the long form
      - 127.0.0.1:7001:1 shard-0
      - {address: 127.0.0.1:7002, weight: 1, name: shard-1}
    serverConnections: 1            # persistent connections per server, requests pipelined on them
    timeoutSeconds: 5               # a server that has not answered by then is failed
    connectTimeoutSeconds: 1
    serverFailureLimit: 2           # twemproxy's server_failure_limit
    serverRetryTimeoutSeconds: 2    # twemproxy's server_retry_timeout (in seconds, not ms)
    autoEjectHosts: false           # twemproxy's auto_eject_hosts
    maxValueBytes: 1048576          # longest value (memcached data block, Redis argument)
    admin: 127.0.0.1:9121           # optional: Prometheus /metrics
    implementation: auto            # auto (compiled when built) | compiled | python
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

from pydantic import Field

from shoal.components.ambassadors import memcache, resp
from shoal.components.ambassadors.native import IMPLEMENTATIONS
from shoal.components.ambassadors.servers import (
    DEFAULT_HASH_TAG,
    HealthSettings,
    ServerSpec,
    parse_server,
)
from shoal.dataplane.hashing import ALGORITHMS, DEFAULT_ALGORITHM
from shoal.model._base import Check, ShoalModel
from shoal.model.configfile import load_config_file

__all__ = [
    "PROTOCOLS",
    "AmbassadorConfig",
    "AmbassadorSettings",
    "default_listen",
    "default_max_value_bytes",
    "load_config",
    "parse_listen",
]

PROTOCOLS: Final = ("redis", "memcached")
DEFAULT_LISTEN: Final = "127.0.0.1:6379"
"""Where the app expects its one Redis."""


def default_listen(protocol: str) -> str:
    """Where an app expects its one server: Redis' or memcached's port on loopback."""
    return "127.0.0.1:11211" if protocol == "memcached" else DEFAULT_LISTEN


def default_max_value_bytes(protocol: str) -> int:
    """memcached's 1 MiB item size; 64 MiB for a Redis argument."""
    return memcache.MAX_VALUE_BYTES if protocol == "memcached" else resp.MAX_BULK_BYTES


@dataclass(frozen=True, slots=True)
class AmbassadorSettings:
    """How an ambassador behaves; every field has a working default."""

    protocol: str = "redis"
    """``redis`` (RESP2) or ``memcached`` (the text protocol)."""
    algorithm: str = DEFAULT_ALGORITHM
    """The data plane's hasher: ``maglev``, ``rendezvous`` or ``ring``."""
    hash_tag: str = DEFAULT_HASH_TAG
    """Two characters; only what is between them in a key is hashed. Empty: the whole key."""
    health: HealthSettings = field(default_factory=HealthSettings)
    """Failure limit, retry time and auto-ejection."""
    server_connections: int = 1
    """Persistent connections per server; every client's requests are pipelined onto them."""
    connect_timeout: float = 1.0
    """Seconds to open a server connection."""
    timeout: float = 5.0
    """Seconds a server may take to answer the oldest request waiting on a connection."""
    max_value_bytes: int = 0
    """Longest value accepted; 0 means the protocol's default (:func:`default_max_value_bytes`)."""
    max_pending: int = 10_000
    """Requests a client may have waiting for replies before the ambassador stops reading it."""
    backlog: int = 1024
    """Listen backlog."""
    implementation: str = "auto"
    """The hot path: ``compiled`` (Cython), ``python``, or ``auto`` (compiled when built, unless
    ``SHOAL_PURE_PYTHON=1``); see :mod:`~shoal.components.ambassadors.native`."""

    def value_limit(self) -> int:
        return self.max_value_bytes or default_max_value_bytes(self.protocol)


@dataclass(frozen=True, slots=True)
class AmbassadorConfig:
    """Everything to run one ambassador."""

    servers: tuple[ServerSpec, ...]
    listen: str = DEFAULT_LISTEN
    settings: AmbassadorSettings = field(default_factory=AmbassadorSettings)
    admin: str | None = None
    """``HOST:PORT`` of the Prometheus ``/metrics`` endpoint; none when not given."""


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` too); port 0 picks a free port."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"expected HOST:PORT, got {text!r}")
    return host.strip("[]"), int(port)


def check_config(config: AmbassadorConfig) -> None:
    """Raise ValueError for settings that cannot work together."""
    if not config.servers:
        raise ValueError("at least one server is needed (--server HOST:PORT)")
    keys = [s.key for s in config.servers]
    duplicates = sorted({k for k in keys if keys.count(k) > 1})
    if duplicates:
        raise ValueError(f"server names must be unique: {duplicates}")
    settings = config.settings
    if settings.protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {list(PROTOCOLS)}")
    if settings.algorithm not in ALGORITHMS:
        raise ValueError(f"hash must be one of {list(ALGORITHMS)}")
    if settings.hash_tag and len(settings.hash_tag) != 2:
        raise ValueError(f"a hash tag is two characters, like '{{}}', not {settings.hash_tag!r}")
    if settings.implementation not in IMPLEMENTATIONS:
        raise ValueError(f"implementation must be one of {list(IMPLEMENTATIONS)}")
    parse_listen(config.listen)
    if config.admin is not None:
        parse_listen(config.admin)


# --- the file ---------------------------------------------------------------------------------


class _Server(ShoalModel):
    """A server in the long form."""

    address: str
    weight: int = Field(default=1, ge=1, le=10_000)
    name: str = ""

    def _checks(self) -> Iterator[Check]:
        try:
            parse_server(self.address)
        except ValueError as error:
            yield ("address",), f"Invalid value: {error}"


class _File(ShoalModel):
    listen: str | None = None
    hash: Literal["maglev", "rendezvous", "ring"] | None = None
    hash_tag: str | None = None
    servers: list[str | _Server] = Field(min_length=1)
    server_connections: int | None = Field(default=None, ge=1, le=64)
    timeout_seconds: float | None = Field(default=None, gt=0)
    connect_timeout_seconds: float | None = Field(default=None, gt=0)
    server_failure_limit: int | None = Field(default=None, ge=1)
    server_retry_timeout_seconds: float | None = Field(default=None, gt=0)
    auto_eject_hosts: bool | None = None
    max_value_bytes: int | None = Field(default=None, ge=1)
    admin: str | None = None
    implementation: Literal["auto", "compiled", "python"] | None = None

    def _checks(self) -> Iterator[Check]:
        for index, server in enumerate(self.servers):
            if isinstance(server, str):
                try:
                    parse_server(server)
                except ValueError as error:
                    yield ("servers", index), f"Invalid value: {error}"
        for name in ("listen", "admin"):
            value = getattr(self, name)
            if value is not None:
                try:
                    parse_listen(value)
                except ValueError as error:
                    yield (name,), f"Invalid value: {error}"
        if self.hash_tag and len(self.hash_tag) != 2:
            yield (
                ("hashTag",),
                f"Invalid value: {self.hash_tag!r}: must be two characters, like '{{}}'",
            )


class _RedisFile(_File):
    protocol: Literal["redis"] | None = None
    """Optional; when given it must name this ambassador's protocol."""


class _MemcachedFile(_File):
    protocol: Literal["memcached"] | None = None
    """Optional; when given it must name this ambassador's protocol."""


def load_config(
    path: str | Path, protocol: str, overrides: dict[str, Any] | None = None
) -> AmbassadorConfig:
    """The configuration in ``path`` for a ``protocol`` ambassador, then ``overrides`` on top.

    Raises :class:`InvalidObjectsError` naming ``file:line:column: field`` for every problem.
    """
    model: type[_File] = _MemcachedFile if protocol == "memcached" else _RedisFile
    parsed = load_config_file(path, model)
    return _to_config(parsed, protocol, overrides or {})


def _to_config(parsed: _File, protocol: str, overrides: dict[str, Any]) -> AmbassadorConfig:
    servers: list[ServerSpec] = []
    for entry in parsed.servers:
        if isinstance(entry, str):
            servers.append(parse_server(entry))
        else:
            spec = parse_server(entry.address)
            servers.append(
                dataclasses.replace(spec, weight=entry.weight, name=entry.name or spec.name)
            )
    defaults = AmbassadorSettings()
    health = HealthSettings(
        failure_limit=parsed.server_failure_limit or defaults.health.failure_limit,
        retry_timeout=parsed.server_retry_timeout_seconds or defaults.health.retry_timeout,
        auto_eject=parsed.auto_eject_hosts if parsed.auto_eject_hosts is not None else False,
    )
    settings = AmbassadorSettings(
        protocol=protocol,
        algorithm=parsed.hash or defaults.algorithm,
        hash_tag=parsed.hash_tag if parsed.hash_tag is not None else defaults.hash_tag,
        health=health,
        server_connections=parsed.server_connections or defaults.server_connections,
        connect_timeout=parsed.connect_timeout_seconds or defaults.connect_timeout,
        timeout=parsed.timeout_seconds or defaults.timeout,
        max_value_bytes=parsed.max_value_bytes or 0,
        implementation=parsed.implementation or defaults.implementation,
    )
    config = AmbassadorConfig(
        servers=tuple(servers),
        listen=parsed.listen or default_listen(protocol),
        settings=settings,
        admin=parsed.admin,
    )
    return apply_overrides(config, overrides)


def apply_overrides(config: AmbassadorConfig, overrides: dict[str, Any]) -> AmbassadorConfig:
    """Flags given on the command line win over the file: keys are AmbassadorConfig fields,
    AmbassadorSettings fields, or HealthSettings fields."""
    top = {k: v for k, v in overrides.items() if k in ("servers", "listen", "admin")}
    health_keys = {f.name for f in dataclasses.fields(HealthSettings)}
    health = {k: v for k, v in overrides.items() if k in health_keys}
    settings = {k: v for k, v in overrides.items() if k not in top and k not in health}
    new_settings = dataclasses.replace(
        config.settings,
        health=dataclasses.replace(config.settings.health, **health),
        **settings,
    )
    return dataclasses.replace(config, settings=new_settings, **top)


def servers_from_flags(texts: Sequence[str]) -> tuple[ServerSpec, ...]:
    """``--server`` values as specs (ValueError names the bad one)."""
    return tuple(parse_server(text) for text in texts)
