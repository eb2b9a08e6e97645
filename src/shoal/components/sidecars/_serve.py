"""What every proxying component shares: address parsing, TLS contexts, and serving until a signal.

A component builds a :class:`~shoal.dataplane.driver.ProxyServer` (its own route and admit
functions), then :func:`serve_until_stopped` listens, prints ``listening on HOST:PORT`` (the real
port when 0 was asked, so tests and scripts can wait for it), runs the component's background
jobs, and on SIGTERM or SIGINT drains in-flight requests before returning.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import ssl
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from shoal.dataplane.driver import Address, ProxyServer, loop_factory
from shoal.dataplane.standalone import parse_address

__all__ = ["parse_address", "run", "serve_until_stopped"]

Job = Callable[[asyncio.Event], Coroutine[Any, Any, None]]
"""A background job of a component; it returns when the event is set."""


async def serve_until_stopped(
    server: ProxyServer,
    listen: str,
    *,
    tls: ssl.SSLContext | None = None,
    jobs: Sequence[Job] = (),
    stop: asyncio.Event | None = None,
    shutdown_timeout: float = 10.0,
    on_ready: Callable[[Address], None] | None = None,
) -> None:
    """Serve ``server`` on ``listen`` until ``stop`` is set or SIGTERM/SIGINT arrives, then drain."""
    host, port = parse_address(listen)
    await server.start(host, port, ssl=tls)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    installed: list[signal.Signals] = []
    for signum in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signum, stop.set)
            installed.append(signum)
    bound = server.address
    if on_ready is not None:
        on_ready(bound)
    else:
        print(f"listening on {bound[0]}:{bound[1]}", flush=True)
    try:
        async with asyncio.TaskGroup() as group:
            for job in jobs:
                group.create_task(job(stop))
            await stop.wait()
    finally:
        for signum in installed:
            loop.remove_signal_handler(signum)
        await server.shutdown(shutdown_timeout)


def run(main: Callable[[], Coroutine[Any, Any, None]], loop: str = "auto") -> None:
    """Run a component's ``main`` coroutine on a new loop (uvloop when installed)."""
    with asyncio.Runner(loop_factory=loop_factory(loop)) as runner:
        runner.run(main())
