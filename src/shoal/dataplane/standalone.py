"""
The proxy as a process: what ``shoal proxy`` runs, from flags or from a ``--config`` file.

Theory of operation
-------------------
:func:`run_proxy` takes :class:`ServeOptions` and serves a :class:`shoal.dataplane.runtime.Proxy`
either in this process (:func:`serve` on a loop from :func:`shoal.dataplane.driver.loop_factory`)
or, with ``workers > 1``, in that many worker processes that bind the same addresses with
``SO_REUSEPORT``: the kernel spreads new connections across them. The parent restarts a worker
that dies (at most once a second per worker), forwards SIGHUP, and on SIGTERM or SIGINT forwards
SIGTERM and waits for the workers' graceful shutdown before killing any that overrun.

Two ways to say what to serve:

* flags: ``--listen HOST:PORT`` and ``--backend HOST:PORT`` (repeated) make one listener with one
  route; ``--policy`` balances, ``--shard-regexp`` makes every backend a shard (the key is the
  regexp's first capture over the path), ``--health-path`` turns on active HTTP checks;
* ``--config FILE``: a ``ProxyConfig`` (:mod:`shoal.model.proxy`) with listeners bound on
  ``--host``, Services resolved in ``--namespace`` (:mod:`shoal.dataplane.configfile`) and
  resolved again every ``resolve_interval`` seconds. **SIGHUP reloads the file** and applies it
  in place (:meth:`Proxy.apply`: no listening socket is closed and reopened, no request fails); a
  file with errors is reported on stderr and the running configuration stays.

In every process SIGTERM/SIGINT drains: stop accepting, finish in-flight requests within
``shutdown_timeout``, exit 0. When ready it prints ``listening on HOST:PORT`` per listener (the
real port when 0 was asked) and ``admin on HOST:PORT`` on stdout, and ``reloaded`` after each
successful SIGHUP reload. ``python -m shoal.dataplane.standalone`` takes the same options.
"""

from __future__ import annotations

import argparse
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
from collections.abc import Sequence
from dataclasses import dataclass, field
from multiprocessing.context import SpawnProcess
from typing import TextIO

from shoal.dataplane.balancing import POLICIES, Endpoint, make_picker
from shoal.dataplane.config import (
    BackendConfig,
    HashKey,
    ListenerConfig,
    RouteConfig,
    RuntimeConfig,
    ShardConfig,
    split_address,
)
from shoal.dataplane.configfile import ServiceResolver, load_proxy_config, runtime_config
from shoal.dataplane.driver import LOOPS, Address, ProxySettings, Route, loop_factory
from shoal.dataplane.health import ActiveCheckSettings
from shoal.dataplane.http1 import PARSERS, Request
from shoal.dataplane.native import IMPLEMENTATIONS, resolve
from shoal.dataplane.runtime import ACCESS_LOG_FORMATS, AccessLog, Proxy
from shoal.errors import InvalidObjectsError
from shoal.model.proxy import ProxyConfig

__all__ = [
    "ServeOptions",
    "flags_config",
    "main",
    "parse_address",
    "round_robin_route",
    "run_proxy",
    "serve",
]


def parse_address(text: str) -> Address:
    """``HOST:PORT`` (``[v6]:PORT`` too) as a ``(host, port)`` pair."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise ValueError(f"expected HOST:PORT, got {text!r}")
    return host.strip("[]"), int(port)


def round_robin_route(backends: Sequence[str], policy: str = "round-robin") -> Route:
    """A plain route callable over ``backends`` (for embedding a bare ``ProxyServer``).

    ``hash`` hashes the request target. No health, retries or in-flight counts: use
    :class:`~shoal.dataplane.runtime.Proxy` for those.
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


