# ruff: noqa: SIM117 -- a client's connection is nested inside the proxy's lifetime on purpose
"""The proxy against real backends on 127.0.0.1: every test runs with both request parsers.

Backends are tiny asyncio servers written here; clients are raw sockets (asyncio streams), so
every byte on the wire is visible. Each wait is bounded; nothing sleeps to wait for readiness.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from shoal.dataplane.driver import Address, ProxyServer, ProxySettings
from shoal.dataplane.http1 import Limits, Request

from .implementations import IMPLEMENTATIONS

WAIT = 5.0
Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class Backend:
    """An asyncio server whose connection tasks are tracked and cancelled on close."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.tasks: set[asyncio.Task[None]] = set()
        self.connections = 0
        self.server: asyncio.Server | None = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.tasks.add(task)
        self.connections += 1
        try:
            await self.handler(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            self.tasks.discard(task)

    async def __aenter__(self) -> Backend:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    @property
    def address(self) -> Address:
        assert self.server is not None
        host, port = self.server.sockets[0].getsockname()[:2]
        return host, port

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.server.wait_closed()


async def read_head(reader: asyncio.StreamReader) -> tuple[bytes, dict[bytes, bytes], bytes]:
    """Start line, headers (lower-case names; repeated names joined), raw head."""
    raw = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT)
    lines = raw[:-4].split(b"\r\n")
    headers: dict[bytes, bytes] = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        key = name.strip().lower()
        headers[key] = (headers[key] + b", " if key in headers else b"") + value.strip()
    return lines[0], headers, raw


async def read_body(reader: asyncio.StreamReader, headers: dict[bytes, bytes]) -> bytes:
    if headers.get(b"transfer-encoding") == b"chunked":
        body = b""
        while True:
            size = int((await asyncio.wait_for(reader.readuntil(b"\r\n"), WAIT))[:-2], 16)
            if size == 0:
                await asyncio.wait_for(reader.readuntil(b"\r\n"), WAIT)
                return body
            body += await asyncio.wait_for(reader.readexactly(size + 2), WAIT)
            body = body[:-2]
    length = int(headers.get(b"content-length", b"0"))
    return await asyncio.wait_for(reader.readexactly(length), WAIT)


