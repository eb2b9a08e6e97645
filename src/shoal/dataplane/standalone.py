"""
The standalone proxy: ``--listen HOST:PORT`` and ``--backend HOST:PORT`` (repeated), balanced.

Theory of operation
-------------------
:func:`run_proxy` is what ``shoal proxy`` calls. It builds a route from the backends and a
balancing policy (:func:`shoal.dataplane.balancing.make_picker`; round robin by default), then
either serves in this process (:func:`serve_proxy` on a loop from
:func:`shoal.dataplane.driver.loop_factory`) or, with ``workers > 1``, supervises that many
worker processes that each bind the same address with ``SO_REUSEPORT``: the kernel spreads new
connections across them. The parent restarts a worker that dies (at most once a second per
worker) and, on SIGTERM or SIGINT, forwards SIGTERM and waits for the workers' graceful
shutdown before killing any that overrun. In every process SIGTERM/SIGINT drains: stop
accepting, finish in-flight requests within ``shutdown_timeout``, exit 0.

When ready it prints ``listening on HOST:PORT`` (the real port when 0 was asked) on stdout.
``python -m shoal.dataplane.standalone`` runs it with the same options.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import multiprocessing
import os
import signal
import socket
import sys
import time
from collections.abc import Sequence
from multiprocessing.context import SpawnProcess

from shoal.dataplane.balancing import POLICIES, Endpoint, make_picker
from shoal.dataplane.driver import LOOPS, Address, ProxyServer, ProxySettings, Route, loop_factory
from shoal.dataplane.http1 import PARSERS, Request

__all__ = ["main", "parse_address", "round_robin_route", "run_proxy", "serve_proxy"]


def parse_address(text: str) -> Address:
    """``HOST:PORT`` (``[v6]:PORT`` too) as a ``(host, port)`` pair."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise ValueError(f"expected HOST:PORT, got {text!r}")
    return host.strip("[]"), int(port)


def round_robin_route(backends: Sequence[str], policy: str = "round-robin") -> Route:
    """A route over ``backends`` with a :mod:`~shoal.dataplane.balancing` policy.

    ``hash`` hashes the request target. The driver does not report request ends to the route
    yet, so ``least-request`` sees no requests in flight and behaves as two random choices.
    """
    endpoints = [Endpoint(f"{h}:{p}") for h, p in map(parse_address, backends)]
    if not endpoints:
        raise ValueError("at least one backend is needed")
    addresses = {e.address: parse_address(e.address) for e in endpoints}
    picker = make_picker(policy)

    def route(request: Request) -> Address | None:
        endpoint = picker.pick(endpoints, key=request.target if policy == "hash" else None)
        return None if endpoint is None else addresses[endpoint.address]

    return route


async def serve_proxy(
    listen: str,
    backends: Sequence[str],
    *,
    policy: str = "round-robin",
    settings: ProxySettings | None = None,
    reuse_port: bool = False,
    shutdown_timeout: float = 10.0,
    stop: asyncio.Event | None = None,
) -> None:
    """Serve until ``stop`` is set or SIGTERM/SIGINT arrives, then drain."""
    host, port = parse_address(listen)
    server = ProxyServer(round_robin_route(backends, policy), settings)
    await server.start(host, port, reuse_port=reuse_port)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signum, stop.set)
    bound_host, bound_port = server.address
    print(f"listening on {bound_host}:{bound_port}", flush=True)
    try:
        await stop.wait()
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.remove_signal_handler(signum)
        await server.shutdown(shutdown_timeout)


def _worker(
    listen: str,
    backends: list[str],
    policy: str,
    loop: str,
    settings: ProxySettings,
    shutdown_timeout: float,
) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides; SIGTERM drains
    with asyncio.Runner(loop_factory=loop_factory(loop)) as runner:
        runner.run(
            serve_proxy(
                listen,
                backends,
                policy=policy,
                settings=settings,
                reuse_port=True,
                shutdown_timeout=shutdown_timeout,
            )
        )