@dataclass(frozen=True, slots=True)
class ServeOptions:
    """Everything ``shoal proxy`` can be told (picklable: workers get a copy)."""

    listen: str | None = None
    """Flags form: ``HOST:PORT`` to listen on."""
    backends: tuple[str, ...] = ()
    """Flags form: ``HOST:PORT`` of each backend."""
    policy: str = "round-robin"
    """Flags form: one of :data:`shoal.dataplane.balancing.POLICIES`."""
    shard_regexp: str | None = None
    """Flags form: shard by this regexp's first capture over the path, one shard per backend."""
    health_path: str | None = None
    """Flags form: active HTTP checks of this path on every backend."""
    config: str | None = None
    """A ProxyConfig file (instead of the flags form)."""
    host: str = "127.0.0.1"
    """Config form: the address every listener binds."""
    namespace: str = "default"
    """Config form: the namespace of ``service:`` backends (for DNS names)."""
    admin: str | None = None
    """``HOST:PORT`` of ``/healthz`` and ``/metrics`` (config form default: host and admin.port)."""
    access_log: str | None = None
    """A file to append one line per request to, or ``-`` for stdout."""
    access_log_format: str = "combined"
    """``combined`` or ``json``."""
    resolve_interval: float = 10.0
    """Config form: seconds between resolutions of ``service:`` backends."""
    settings: ProxySettings = field(default_factory=ProxySettings)
    shutdown_timeout: float = 10.0
    """Seconds in-flight requests get on SIGTERM."""

    def check(self) -> None:
        """Raise ValueError for a contradictory or malformed set of options."""
        try:
            resolve(self.settings.implementation)
        except ImportError as error:  # "compiled" asked for and not built
            raise ValueError(str(error)) from error
        if (self.config is None) == (self.listen is None):
            raise ValueError("give either --config FILE or --listen HOST:PORT with --backend")
        if self.config is not None and self.backends:
            raise ValueError("--backend goes with --listen, not with --config")
        if self.listen is not None:
            if not self.backends:
                raise ValueError("at least one backend is needed")
            flags_config(self).validate()
        if self.admin is not None:
            parse_address(self.admin)
        if self.access_log_format not in ACCESS_LOG_FORMATS:
            raise ValueError(f"--access-log-format must be one of {list(ACCESS_LOG_FORMATS)}")
        if self.policy not in POLICIES:
            raise ValueError(f"unknown policy {self.policy!r}: must be one of {list(POLICIES)}")


def flags_config(options: ServeOptions) -> RuntimeConfig:
    """The runtime configuration of the flags form."""
    assert options.listen is not None
    host, port = parse_address(options.listen)
    backends = tuple(BackendConfig(address) for address in options.backends)
    for backend in backends:
        split_address(backend.address)
    health = None
    if options.health_path is not None:
        health = ActiveCheckSettings(http_path=options.health_path)
    if options.shard_regexp is not None:
        route = RouteConfig(
            name="default",
            shards=tuple(ShardConfig(b.address, (b,)) for b in backends),
            shard_regexp=options.shard_regexp,
            policy=options.policy,
            health=health,
        )
    else:
        route = RouteConfig(
            name="default",
            backends=backends,
            policy=options.policy,
            hash_key=HashKey("path"),
            health=health,
        )
    admin = parse_address(options.admin) if options.admin is not None else None
    return RuntimeConfig(
        listeners=(ListenerConfig(name="default", port=port, routes=(route,), host=host),),
        admin=admin,
    )


async def _from_file(options: ServeOptions, resolver: ServiceResolver) -> RuntimeConfig:
    assert options.config is not None
    model = load_proxy_config(options.config)
    return await _resolved(model, options, resolver)


async def _resolved(
    model: ProxyConfig, options: ServeOptions, resolver: ServiceResolver
) -> RuntimeConfig:
    admin = parse_address(options.admin) if options.admin is not None else None
    return await runtime_config(model, host=options.host, admin=admin, resolver=resolver)


def _uses_services(model: ProxyConfig) -> bool:
    for listener in model.listeners:
        for route in listener.routes:
            backends = list(route.backends or [])
            for shard in route.shards or []:
                backends.extend(shard.backends)
            if any(b.service is not None for b in backends):
                return True
    return False


def _open_log(options: ServeOptions) -> tuple[AccessLog | None, TextIO | None]:
    if options.access_log is None:
        return None, None
    if options.access_log == "-":
        return AccessLog(sys.stdout, options.access_log_format), None
    stream = open(options.access_log, "a", encoding="utf-8")  # noqa: SIM115 -- closed by serve
    return AccessLog(stream, options.access_log_format), stream


