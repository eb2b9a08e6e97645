"""The generator against a real server on loopback (no timing asserts: counts and kinds only;
rate accuracy is tested under a fake clock in test_engine.py)."""

from __future__ import annotations

import asyncio
import gc
import select
import socket
import sys
import time

import pytest

from shoal.loadgen import (
    ArrivalSchedule,
    LoadPlan,
    LoadSettings,
    RequestSpec,
    parse_target,
    run_load,
    run_workers,
    summarize,
)
from shoal.loadgen.driver import TimerFd

from .loadgen_server import serving
from .loadgen_sim import ENGINES

SETTINGS = LoadSettings(connections=16, drop_after=30.0, timeout=30.0)


def make_plan(
    base: str, *requests: RequestSpec, rate: float = 200, duration: float = 1
) -> LoadPlan:
    target, _ = parse_target(base)
    return LoadPlan(target, requests, ArrivalSchedule.constant(rate, duration), SETTINGS)


@pytest.mark.parametrize(
    ("engine", "parser"), [("python", "pure"), ("python", "httptools"), ("native", "auto")]
)
async def test_every_scheduled_request_is_sent_and_answered(engine: str, parser: str) -> None:
    async with serving() as http_server:
        plan = make_plan(http_server, RequestSpec("/ok"), RequestSpec("/echo", "POST", body=b"x"))
        stats = await run_load(plan, parser=parser, engine=engine)
        assert stats.scheduled == stats.requests == 200
        assert stats.errors == 0
        assert stats.dropped == 0
        assert stats.statuses == {200: 200}
        assert [p.requests for p in stats.paths] == [100, 100]
        summary = summarize(plan, stats)
        assert summary["achievedRatio"] == 1
        # Loose sanity only (a loaded 2-core machine): latencies are positive and below the timeout.
        assert 0 < summary["latency"]["p50"] <= summary["latency"]["p99"] < 30_000


@pytest.mark.parametrize("engine", ENGINES)
async def test_errors_closes_and_head_requests(engine: str) -> None:
    async with serving() as http_server:
        plan = make_plan(
            http_server,
            RequestSpec("/fail"),
            RequestSpec("/close"),
            RequestSpec("/ok", "HEAD"),
            rate=150,
        )
        stats = await run_load(plan, engine=engine)  # HEAD: python chooses the pure parser
        assert stats.requests == 150
        assert stats.statuses == {500: 50, 200: 100}
        assert stats.errors == 50
        assert [p.errors for p in stats.paths] == [50, 0, 0]


@pytest.mark.parametrize("engine", ENGINES)
async def test_bodies_larger_than_a_socket_buffer_go_whole(engine: str) -> None:
    # 900 KB does not fit one non-blocking send: the rest waits for the socket to drain.
    async with serving() as http_server:
        body = bytes(range(256)) * 3600
        plan = make_plan(http_server, RequestSpec("/echo", "POST", body=body), rate=10)
        stats = await run_load(plan, engine=engine)
        assert stats.requests == 10
        assert stats.statuses == {200: 10}  # the server read every byte, answered it in full


@pytest.mark.parametrize("engine", ENGINES)
async def test_a_refused_port_fails_every_request(engine: str) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    plan = make_plan(f"http://127.0.0.1:{port}", RequestSpec("/"), rate=50)
    stats = await run_load(plan, engine=engine)
    assert stats.requests == stats.errors == 50
    assert stats.failures == {"connect": 50}


@pytest.mark.parametrize("engine", ENGINES)
async def test_a_server_that_never_answers_times_every_request_out(engine: str) -> None:
    # A listening socket nobody accepts from: connects succeed (the kernel's backlog), answers
    # never come.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(64)
        port = silent.getsockname()[1]
        target, _ = parse_target(f"http://127.0.0.1:{port}")
        plan = LoadPlan(
            target,
            (RequestSpec("/"),),
            ArrivalSchedule.constant(20, 0.5),
            LoadSettings(connections=16, timeout=0.5, drop_after=30.0),
        )
        stats = await run_load(plan, engine=engine)
    assert stats.requests == stats.errors == 10
    assert stats.failures == {"timeout": 10}
    assert stats.latency.count == 0


@pytest.mark.parametrize("engine", ENGINES)
async def test_stop_ends_the_run_early(engine: str) -> None:
    async with serving() as http_server:
        plan = make_plan(http_server, RequestSpec("/ok"), rate=100, duration=60)
        stop = asyncio.Event()
        progress: list[int] = []

        def on_progress(stats: object, now: float) -> None:
            progress.append(1)
            stop.set()

        stats = await run_load(
            LoadPlan(
                plan.target, plan.requests, plan.schedule, LoadSettings(progress_interval=0.2)
            ),
            stop=stop,
            on_progress=on_progress,
            engine=engine,
        )
        assert progress
        assert stats.stopped
        assert stats.requests < 6000


@pytest.mark.parametrize("engine", ENGINES)
async def test_worker_processes_merge_into_one_result(engine: str) -> None:
    async with serving() as http_server:
        plan = make_plan(http_server, RequestSpec("/ok"), RequestSpec("/slow"), rate=100)
        stats = await run_workers(plan, 2, engine=engine)
        assert stats.requests == stats.scheduled == 100
        assert [p.requests for p in stats.paths] == [50, 50]
        assert stats.errors == 0
        # The slow path's latency includes its 50 ms.
        assert (stats.paths[1].latency.percentile(50) or 0) >= 50_000


async def test_the_millisecond_timer_fallback_runs_the_same_plan(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Where there is no timerfd (not Linux), the loop's own timer wakes the engine.
    monkeypatch.setattr(TimerFd, "create", classmethod(lambda cls: None))
    async with serving() as http_server:
        plan = make_plan(http_server, RequestSpec("/ok"), rate=100)
        stats = await run_load(plan)
        assert stats.scheduled == stats.requests == 100
        assert stats.errors == 0


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="timerfd is Linux's")
def test_a_timerfd_becomes_readable_once_its_instant_has_passed() -> None:
    timer = TimerFd.create()
    assert timer is not None
    try:
        timer.arm(time.monotonic() + 3600)
        assert select.select([timer.fd], [], [], 0)[0] == []
        timer.arm(time.monotonic() - 1)  # in the past: fires at once
        assert select.select([timer.fd], [], [], 10)[0] == [timer.fd]
        timer.clear()
        assert select.select([timer.fd], [], [], 0)[0] == []
    finally:
        timer.close()
    assert timer.fd == -1


@pytest.mark.parametrize("engine", ENGINES)
async def test_the_run_reports_its_cpu_time_and_restores_the_gc(engine: str) -> None:
    thresholds = gc.get_threshold()
    async with serving() as http_server:
        stats = await run_load(make_plan(http_server, RequestSpec("/ok"), rate=50), engine=engine)
    assert stats.cpu > 0
    assert gc.get_threshold() == thresholds
    assert gc.get_freeze_count() == 0