def run_proxy(
    listen: str,
    backends: Sequence[str],
    *,
    policy: str = "round-robin",
    workers: int = 1,
    loop: str = "auto",
    parser: str = "auto",
    settings: ProxySettings | None = None,
    shutdown_timeout: float = 10.0,
) -> int:
    """Run the proxy until SIGTERM/SIGINT; the exit status (0 after a clean drain).

    ``policy`` is one of :data:`shoal.dataplane.balancing.POLICIES`, ``loop`` one of
    :data:`shoal.dataplane.driver.LOOPS`, ``parser`` one of :data:`shoal.dataplane.http1.PARSERS`
    (it overrides ``settings.parser``). ``workers > 1`` runs that many ``SO_REUSEPORT`` worker
    processes under this one.
    """
    if policy not in POLICIES:
        raise ValueError(f"unknown policy {policy!r}: must be one of {list(POLICIES)}")
    if workers < 1:
        raise ValueError("workers must be at least 1")
    settings = dataclasses.replace(settings or ProxySettings(), parser=parser)
    round_robin_route(backends, policy)  # validate the backends before forking
    if workers == 1:
        with asyncio.Runner(loop_factory=loop_factory(loop)) as runner:
            runner.run(
                serve_proxy(
                    listen,
                    backends,
                    policy=policy,
                    settings=settings,
                    shutdown_timeout=shutdown_timeout,
                )
            )
        return 0
    return _supervise(listen, list(backends), policy, loop, settings, workers, shutdown_timeout)


def _supervise(
    listen: str,
    backends: list[str],
    policy: str,
    loop: str,
    settings: ProxySettings,
    workers: int,
    shutdown_timeout: float,
) -> int:
    host, port = parse_address(listen)
    # Hold the port (bound, not listening) so port 0 gives every worker the same one.
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    holder = socket.socket(family, socket.SOCK_STREAM)
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    holder.bind((host, port))
    port = holder.getsockname()[1]
    address = f"[{host}]:{port}" if family == socket.AF_INET6 else f"{host}:{port}"
    context = multiprocessing.get_context("spawn")
    stopping = False

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    previous = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)}
    args = (address, backends, policy, loop, settings, shutdown_timeout)
    procs: list[SpawnProcess] = []
    started: list[float] = []
    try:
        for _ in range(workers):
            proc = context.Process(target=_worker, args=args, daemon=False)
            proc.start()
            procs.append(proc)
            started.append(time.monotonic())
        while not stopping:
            time.sleep(0.2)
            for index, proc in enumerate(procs):
                if not proc.is_alive() and not stopping:
                    if time.monotonic() - started[index] < 1.0:
                        continue  # at most one restart a second per worker
                    print(
                        f"worker {proc.pid} exited ({proc.exitcode}); restarting", file=sys.stderr
                    )
                    procs[index] = context.Process(target=_worker, args=args, daemon=False)
                    procs[index].start()
                    started[index] = time.monotonic()
    finally:
        for proc in procs:
            if proc.is_alive() and proc.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + shutdown_timeout + 5.0
        for proc in procs:
            proc.join(max(0.0, deadline - time.monotonic()))
            if proc.is_alive():
                proc.kill()
                proc.join(5.0)
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        holder.close()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m shoal.dataplane.standalone --listen HOST:PORT --backend HOST:PORT ...``"""
    parser = argparse.ArgumentParser(prog="python -m shoal.dataplane.standalone")
    parser.add_argument("--listen", required=True, help="HOST:PORT to listen on")
    parser.add_argument("--backend", action="append", required=True, help="HOST:PORT (repeat)")
    parser.add_argument("--policy", choices=POLICIES, default="round-robin")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--loop", choices=LOOPS, default="auto")
    parser.add_argument("--parser", choices=PARSERS, default="auto")
    options = parser.parse_args(argv)
    return run_proxy(
        options.listen,
        options.backend,
        policy=options.policy,
        workers=options.workers,
        loop=options.loop,
        parser=options.parser,
    )


if __name__ == "__main__":
    sys.exit(main())
