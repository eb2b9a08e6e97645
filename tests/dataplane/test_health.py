"""Health machines as transcripts: given these events at these times, expect these decisions."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shoal.dataplane.health import (
    ActiveCheckSettings,
    ActiveHealth,
    Admission,
    CheckResult,
    Ejected,
    EjectionRefused,
    Failure,
    HealthState,
    Outcome,
    OutlierDetector,
    OutlierEvent,
    OutlierSettings,
    PendingLimiter,
    PendingSettings,
    Readmitted,
    RetryBudget,
    RetrySettings,
    Transition,
)

from .implementations import IMPLEMENTATIONS, names_from


@pytest.fixture(scope="module", params=IMPLEMENTATIONS, autouse=True)
def implementation(request: pytest.FixtureRequest) -> Iterator[str]:
    """Every test here runs on the pure source and on its compiled build (module-scoped, so
    Hypothesis's tests can share it)."""
    with names_from(
        globals(),
        "health",
        ["ActiveHealth", "OutlierDetector", "PendingLimiter", "RetryBudget"],
        request.param,
    ):
        yield request.param


PASS, FAIL = CheckResult(True), CheckResult(False, "connection refused")
HEALTHY, UNHEALTHY = HealthState.HEALTHY, HealthState.UNHEALTHY


class TestActiveHealth:
    def test_new_endpoint_is_admitted_by_its_first_passed_check(self) -> None:
        """A new endpoint waits for one passed check, not ``rise`` of them."""
        health = ActiveHealth()
        health.sync(["a"], now=0.0)
        assert health.state("a") is UNHEALTHY
        assert health.due(0.0) == ["a"]
        assert health.record("a", PASS, 0.01) == Transition(
            "a", HEALTHY, 0.01, "first check passed"
        )

    def test_killed_backend_out_within_a_second_and_back_within_a_second(self) -> None:
        """Defaults (interval 0.5 s, fall 2, rise 2): killed at 10.0, out by 11.0; back likewise."""
        health = ActiveHealth()
        health.sync(["a"], now=0.0)
        transitions: list[Transition] = []
        now = 0.0
        while now < 20.0:
            for address in health.due(now):
                up = not 10.0 <= now < 15.0  # killed at 10.0, restarted at 15.0
                if (t := health.record(address, PASS if up else FAIL, now)) is not None:
                    transitions.append(t)
            now = round(now + 0.05, 2)
        assert [t.state for t in transitions] == [HEALTHY, UNHEALTHY, HEALTHY]
        assert 10.0 < transitions[1].at <= 11.0
        assert 15.0 < transitions[2].at <= 16.0

    def test_fall_and_rise_count_in_a_row(self) -> None:
        """A pass between failures restarts the fall count; a failure restarts the rise count."""
        health = ActiveHealth(ActiveCheckSettings(rise=2, fall=3, start_healthy=True))
        health.sync(["a"], now=0.0)
        script = [FAIL, FAIL, PASS, FAIL, FAIL, FAIL, PASS, FAIL, PASS, PASS]
        states = []
        for step, result in enumerate(script):
            health.record("a", result, float(step))
            states.append(health.state("a"))
        assert states == [HEALTHY] * 5 + [UNHEALTHY] * 4 + [HEALTHY]

    def test_schedule(self) -> None:
        """A check is not due again while it runs; the next one starts an interval after it."""
        health = ActiveHealth(ActiveCheckSettings(interval=2.0))
        health.sync(["a", "b"], now=0.0)
        assert health.due(0.0) == ["a", "b"]
        assert health.due(1.0) == []
        assert health.next_deadline() is None  # both running
        health.record("a", PASS, 0.3)
        assert health.next_deadline() == 2.0
        assert health.due(1.9) == []
        assert health.due(2.0) == ["a"]
        health.record("b", FAIL, 3.5)  # b's check took longer than the interval
        assert health.due(3.5) == ["b"]

    def test_sync_adds_and_forgets(self) -> None:
        """Removed endpoints are forgotten, late results for them are ignored."""
        health = ActiveHealth(ActiveCheckSettings(start_healthy=True))
        health.sync(["a", "b"], now=0.0)
        health.sync(["b", "c"], now=1.0)
        assert health.healthy() == {"b", "c"}
        assert health.record("a", FAIL, 1.0) is None

    def test_http_statuses(self) -> None:
        """2xx and 3xx pass by default; the failure says the status."""
        settings = ActiveCheckSettings()
        assert CheckResult.from_status(204, settings).passed
        assert CheckResult.from_status(503, settings) == CheckResult(False, "HTTP 503")


def eject_after(
    detector: OutlierDetector, address: str, outcome: Outcome, now: float
) -> list[OutlierEvent]:
    events = []
    for _ in range(10):
        events = detector.record(address, outcome, now)
        if events:
            return events
    return events


class TestOutlierDetector:
    def test_five_5xx_in_a_row_eject(self) -> None:
        """Four 5xx do nothing, the fifth ejects for the base time."""
        detector = OutlierDetector()
        detector.sync(["a", "b"])
        for _ in range(4):
            assert detector.record("a", Outcome.SERVER_ERROR, 1.0) == []
        assert detector.record("a", Outcome.SERVER_ERROR, 1.0) == [
            Ejected("a", 1.0, 6.0, 1, "5 failures in a row")
        ]
        assert detector.ejected() == {"a"}

    def test_a_success_resets_the_count(self) -> None:
        """Failures must be consecutive."""
        detector = OutlierDetector()
        detector.sync(["a", "b"])
        for outcome in [Outcome.SERVER_ERROR] * 4 + [Outcome.SUCCESS] + [Outcome.SERVER_ERROR] * 4:
            assert detector.record("a", outcome, 0.0) == []

    def test_three_connect_errors_eject(self) -> None:
        """Connect errors eject sooner; a 5xx between them restarts their own count."""
        detector = OutlierDetector()
        detector.sync(["a", "b"])
        script = [Outcome.CONNECT_ERROR, Outcome.CONNECT_ERROR, Outcome.SERVER_ERROR]
        for outcome in script:
            assert detector.record("a", outcome, 0.0) == []
        detector.record("a", Outcome.CONNECT_ERROR, 0.0)
        assert detector.record("a", Outcome.CONNECT_ERROR, 0.0) == [
            Ejected("a", 0.0, 5.0, 1, "5 failures in a row")
        ]
        detector.sync(["c", "d"])
        detector.record("c", Outcome.CONNECT_ERROR, 0.0)
        detector.record("c", Outcome.CONNECT_ERROR, 0.0)
        assert detector.record("c", Outcome.CONNECT_ERROR, 0.0) == [
            Ejected("c", 0.0, 5.0, 1, "3 connect errors in a row")
        ]

    def test_ejection_time_grows_caps_and_decays(self) -> None:
        """5 s, 10 s, 15 s, capped at 12 s; a calm spell steps the multiplier back down."""
        settings = OutlierSettings(max_ejection_time=12.0, multiplier_decay=30.0)
        detector = OutlierDetector(settings)
        detector.sync(["a", "b"])
        first = eject_after(detector, "a", Outcome.CONNECT_ERROR, 0.0)
        assert first == [Ejected("a", 0.0, 5.0, 1, "3 connect errors in a row")]
        assert detector.tick(4.9) == []
        assert detector.tick(5.0) == [Readmitted("a", 5.0, "ejection time over")]
        second = eject_after(detector, "a", Outcome.CONNECT_ERROR, 6.0)
        assert second == [Ejected("a", 6.0, 16.0, 2, "3 connect errors in a row")]
        assert detector.tick(16.5) == [Readmitted("a", 16.0, "ejection time over")]
        third = eject_after(detector, "a", Outcome.CONNECT_ERROR, 16.5)
        assert third == [Ejected("a", 16.5, 28.5, 3, "3 connect errors in a row")]
        # Back at 28.5; 60 s of calm later the multiplier has dropped by two: the next is 2nd.
        assert detector.tick(28.5) == [Readmitted("a", 28.5, "ejection time over")]
        fourth = eject_after(detector, "a", Outcome.CONNECT_ERROR, 88.5)
        assert fourth == [Ejected("a", 88.5, 98.5, 2, "3 connect errors in a row")]

    def test_active_check_readmits_early(self) -> None:
        """A passed active check ends an ejection before its time."""
        detector = OutlierDetector()
        detector.sync(["a", "b"])
        eject_after(detector, "a", Outcome.CONNECT_ERROR, 0.0)
        assert detector.readmit("a", 0.7) == [Readmitted("a", 0.7, "active check passed")]
        assert detector.ejected() == frozenset()
        assert detector.readmit("a", 0.8) == []

    def test_max_share_refuses(self) -> None:
        """With half the share, one of two endpoints may be out, not both."""
        detector = OutlierDetector()
        detector.sync(["a", "b"])
        assert isinstance(eject_after(detector, "a", Outcome.CONNECT_ERROR, 0.0)[0], Ejected)
        refused = eject_after(detector, "b", Outcome.CONNECT_ERROR, 0.0)
        assert refused == [EjectionRefused("b", 0.0, "3 connect errors in a row; 1 already out")]
        assert detector.ejected() == {"a"}
        assert detector.next_deadline() == 5.0
        # Once a is back, b's next failure ejects it.
        events = detector.record("b", Outcome.CONNECT_ERROR, 5.0)
        assert events[0] == Readmitted("a", 5.0, "ejection time over")
        assert isinstance(events[1], Ejected)

    def test_outcomes_of_ejected_endpoints_are_ignored(self) -> None:
        """Requests that were in flight at ejection do not lengthen it."""
        detector = OutlierDetector()
        detector.sync(["a", "b"])
        eject_after(detector, "a", Outcome.CONNECT_ERROR, 0.0)
        for _ in range(10):
            assert detector.record("a", Outcome.CONNECT_ERROR, 1.0) == []
        assert detector.next_deadline() == 5.0

    @given(
        count=st.integers(1, 8),
        share=st.sampled_from([0.0, 0.1, 0.25, 0.5, 0.75, 1.0]),
        events=st.lists(
            st.tuples(st.integers(0, 7), st.sampled_from(list(Outcome)), st.floats(0, 2)),
            max_size=200,
        ),
    )
    def test_ejected_share_never_exceeds_the_maximum(
        self, count: int, share: float, events: list[tuple[int, Outcome, float]]
    ) -> None:
        """Whatever happens, at most floor(share × endpoints) endpoints are out."""
        detector = OutlierDetector(OutlierSettings(max_ejected_share=share))
        addresses = [f"e{i}" for i in range(count)]
        detector.sync(addresses)
        now = 0.0
        for index, outcome, step in events:
            now += step
            detector.record(addresses[index % count], outcome, now)
            assert len(detector.ejected()) <= int(share * count)


class TestRetryBudget:
    def test_transcript(self) -> None:
        """Connect failures retry any method; resets and statuses only idempotent, replayable ones."""
        budget = RetryBudget()
        cases: list[tuple[tuple[str, Failure, int], dict[str, Any], bool, str]] = [
            (("POST", Failure.CONNECT, 0), {}, True, "connect failure, retry 1"),
            (("POST", Failure.RESET, 0), {}, False, "POST is not idempotent and may have arrived"),
            (("GET", Failure.RESET, 0), {}, True, "reset failure, retry 1"),
            (("GET", Failure.RESET, 1), {}, False, "1 of 1 retries used"),
            (("PUT", Failure.RESET, 0), {"body_replayable": False}, False, "the request body"),
            (("GET", Failure.STATUS, 0), {"status": 503}, True, "status failure, retry 1"),
            (("GET", Failure.STATUS, 0), {"status": 500}, False, "status 500 is not retried"),
        ]
        for args, kwargs, retry, reason in cases:
            decision = budget.decide(*args, **kwargs)
            assert decision.retry is retry, args
            assert decision.reason.startswith(reason), decision
            if decision.retry:
                budget.retry_finished()

    def test_budget_caps_retries_in_flight(self) -> None:
        """At least 3 retries may run; beyond that 20 % of the requests in flight."""
        budget = RetryBudget(RetrySettings(max_retries=5))
        for _ in range(30):
            budget.request_started()
        granted = [budget.decide("GET", Failure.CONNECT, 0).retry for _ in range(8)]
        assert granted == [True] * 6 + [False] * 2
        assert budget.decide("GET", Failure.CONNECT, 0).reason == "retry budget spent (6 in flight)"
        budget.retry_finished()
        assert budget.decide("GET", Failure.CONNECT, 0).retry
        for _ in range(30):
            budget.request_finished()
        assert budget.allowance() == 3
        with pytest.raises(RuntimeError):
            budget.request_finished()


class TestPendingLimiter:
    def test_transcript(self) -> None:
        """Two in flight, two waiting, the fifth rejected; finished slots go to the oldest waiter."""
        limiter = PendingLimiter(PendingSettings(max_in_flight=2, max_pending=2))
        assert [limiter.admit("a", t) for t in range(5)] == [
            Admission.SEND,
            Admission.SEND,
            Admission.QUEUE,
            Admission.QUEUE,
            Admission.REJECT,
        ]
        assert limiter.admit("b", 9) is Admission.SEND  # limits are per endpoint
        assert limiter.cancel("a", 3)
        assert not limiter.cancel("a", 3)
        assert limiter.finish("a") == 2
        assert (limiter.in_flight("a"), limiter.pending("a")) == (2, 0)
        assert limiter.finish("a") is None
        assert limiter.finish("a") is None
        assert limiter.in_flight("a") == 0
        with pytest.raises(RuntimeError):
            limiter.finish("a")

    @given(ops=st.lists(st.booleans(), max_size=100))
    def test_limits_always_hold(self, ops: list[bool]) -> None:
        """In flight never exceeds max_in_flight, waiting never exceeds max_pending."""
        limiter = PendingLimiter(PendingSettings(max_in_flight=3, max_pending=2))
        for ticket, arrive in enumerate(ops):
            if arrive:
                limiter.admit("a", ticket)
            elif limiter.in_flight("a"):
                limiter.finish("a")
            assert limiter.in_flight("a") <= 3
            assert limiter.pending("a") <= 2
            assert limiter.pending("a") == 0 or limiter.in_flight("a") == 3
