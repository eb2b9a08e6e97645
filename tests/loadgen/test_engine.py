"""The engine under a fake clock: rate accuracy, coordinated omission, drops, failures."""

from __future__ import annotations

import pytest

from shoal.loadgen.plan import ArrivalSchedule, LoadPlan, LoadSettings, RequestSpec, parse_target
from shoal.loadgen.report import summarize
from shoal.loadgen.stats import RunStats

from .loadgen_sim import ENGINES, Simulation

pytestmark = pytest.mark.parametrize("engine", ENGINES)

TARGET = parse_target("http://127.0.0.1:8080/")[0]


def plan(rate: float = 1000, duration: float = 10, **settings: float) -> LoadPlan:
    return LoadPlan(
        TARGET,
        (RequestSpec("/a"), RequestSpec("/b", weight=3)),
        ArrivalSchedule.constant(rate, duration),
        LoadSettings(**settings),  # type: ignore[arg-type]
    )


def test_constant_rate_is_exact_and_latency_is_the_service_time(engine: str) -> None:
    sim = Simulation(plan(1000, 10), engine=engine)
    sim.run()
    stats = sim.engine.stats
    assert stats.scheduled == stats.requests == stats.sent == 10_000
    assert (stats.dropped, stats.late, stats.errors) == (0, 0, 0)
    assert stats.statuses == {200: 10_000}
    assert [p.requests for p in stats.paths] == [2500, 7500]
    # Every request took 1 ms from its intended start (1000 µs, within the bucket's precision).
    assert 1000 <= stats.latency.percentile(50) <= 1008
    assert stats.latency.max == pytest.approx(1000, abs=1)
    # Each second of the run holds exactly 1000 requests and completions.
    assert [w.requests for w in stats.windows[:10]] == [1000] * 10
    summary = summarize(sim.engine.plan, stats)
    assert summary["achievedRequestsPerSecond"] == 1000
    assert summary["achievedRatio"] == 1
    # Completions trail by the 1 ms service time: the first second completes 999.
    assert [round(p["achieved"]) for p in summary["series"][:10]] == [999] + [1000] * 9
    # At most one request in flight (plus one due at the instant the previous one completes):
    # keep-alive connections are reused, not opened per request.
    assert len(sim.connections) <= 2


def test_a_stalled_server_shows_in_the_latency_of_every_request_due_during_the_stall(
    engine: str,
) -> None:
    # 1000 req/s, 1 ms service, except that nothing is answered between t=2 and t=3.
    def service(now: float) -> float:
        return 3.0 - now + 0.001 if 2.0 <= now < 3.0 else 0.001

    sim = Simulation(plan(1000, 6, connections=64, drop_after=5.0), service=service, engine=engine)
    sim.run()
    stats = sim.engine.stats
    slow = sum(
        count
        for index, count in stats.latency.buckets()
        if index > 0 and count and _ms(index) > 100
    )
    # A closed-loop client would record about `connections` slow samples; the open model records
    # one for every request that was due while the server stalled (about 900 of them).
    assert slow > 800
    assert stats.late > 800  # they could not leave on time: no free connection
    assert stats.dropped == 0
    assert stats.requests == 6000
    assert stats.latency.max is not None
    assert stats.latency.max >= 990_000


def _ms(index: int) -> float:
    from shoal.loadgen.histogram import bucket_bounds

    return bucket_bounds(index)[0] / 1000


def test_requests_waiting_longer_than_drop_after_are_dropped_and_never_sent(engine: str) -> None:
    def service(now: float) -> float:
        return 3.0 - now + 0.001 if 2.0 <= now < 3.0 else 0.001

    sim = Simulation(plan(1000, 6, connections=4, drop_after=0.1), service=service, engine=engine)
    sim.run()
    stats = sim.engine.stats
    assert stats.dropped > 800
    assert stats.requests + stats.dropped == stats.scheduled == 6000
    assert stats.sent == stats.requests
    # Nothing sent waited more than drop_after for a connection: latency <= stall + 0.1 s.
    assert stats.latency.max is not None
    assert stats.latency.max <= 1_000_000 + 100_000 + 2_000
    assert sum(w.dropped for w in stats.windows) == stats.dropped


