"""
Running an ambassador as a process: listen, optionally serve ``/metrics``, stop on SIGTERM.

``serve_ambassador`` prints ``listening on HOST:PORT`` once the port is bound (the real port when
0 was asked, so tests and scripts can wait for that line), and ``admin on HOST:PORT`` for the
metrics endpoint. SIGTERM or SIGINT stop it: replies already owed are written first.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal

from shoal.components.ambassadors.config import AmbassadorConfig, check_config, parse_listen
from shoal.components.ambassadors.driver import Ambassador

__all__ = ["run_ambassador", "serve_ambassador"]

_HEAD_LIMIT = 8192


async def _admin(
    ambassador: Ambassador, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    """A tiny HTTP/1.0 responder: ``GET /metrics`` (Prometheus text) and ``GET /healthz``."""
    try:
        async with asyncio.timeout(5):
            head = await reader.readuntil(b"\r\n\r\n")
    except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
        writer.close()
        return
    parts = head.split(b"\r\n", 1)[0].split()
    path = parts[1].split(b"?", 1)[0] if len(parts) >= 2 else b""
    if len(parts) >= 2 and parts[0] == b"GET" and path == b"/metrics":
        body = ambassador.render_metrics().encode()
        status, ctype = b"200 OK", b"text/plain; version=0.0.4; charset=utf-8"
    elif len(parts) >= 2 and parts[0] == b"GET" and path == b"/healthz":
        body, status, ctype = b"ok\n", b"200 OK", b"text/plain"
    else:
        body, status, ctype = b"not found: try /metrics\n", b"404 Not Found", b"text/plain"
    writer.write(
        b"HTTP/1.0 %b\r\nContent-Type: %b\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%b"
        % (status, ctype, len(body), body)
    )
    with contextlib.suppress(ConnectionError):
        await writer.drain()
    writer.close()


async def serve_ambassador(config: AmbassadorConfig, stop: asyncio.Event | None = None) -> None:
    """Serve ``config`` until ``stop`` is set or SIGTERM/SIGINT arrives."""
    check_config(config)
    ambassador = Ambassador(list(config.servers), config.settings)
    host, port = parse_listen(config.listen)
    await ambassador.start(host, port)
    admin: asyncio.Server | None = None
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signum, stop.set)
    try:
        bound = ambassador.address
        print(f"listening on {bound[0]}:{bound[1]}", flush=True)
        if config.admin is not None:
            admin_host, admin_port = parse_listen(config.admin)

            async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
                await _admin(ambassador, reader, writer)

            admin = await asyncio.start_server(handle, admin_host, admin_port, limit=_HEAD_LIMIT)
            admin_bound = admin.sockets[0].getsockname()[:2]
            print(f"admin on {admin_bound[0]}:{admin_bound[1]}", flush=True)
        await stop.wait()
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.remove_signal_handler(signum)
        if admin is not None:
            admin.close()
        await ambassador.shutdown()


def run_ambassador(config: AmbassadorConfig, *, loop: str = "auto") -> int:
    """Run until stopped; the exit status. ``loop``: ``auto`` (uvloop when installed), ``uvloop`` or ``asyncio``."""
    from shoal.dataplane.driver import loop_factory

    with asyncio.Runner(loop_factory=loop_factory(loop)) as runner:
        runner.run(serve_ambassador(config))
    return 0