async def echo_handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answers every request with its start line, headers and body, keep-alive."""
    while True:
        _, headers, raw = await read_head(reader)
        body = await read_body(reader, headers)
        payload = raw + body
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nX-Backend: echo\r\n\r\n%s"
            % (len(payload), payload)
        )
        await writer.drain()


PARSERS = [
    "python",
    "httptools",
    "general",
    *(f"compiled-{p}" for p in ("httptools", "general") if "compiled" in IMPLEMENTATIONS),
]
"""Request parsers; ``general`` is the pure one with the fast path off (every message through
the parsers and events), so both paths of the driver run every scenario; ``compiled-*``: the
same on the compiled build (see shoal.dataplane.native), the others on the pure-Python one."""


@pytest.fixture(params=PARSERS)
def parser(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def proxy_settings(parser: str, **settings: Any) -> ProxySettings:
    implementation, _, parser = parser.rpartition("-")
    settings.setdefault("implementation", implementation or "python")
    if parser == "general":
        return ProxySettings(parser="python", fast_path=False, **settings)
    return ProxySettings(parser=parser, **settings)


@contextlib.asynccontextmanager
async def proxy_to(
    address: Address | None, parser: str, **settings: Any
) -> AsyncIterator[ProxyServer]:
    def route(request: Request) -> Address | None:
        return address

    server = ProxyServer(route, proxy_settings(parser, **settings))
    await server.start("127.0.0.1", 0)
    try:
        yield server
    finally:
        await server.shutdown(deadline=2.0)


@contextlib.asynccontextmanager
async def client(
    server: ProxyServer,
) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    reader, writer = await asyncio.wait_for(asyncio.open_connection(*server.address), WAIT)
    try:
        yield reader, writer
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
) -> tuple[bytes, dict[bytes, bytes], bytes]:
    writer.write(request)
    start, headers, _ = await read_head(reader)
    return start, headers, await read_body(reader, headers)


async def test_keep_alive_both_sides_and_pool_reuse(parser: str) -> None:
    """Three requests on one client connection use one upstream connection."""
    async with Backend(echo_handler) as backend, proxy_to(backend.address, parser) as proxy:
        assert proxy.parser_name == parser.rpartition("-")[2].replace("general", "python")
        assert proxy.implementation == (parser.rpartition("-")[0] or "python")
        async with client(proxy) as (reader, writer):
            for i in range(3):
                start, headers, body = await exchange(
                    reader, writer, b"GET /%d HTTP/1.1\r\nHost: app\r\n\r\n" % i
                )
                assert start == b"HTTP/1.1 200 OK"
                assert body.startswith(b"GET /%d HTTP/1.1\r\n" % i)
                assert b"connection" not in headers
        async with client(proxy) as (reader, writer):
            await exchange(reader, writer, b"GET /again HTTP/1.1\r\nHost: app\r\n\r\n")
        assert backend.connections == 1
        assert proxy.pool.opened == 1
        assert proxy.pool.reused == 3


async def test_pipelined_requests_are_answered_in_order(parser: str) -> None:
    """Requests sent back to back come back in the same order on the same connection."""
    async with Backend(echo_handler) as backend, proxy_to(backend.address, parser) as proxy:
        async with client(proxy) as (reader, writer):
            writer.write(b"".join(b"GET /p%d HTTP/1.1\r\nHost: app\r\n\r\n" % i for i in range(5)))
            for i in range(5):
                _, headers, _ = await read_head(reader)
                body = await read_body(reader, headers)
                assert body.startswith(b"GET /p%d " % i)


async def test_request_sent_while_the_previous_one_is_in_flight(parser: str) -> None:
    """A request taken whole is in flight when the next one (and half of a third) arrives: they
    wait in the parser and are answered in order, the third once its head is complete."""
    first_seen = asyncio.Event()
    release = asyncio.Event()

    async def slow_first(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        served = 0
        while True:
            _, headers, raw = await read_head(reader)
            await read_body(reader, headers)
            if served == 0:
                first_seen.set()
                await asyncio.wait_for(release.wait(), WAIT)
            served += 1
            target = raw.split(b" ", 2)[1]
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(target), target))
            await writer.drain()

    async with Backend(slow_first) as backend, proxy_to(backend.address, parser) as proxy:
        async with client(proxy) as (reader, writer):
            writer.write(b"GET /one HTTP/1.1\r\nHost: app\r\n\r\n")
            await asyncio.wait_for(first_seen.wait(), WAIT)
            writer.write(b"GET /two HTTP/1.1\r\nHost: app\r\n\r\nGET /thr")
            await writer.drain()
            release.set()
            answers = []
            for _ in range(2):
                _, headers, _ = await read_head(reader)
                answers.append(await read_body(reader, headers))
            writer.write(b"ee HTTP/1.1\r\nHost: app\r\n\r\n")
            _, headers, _ = await read_head(reader)
            answers.append(await read_body(reader, headers))
            assert answers == [b"/one", b"/two", b"/three"]


async def test_client_half_close_after_a_request_still_gets_its_answer(parser: str) -> None:
    """The client sends one request and shuts its side: the answer comes, then the proxy closes."""
    async with Backend(echo_handler) as backend, proxy_to(backend.address, parser) as proxy:
        async with client(proxy) as (reader, writer):
            writer.write(b"GET /last HTTP/1.1\r\nHost: app\r\n\r\n")
            writer.write_eof()
            start, headers, _ = await read_head(reader)
            assert start == b"HTTP/1.1 200 OK"
            assert (await read_body(reader, headers)).startswith(b"GET /last ")
            assert await asyncio.wait_for(reader.read(), WAIT) == b""


async def test_forwarding_headers_and_hop_by_hop_removal(parser: str) -> None:
    """X-Forwarded-For is appended, -Proto set, hop-by-hop fields (and those named) dropped."""
    async with Backend(echo_handler) as backend, proxy_to(backend.address, parser) as proxy:
        async with client(proxy) as (reader, writer):
            _, _, body = await exchange(
                reader,
                writer,
                b"GET / HTTP/1.1\r\nHost: app\r\nX-Forwarded-For: 10.0.0.1\r\n"
                b"Connection: keep-alive, X-Secret\r\nX-Secret: s\r\nKeep-Alive: 5\r\n"
                b"TE: trailers\r\nProxy-Authorization: basic x\r\nX-Kept: yes\r\n\r\n",
            )
    _, seen, _ = await read_head(_reader_of(body))
    assert seen[b"x-forwarded-for"] == b"10.0.0.1, 127.0.0.1"
    assert seen[b"x-forwarded-proto"] == b"http"
    assert seen[b"x-kept"] == b"yes"
    assert seen[b"host"] == b"app"
    for gone in (b"connection", b"x-secret", b"keep-alive", b"te", b"proxy-authorization"):
        assert gone not in seen


def _reader_of(data: bytes) -> asyncio.StreamReader:
    reader = asyncio.StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    return reader


async def test_response_hop_by_hop_removed_and_http10_client_gets_close(parser: str) -> None:
    """A chunked upstream answer reaches an HTTP/1.0 client close-delimited, without its TE."""

    async def chunked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)
        writer.write(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nKeep-Alive: timeout=5\r\n"
            b"Connection: X-Hop\r\nX-Hop: 1\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
        )
        await writer.drain()
        await reader.read()

    async with Backend(chunked) as backend, proxy_to(backend.address, parser) as proxy:
        async with client(proxy) as (reader, writer):
            writer.write(b"GET / HTTP/1.0\r\n\r\n")
            data = await asyncio.wait_for(reader.read(), WAIT)
    head, _, body = data.partition(b"\r\n\r\n")
    assert body == b"abc"
    lowered = head.lower()
    assert b"connection: close" in lowered
    for gone in (b"transfer-encoding", b"keep-alive:", b"x-hop"):
        assert gone not in lowered


async def test_streaming_both_ways_is_not_buffered(parser: str) -> None:
    """A slow chunked body is relayed piece by piece, in both directions, before it ends."""
    release = asyncio.Event()
    got_first_piece = asyncio.Event()

    async def slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        _, headers, _ = await read_head(reader)
        assert headers[b"transfer-encoding"] == b"chunked"
        size = int((await reader.readuntil(b"\r\n"))[:-2], 16)
        first = await reader.readexactly(size + 2)
        assert first == b"part-1\r\n"
        got_first_piece.set()
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nreply1\r\n")
        await writer.drain()
        await release.wait()
        await asyncio.wait_for(reader.readuntil(b"0\r\n\r\n"), WAIT)
        writer.write(b"6\r\nreply2\r\n0\r\n\r\n")
        await writer.drain()

    async with Backend(slow) as backend, proxy_to(backend.address, parser) as proxy:
        async with client(proxy) as (reader, writer):
            writer.write(
                b"POST /up HTTP/1.1\r\nHost: app\r\nTransfer-Encoding: chunked\r\n\r\n"
                b"6\r\npart-1\r\n"
            )
            await asyncio.wait_for(got_first_piece.wait(), WAIT)
            _, headers, _ = await read_head(reader)
            assert headers[b"transfer-encoding"] == b"chunked"
            assert (
                await asyncio.wait_for(reader.readuntil(b"reply1\r\n"), WAIT) == b"6\r\nreply1\r\n"
            )
            release.set()
            writer.write(b"6\r\npart-2\r\n0\r\n\r\n")
            assert await asyncio.wait_for(reader.readuntil(b"0\r\n\r\n"), WAIT) == (
                b"6\r\nreply2\r\n0\r\n\r\n"
            )


async def test_large_body_streams_with_backpressure(parser: str) -> None:
    """Eight megabytes go up and come back through the proxy intact."""
    size = 8 * 1024 * 1024
    async with Backend(echo_handler) as backend, proxy_to(backend.address, parser) as proxy:
        async with client(proxy) as (reader, writer):
            writer.write(b"PUT /big HTTP/1.1\r\nHost: app\r\nContent-Length: %d\r\n\r\n" % size)
            pattern = bytes(range(256)) * 4096
            for _ in range(size // len(pattern)):
                writer.write(pattern)
                await writer.drain()
            _, headers, _ = await read_head(reader)
            body = await read_body(reader, headers)
    assert body.endswith(pattern)
    assert len(body) > size


async def test_upgrade_becomes_a_tunnel(parser: str) -> None:
    """After a 101 the proxy relays raw bytes both ways (an echo over the tunnel)."""

    async def websocket(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        _, headers, _ = await read_head(reader)
        assert headers[b"upgrade"] == b"websocket"
        assert headers[b"connection"] == b"upgrade"
        writer.write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
        )
        while data := await reader.read(1024):
            writer.write(data.upper())
            await writer.drain()

    async with Backend(websocket) as backend, proxy_to(backend.address, parser) as proxy:
        async with client(proxy) as (reader, writer):
            writer.write(
                b"GET /ws HTTP/1.1\r\nHost: app\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
            )
            start, headers, _ = await read_head(reader)
            assert start == b"HTTP/1.1 101 Switching Protocols"
            assert headers[b"upgrade"] == b"websocket"
            for word in (b"hello", b"tunnel"):
                writer.write(word)
                assert await asyncio.wait_for(reader.readexactly(len(word)), WAIT) == word.upper()


async def test_expect_100_continue_is_relayed(parser: str) -> None:
    """The upstream's 100 Continue reaches the client before it sends its body."""

    async def continuing(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        _, headers, _ = await read_head(reader)
        assert headers[b"expect"] == b"100-continue"
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        body = await read_body(reader, headers)
        writer.write(b"HTTP/1.1 201 Created\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        await writer.drain()
        await reader.read()

    async with Backend(continuing) as backend, proxy_to(backend.address, parser) as proxy:
        async with client(proxy) as (reader, writer):
            writer.write(
                b"PUT /f HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n"
            )
            start, _, _ = await read_head(reader)
            assert start == b"HTTP/1.1 100 Continue"
            writer.write(b"data")
            start, headers, _ = await read_head(reader)
            assert start == b"HTTP/1.1 201 Created"
            assert await read_body(reader, headers) == b"data"


async def test_smuggling_attempt_is_400_and_other_connections_keep_working(parser: str) -> None:
    """A CL+TE request is refused and closed; a concurrent keep-alive client is unaffected."""
    async with Backend(echo_handler) as backend, proxy_to(backend.address, parser) as proxy:
        async with client(proxy) as (good_reader, good_writer):
            _, _, body = await exchange(
                good_reader, good_writer, b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\n"
            )
            assert body.startswith(b"GET /1 ")
            async with client(proxy) as (bad_reader, bad_writer):
                bad_writer.write(
                    b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n"
                    b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /admin HTTP/1.1\r\nHost: a\r\n\r\n"
                )
                answer = await asyncio.wait_for(bad_reader.read(), WAIT)
            assert answer.startswith(b"HTTP/1.1 400 Bad Request\r\n")
            assert b"/admin" not in answer
            _, _, body = await exchange(
                good_reader, good_writer, b"GET /2 HTTP/1.1\r\nHost: a\r\n\r\n"
            )
            assert body.startswith(b"GET /2 ")
    assert b"/admin" not in body


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + b"x" * 3000 + b"\r\n\r\n", 431),
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5000\r\n\r\n", 413),
        (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
    ],
)
async def test_limits_answered_with_their_status(
    parser: str, request_bytes: bytes, status: int
) -> None:
    """Head and body limits are 431 and 413; the upstream never sees the request."""
    limits = Limits(max_head_size=2048, max_body_size=4096)
    async with (
        Backend(echo_handler) as backend,
        proxy_to(backend.address, parser, limits=limits) as proxy,
        client(proxy) as (reader, writer),
    ):
        writer.write(request_bytes)
        answer = await asyncio.wait_for(reader.read(), WAIT)
    assert answer.startswith(b"HTTP/1.1 %d " % status)
    assert backend.connections == 0


