"""The hot-path recorder against the reference arithmetic of RunStats.record_*: the same samples
give the same snapshot (histograms per path, per window and overall, counts, statuses)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from shoal.loadgen.stats import Recorder, RunStats

GRID = 1 / 1024
"""Times on a binary grid: exact in floating point, so window boundaries are unambiguous."""

event = st.one_of(
    st.tuples(
        st.just("response"),
        st.integers(0, 2),
        st.integers(0, 6 * 1024),
        st.integers(0, 3 * 1024),
        st.sampled_from([200, 204, 302, 404, 500, 503]),
    ),
    st.tuples(
        st.just("failure"),
        st.integers(0, 2),
        st.integers(0, 6 * 1024),
        st.integers(0, 20 * 1024),
        st.sampled_from(["connect", "reset", "timeout"]),
    ),
    st.tuples(st.just("drop"), st.integers(0, 2), st.integers(0, 6 * 1024)),
)


def replay(events: list[tuple[object, ...]], window: float) -> tuple[RunStats, RunStats]:
    recorder = Recorder(3, 0.0, window=window)
    reference = RunStats(3, 0.0, window=window)
    for item in events:
        if item[0] == "response":
            _, path, due, took, status = item
            intended, now = due * GRID, (due + took) * GRID  # type: ignore[operator]
            recorder.response(path, intended, now, status)  # type: ignore[arg-type]
            reference.record_response(path, intended, now, status)  # type: ignore[arg-type]
        elif item[0] == "failure":
            _, path, due, took, kind = item
            intended, now = due * GRID, (due + took) * GRID  # type: ignore[operator]
            recorder.failure(path, intended, now, kind)  # type: ignore[arg-type]
            reference.record_failure(path, intended, now, kind)  # type: ignore[arg-type]
        else:
            _, path, due = item
            recorder.drop(path, due * GRID)  # type: ignore[arg-type, operator]
            reference.record_drop(path, due * GRID)  # type: ignore[arg-type, operator]
    return recorder.snapshot(), reference


@settings(max_examples=200, deadline=None)
@given(st.lists(event, max_size=300), st.sampled_from([1.0, 0.25]))
def test_the_recorder_measures_what_the_reference_arithmetic_does(
    events: list[tuple[object, ...]], window: float
) -> None:
    # Completions arrive in time order, as they do from a monotonic clock.
    events.sort(key=lambda e: e[2] + e[3] if e[0] != "drop" else 0)  # type: ignore[operator]
    mine, theirs = replay(events, window)
    assert mine.to_dict() == theirs.to_dict()
    assert mine.latency == theirs.latency


def test_large_latencies_grow_the_cells_and_land_in_the_right_buckets() -> None:
    recorder = Recorder(1, 0.0)
    reference = RunStats(1, 0.0)
    for seconds in (0.000_1, 0.02, 3.0, 9_000.0, 0.5):
        recorder.response(0, 0.0, seconds, 200)
        reference.record_response(0, 0.0, seconds, 200)
    mine = recorder.snapshot()
    assert mine.to_dict() == reference.to_dict()
    assert mine.latency.max == 9_000_000_000
    assert recorder.requests == 5


def test_a_snapshot_taken_mid_run_is_not_changed_by_later_records() -> None:
    recorder = Recorder(1, 0.0)
    recorder.response(0, 0.1, 0.2, 200)
    early = recorder.snapshot()
    recorder.response(0, 0.3, 0.4, 200)
    assert early.requests == 1
    assert early.latency.count == 1
    assert recorder.snapshot().requests == 2
