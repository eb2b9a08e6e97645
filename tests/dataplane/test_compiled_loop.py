"""The compiled event loop (``shoal.dataplane._loop_c``) and its hand-overs to the asyncio driver.

Every test runs over every implementation: the behaviour is the driver's either way; with the
compiled build the common exchange runs on the compiled loop and each scenario here makes it hand a
connection over at one of its stages (between requests, before sending, after a failed connect,
after sending). Every pick must end exactly once, whoever ends it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from shoal.dataplane.driver import Address, Dispatcher, Pick, ProxyServer, ProxySettings
from shoal.dataplane.health import Failure
from shoal.dataplane.http1 import Request

from .implementations import IMPLEMENTATIONS
from .test_proxy_integration import (
    WAIT,
    Backend,
    client,
    echo_handler,
    exchange,
    read_body,
    read_head,
)


@pytest.fixture(params=IMPLEMENTATIONS)
def implementation(request: pytest.FixtureRequest) -> str:
    return str(request.param)


class Recording(Dispatcher):
    """Sends each request to the first address, moving down the list on a failed connect, a
    reset, or ``retry_status``; records every call."""

    def __init__(
        self, addresses: list[Address], *, retry_status: int = 0, queued: bool = False
    ) -> None:
        self.addresses = addresses
        self.retry_status = retry_status
        self.queued = queued
        self.picks: list[Pick] = []
        self.failures: list[Failure] = []
        self.ended: list[int] = []

    def begin(self, request: Request, peer: str) -> Pick | None:
        pick = Pick(self.addresses[0], 0, queued=self.queued)
        self.picks.append(pick)
        return pick

    def _next(self, pick: Pick) -> bool:
        index = int(pick.state) + 1  # type: ignore[call-overload]
        if index >= len(self.addresses):
            return False
        pick.state = index
        pick.address = self.addresses[index]
        return True

    def failed(self, pick: Pick, failure: Failure, replayable: bool) -> bool:
        self.failures.append(failure)
        return self._next(pick)

    def response(self, pick: Pick, status: int) -> bool:
        return status == self.retry_status and self._next(pick)

    def end(self, pick: Pick, status: int) -> None:
        self.ended.append(status)


@contextlib.asynccontextmanager
async def serving(
    dispatcher: Dispatcher, implementation: str, **settings: Any
) -> AsyncIterator[ProxyServer]:
    server = ProxyServer(dispatcher, ProxySettings(implementation=implementation, **settings))
    await server.start("127.0.0.1", 0)
    try:
        yield server
    finally:
        await server.shutdown(deadline=2.0)


async def until(condition: Any) -> None:
    async with asyncio.timeout(WAIT):
        while not condition():  # noqa: ASYNC110 -- polling state owned by the proxy
            await asyncio.sleep(0.005)


def dead_address() -> Address:
    """A loopback port nobody listens on (bound, never listened: connecting is refused)."""
    import socket

    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    address = holder.getsockname()
    holder.close()
    return str(address[0]), int(address[1])


GET = b"GET /%s HTTP/1.1\r\nHost: app\r\n\r\n"


class Held:
    """A backend handler that says when a request arrived and answers ``body`` once released."""

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.arrived = asyncio.Event()
        self.release = asyncio.Event()

    async def __call__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)
        self.arrived.set()
        await self.release.wait()
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(self.body) + self.body)
        await writer.drain()


async def test_plain_connections_run_on_the_compiled_loop(implementation: str) -> None:
    expected = "compiled-loop" if implementation == "compiled" else "asyncio"
    async with Backend(echo_handler) as backend:
        dispatcher = Recording([backend.address])
        async with serving(dispatcher, implementation) as proxy:
            assert proxy.engine == expected
            async with client(proxy) as (reader, writer):
                start, _, body = await exchange(reader, writer, GET % b"one")
                assert start == b"HTTP/1.1 200 OK"
                assert body.startswith(b"GET /one HTTP/1.1\r\n")
                assert b"X-Forwarded-For: 127.0.0.1\r\n" in body
            assert proxy.active_connections in (0, 1)
        async with serving(dispatcher, implementation, compiled_loop=False) as proxy:
            assert proxy.engine == "asyncio"
        # An admit hook runs per request in the driver: such a server is all asyncio.
        admitting = ProxyServer(
            dispatcher,
            ProxySettings(implementation=implementation),
            admit=lambda request, peer: request,
        )
        await admitting.start("127.0.0.1", 0)
        try:
            assert admitting.engine == "asyncio"
            async with client(admitting) as (reader, writer):
                assert (await exchange(reader, writer, GET % b"two"))[0] == b"HTTP/1.1 200 OK"
        finally:
            await admitting.shutdown(deadline=2.0)
        assert dispatcher.ended == [200, 200]


async def test_a_connection_handed_over_between_requests_keeps_serving(
    implementation: str,
) -> None:
    """A chunked request (not the common exchange) is handed over with the bytes read; the same
    connection then carries pipelined and plain requests, in order."""
    async with Backend(echo_handler) as backend:
        dispatcher = Recording([backend.address])
        async with serving(dispatcher, implementation) as proxy, client(proxy) as (r, w):
            assert (await exchange(r, w, GET % b"first"))[0] == b"HTTP/1.1 200 OK"
            chunked = (
                b"POST /chunked HTTP/1.1\r\nHost: app\r\nTransfer-Encoding: chunked\r\n\r\n"
                b"5\r\nhello\r\n0\r\n\r\n"
            )
            start, _, body = await exchange(r, w, chunked)
            assert start == b"HTTP/1.1 200 OK"
            assert body.endswith(b"hello")
            w.write(GET % b"p1" + GET % b"p2")
            for name in (b"p1", b"p2"):
                _, headers, _ = await read_head(r)
                assert (await read_body(r, headers)).startswith(b"GET /" + name + b" ")
            assert (await exchange(r, w, GET % b"last"))[0] == b"HTTP/1.1 200 OK"
    assert dispatcher.ended == [200] * 5


async def test_a_5xx_is_retried_elsewhere_after_the_hand_over(implementation: str) -> None:
    async def unavailable(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await read_head(reader)
            writer.write(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\nbusy")
            await writer.drain()

    async with Backend(unavailable) as bad, Backend(echo_handler) as good:
        dispatcher = Recording([bad.address, good.address], retry_status=503)
        async with serving(dispatcher, implementation) as proxy, client(proxy) as (r, w):
            start, headers, _ = await exchange(r, w, GET % b"retry")
            assert start == b"HTTP/1.1 200 OK"
            assert headers[b"x-backend"] == b"echo"
            # Not retried (no address left): the 503 itself comes through.
            dispatcher.addresses = [bad.address]
            start, _, body = await exchange(r, w, GET % b"again")
            assert (start, body) == (b"HTTP/1.1 503 Service Unavailable", b"busy")
    assert dispatcher.ended == [200, 503]


async def test_a_pooled_connection_closed_before_answering_is_retried(
    implementation: str,
) -> None:
    """The upstream closes a kept-alive connection when the next request arrives on it: the
    request (idempotent, bodiless) goes again on a new connection."""

    async def one_per_connection(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        await read_head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        await read_head(reader)  # the next request: dropped with the connection

    async with Backend(one_per_connection) as backend:
        dispatcher = Recording([backend.address])
        async with serving(dispatcher, implementation) as proxy, client(proxy) as (r, w):
            for name in (b"a", b"b", b"c"):
                start, _, body = await exchange(r, w, GET % name)
                assert (start, body) == (b"HTTP/1.1 200 OK", b"ok")
    assert dispatcher.ended == [200, 200, 200]
    assert backend.connections >= 3


async def test_a_failed_connect_goes_to_the_next_endpoint_or_answers_502(
    implementation: str,
) -> None:
    async with Backend(echo_handler) as backend:
        dispatcher = Recording([dead_address(), backend.address])
        async with serving(dispatcher, implementation) as proxy:
            async with client(proxy) as (r, w):
                start, _, _ = await exchange(r, w, GET % b"x")
                assert start == b"HTTP/1.1 200 OK"
            dispatcher.addresses = [dead_address()]
            async with client(proxy) as (r, w):
                start, _, body = await exchange(r, w, GET % b"y")
                assert start == b"HTTP/1.1 502 Bad Gateway"
                assert b"cannot connect" in body
                assert await asyncio.wait_for(r.read(), WAIT) == b""  # and closes
    assert dispatcher.failures == [Failure.CONNECT, Failure.CONNECT]
    assert dispatcher.ended == [200, 502]


async def test_a_queued_pick_goes_when_its_slot_is_free(implementation: str) -> None:
    async with Backend(echo_handler) as backend:
        dispatcher = Recording([backend.address], queued=True)
        async with serving(dispatcher, implementation) as proxy, client(proxy) as (r, w):
            w.write(GET % b"queued")
            await until(lambda: dispatcher.picks and dispatcher.picks[0].on_ready is not None)
            pick = dispatcher.picks[0]
            pick.queued = False
            assert pick.on_ready is not None
            pick.on_ready()
            start, headers, _ = await read_head(r)
            assert start == b"HTTP/1.1 200 OK"
            assert (await read_body(r, headers)).startswith(b"GET /queued ")
    assert dispatcher.ended == [200]


async def test_an_upstream_that_does_not_answer_gets_504(implementation: str) -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)
        await asyncio.sleep(WAIT * 2)

    async with Backend(silent) as backend:
        dispatcher = Recording([backend.address])
        async with (
            serving(dispatcher, implementation, upstream_timeout=0.2) as proxy,
            client(proxy) as (r, w),
        ):
            start, _, _ = await exchange(r, w, GET % b"slow")
            assert start == b"HTTP/1.1 504 Gateway Timeout"
    assert dispatcher.ended == [504]


async def test_idle_clients_are_closed_after_the_keepalive_timeout(implementation: str) -> None:
    async with Backend(echo_handler) as backend:
        dispatcher = Recording([backend.address])
        async with (
            serving(dispatcher, implementation, keepalive_timeout=0.2) as proxy,
            client(proxy) as (r, w),
        ):
            assert (await exchange(r, w, GET % b"once"))[0] == b"HTTP/1.1 200 OK"
            assert await asyncio.wait_for(r.read(), WAIT) == b""
            await until(lambda: proxy.active_connections == 0)


async def test_shutdown_lets_the_exchange_in_flight_finish_with_connection_close(
    implementation: str,
) -> None:
    held = Held(b"done")
    async with Backend(held) as backend:
        dispatcher = Recording([backend.address])
        proxy = ProxyServer(dispatcher, ProxySettings(implementation=implementation))
        await proxy.start("127.0.0.1", 0)
        async with client(proxy) as (r, w):
            w.write(GET % b"held")
            await asyncio.wait_for(held.arrived.wait(), WAIT)
            async with asyncio.TaskGroup() as group:
                shutting = group.create_task(proxy.shutdown(deadline=WAIT))
                await until(lambda: proxy.draining)
                held.release.set()
                start, headers, _ = await read_head(r)
                assert start == b"HTTP/1.1 200 OK"
                assert headers[b"connection"] == b"close"
                assert await read_body(r, headers) == b"done"
                assert await asyncio.wait_for(r.read(), WAIT) == b""
            assert shutting.done()
    assert dispatcher.ended == [200]


async def test_retain_closes_idle_pooled_connections(implementation: str) -> None:
    async with Backend(echo_handler) as backend:
        dispatcher = Recording([backend.address])
        async with serving(dispatcher, implementation) as proxy, client(proxy) as (r, w):
            assert (await exchange(r, w, GET % b"pooled"))[0] == b"HTTP/1.1 200 OK"
            await until(lambda: proxy.pool.idle_count() == 1)
            assert proxy.pool.opened == 1
            proxy.pool.retain([])
            assert proxy.pool.idle_count() == 0
            await until(lambda: not backend.tasks)  # the backend saw it close
            proxy.pool.retain(None)
            assert (await exchange(r, w, GET % b"new"))[0] == b"HTTP/1.1 200 OK"
            assert proxy.pool.opened == 2


async def test_a_large_body_streams_through_whole(implementation: str) -> None:
    body = bytes(range(256)) * (4 * 4096)  # 4 MiB

    async def large(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await read_head(reader)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body))
            for at in range(0, len(body), 300_000):  # in pieces, as a real server might
                writer.write(body[at : at + 300_000])
                await writer.drain()

    async with Backend(large) as backend:
        dispatcher = Recording([backend.address])
        async with serving(dispatcher, implementation) as proxy, client(proxy) as (r, w):
            for _ in range(2):
                w.write(GET % b"large")
                _, headers, _ = await read_head(r)
                assert await read_body(r, headers) == body
                await asyncio.sleep(0)
    assert dispatcher.ended == [200, 200]


async def test_a_client_gone_mid_exchange_ends_its_pick_once(implementation: str) -> None:
    held = Held(b"ok")
    async with Backend(held) as backend:
        dispatcher = Recording([backend.address])
        async with serving(dispatcher, implementation) as proxy:
            async with client(proxy) as (_, w):
                w.write(GET % b"gone")
                await asyncio.wait_for(held.arrived.wait(), WAIT)
            held.release.set()
            await until(lambda: len(dispatcher.ended) == 1)
            await until(lambda: proxy.active_connections == 0)
    assert len(dispatcher.ended) == 1
