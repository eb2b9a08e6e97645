"""The generator's I/O: asyncio connections for the engine, the timing loop, and worker processes.

Theory of operation
-------------------
One coroutine, :func:`run_load`, owns the :class:`~shoal.loadgen.engine.Engine`: it reads the
clock (``time.monotonic``: CLOCK_MONOTONIC, nanosecond-grained and shared by every process of the
machine, unlike uvloop's millisecond loop time), calls ``pump``, and sleeps until the next request
is due. Event-loop timers are millisecond-grained, so within ``timer_slack`` of the next due time
it yields to the loop (``sleep(0)``: pending I/O runs) and looks again instead of sleeping; at
rates above about 1,000 per second that keeps one core busy, as wrk2 does.

Connections are ``asyncio.Protocol`` objects (no streams, no per-request tasks): a request is one
``transport.write``; ``data_received`` feeds the parser and reports completed responses to the
engine with the time they were read. Connects run as tasks of one TaskGroup.

Several processes: :func:`run_workers` starts ``W`` copies of ``python -m shoal.loadgen.worker``,
hands each the plan, its index and a common start time (on the shared monotonic clock), and
merges the stats they print. Worker ``i`` sends requests ``i, i+W, ...`` of the one schedule.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import sys
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from shoal.loadgen.engine import Engine, Slot
from shoal.loadgen.http import ResponseError, ResponseParser, httptools_available, make_parser
from shoal.loadgen.plan import LoadPlan, PlanError
from shoal.loadgen.stats import RunStats

__all__ = ["Progress", "choose_parser", "loop_factory", "run", "run_load", "run_workers"]

T = TypeVar("T")
Progress = Callable[[RunStats, float], None]
"""Called with the stats so far and the time now (on the monotonic clock)."""


def choose_parser(plan: LoadPlan, name: str = "auto") -> str:
    """``httptools`` when installed (and no request is a HEAD), else ``pure``."""
    if name not in ("auto", "pure", "httptools"):
        raise PlanError(f"unknown parser {name!r}: auto, pure or httptools")
    has_head = any(request.method == "HEAD" for request in plan.requests)
    if name == "httptools":
        if not httptools_available():
            raise PlanError("the httptools parser is not installed (pip install httptools)")
        if has_head:
            raise PlanError("the httptools parser cannot read HEAD responses; use --parser pure")
        return name
    if name == "auto" and httptools_available() and not has_head:
        return "httptools"
    return "pure"


class _Client(asyncio.Protocol):
    """One keep-alive connection of the pool."""

    __slots__ = ("engine", "parser", "slot", "transport")

    def __init__(self, engine: Engine, slot: Slot, parser: ResponseParser) -> None:
        self.engine = engine
        self.slot = slot
        self.parser = parser
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None:
            # Small requests must leave at once (Nagle would hold one back for an ACK).
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def send(self, data: bytes, head_only: bool) -> None:
        assert self.transport is not None
        self.parser.expect(head_only)
        self.transport.write(data)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        try:
            done = self.parser.feed(data)
        except ResponseError:
            self._fail("protocol")
            return
        if done:
            now = time.monotonic()
            for status, keep_alive in done:
                self.engine.response(self.slot, now, status, keep_alive)

    def eof_received(self) -> bool | None:
        now = time.monotonic()
        for status, keep_alive in self.parser.feed_eof():
            self.engine.response(self.slot, now, status, keep_alive)
        return None  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.engine.lost(self.slot, time.monotonic(), "reset")

    def _fail(self, kind: str) -> None:
        self.engine.lost(self.slot, time.monotonic(), kind)
        if self.transport is not None:
            self.transport.abort()


async def run_load(
    plan: LoadPlan,
    *,
    worker: int = 0,
    workers: int = 1,
    start: float | None = None,
    stop: asyncio.Event | None = None,
    on_progress: Progress | None = None,
    parser: str = "auto",
) -> RunStats:
    """Run this worker's share of ``plan`` against its target; the stats when every request has
    completed, failed or been dropped, or when ``stop`` is set (then what was measured so far).

    ``start``: the schedule's zero on ``time.monotonic()`` (now when None)."""
    kind = choose_parser(plan, parser)
    settings = plan.settings
    loop = asyncio.get_running_loop()
    begin = time.monotonic() if start is None else start
    async with asyncio.TaskGroup() as group:
        engine: Engine

        async def connect(slot: Slot) -> None:
            try:
                async with asyncio.timeout(settings.timeout):
                    _, protocol = await loop.create_connection(
                        lambda: _Client(engine, slot, make_parser(kind)),
                        plan.target.host,
                        plan.target.port,
                    )
            except TimeoutError:
                engine.connect_failed(slot, time.monotonic(), "timeout")
                return
            except OSError:
                engine.connect_failed(slot, time.monotonic(), "connect")
                return
            if slot.state == "closed":  # lost before we heard it was made
                protocol.close()
                return
            engine.connected(slot, protocol, time.monotonic())

        engine = Engine(
            plan,
            start=begin,
            open_connection=lambda slot: _keep(group.create_task(connect(slot))),
            worker=worker,
            workers=workers,
        )
        slack = settings.timer_slack
        interval = settings.progress_interval
        next_progress = time.monotonic() + interval
        while True:
            now = time.monotonic()
            if stop is not None and stop.is_set():
                engine.stop(now)
                break
            wake = engine.pump(now)
            if wake is None:
                break
            if on_progress is not None and now >= next_progress:
                on_progress(engine.stats, now)
                next_progress = now + interval
                wake = min(wake, next_progress)
            delay = wake - time.monotonic()
            if delay > slack:
                await asyncio.sleep(min(delay - slack, 0.05))
            else:
                await asyncio.sleep(0)
        engine.stop(time.monotonic())
    await asyncio.sleep(0)  # let closed transports report connection_lost
    return engine.stats


