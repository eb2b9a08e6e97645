"""The arrival schedule (rate accuracy without a clock), path picking and plan parsing."""

from __future__ import annotations

import itertools
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shoal.loadgen.plan import (
    ArrivalSchedule,
    LoadPlan,
    LoadSettings,
    PathPicker,
    PlanError,
    RequestSpec,
    Segment,
    parse_target,
    plan_for_loadtest,
)
from shoal.model.loading import load_text
from shoal.model.loadtest import LoadTest


def test_constant_rate_spaces_requests_evenly() -> None:
    schedule = ArrivalSchedule.constant(1000, 2)
    assert schedule.total == 2000
    times = [schedule.time_of(k) for k in range(schedule.total)]
    assert times[0] == 0
    assert times[1] == pytest.approx(0.001)
    assert times[-1] == pytest.approx(1.999)
    gaps = {round(b - a, 9) for a, b in itertools.pairwise(times)}
    assert gaps == {0.001}


def test_ramp_follows_the_integral_of_the_rate() -> None:
    # 0 -> 1000 req/s over 2 s (1000 requests), then 1000 req/s for 1 s (1000 more).
    schedule = ArrivalSchedule.with_stages([(2.0, 1000.0)], 1000.0, 1.0)
    assert schedule.total == 2000
    times = [schedule.time_of(k) for k in range(schedule.total)]
    first_second = sum(1 for t in times if t < 1.0)
    assert first_second == 250  # N(1) = 1000/2 * 1**2 / 2
    assert sum(1 for t in times if t < 2.0) == 1000
    assert schedule.rate_at(0.5) == pytest.approx(250)
    assert schedule.rate_at(2.5) == pytest.approx(1000)
    assert schedule.rate_at(3.5) == 0


def test_ramp_down_and_a_zero_stage() -> None:
    schedule = ArrivalSchedule.with_stages([(1.0, 100.0), (1.0, 0.0), (1.0, 0.0)], 0.0, 0.0)
    assert schedule.total == 100
    times = [schedule.time_of(k) for k in range(schedule.total)]
    assert all(t <= 2.0 for t in times)
    assert sum(1 for t in times if t < 1.0) == 50


segments = st.lists(
    st.builds(
        Segment,
        duration=st.floats(min_value=0.1, max_value=5),
        start_rate=st.floats(min_value=0, max_value=2000),
        end_rate=st.floats(min_value=0, max_value=2000),
    ),
    min_size=1,
    max_size=4,
)


@given(segments, st.floats(min_value=0, max_value=1))
def test_requests_due_by_any_time_match_the_rate_integral(
    parts: list[Segment], fraction: float
) -> None:
    schedule = ArrivalSchedule(parts)
    times = [schedule.time_of(k) for k in range(schedule.total)]
    assert times == sorted(times)
    assert all(0 <= t <= schedule.duration + 1e-9 for t in times)
    t = fraction * schedule.duration
    due = sum(1 for x in times if x < t)
    assert abs(due - math.ceil(schedule.arrivals_until(t))) <= 1


@given(segments, st.integers(min_value=2, max_value=5))
def test_workers_split_the_one_schedule(parts: list[Segment], workers: int) -> None:
    plan = LoadPlan(
        parse_target("http://127.0.0.1:1")[0], (RequestSpec("/"),), ArrivalSchedule(parts)
    )
    whole = list(plan.iter_due())
    split = sorted(item for w in range(workers) for item in plan.iter_due(w, workers))
    assert split == whole


def test_picker_keeps_proportions_in_every_prefix() -> None:
    picker = PathPicker([1, 3])
    picks = [picker.pick(k) for k in range(400)]
    assert picks.count(0) == 100
    for end in range(4, 400, 4):
        assert picks[:end].count(0) == end // 4
    assert PathPicker([2, 2]).cycle == [0, 1]
    large = PathPicker([1, 999_999])
    assert len(large.cycle) <= 100_001


@pytest.mark.parametrize(
    ("url", "host", "port", "authority", "path"),
    [
        ("http://127.0.0.1:8080/a?b=1", "127.0.0.1", 8080, "127.0.0.1:8080", "/a?b=1"),
        ("localhost", "localhost", 80, "localhost", "/"),
        ("http://[::1]:81/x", "::1", 81, "[::1]:81", "/x"),
    ],
)
def test_parse_target(url: str, host: str, port: int, authority: str, path: str) -> None:
    target, got = parse_target(url)
    assert (target.host, target.port, target.authority, got) == (host, port, authority, path)


@pytest.mark.parametrize("url", ["https://x/", "http://:80/", "http://x:99999999/"])
def test_bad_targets_are_refused(url: str) -> None:
    with pytest.raises(PlanError):
        parse_target(url)


def test_request_bytes() -> None:
    request = RequestSpec("/p", "POST", (("X-A", "1"),), b"hi")
    assert request.encode("h:1") == (
        b"POST /p HTTP/1.1\r\nHost: h:1\r\nUser-Agent: shoal-load\r\nX-A: 1\r\n"
        b"Content-Length: 2\r\n\r\nhi"
    )
    for bad in (
        lambda: RequestSpec("p"),
        lambda: RequestSpec("/a b"),
        lambda: RequestSpec("/", headers=(("A\r\nB", "x"),)),
        lambda: RequestSpec("/", weight=0),
        lambda: LoadSettings(connections=0),
    ):
        with pytest.raises(PlanError):
            bad()


def test_plan_serializes_for_workers() -> None:
    plan = LoadPlan(
        parse_target("http://127.0.0.1:9/")[0],
        (RequestSpec("/a", weight=2), RequestSpec("/b", "PUT", body=b"x")),
        ArrivalSchedule.with_stages([(1, 10)], 20, 1),
        LoadSettings(connections=3),
    )
    again = LoadPlan.from_dict(plan.to_dict())
    assert again.requests == plan.requests
    assert again.settings == plan.settings
    assert list(again.iter_due()) == list(plan.iter_due())


def test_plan_for_the_talks_loadtest() -> None:
    (loadtest,) = load_text(
        """
apiVersion: loadtest/v1
kind: LoadTest
metadata: {name: t}
spec:
  service: my-cool-service
  requestPerSecond: 10k
  stages: [{duration: 2s, target: 1k}]
  tests:
    - test: [/some/path, /some/other/path]
    - {path: /w, method: POST, weight: 2, body: b, headers: {X-A: "1"}}
"""
    )
    assert isinstance(loadtest, LoadTest)
    plan = plan_for_loadtest(loadtest.spec, parse_target("10.0.0.1:80")[0])
    assert [r.label for r in plan.requests] == ["GET /some/path", "GET /some/other/path", "POST /w"]
    assert plan.requests[2].weight == 2
    assert plan.requests[2].headers == (("X-A", "1"),)
    assert plan.duration == 32  # 2 s ramp + the default 30 s
    assert plan.schedule.total == 1000 + 300_000
    assert plan.settings.connections == 64