def test_ramping_stages_follow_the_ramp(engine: str) -> None:
    ramp = LoadPlan(TARGET, (RequestSpec("/"),), ArrivalSchedule.with_stages([(4, 1000)], 1000, 2))
    sim = Simulation(ramp, engine=engine)
    sim.run()
    windows = [w.requests for w in sim.engine.stats.windows]
    assert windows[:6] == [125, 375, 625, 875, 1000, 1000]
    assert sim.engine.stats.requests == 4000


def test_connection_close_responses_open_new_connections(engine: str) -> None:
    sim = Simulation(plan(100, 1), keep_alive=False, engine=engine)
    sim.run()
    stats = sim.engine.stats
    assert stats.requests == 100
    assert stats.errors == 0
    assert len(sim.connections) == 100
    assert all(c.closed for c in sim.connections)
    assert sim.engine.open == 0


def test_unanswered_requests_time_out_as_errors(engine: str) -> None:
    sim = Simulation(
        plan(10, 1, timeout=0.5, connections=100), service=lambda now: None, engine=engine
    )
    sim.run()
    stats = sim.engine.stats
    assert stats.requests == stats.errors == 10
    assert stats.failures == {"timeout": 10}
    assert stats.latency.count == 0
    assert sim.engine.open == 0


def test_refused_connections_fail_their_requests(engine: str) -> None:
    sim = Simulation(plan(100, 1), connect=lambda now: None, engine=engine)
    sim.run()
    stats = sim.engine.stats
    assert stats.requests == stats.errors == 100
    assert stats.failures == {"connect": 100}
    summary = summarize(sim.engine.plan, stats)
    assert summary["errorRatio"] == 1


def test_error_statuses_count_as_errors_with_latency(engine: str) -> None:
    sim = Simulation(plan(100, 1), status=503, engine=engine)
    sim.run()
    stats = sim.engine.stats
    assert stats.errors == stats.requests == 100
    assert stats.latency.count == 100
    assert stats.paths[1].errors == 75


def test_stop_closes_everything_and_marks_the_run_stopped(engine: str) -> None:
    sim = Simulation(plan(1000, 10), engine=engine)
    sim.run(stop_at=2.5)
    stats = sim.engine.stats
    assert stats.stopped
    assert 2400 <= stats.requests <= 2500
    assert sim.engine.open == 0
    assert all(c.closed for c in sim.connections)
    summary = summarize(sim.engine.plan, stats)
    assert summary["duration"] == pytest.approx(2.5)
    assert summary["achievedRatio"] == pytest.approx(1, abs=0.01)


def test_workers_measure_disjoint_shares_that_merge_into_the_whole(engine: str) -> None:
    shares = []
    for worker in range(3):
        sim = Simulation(plan(900, 2), worker=worker, workers=3, engine=engine)
        sim.run()
        shares.append(RunStats.from_dict(sim.engine.stats.to_dict()))
    merged = RunStats.merged(shares)
    single = Simulation(plan(900, 2), engine=engine)
    single.run()
    whole = single.engine.stats
    assert merged.requests == whole.requests == 1800
    assert [p.requests for p in merged.paths] == [p.requests for p in whole.paths]
    assert [w.requests for w in merged.windows] == [w.requests for w in whole.windows]
    assert merged.latency.count == whole.latency.count


def test_preconnected_connections_carry_the_first_requests_and_the_schedule_starts_later(
    engine: str,
) -> None:
    sim = Simulation(plan(1000, 1), connect=lambda now: 0.05, engine=engine)
    sim.warm_up(3)
    assert sim.engine.open == len(sim.engine.idle) == 3
    assert sim.now == pytest.approx(0.05)
    sim.run()
    stats = sim.engine.stats
    assert stats.requests == stats.scheduled == 1000
    assert (stats.errors, stats.dropped, stats.late) == (0, 0, 0)
    # No request waited for a connect: every latency is the 1 ms service time.
    assert stats.latency.max is not None
    assert stats.latency.max <= 1001
    assert len(sim.connections) == 3
    assert stats.start == pytest.approx(0.05)


def test_failed_preconnects_are_no_requests_failures(engine: str) -> None:
    sim = Simulation(plan(100, 1), connect=lambda now: None, engine=engine)
    sim.warm_up(5)
    assert sim.engine.open == 0
    sim.run()
    stats = sim.engine.stats
    # Only the 100 requests count (each connect for them is refused), not the 5 warm-ups.
    assert stats.requests == stats.errors == 100
    assert stats.failures == {"connect": 100}