async def test_chunked_body_over_the_limit_is_413(parser: str) -> None:
    """A chunked body that passes the limit while streaming is cut and answered 413."""
    async with (
        Backend(echo_handler) as backend,
        proxy_to(backend.address, parser, limits=Limits(max_body_size=100)) as proxy,
    ):
        async with client(proxy) as (reader, writer):
            writer.write(
                b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                + b"40\r\n"
                + b"x" * 64
                + b"\r\n"
                + b"40\r\n"
                + b"y" * 64
                + b"\r\n"
            )
            answer = await asyncio.wait_for(reader.read(), WAIT)
    assert answer.startswith(b"HTTP/1.1 413 ")


async def test_upstream_down_is_502(parser: str) -> None:
    """A refused upstream connection is a 502 with a small body."""
    async with Backend(echo_handler) as backend:
        address = backend.address
    async with proxy_to(address, parser) as proxy, client(proxy) as (reader, writer):
        start, _, body = await exchange(reader, writer, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    assert start == b"HTTP/1.1 502 Bad Gateway"
    assert body.startswith(b"502 Bad Gateway\n")


async def test_no_route_is_503(parser: str) -> None:
    """When the route names no upstream the proxy answers 503."""
    async with proxy_to(None, parser) as proxy, client(proxy) as (reader, writer):
        start, _, _ = await exchange(reader, writer, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    assert start == b"HTTP/1.1 503 Service Unavailable"


async def test_upstream_slow_is_504(parser: str) -> None:
    """An upstream silent past the timeout is a 504."""
    never = asyncio.Event()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)
        await never.wait()

    async with (
        Backend(silent) as backend,
        proxy_to(backend.address, parser, upstream_timeout=0.2) as proxy,
    ):
        async with client(proxy) as (reader, writer):
            start, _, body = await exchange(reader, writer, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    assert start == b"HTTP/1.1 504 Gateway Timeout"
    assert body.startswith(b"504 Gateway Timeout\n")


async def test_upstream_closing_early_is_502(parser: str) -> None:
    """An upstream that closes without answering is a 502."""

    async def rude(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)

    async with Backend(rude) as backend, proxy_to(backend.address, parser) as proxy:
        async with client(proxy) as (reader, writer):
            start, _, _ = await exchange(reader, writer, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    assert start == b"HTTP/1.1 502 Bad Gateway"


async def test_stale_pooled_connection_is_retried(parser: str) -> None:
    """An upstream that closes its keep-alive connection after each answer causes no 502."""

    async def once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        # Close without saying so: the proxy pools the connection and finds it dead later.

    async with Backend(once) as backend, proxy_to(backend.address, parser) as proxy:
        async with client(proxy) as (reader, writer):
            for _ in range(3):
                start, _, body = await exchange(
                    reader, writer, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"
                )
                assert (start, body) == (b"HTTP/1.1 200 OK", b"ok")
                await _until(lambda: proxy.pool.idle_count() == 0)


async def _until(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(WAIT):
        while not condition():  # noqa: ASYNC110 -- polling a counter owned by the proxy
            await asyncio.sleep(0.005)


async def test_head_and_no_content_responses_have_no_body(parser: str) -> None:
    """A HEAD answer keeps its Content-Length but has no body; the connection stays usable."""

    async def heady(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            start, _, _ = await read_head(reader)
            if start.startswith(b"HEAD"):
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n")
            else:
                writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
            await writer.drain()

    async with Backend(heady) as backend, proxy_to(backend.address, parser) as proxy:
        async with client(proxy) as (reader, writer):
            writer.write(b"HEAD / HTTP/1.1\r\nHost: a\r\n\r\n")
            _, headers, _ = await read_head(reader)
            assert headers[b"content-length"] == b"1234"
            writer.write(b"DELETE /x HTTP/1.1\r\nHost: a\r\n\r\n")
            start, headers, _ = await read_head(reader)
            assert start == b"HTTP/1.1 204 No Content"
            assert b"transfer-encoding" not in headers
            writer.write(b"HEAD / HTTP/1.1\r\nHost: a\r\n\r\n")
            start, _, _ = await read_head(reader)
            assert start == b"HTTP/1.1 200 OK"


async def test_graceful_shutdown_finishes_in_flight_requests(parser: str) -> None:
    """Shutdown waits for an in-flight response, which ends with Connection: close."""
    release = asyncio.Event()
    arrived = asyncio.Event()

    async def slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)
        arrived.set()
        await release.wait()
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\ndone")
        await writer.drain()
        await reader.read()

    async with Backend(slow) as backend:
        server = ProxyServer(lambda r: backend.address, proxy_settings(parser))
        await server.start("127.0.0.1", 0)
        idle_reader, idle_writer = await asyncio.open_connection(*server.address)
        reader, writer = await asyncio.open_connection(*server.address)
        writer.write(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        await asyncio.wait_for(arrived.wait(), WAIT)
        async with asyncio.TaskGroup() as group:
            stopping = group.create_task(server.shutdown(deadline=WAIT))
            assert await asyncio.wait_for(idle_reader.read(), WAIT) == b""
            release.set()
            response = await asyncio.wait_for(reader.read(), WAIT)
        await stopping
        for w in (writer, idle_writer):
            w.close()
    assert response.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"Connection: close" in response
    assert response.endswith(b"done")


UVLOOP_SCENARIOS = [
    test_keep_alive_both_sides_and_pool_reuse,
    test_pipelined_requests_are_answered_in_order,
    test_streaming_both_ways_is_not_buffered,
    test_large_body_streams_with_backpressure,
    test_upgrade_becomes_a_tunnel,
    test_smuggling_attempt_is_400_and_other_connections_keep_working,
    test_upstream_down_is_502,
    test_upstream_slow_is_504,
    test_stale_pooled_connection_is_retried,
    test_graceful_shutdown_finishes_in_flight_requests,
]


@pytest.mark.parametrize("scenario", UVLOOP_SCENARIOS, ids=lambda f: f.__name__[5:])
@pytest.mark.parametrize("parser_name", PARSERS)
def test_scenarios_on_uvloop(scenario: Callable[[str], Awaitable[None]], parser_name: str) -> None:
    """The same scenarios on uvloop (the suite above runs them on the stock asyncio loop)."""
    import uvloop

    async def checked() -> None:
        before = asyncio.all_tasks()
        await scenario(parser_name)
        current = asyncio.current_task()
        leaked = [t for t in asyncio.all_tasks() - before if t is not current and not t.done()]
        assert not leaked, leaked

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(asyncio.wait_for(checked(), 30))
