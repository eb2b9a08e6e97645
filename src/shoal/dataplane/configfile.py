"""
``shoal proxy --config``: from the YAML ``ProxyConfig`` (:mod:`shoal.model.proxy`) to a
:class:`~shoal.dataplane.config.RuntimeConfig`, resolving Services as Kubernetes clients do.

Theory of operation
-------------------
:func:`load_proxy_config` reads the file with shoal's located YAML loader, so every problem is
reported as ``file:line:column: field.path: message``. :func:`runtime_config` turns the model into
runtime values: every listener binds ``host`` (``--host``; a pod IP for the shard router), and a
backend given as ``service: NAME, port: N`` becomes addresses through a :class:`ServiceResolver`:

1. the environment variable ``<NAME>_SERVICE_HOST`` (upper case, ``-`` as ``_``), which
   Kubernetes, and shoal's one-machine node, set in every container for the Services that
   existed when it started: the Service's clusterIP, used with port ``N``;
2. else DNS: ``NAME.NAMESPACE.svc.<cluster domain>``, every address it resolves to, port ``N``.

A Service that does not resolve yet gives no backends (its requests get 503) and a warning;
``shoal proxy`` resolves again every ``--resolve-interval`` seconds and applies the result when it
changed, so a Service created after the proxy started is picked up.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path

from shoal.dataplane.config import (
    BackendConfig,
    HashKey,
    ListenerConfig,
    RouteConfig,
    RuntimeConfig,
    ShardConfig,
)
from shoal.dataplane.hashing import HashingSettings
from shoal.dataplane.health import (
    ActiveCheckSettings,
    OutlierSettings,
    PendingSettings,
    RetrySettings,
)
from shoal.errors import InvalidObjectsError, Issue
from shoal.model.proxy import Backend, ProxyConfig, Route, proxy_config_from_text

__all__ = ["ServiceResolver", "load_proxy_config", "runtime_config", "service_env_name"]

log = logging.getLogger("shoal.dataplane.proxy")


def load_proxy_config(path: str | os.PathLike[str]) -> ProxyConfig:
    """The ProxyConfig in ``path``; :class:`InvalidObjectsError` lists every problem."""
    name = os.fspath(path)
    try:
        text = Path(name).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InvalidObjectsError([Issue(f"{name}: no such file or directory")]) from None
    except UnicodeDecodeError as error:
        raise InvalidObjectsError([Issue(f"{name}: not UTF-8 text ({error.reason})")]) from None
    except OSError as error:
        raise InvalidObjectsError([Issue(f"{name}: cannot read: {error.strerror}")]) from None
    return proxy_config_from_text(text, name)


def service_env_name(service: str) -> str:
    """``users-shard-0`` → ``USERS_SHARD_0_SERVICE_HOST`` (Kubernetes' service variables)."""
    return service.upper().replace("-", "_").replace(".", "_") + "_SERVICE_HOST"


class ServiceResolver:
    """Service name and port → ``host:port`` addresses (see the module docstring)."""

    def __init__(
        self,
        namespace: str = "default",
        *,
        environ: Mapping[str, str] | None = None,
        cluster_domain: str = "cluster.local",
        lookup: Callable[[str, int], Awaitable[list[str]]] | None = None,
    ) -> None:
        self.namespace = namespace
        self.environ = os.environ if environ is None else environ
        self.cluster_domain = cluster_domain
        self.lookup: Callable[[str, int], Awaitable[list[str]]] = lookup or _getaddrinfo
        """Name and port → IP addresses (the loop's getaddrinfo; replaceable in tests)."""

    def dns_name(self, service: str) -> str:
        return f"{service}.{self.namespace}.svc.{self.cluster_domain}"

    async def resolve(self, service: str, port: int) -> list[str]:
        host = self.environ.get(service_env_name(service))
        if host:
            return [_join(host, port)]
        name = self.dns_name(service)
        try:
            addresses = sorted(set(await self.lookup(name, port)))
        except (OSError, UnicodeError) as error:
            log.warning(
                "service %s: no %s variable and %s does not resolve (%s); no backends for now",
                service,
                service_env_name(service),
                name,
                error,
            )
            return []
        return [_join(address, port) for address in addresses]


async def _getaddrinfo(name: str, port: int) -> list[str]:
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(name, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


def _join(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


async def _backends(
    backends: list[Backend], resolver: ServiceResolver
) -> tuple[BackendConfig, ...]:
    out: list[BackendConfig] = []
    for backend in backends:
        if backend.address is not None:
            out.append(BackendConfig(backend.address, backend.weight))
            continue
        assert backend.service is not None
        assert backend.port is not None
        resolved = await resolver.resolve(backend.service, backend.port)
        out.extend(BackendConfig(address, backend.weight) for address in resolved)
    # A repeated address (the same backend listed twice) is kept once: a route balances over
    # distinct endpoints.
    unique: dict[str, BackendConfig] = {}
    for backend_config in out:
        unique.setdefault(backend_config.address, backend_config)
    return tuple(unique.values())


async def _route(route: Route, resolver: ServiceResolver) -> RouteConfig:
    health = None
    if route.health is not None:
        health = ActiveCheckSettings(
            interval=route.health.interval_seconds,
            timeout=route.health.timeout_seconds,
            rise=route.health.rise,
            fall=route.health.fall,
            http_path=route.health.path,
        )
    outlier = OutlierSettings()
    if route.outlier is not None:
        outlier = OutlierSettings(
            consecutive_5xx=route.outlier.consecutive5xx,
            consecutive_connect_errors=route.outlier.consecutive_connect_errors,
            base_ejection_time=route.outlier.base_ejection_seconds,
            max_ejected_share=route.outlier.max_ejected_percent / 100,
        )
    retry = RetrySettings()
    if route.retries is not None:
        retry = RetrySettings(max_retries=route.retries.max_retries)
    pending = PendingSettings()
    if route.limits is not None:
        pending = PendingSettings(
            max_in_flight=route.limits.max_in_flight, max_pending=route.limits.max_pending
        )
    hash_key = HashKey()
    if route.hash_key is not None:
        hash_key = HashKey(route.hash_key.source, route.hash_key.name or "", route.hash_key.regexp)
    shards: tuple[ShardConfig, ...] = ()
    if route.shards is not None:
        shards = tuple(
            [ShardConfig(s.name, await _backends(s.backends, resolver)) for s in route.shards]
        )
    return RouteConfig(
        name=route.name,
        path_prefix=route.path_prefix,
        backends=await _backends(route.backends or [], resolver),
        shards=shards,
        shard_regexp=route.shard_regexp,
        hashing=HashingSettings(algorithm=str(route.hashing.algorithm)),
        policy=route.policy,
        hash_key=hash_key,
        health=health,
        outlier=outlier,
        retry=retry,
        pending=pending,
    )


async def runtime_config(
    config: ProxyConfig,
    *,
    host: str = "127.0.0.1",
    admin: tuple[str, int] | None = None,
    resolver: ServiceResolver | None = None,
) -> RuntimeConfig:
    """The runtime form of ``config``: listeners on ``host``, Services resolved.

    ``admin`` overrides the admin address (default: ``host`` and ``admin.port``).
    """
    resolver = resolver or ServiceResolver()
    listeners = []
    for listener in config.listeners:
        routes = tuple([await _route(route, resolver) for route in listener.routes])
        listeners.append(
            ListenerConfig(name=listener.name, port=listener.port, routes=routes, host=host)
        )
    return RuntimeConfig(
        listeners=tuple(listeners),
        admin=admin if admin is not None else (host, config.admin.port),
    )
