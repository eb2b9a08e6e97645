"""The generator's I/O: asyncio connections for the engine, the timer, and worker processes.

Theory of operation
-------------------
:func:`run_load` owns one :class:`~shoal.loadgen.engine.Engine` and never polls. A timer wakes the
engine when it asked (``pump(now)`` returns when): the next due request, a drop, a timeout check.
The clock is ``time.monotonic`` (CLOCK_MONOTONIC: nanosecond-grained and shared by every process
of the machine, unlike uvloop's millisecond loop time), and on Linux so is the timer: a
``timerfd`` armed at absolute instants, read by the loop like a socket (event-loop timers are
millisecond-grained; ``call_later`` is the fallback elsewhere). Wake-ups are at least
``timer_slack`` apart and each sends *everything* due, so at high rates one wake-up serves several
requests: on a shared machine every wake-up costs a context switch and cold caches, which is most
of what a request costs. Responses send what is due too (the engine does that), so under load
most requests leave from the response path, with no timer at all.

Connections are ``asyncio.Protocol`` objects (no streams, no per-request tasks or futures): a
request is one ``transport.write`` of bytes encoded once per path; with httptools, llhttp calls
``on_message_complete`` and that reports to the engine with the time the bytes were read. Connects
run as tasks of one TaskGroup.

Two engines run the same plan: this module's (the pure-Python :class:`Engine` on an asyncio
loop, the reference and the fallback) and the compiled one (:mod:`shoal.loadgen._engine`, an
``epoll`` loop in C that runs with the GIL released, in slices of up to ``progress_interval``
between which this driver reads progress and checks ``stop``). :func:`choose_engine` picks the
compiled one when it is built, unless told otherwise (``LoadSettings.engine``, the ``engine``
argument, or ``SHOAL_LOADGEN_ENGINE=python``).

Several processes: :func:`run_workers` starts ``W`` copies of ``python -m shoal.loadgen.worker``,
hands each the plan, its index and a common start time (on the shared monotonic clock), and
merges the stats they print. Worker ``i`` sends requests ``i, i+W, ...`` of the one schedule.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import gc
import json
import math
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
from shoal.native import PURE_ENV

__all__ = [
    "ENGINE_ENV",
    "Progress",
    "choose_engine",
    "choose_parser",
    "loop_factory",
    "native_available",
    "run",
    "run_load",
    "run_workers",
]

T = TypeVar("T")
Progress = Callable[[RunStats, float], None]
"""Called with the stats so far and the time now (on the monotonic clock)."""


ENGINE_ENV = "SHOAL_LOADGEN_ENGINE"
"""The environment variable that picks the engine when nothing else does: native or python."""
_ENGINES = ("auto", "native", "python")


def native_available() -> bool:
    """The compiled engine is built and this is Linux (epoll, timerfd)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        import shoal.loadgen._engine  # noqa: F401
    except ImportError:
        return False
    return True


def choose_engine(plan: LoadPlan, engine: str | None = None, parser: str = "auto") -> str:
    """``native`` or ``python``: the first of ``engine``, the plan's ``settings.engine`` and
    ``$SHOAL_LOADGEN_ENGINE`` that is not ``auto``; when all are, native if it is built, no
    parser was named (``pure`` and ``httptools`` are the Python engine's) and
    ``$SHOAL_PURE_PYTHON`` is not ``1`` (the switch every compiled path of shoal honours)."""
    for name, where in (
        (engine, "engine"),
        (plan.settings.engine, "settings.engine"),
        (os.environ.get(ENGINE_ENV) or None, ENGINE_ENV),
    ):
        if name is None or name == "auto":
            continue
        if name not in _ENGINES:
            raise PlanError(f"{where}: unknown engine {name!r}: auto, native or python")
        if name == "native" and not native_available():
            raise PlanError(
                "the compiled load engine is not built (needs Linux, a C compiler and Cython: "
                "python setup.py build_ext --inplace); use the python engine"
            )
        return name
    pure = os.environ.get(PURE_ENV) == "1"
    return "native" if parser == "auto" and not pure and native_available() else "python"


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
    """One keep-alive connection of the pool, read with the pure-Python parser."""

    __slots__ = ("engine", "parser", "slot", "transport")

    def __init__(self, engine: Engine, slot: Slot, parser: ResponseParser) -> None:
        self.engine = engine
        self.slot = slot
        self.parser = parser
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        _nodelay(transport)

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