async def serve(
    options: ServeOptions,
    *,
    reuse_port: bool = False,
    stop: asyncio.Event | None = None,
) -> None:
    """Serve until ``stop`` is set or SIGTERM/SIGINT arrives, then drain; SIGHUP reloads."""
    resolver = ServiceResolver(options.namespace)
    model: ProxyConfig | None = None
    if options.config is not None:
        model = load_proxy_config(options.config)
        runtime = await _resolved(model, options, resolver)
    else:
        runtime = flags_config(options)
    access_log, log_file = _open_log(options)
    proxy = Proxy(runtime, options.settings, access_log=access_log, reuse_port=reuse_port)
    stop = stop or asyncio.Event()
    reload = asyncio.Event()
    wake = asyncio.Event()
    loop = asyncio.get_running_loop()

    def stopping() -> None:
        stop.set()
        wake.set()

    def reloading() -> None:
        reload.set()
        wake.set()

    handlers = {signal.SIGTERM: stopping, signal.SIGINT: stopping, signal.SIGHUP: reloading}
    try:
        await proxy.start()
        for signum, handler in handlers.items():
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(signum, handler)
        for listener in runtime.listeners:
            host, port = proxy.address(listener.name)
            _announce(f"listening on {host}:{port}")
        if proxy.admin_address is not None:
            host, port = proxy.admin_address
            _announce(f"admin on {host}:{port}")
        # What exists now (modules, configuration, compiled tables) lives as long as the
        # process: keep it out of the cyclic collector's full passes, which would walk all of it
        # while requests wait (a tail-latency stall); per-request objects are freed by refcount.
        gc.freeze()
        while not stop.is_set():
            periodic = model is not None and _uses_services(model)
            timeout = options.resolve_interval if periodic else None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), timeout)
            wake.clear()
            if stop.is_set():
                break
            if reload.is_set():
                reload.clear()
                if options.config is None:
                    print("SIGHUP: nothing to reload without --config", file=sys.stderr)
                    continue
                try:
                    model = load_proxy_config(options.config)
                    await proxy.apply(await _resolved(model, options, resolver))
                except (InvalidObjectsError, ValueError, OSError) as error:
                    print(
                        f"reload of {options.config} failed; still serving the previous "
                        f"configuration:\n{error}",
                        file=sys.stderr,
                        flush=True,
                    )
                else:
                    _announce("reloaded")
            elif model is not None:
                fresh = await _resolved(model, options, resolver)
                if fresh != proxy.config:
                    with contextlib.suppress(ValueError, OSError):
                        await proxy.apply(fresh)
    finally:
        for signum in handlers:
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.remove_signal_handler(signum)
        await proxy.shutdown(options.shutdown_timeout)
        if log_file is not None:
            log_file.close()


def _announce(line: str) -> None:
    """One line on stdout in one write: with --workers every worker shares the parent's stdout,
    and ``print`` may split a line into two writes, so two workers' lines could interleave
    (``reloadedreloaded``) and a reader waiting for whole lines would miss one."""
    sys.stdout.flush()
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # a captured stream (tests, embedding)
        print(line, flush=True)
        return
    os.write(fd, f"{line}\n".encode())


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
    """The flags form of :func:`serve` (kept for callers of the earlier API)."""
    options = ServeOptions(
        listen=listen,
        backends=tuple(backends),
        policy=policy,
        settings=settings or ProxySettings(),
        shutdown_timeout=shutdown_timeout,
    )
    await serve(options, reuse_port=reuse_port, stop=stop)


def _worker(options: ServeOptions, loop: str) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides; SIGTERM drains
    with asyncio.Runner(loop_factory=loop_factory(loop)) as runner:
        runner.run(serve(options, reuse_port=True))


