"""The standalone proxy as a command: round robin over backends, SO_REUSEPORT workers, SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import Awaitable, Callable

import pytest

from shoal.dataplane.standalone import parse_address, round_robin_route


def test_parse_address() -> None:
    """HOST:PORT and [v6]:PORT are accepted; anything else is refused."""
    assert parse_address("127.0.0.1:8000") == ("127.0.0.1", 8000)
    assert parse_address("[::1]:9") == ("::1", 9)
    with pytest.raises(ValueError, match="HOST:PORT"):
        parse_address("localhost")


def test_round_robin_route_alternates() -> None:
    """The default policy takes the backends in turn."""
    from shoal.dataplane.http1 import make_request_parser

    route = round_robin_route(["127.0.0.1:1", "127.0.0.1:2"])
    [head, _] = make_request_parser("python").feed(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    assert [route(head) for _ in range(4)] == [  # type: ignore[arg-type]
        ("127.0.0.1", 1),
        ("127.0.0.1", 2),
        ("127.0.0.1", 1),
        ("127.0.0.1", 2),
    ]


async def _answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, name: bytes) -> None:
    with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
        while True:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(name), name))
            await writer.drain()
    writer.close()


@pytest.mark.parametrize("workers", [1, 2])
async def test_standalone_balances_and_stops_on_sigterm(workers: int) -> None:
    """Requests alternate between two backends; SIGTERM drains and exits 0."""
    tasks: set[asyncio.Task[None]] = set()

    def serving(
        name: bytes,
    ) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            assert task is not None
            tasks.add(task)
            try:
                await _answer(reader, writer, name)
            finally:
                tasks.discard(task)

        return handle

    a = await asyncio.start_server(serving(b"a"), "127.0.0.1", 0)
    b = await asyncio.start_server(serving(b"b"), "127.0.0.1", 0)
    backends = [f"127.0.0.1:{s.sockets[0].getsockname()[1]}" for s in (a, b)]
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "shoal.dataplane.standalone",
        "--listen",
        "127.0.0.1:0",
        *[arg for backend in backends for arg in ("--backend", backend)],
        "--workers",
        str(workers),
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 20)
        assert line.startswith(b"listening on 127.0.0.1:")
        port = int(line.rsplit(b":", 1)[1])
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 5)
        answers = []
        for _ in range(4):
            writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            answers.append(await asyncio.wait_for(reader.readexactly(1), 5))
        assert sorted(answers) == [b"a", b"a", b"b", b"b"]
        writer.close()
        await writer.wait_closed()
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 20) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        for server in (a, b):
            server.close()
        for task in list(tasks):
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for server in (a, b):
            await server.wait_closed()