class _LlhttpClient(asyncio.Protocol):
    """One keep-alive connection read by httptools (llhttp, in C): the hot path. The parser calls
    ``on_message_complete`` as each response ends, and that reports straight to the engine with
    the time the bytes were read (no list of results, no per-response objects)."""

    __slots__ = ("engine", "now", "parser", "slot", "transport")

    def __init__(self, engine: Engine, slot: Slot) -> None:
        import httptools

        self.engine = engine
        self.slot = slot
        self.now = 0.0
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        _nodelay(transport)

    def send(self, data: bytes, head_only: bool) -> None:
        self.transport.write(data)  # type: ignore[union-attr]

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        self.now = time.monotonic()
        try:
            self.parser.feed_data(data)
        except Exception:  # httptools.HttpParserError and its subclasses
            self.engine.lost(self.slot, time.monotonic(), "protocol")
            if self.transport is not None:
                self.transport.abort()

    def on_message_complete(self) -> None:
        parser = self.parser
        status = parser.get_status_code()
        if status >= 200:  # an interim 1xx is followed by the real answer
            self.engine.response(self.slot, self.now, status, parser.should_keep_alive())

    def eof_received(self) -> bool | None:
        # llhttp would complete a body delimited by the close, but httptools offers no call for
        # the end of the stream: such a response counts as an error (reset) instead.
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.engine.lost(self.slot, time.monotonic(), "reset")