def _keep(task: asyncio.Task[None]) -> None:
    """The TaskGroup holds the reference; nothing to do here."""


def loop_factory(name: str = "auto") -> Callable[[], asyncio.AbstractEventLoop]:
    """``uvloop``, ``asyncio``, or ``auto`` (uvloop when installed)."""
    if name not in ("auto", "asyncio", "uvloop"):
        raise PlanError(f"unknown loop {name!r}: auto, asyncio or uvloop")
    if name != "asyncio":
        try:
            import uvloop
        except ImportError:
            if name == "uvloop":
                raise PlanError("uvloop is not installed (pip install uvloop)") from None
        else:
            factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
            return factory
    return asyncio.new_event_loop


def run(main: Coroutine[Any, Any, T], *, loop: str = "auto") -> T:
    """Run ``main`` on a new loop of the kind named."""
    with asyncio.Runner(loop_factory=loop_factory(loop)) as runner:
        return runner.run(main)


async def run_workers(
    plan: LoadPlan,
    workers: int,
    *,
    stop: asyncio.Event | None = None,
    loop: str = "auto",
    parser: str = "auto",
    startup: float = 0.5,
    python: str = sys.executable,
) -> RunStats:
    """Run ``plan`` in ``workers`` processes and merge what they measured.

    Each worker gets ``connections / workers`` connections (at least 1) and starts on the same
    monotonic instant, ``startup`` seconds from now (time for the interpreters to start; raised
    automatically when they are slower). ``stop`` sends each worker SIGTERM; they stop sending
    and report what they measured."""
    if workers < 1:
        raise PlanError(f"workers must be >= 1, got {workers}")
    share = max(1, plan.settings.connections // workers)
    document = plan.to_dict()
    document["settings"]["connections"] = share
    processes: list[asyncio.subprocess.Process] = []
    try:
        for _ in range(workers):
            process = await asyncio.create_subprocess_exec(
                python,
                "-m",
                "shoal.loadgen.worker",
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
            processes.append(process)
        # Each worker prints "ready" once imported; the start is set after all are.
        for process in processes:
            assert process.stdout is not None
            line = await asyncio.wait_for(process.stdout.readline(), 60)
            if line.strip() != b"ready":
                raise PlanError(f"a load worker failed to start: {line[:200]!r}")
        begin = time.monotonic() + startup
        for index, process in enumerate(processes):
            assert process.stdin is not None
            order = {
                "plan": document,
                "worker": index,
                "workers": workers,
                "start": begin,
                "loop": loop,
                "parser": parser,
            }
            process.stdin.write(json.dumps(order).encode() + b"\n")
            await process.stdin.drain()
            process.stdin.close()
        async with asyncio.TaskGroup() as group:
            results = [group.create_task(_collect(process)) for process in processes]
            if stop is not None:
                watcher = group.create_task(_terminate_on(stop, processes))
                await asyncio.wait(results)
                watcher.cancel()
        parts = [result.result() for result in results]
    finally:
        for process in processes:
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
    return RunStats.merged(parts)


async def _collect(process: asyncio.subprocess.Process) -> RunStats:
    assert process.stdout is not None
    output = await process.stdout.read()
    code = await process.wait()
    if code != 0:
        raise PlanError(f"a load worker exited with code {code}")
    try:
        return RunStats.from_dict(json.loads(output))
    except (ValueError, KeyError) as error:
        raise PlanError(f"a load worker reported garbage: {error}") from None


async def _terminate_on(stop: asyncio.Event, processes: list[asyncio.subprocess.Process]) -> None:
    await stop.wait()
    for process in processes:
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.terminate()
