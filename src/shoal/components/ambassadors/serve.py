"""
Running an ambassador as a process: listen, optionally serve ``/metrics``, stop on SIGTERM.

``serve_ambassador`` prints ``listening on HOST:PORT`` once the port is bound (the real port when
0 was asked, so tests and scripts can wait for that line), and ``admin on HOST:PORT`` for the
metrics endpoint. SIGTERM or SIGINT stop it: replies already owed are written first.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import multiprocessing
import os
import signal
import socket
import sys
import time
from multiprocessing.context import SpawnProcess

from shoal.components.ambassadors.config import AmbassadorConfig, check_config, parse_listen
from shoal.components.ambassadors.driver import Ambassador
from shoal.components.ambassadors.native import make_ambassador
from shoal.dataplane.driver import loop_factory

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


async def serve_ambassador(
    config: AmbassadorConfig,
    stop: asyncio.Event | None = None,
    *,
    reuse_port: bool = False,
    announce: bool = True,
    own_process: bool = False,
) -> None:
    """Serve ``config`` until ``stop`` is set or SIGTERM/SIGINT arrives.

    ``reuse_port``: share the port with other workers; ``announce``: print ``listening on``;
    ``own_process``: this process runs nothing else (then the objects made at start-up, such as
    the hash table, are frozen out of the garbage collector's scans).
    """
    check_config(config)
    ambassador = make_ambassador(list(config.servers), config.settings)
    host, port = parse_listen(config.listen)
    await ambassador.start(host, port, reuse_port=reuse_port)
    if own_process:
        # Every pipelined command allocates a few container objects, most of them gone within
        # a loop iteration: collecting every 700 (the default) walks the hundreds of requests
        # in flight each time, so the youngest generation is allowed 50,000 (a few MB). The
        # long-lived start-up objects (imports, the hasher's table) need never be scanned.
        gc.collect()
        gc.freeze()
        gc.set_threshold(50_000, 10, 10)
    admin: asyncio.Server | None = None
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signum, stop.set)
    try:
        bound = ambassador.address
        if announce:
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


def run_ambassador(config: AmbassadorConfig, *, loop: str = "auto", workers: int = 1) -> int:
    """Run until stopped; the exit status.

    ``loop``: ``auto`` (uvloop when installed), ``uvloop`` or ``asyncio``. ``workers`` > 1 runs
    that many processes sharing the port (SO_REUSEPORT); each has its own server connections
    and health state (as separate twemproxy instances would).
    """
    check_config(config)
    if workers > 1:
        if config.admin is not None:
            raise ValueError(
                "--admin with --workers > 1 is not supported yet: each worker counts alone"
            )
        return _supervise(config, loop, workers)
    with asyncio.Runner(loop_factory=loop_factory(loop)) as runner:
        runner.run(serve_ambassador(config, own_process=True))
    return 0


def _worker(config: AmbassadorConfig, loop: str) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides; SIGTERM stops
    with asyncio.Runner(loop_factory=loop_factory(loop)) as runner:
        runner.run(serve_ambassador(config, reuse_port=True, announce=False, own_process=True))


def _supervise(config: AmbassadorConfig, loop: str, workers: int) -> int:
    """Start ``workers`` processes on one port, restart any that dies, stop them on a signal."""
    host, port = parse_listen(config.listen)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # Hold the port (bound, not listening) so port 0 gives every worker the same one.
    holder = socket.socket(family, socket.SOCK_STREAM)
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    holder.bind((host, port))
    port = holder.getsockname()[1]
    config = dataclasses.replace(
        config, listen=f"[{host}]:{port}" if family == socket.AF_INET6 else f"{host}:{port}"
    )
    context = multiprocessing.get_context("spawn")
    stopping = False

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    previous = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)}
    procs: list[SpawnProcess] = []
    started: list[float] = []
    announced = False
    try:
        for _ in range(workers):
            proc = context.Process(target=_worker, args=(config, loop), daemon=False)
            proc.start()
            procs.append(proc)
            started.append(time.monotonic())
        while not stopping:
            if not announced and _answers(host, port):
                print(f"listening on {host}:{port}", flush=True)
                announced = True
            time.sleep(0.05 if not announced else 0.2)
            for index, proc in enumerate(procs):
                if not proc.is_alive() and not stopping and time.monotonic() - started[index] > 1.0:
                    print(
                        f"worker {proc.pid} exited ({proc.exitcode}); restarting", file=sys.stderr
                    )
                    procs[index] = context.Process(
                        target=_worker, args=(config, loop), daemon=False
                    )
                    procs[index].start()
                    started[index] = time.monotonic()
    finally:
        for proc in procs:
            if proc.is_alive() and proc.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGTERM)
        for proc in procs:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.kill()
                proc.join()
        holder.close()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return 0


def _answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False
