"""Serve an aiohttp application on ``HOST:PORT`` until asked to stop (shared by the adapters)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator

from aiohttp import web

from shoal.dataplane.standalone import parse_address

__all__ = ["running", "serve_until_stopped"]


@contextlib.asynccontextmanager
async def running(app: web.Application, listen: str) -> AsyncIterator[tuple[str, int]]:
    """Serve ``app`` on ``listen`` (port 0: any free port) and yield the bound address."""
    host, port = parse_address(listen)
    # No access log: a scrape or probe every few seconds would drown the container's own logs.
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port, reuse_address=True)
        await site.start()
        bound = runner.addresses[0]
        yield str(bound[0]), int(bound[1])
    finally:
        await runner.cleanup()


async def serve_until_stopped(
    app: web.Application, listen: str, *, stop: asyncio.Event | None = None
) -> None:
    """Serve until ``stop`` is set or SIGTERM/SIGINT arrives; prints ``listening on HOST:PORT``."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signum, stop.set)
    try:
        async with running(app, listen) as (host, port):
            print(f"listening on {host}:{port}", flush=True)
            await stop.wait()
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.remove_signal_handler(signum)