def run_proxy(
    listen: str | None = None,
    backends: Sequence[str] = (),
    *,
    policy: str = "round-robin",
    workers: int = 1,
    loop: str = "auto",
    parser: str = "auto",
    settings: ProxySettings | None = None,
    shutdown_timeout: float = 10.0,
    options: ServeOptions | None = None,
) -> int:
    """Run the proxy until SIGTERM/SIGINT; the exit status (0 after a clean drain).

    Either the flags (``listen``, ``backends``, ``policy``) or ``options`` (every option,
    ``--config`` included). ``loop`` is one of :data:`shoal.dataplane.driver.LOOPS`, ``parser``
    one of :data:`shoal.dataplane.http1.PARSERS` (it overrides ``settings.parser``);
    ``workers > 1`` runs that many ``SO_REUSEPORT`` worker processes under this one. Raises
    ValueError (bad options) or :class:`InvalidObjectsError` (a bad config file) before serving.
    """
    if options is None:
        options = ServeOptions(
            listen=listen,
            backends=tuple(backends),
            policy=policy,
            settings=settings or ProxySettings(),
            shutdown_timeout=shutdown_timeout,
        )
    if workers < 1:
        raise ValueError("workers must be at least 1")
    if loop not in LOOPS:
        raise ValueError(f"unknown loop {loop!r}: must be one of {list(LOOPS)}")
    options = dataclasses.replace(
        options, settings=dataclasses.replace(options.settings, parser=parser)
    )
    options.check()
    if options.config is not None:
        load_proxy_config(options.config)  # report a bad file before forking
    if workers == 1:
        with asyncio.Runner(loop_factory=loop_factory(loop)) as runner:
            runner.run(serve(options))
        return 0
    return _supervise(options, loop, workers)


def _supervise(options: ServeOptions, loop: str, workers: int) -> int:
    holder: socket.socket | None = None
    if options.listen is not None:
        host, port = parse_address(options.listen)
        # Hold the port (bound, not listening) so port 0 gives every worker the same one.
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        holder = socket.socket(family, socket.SOCK_STREAM)
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        holder.bind((host, port))
        port = holder.getsockname()[1]
        listen = f"[{host}]:{port}" if family == socket.AF_INET6 else f"{host}:{port}"
        options = dataclasses.replace(options, listen=listen)
    context = multiprocessing.get_context("spawn")
    stopping = False
    reloads = 0

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    def reload(signum: int, frame: object) -> None:
        nonlocal reloads
        reloads += 1

    previous = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)}
    previous[signal.SIGHUP] = signal.signal(signal.SIGHUP, reload)
    args = (options, loop)
    procs: list[SpawnProcess] = []
    started: list[float] = []
    forwarded = 0
    try:
        for _ in range(workers):
            proc = context.Process(target=_worker, args=args, daemon=False)
            proc.start()
            procs.append(proc)
            started.append(time.monotonic())
        while not stopping:
            time.sleep(0.2)
            if reloads != forwarded:
                forwarded = reloads
                for proc in procs:
                    if proc.is_alive() and proc.pid is not None:
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(proc.pid, signal.SIGHUP)
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
        deadline = time.monotonic() + options.shutdown_timeout + 5.0
        for proc in procs:
            proc.join(max(0.0, deadline - time.monotonic()))
            if proc.is_alive():
                proc.kill()
                proc.join(5.0)
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if holder is not None:
            holder.close()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m shoal.dataplane.standalone`` with ``shoal proxy``'s options."""
    parser = argparse.ArgumentParser(prog="python -m shoal.dataplane.standalone")
    parser.add_argument("--listen", help="HOST:PORT to listen on")
    parser.add_argument("--backend", action="append", default=[], help="HOST:PORT (repeat)")
    parser.add_argument("--policy", choices=POLICIES, default="round-robin")
    parser.add_argument("--shard-regexp")
    parser.add_argument("--health-path")
    parser.add_argument("--config")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--namespace", default="default")
    parser.add_argument("--admin")
    parser.add_argument("--access-log")
    parser.add_argument("--access-log-format", choices=ACCESS_LOG_FORMATS, default="combined")
    parser.add_argument("--resolve-interval", type=float, default=10.0)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--loop", choices=LOOPS, default="auto")
    parser.add_argument("--parser", choices=PARSERS, default="auto")
    parser.add_argument(
        "--implementation",
        choices=IMPLEMENTATIONS,
        default="auto",
        help="compiled (Cython) or pure-Python hot path; auto: compiled when built",
    )
    args = parser.parse_args(argv)
    options = ServeOptions(
        listen=args.listen,
        backends=tuple(args.backend),
        policy=args.policy,
        shard_regexp=args.shard_regexp,
        health_path=args.health_path,
        config=args.config,
        host=args.host,
        namespace=args.namespace,
        admin=args.admin,
        access_log=args.access_log,
        access_log_format=args.access_log_format,
        resolve_interval=args.resolve_interval,
        settings=ProxySettings(implementation=args.implementation),
    )
    try:
        return run_proxy(workers=args.workers, loop=args.loop, parser=args.parser, options=options)
    except (ValueError, InvalidObjectsError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
