"""Service ports that are not HTTP/1.1 (Redis, TLS) are forwarded per connection."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from typing import Any

import pytest

from shoal.cluster.serviceproxy import ServiceProxySettings, runtime_config
from shoal.cluster.services import ServiceListener, plan_services, port_mode
from shoal.cluster.tcpforward import TcpForwarder, endpoint_order


@pytest.mark.parametrize(
    ("port", "mode"),
    [
        ({"port": 8080}, "http"),
        ({"name": "http", "port": 80}, "http"),
        ({"name": "http-api", "port": 80}, "http"),
        ({"name": "metrics", "port": 9121}, "http"),
        ({"name": "redis", "port": 6379}, "tcp"),
        ({"name": "https", "port": 8443}, "tcp"),
        ({"name": "tcp-db", "port": 5432}, "tcp"),
        ({"name": "Redis", "port": 6379}, "tcp"),
        ({"name": "db", "port": 5432, "appProtocol": "postgresql"}, "tcp"),
        ({"name": "redis", "port": 6379, "appProtocol": "http"}, "http"),
        ({"name": "web", "port": 443, "appProtocol": "kubernetes.io/wss"}, "tcp"),
    ],
)
def test_port_mode_by_app_protocol_then_name(port: dict[str, Any], mode: str) -> None:
    assert port_mode(port) == mode


def _service(ports: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "metadata": {"namespace": "default", "name": "cache"},
        "spec": {"clusterIP": "127.2.0.9", "ports": ports},
    }


def test_the_plan_marks_tcp_ports_and_the_http_engine_gets_only_http_ones() -> None:
    service = _service([{"name": "redis", "port": 6379}, {"name": "metrics", "port": 9121}])
    plan = plan_services([service], [])
    modes = {listener.port: listener.mode for listener in plan.listeners}
    assert modes == {6379: "tcp", 9121: "http"}
    config = runtime_config(plan, ServiceProxySettings())
    assert [listener.port for listener in config.listeners] == [9121]


def test_client_ip_affinity_fixes_the_order_per_client() -> None:
    endpoints = [("127.1.0.1", 6379), ("127.1.0.2", 6379), ("127.1.0.3", 6379)]
    rng = random.Random(1)
    first = endpoint_order(endpoints, "127.0.0.5", "ClientIP", rng)
    assert sorted(first) == endpoints
    assert all(endpoint_order(endpoints, "127.0.0.5", "ClientIP", rng) == first for _ in range(20))
    orders = {tuple(endpoint_order(endpoints, "127.0.0.5", "None", rng)) for _ in range(50)}
    assert len(orders) > 1


async def _echo_server(tag: bytes) -> asyncio.Server:
    """Answers TAG + everything it read, once the client has finished sending."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        data = await reader.read()
        writer.write(tag + data)
        await writer.drain()
        writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", 0)


def _address(server: asyncio.Server) -> tuple[str, int]:
    host, port = server.sockets[0].getsockname()[:2]
    return str(host), int(port)


def _listener(endpoints: list[tuple[str, int]]) -> ServiceListener:
    return ServiceListener(
        namespace="default",
        service="cache",
        port_name="redis",
        host="127.0.0.1",
        port=0,
        endpoints=tuple(endpoints),
        mode="tcp",
    )


@pytest.fixture
async def forwarder() -> AsyncIterator[TcpForwarder]:
    forwarding = TcpForwarder()
    try:
        yield forwarding
    finally:
        await forwarding.shutdown()


async def _ask(address: tuple[str, int], data: bytes) -> bytes:
    reader, writer = await asyncio.open_connection(*address)
    try:
        writer.write(data)
        writer.write_eof()  # the half-close reaches the endpoint, whose answer still comes back
        async with asyncio.timeout(10):
            return await reader.read()
    finally:
        writer.close()


async def test_connections_are_forwarded_skipping_an_endpoint_that_refuses(
    forwarder: TcpForwarder,
) -> None:
    live = await _echo_server(b"live:")
    dead = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    dead_address = _address(dead)
    dead.close()
    await dead.wait_closed()
    try:
        await forwarder.apply([_listener([dead_address, _address(live)])])
        (address,) = forwarder.addresses()
        for n in range(20):
            assert await _ask(address, b"ping %d" % n) == b"live:ping %d" % n
    finally:
        live.close()
        await live.wait_closed()


async def test_no_endpoint_closes_the_connection(forwarder: TcpForwarder) -> None:
    await forwarder.apply([_listener([])])
    (address,) = forwarder.addresses()
    try:
        answer = await _ask(address, b"anyone?")
    except ConnectionResetError:  # closed with the request unread: the kernel resets
        answer = b""
    assert answer == b""


async def test_a_removed_port_stops_accepting_and_endpoint_changes_apply_to_new_connections(
    forwarder: TcpForwarder,
) -> None:
    one, two = await _echo_server(b"one:"), await _echo_server(b"two:")
    try:
        await forwarder.apply([_listener([_address(one)])])
        (address,) = forwarder.addresses()
        assert await _ask(address, b"x") == b"one:x"
        await forwarder.apply([_listener([_address(two)])])  # the same Service port
        assert forwarder.addresses() == [address]
        assert await _ask(address, b"y") == b"two:y"
        await forwarder.apply([])
        assert forwarder.addresses() == []
        with pytest.raises(ConnectionRefusedError):
            await asyncio.open_connection(*address)
    finally:
        for server in (one, two):
            server.close()
            await server.wait_closed()