def _nodelay(transport: asyncio.BaseTransport) -> None:
    """Small requests must leave at once (uvloop leaves Nagle on; it would hold one back)."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class _TimerSpec(ctypes.Structure):
    _fields_ = [
        ("interval_sec", ctypes.c_long),
        ("interval_nsec", ctypes.c_long),
        ("value_sec", ctypes.c_long),
        ("value_nsec", ctypes.c_long),
    ]


class TimerFd:
    """A Linux ``timerfd`` on CLOCK_MONOTONIC (``time.monotonic``'s clock), armed at absolute
    instants to the nanosecond and read by the event loop like a socket.

    Why: event-loop timers are millisecond-grained (uvloop's clock is), which is ten requests at
    10k req/s; polling instead keeps a core busy and gets descheduled on a shared box. A timerfd
    wakes the loop's ``epoll`` at the instant asked, and costs nothing while it waits.
    ``TimerFd.create()`` is None where there is none (not Linux, or no libc to call)."""

    _CLOCK_MONOTONIC = 1
    _TFD_NONBLOCK = 0o4000
    _TFD_CLOEXEC = 0o2000000
    _TFD_TIMER_ABSTIME = 1

    def __init__(self, fd: int, settime: Any) -> None:
        self.fd = fd
        self._settime = settime
        self._spec = _TimerSpec()
        self._spec_ref = ctypes.byref(self._spec)

    @classmethod
    def create(cls) -> TimerFd | None:
        if not sys.platform.startswith("linux"):
            return None
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            create, settime = libc.timerfd_create, libc.timerfd_settime
        except (OSError, AttributeError):
            return None
        create.argtypes = [ctypes.c_int, ctypes.c_int]
        settime.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p]
        fd = create(cls._CLOCK_MONOTONIC, cls._TFD_NONBLOCK | cls._TFD_CLOEXEC)
        if fd < 0:
            return None
        return cls(fd, settime)

    def arm(self, when: float) -> None:
        """Fire once at ``when`` (seconds on ``time.monotonic()``; a past instant fires now)."""
        nanos = int(when * 1e9)
        spec = self._spec
        spec.value_sec, spec.value_nsec = divmod(nanos if nanos > 0 else 1, 1_000_000_000)
        if self._settime(self.fd, self._TFD_TIMER_ABSTIME, self._spec_ref, None) != 0:
            raise OSError(ctypes.get_errno(), "timerfd_settime failed")

    def clear(self) -> None:
        """Consume the expiry (the fd stays readable until read)."""
        with contextlib.suppress(BlockingIOError, InterruptedError):
            os.read(self.fd, 8)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class _Ticker:
    """Wakes the engine when it asked to be woken, and reports progress and the end.

    The wake-up instant is the engine's (the next due request, a drop or a timeout check), but no
    sooner than the slack after this wake-up (``slack_at``), so that at high rates one wake-up
    sends several requests (the engine sends everything due); and no later than 50 ms, to notice
    ``stop``."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        engine: Engine,
        done: asyncio.Future[None],
        stop: asyncio.Event | None,
        on_progress: Progress | None,
        workers: int = 1,
    ) -> None:
        self.loop = loop
        self.engine = engine
        self.done = done
        self.stop = stop
        self.on_progress = on_progress
        settings = engine.settings
        self.slack = settings.timer_slack
        self.workers = workers
        self.interval = settings.progress_interval
        self.next_progress = time.monotonic() + self.interval
        self.timerfd = TimerFd.create()
        self.handle: asyncio.TimerHandle | None = None
        if self.timerfd is not None:
            loop.add_reader(self.timerfd.fd, self.fire)

    def arm(self, when: float) -> None:
        if self.timerfd is not None:
            self.timerfd.arm(when)
        else:
            self.handle = self.loop.call_later(max(0.0, when - time.monotonic()), self.fire)

    def fire(self) -> None:
        if self.timerfd is not None:
            self.timerfd.clear()
        if self.done.done():
            return
        now = time.monotonic()
        engine = self.engine
        if self.stop is not None and self.stop.is_set():
            engine.stop(now)
            self.done.set_result(None)
            return
        wake = engine.pump(now)
        if wake is None:
            self.done.set_result(None)
            return
        if self.on_progress is not None and now >= self.next_progress:
            self.on_progress(engine.stats, now)
            self.next_progress = now + self.interval
        if self.on_progress is not None and self.next_progress < wake:
            wake = self.next_progress
        soonest = now + self.slack_at(now)
        self.arm(soonest if wake < soonest else min(wake, now + 0.05))

    def slack_at(self, now: float) -> float:
        """``timer_slack`` at this worker's rates of 20k/s and above; proportionally less below
        (at least 20 µs), where wake-ups are few and precision is cheap: at 10k/s half of it
        took 80 µs off the median latency for 40% more CPU."""
        engine = self.engine
        rate = engine.plan.schedule.rate_at(now - engine.start) / self.workers
        return max(2e-5, self.slack * min(1.0, rate / 20_000))

    def close(self) -> None:
        if self.handle is not None:
            self.handle.cancel()
        if self.timerfd is not None:
            self.loop.remove_reader(self.timerfd.fd)
            self.timerfd.close()


async def run_load(
    plan: LoadPlan,
    *,
    worker: int = 0,
    workers: int = 1,
    start: float | None = None,
    stop: asyncio.Event | None = None,
    on_progress: Progress | None = None,
    parser: str = "auto",
    engine: str | None = None,
) -> RunStats:
    """Run this worker's share of ``plan`` against its target; the stats when every request has
    completed, failed or been dropped, or when ``stop`` is set (then what was measured so far).

    ``start``: the schedule's zero on ``time.monotonic()`` (now when None). The stats' ``cpu`` is
    this process's CPU time from the call to the end of the run. ``engine``: see
    :func:`choose_engine` (``parser`` applies to the Python engine)."""
    if parser not in ("auto", "pure", "httptools"):
        raise PlanError(f"unknown parser {parser!r}: auto, pure or httptools")
    if choose_engine(plan, engine, parser) == "native":
        address = await _resolve(plan)
        if address is not None:
            return await _run_native(
                plan, address, worker=worker, workers=workers, start=start, stop=stop,
                on_progress=on_progress,
            )  # fmt: skip
        # A name that does not resolve: the Python engine counts every request's failed connect.
    kind = choose_parser(plan, parser)
    settings = plan.settings
    loop = asyncio.get_running_loop()
    cpu = time.process_time()
    begin = time.monotonic() if start is None else start
    _quiet_gc(True)
    done: asyncio.Future[None] = loop.create_future()
    try:
        async with asyncio.TaskGroup() as group:
            core: Engine

            def protocol(slot: Slot) -> asyncio.Protocol:
                if kind == "httptools":
                    return _LlhttpClient(core, slot)
                return _Client(core, slot, make_parser(kind))

            async def connect(slot: Slot) -> None:
                try:
                    async with asyncio.timeout(settings.timeout):
                        transport, client = await loop.create_connection(
                            lambda: protocol(slot), plan.target.host, plan.target.port
                        )
                except TimeoutError:
                    core.connect_failed(slot, time.monotonic(), "timeout")
                    return
                except OSError:
                    core.connect_failed(slot, time.monotonic(), "connect")
                    return
                if slot.state != "connecting":  # lost or stopped before we heard it was made
                    transport.close()
                    return
                core.connected(slot, client, time.monotonic())  # type: ignore[arg-type]

            opening: list[asyncio.Task[None]] = []
            warming = True

            def open_connection(slot: Slot) -> None:
                task = group.create_task(connect(slot))  # the TaskGroup keeps it
                if warming:
                    opening.append(task)

            core = Engine(
                plan, start=begin, open_connection=open_connection, worker=worker, workers=workers
            )
            # Connect first (as wrk does): at 50k req/s the connects of a cold start would
            # otherwise put the first thousands of requests behind, late, for good. As many as
            # the peak rate keeps busy at 1 ms a request (at least one; more open on demand).
            peak = max(max(s.start_rate, s.end_rate) for s in plan.schedule.segments)
            core.preconnect(max(1, math.ceil(peak / workers / 1000)))
            deadline = time.monotonic() + settings.timeout if start is None else start
            while (
                any(not task.done() for task in opening)
                and time.monotonic() < deadline
                and not (stop is not None and stop.is_set())
            ):
                await asyncio.wait(opening, timeout=min(0.05, deadline - time.monotonic()))
            warming = False
            opening.clear()
            if start is None:
                core.begin_at(time.monotonic())
            ticker = _Ticker(loop, core, done, stop, on_progress, workers)
            try:
                ticker.arm(core.start)
                await done
            finally:
                ticker.close()
                core.stop(time.monotonic())
        await asyncio.sleep(0)  # let closed transports report connection_lost
    finally:
        _quiet_gc(False)
    core.recorder.cpu = time.process_time() - cpu
    return core.stats


async def _resolve(plan: LoadPlan) -> tuple[str, int] | None:
    """The target's first address (numeric host, port), or None when it does not resolve."""
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(plan.target.host, plan.target.port, type=socket.SOCK_STREAM)
    except OSError:
        return None
    for family, _, _, _, sockaddr in infos:
        if family in (socket.AF_INET, socket.AF_INET6):
            return str(sockaddr[0]), int(sockaddr[1])
    return None


async def _run_native(
    plan: LoadPlan,
    address: tuple[str, int],
    *,
    worker: int,
    workers: int,
    start: float | None,
    stop: asyncio.Event | None,
    on_progress: Progress | None,
) -> RunStats:
    """:func:`run_load` on the compiled engine: its loop runs in a thread, in slices that end at
    each progress instant (or at once when ``stop`` is set: the engine is interrupted)."""
    from concurrent.futures import ThreadPoolExecutor

    from shoal.loadgen._engine import DONE, NativeEngine

    settings = plan.settings
    loop = asyncio.get_running_loop()
    cpu = time.process_time()
    begin = time.monotonic() if start is None else start
    core = NativeEngine(plan, start=begin, worker=worker, workers=workers, address=address)
    executor = ThreadPoolExecutor(1, thread_name_prefix="shoal-load")

    async def in_thread(call: Callable[[float], T], until: float) -> T:
        future = loop.run_in_executor(executor, call, until)
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            core.interrupt()  # the thread must be out of the engine before it goes
            await asyncio.wait({future})
            raise

    async def interrupt_on(event: asyncio.Event) -> None:
        await event.wait()
        core.interrupt()

    try:
        async with asyncio.TaskGroup() as group:
            watcher = group.create_task(interrupt_on(stop)) if stop is not None else None
            try:
                # Connect first, as the Python driver does (see run_load).
                peak = max(max(s.start_rate, s.end_rate) for s in plan.schedule.segments)
                core.preconnect(max(1, math.ceil(peak / workers / 1000)))
                deadline = time.monotonic() + settings.timeout if start is None else start
                await in_thread(core.warm, deadline)
                if start is None:
                    core.begin_at(time.monotonic())
                core.arm(core.start)
                interval = settings.progress_interval
                next_progress = time.monotonic() + interval
                while not (stop is not None and stop.is_set()):
                    if await in_thread(core.run_slice, next_progress) == DONE:
                        break
                    now = time.monotonic()
                    if now >= next_progress:
                        if on_progress is not None:
                            on_progress(core.stats, now)
                        next_progress = now + interval
            finally:
                core.stop(time.monotonic())
                if watcher is not None:
                    watcher.cancel()
    finally:
        executor.shutdown(wait=True)
    core.cpu = time.process_time() - cpu
    stats: RunStats = core.stats
    return stats


_gc_state: list[tuple[int, int, int]] = []
"""The GC thresholds to restore, one per run in progress in this process."""


def _quiet_gc(running: bool) -> None:
    """The cyclic GC cost about a tenth of the CPU per request: while a run is in progress the
    objects from before it (modules, models: most of the heap) are left out of its scans
    (``gc.freeze``), and it runs less often (the hot path makes no cycles, only short-lived
    objects that trigger it). Runs may overlap in one process: the last to end restores."""
    if running:
        if not _gc_state:
            gc.freeze()
        _gc_state.append(gc.get_threshold())
        first = _gc_state[0]
        gc.set_threshold(max(first[0], 50_000), first[1], first[2])
        return
    thresholds = _gc_state.pop()
    if not _gc_state:
        gc.set_threshold(*thresholds)
        gc.unfreeze()


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
    engine: str | None = None,
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
                "engine": engine,
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
