"""``shoal proxy --config``: the file format, Service resolution, and the runtime configuration."""

from __future__ import annotations

import pytest

from shoal.dataplane.configfile import (
    ServiceResolver,
    load_proxy_config,
    runtime_config,
    service_env_name,
)
from shoal.dataplane.health import ActiveCheckSettings
from shoal.errors import InvalidObjectsError
from shoal.model import ConfigMap, ShardedService
from shoal.model.proxy import proxy_config_from_text
from shoal.patterns.compile import compile_pattern

FULL = """\
apiVersion: proxy.shoal.dev/v1
kind: ProxyConfig
listeners:
- name: web
  port: 8080
  routes:
  - name: api
    pathPrefix: /api/
    policy: hash
    hashKey: {source: header, name: X-User}
    health: {path: /healthz, intervalSeconds: 0.5, timeoutSeconds: 0.25, rise: 2, fall: 3}
    outlier: {consecutive5xx: 4, consecutiveConnectErrors: 2, baseEjectionSeconds: 1, maxEjectedPercent: 30}
    retries: {maxRetries: 2}
    limits: {maxInFlight: 10, maxPending: 5}
    backends:
    - address: 10.0.0.1:80
      weight: 3
    - service: api
      port: 8000
  - name: users
    shardRegexp: /users/([^/]+)
    hashing: {algorithm: rendezvous}
    shards:
    - name: s0
      backends: [{service: users-shard-0, port: 80}]
    - name: s1
      backends: [{service: users-shard-1, port: 80}]
admin:
  port: 9901
"""


def test_service_variable_names_follow_kubernetes() -> None:
    assert service_env_name("users-shard-0") == "USERS_SHARD_0_SERVICE_HOST"
    assert service_env_name("web") == "WEB_SERVICE_HOST"


async def test_services_resolve_by_variable_then_by_dns_name() -> None:
    asked: list[tuple[str, int]] = []

    async def lookup(name: str, port: int) -> list[str]:
        asked.append((name, port))
        if name.startswith("missing."):
            raise OSError("Name or service not known")
        return ["10.1.0.2", "10.1.0.1", "10.1.0.2", "fd00::1"]

    resolver = ServiceResolver(
        "shop", environ={"USERS_SHARD_0_SERVICE_HOST": "127.0.5.1"}, lookup=lookup
    )
    assert await resolver.resolve("users-shard-0", 80) == ["127.0.5.1:80"]
    assert asked == []
    assert await resolver.resolve("users-shard-1", 80) == [
        "10.1.0.1:80",
        "10.1.0.2:80",
        "[fd00::1]:80",
    ]
    assert asked == [("users-shard-1.shop.svc.cluster.local", 80)]
    assert await resolver.resolve("missing", 80) == []


async def test_the_file_becomes_a_valid_runtime_configuration() -> None:
    async def lookup(name: str, port: int) -> list[str]:
        return {"api.ns.svc.cluster.local": ["10.0.0.2"]}.get(name, [])

    resolver = ServiceResolver(
        "ns",
        environ={
            "USERS_SHARD_0_SERVICE_HOST": "127.0.9.1",
            "USERS_SHARD_1_SERVICE_HOST": "127.0.9.2",
        },
        lookup=lookup,
    )
    model = proxy_config_from_text(FULL, "proxy.yaml")
    runtime = await runtime_config(model, host="10.9.9.9", resolver=resolver)
    runtime.validate()
    assert runtime.admin == ("10.9.9.9", 9901)
    [listener] = runtime.listeners
    assert (listener.host, listener.port) == ("10.9.9.9", 8080)
    api, users = listener.routes
    assert [(b.address, b.weight) for b in api.backends] == [
        ("10.0.0.1:80", 3),
        ("10.0.0.2:8000", 1),
    ]
    assert api.path_prefix == "/api/"
    assert (api.hash_key.source, api.hash_key.name) == ("header", "X-User")
    assert api.health == ActiveCheckSettings(
        interval=0.5, timeout=0.25, rise=2, fall=3, http_path="/healthz"
    )
    assert (api.outlier.consecutive_5xx, api.outlier.consecutive_connect_errors) == (4, 2)
    assert api.outlier.max_ejected_share == pytest.approx(0.3)
    assert api.retry.max_retries == 2
    assert (api.pending.max_in_flight, api.pending.max_pending) == (10, 5)
    assert users.shard_regexp == "/users/([^/]+)"
    assert users.hashing.algorithm == "rendezvous"
    assert [(s.name, [b.address for b in s.backends]) for s in users.shards] == [
        ("s0", ["127.0.9.1:80"]),
        ("s1", ["127.0.9.2:80"]),
    ]


async def test_the_compiled_shard_router_configuration_loads_and_validates() -> None:
    """What the patterns' compile step writes is what `shoal proxy --config` accepts."""
    users = ShardedService(
        name="users", image="x", shard_regexp="/users/(.*)/.*", ports=[8080], shards=3
    )
    config_map = compile_pattern(users)[0]
    assert isinstance(config_map, ConfigMap)
    assert config_map.data is not None
    model = proxy_config_from_text(config_map.data["proxy.yaml"], "proxy.yaml")
    environ = {f"USERS_SHARD_{i}_SERVICE_HOST": f"127.0.1.{i + 1}" for i in range(3)}
    runtime = await runtime_config(
        model, host="127.0.2.1", resolver=ServiceResolver("default", environ=environ)
    )
    runtime.validate()
    [route] = runtime.listeners[0].routes
    assert [s.backends[0].address for s in route.shards] == [
        "127.0.1.1:8080",
        "127.0.1.2:8080",
        "127.0.1.3:8080",
    ]


def test_errors_name_the_file_line_and_field() -> None:
    bad = FULL.replace("policy: hash", "policy: fastest").replace("/users/([^/]+)", "/users/(")
    with pytest.raises(InvalidObjectsError) as caught:
        proxy_config_from_text(bad, "proxy.yaml")
    assert "proxy.yaml:9:13: listeners[0].routes[0].policy: Unsupported value" in str(caught.value)
    with pytest.raises(InvalidObjectsError) as caught:
        proxy_config_from_text(FULL.replace("/users/([^/]+)", "/users/("), "proxy.yaml")
    assert "proxy.yaml:21:18: listeners[0].routes[1].shardRegexp: Invalid value" in str(
        caught.value
    )
    with pytest.raises(InvalidObjectsError, match="no such file"):
        load_proxy_config("/nonexistent/proxy.yaml")
