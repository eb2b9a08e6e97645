"""The dispatcher without sockets: a fake clock and timers, request heads from the real parser."""

from __future__ import annotations

import bisect
import importlib
import time
from collections.abc import Callable
from types import ModuleType
from typing import cast

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from shoal.dataplane.config import (
    BackendConfig,
    HashKey,
    ListenerConfig,
    RouteConfig,
    RuntimeConfig,
    ShardConfig,
)
from shoal.dataplane.dispatch import LATENCY_BUCKETS, RequestPick
from shoal.dataplane.health import Failure, OutlierSettings, PendingSettings
from shoal.dataplane.http1 import Request, make_request_parser
from shoal.dataplane.metrics import Exposition

from .implementations import IMPLEMENTATIONS


class FakeHooks:
    logging = True

    def __init__(self) -> None:
        self.now = 100.0
        self.soon: list[Callable[[], None]] = []
        self.timers: list[tuple[float, Callable[[], None]]] = []
        self.done: list[tuple[str, int]] = []

    def time(self) -> float:
        return self.now

    def call_soon(self, callback: Callable[[], None]) -> None:
        self.soon.append(callback)

    def call_at(self, when: float, callback: Callable[[], None]) -> None:
        self.timers.append((when, callback))

    def request_done(self, pick: RequestPick, status: int, duration: float) -> None:
        self.done.append((pick.request.target.decode(), status))

    def health_changed(self) -> None:
        pass

    def advance(self, seconds: float) -> None:
        self.now += seconds
        due = [t for t in self.timers if t[0] <= self.now]
        self.timers = [t for t in self.timers if t[0] > self.now]
        for _, callback in due:
            callback()


def head(target: str = "/", headers: str = "", method: str = "GET") -> Request:
    raw = f"{method} {target} HTTP/1.1\r\nHost: x\r\n{headers}\r\n".encode()
    [request, _] = make_request_parser("python").feed(raw)
    assert isinstance(request, Request)
    return request


def route(*addresses: str, **fields: object) -> RouteConfig:
    return RouteConfig(
        name="r",
        backends=tuple(BackendConfig(a) for a in addresses),
        **fields,  # type: ignore[arg-type]
    )


def picked(pick: object) -> RequestPick:
    """The pick as a RequestPick (of either implementation)."""
    assert type(pick).__name__ == "RequestPick"
    return cast(RequestPick, pick)


@pytest.fixture(params=IMPLEMENTATIONS)
def impl(request: pytest.FixtureRequest) -> ModuleType:
    """The dispatch module of each implementation (pure Python, compiled)."""
    if request.param == "python":
        return importlib.import_module("shoal.dataplane.dispatch")
    return importlib.import_module("shoal.dataplane._dispatch_c")


def test_hash_on_cookie_and_client_address(impl: ModuleType) -> None:
    hooks = FakeHooks()
    addresses = [f"10.0.0.{i}:80" for i in range(1, 6)]
    by_cookie = impl.ListenerDispatcher(
        [
            impl.RouteState(
                "l", route(*addresses, policy="hash", hash_key=HashKey("cookie", "sid")), hooks
            )
        ]
    )
    first = {picked(by_cookie.begin(head(headers="Cookie: a=1; sid=u42\r\n"), "1.1.1.1")).address}
    for peer in ("2.2.2.2", "3.3.3.3"):
        again = picked(by_cookie.begin(head(headers="Cookie: sid=u42; b=2\r\n"), peer))
        assert {again.address} == first
    by_client = impl.ListenerDispatcher(
        [
            impl.RouteState(
                "l", route(*addresses, policy="hash", hash_key=HashKey("client-address")), hooks
            )
        ]
    )
    seen = {picked(by_client.begin(head(f"/{i}"), "9.9.9.9")).address for i in range(10)}
    assert len(seen) == 1


def test_path_capture_key_and_absolute_form_targets(impl: ModuleType) -> None:
    hooks = FakeHooks()
    addresses = [f"10.0.0.{i}:80" for i in range(1, 6)]
    key = HashKey("path", regexp="/users/([^/]+)")
    dispatcher = impl.ListenerDispatcher(
        [impl.RouteState("l", route(*addresses, policy="hash", hash_key=key), hooks)]
    )
    owners = {
        picked(dispatcher.begin(head(target), "1.1.1.1")).address
        for target in ("/users/ann/a", "/users/ann/b?x=1", "http://example.com/users/ann/c")
    }
    assert len(owners) == 1


def test_shards_route_a_key_to_one_shard_and_count(impl: ModuleType) -> None:
    hooks = FakeHooks()
    config = RouteConfig(
        name="users",
        shard_regexp="/users/([^/]+)",
        shards=tuple(
            ShardConfig(f"s{i}", (BackendConfig(f"10.0.{i}.1:80"), BackendConfig(f"10.0.{i}.2:80")))
            for i in range(3)
        ),
    )
    state = impl.RouteState("l", config, hooks)
    dispatcher = impl.ListenerDispatcher([state])
    shards = set()
    for i in range(4):
        pick = picked(dispatcher.begin(head(f"/users/bob/{i}"), "1.1.1.1"))
        shards.add(pick.shard)
        dispatcher.end(pick, 500 if i == 3 else 200)
    assert len(shards) == 1
    assert state.router is not None
    [name] = shards
    assert (state.router.counters[name].routed, state.router.counters[name].failed) == (4, 1)


def test_hash_inside_shards_keeps_a_key_on_one_replica(impl: ModuleType) -> None:
    """Sharded, with ``hash`` among each shard's replicas: a key stays on one replica of its
    shard, while other keys of that shard spread over its replicas."""
    config = RouteConfig(
        name="users",
        policy="hash",
        shard_regexp="/users/([^/]+)",
        shards=tuple(
            ShardConfig(f"s{i}", tuple(BackendConfig(f"10.0.{i}.{r}:80") for r in range(4)))
            for i in range(2)
        ),
    )
    dispatcher = impl.ListenerDispatcher([impl.RouteState("l", config, FakeHooks())])
    replicas: dict[str, set[str]] = {}
    for user in ("ann", "ann", "bo", "bo", *(f"u{i}" for i in range(40))):
        pick = picked(dispatcher.begin(head(f"/users/{user}/x?y=1"), "1.1.1.1"))
        replicas.setdefault(user, set()).add(f"{pick.shard} {pick.address}")
        dispatcher.end(pick, 200)
    assert len(replicas["ann"]) == len(replicas["bo"]) == 1
    assert len(set().union(*replicas.values())) == 8


def test_retry_goes_to_another_endpoint_and_is_bounded_by_the_budget(impl: ModuleType) -> None:
    hooks = FakeHooks()
    state = impl.RouteState("l", route("10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80"), hooks)
    dispatcher = impl.ListenerDispatcher([state])
    pick = picked(dispatcher.begin(head(), "1.1.1.1"))
    first = pick.address
    assert dispatcher.failed(pick, Failure.CONNECT, True)
    assert pick.address != first
    assert not dispatcher.failed(pick, Failure.CONNECT, True)  # max_retries is 1
    dispatcher.end(pick, 502)
    assert state.retries == 1
    # A non-idempotent request that was reset is not sent again.
    post = picked(dispatcher.begin(head(method="POST"), "1.1.1.1"))
    assert not dispatcher.failed(post, Failure.RESET, False)
    dispatcher.end(post, 502)
    assert all(e.in_flight == 0 for e in state.endpoints())


def test_ejection_excludes_and_the_timer_readmits(impl: ModuleType) -> None:
    hooks = FakeHooks()
    outlier = OutlierSettings(consecutive_5xx=2, base_ejection_time=5.0)
    state = impl.RouteState("l", route("10.0.0.1:80", "10.0.0.2:80", outlier=outlier), hooks)
    dispatcher = impl.ListenerDispatcher([state])
    failures = 0
    while "10.0.0.1:80" not in state.excluded:
        pick = picked(dispatcher.begin(head(), "1.1.1.1"))
        dispatcher.end(pick, 500 if pick.address == ("10.0.0.1", 80) else 200)
        failures += 1
        assert failures < 10
    assert {picked(dispatcher.begin(head(), "1.1.1.1")).address for _ in range(4)} == {
        ("10.0.0.2", 80)
    }
    hooks.advance(5.0)
    assert state.excluded == frozenset()


def test_a_full_endpoint_queues_and_the_freed_slot_goes_to_the_oldest_waiter(
    impl: ModuleType,
) -> None:
    hooks = FakeHooks()
    state = impl.RouteState(
        "l", route("10.0.0.1:80", pending=PendingSettings(max_in_flight=1, max_pending=1)), hooks
    )
    dispatcher = impl.ListenerDispatcher([state])
    first = picked(dispatcher.begin(head("/1"), "1.1.1.1"))
    second = picked(dispatcher.begin(head("/2"), "1.1.1.1"))
    assert (first.queued, second.queued) == (False, True)
    ready: list[str] = []
    second.on_ready = lambda: ready.append("/2")
    assert dispatcher.begin(head("/3"), "1.1.1.1") is None  # queue full, no other endpoint
    assert state.unavailable == 1
    dispatcher.end(first, 200)
    assert not second.queued
    for callback in hooks.soon:
        callback()
    assert ready == ["/2"]
    dispatcher.end(second, 200)
    assert state.queued == 0
    assert [e.in_flight for e in state.endpoints()] == [0]
    assert hooks.done == [("/1", 200), ("/2", 200)]


@pytest.mark.parametrize("name", IMPLEMENTATIONS)
@given(st.lists(st.floats(min_value=0, max_value=20, allow_nan=False), max_size=40))
def test_histogram_buckets_as_bisect_left(name: str, durations: list[float]) -> None:
    """Each duration lands in the first bucket whose bound is not below it, +Inf after them."""
    module = "shoal.dataplane.dispatch" if name == "python" else "shoal.dataplane._dispatch_c"
    histogram = importlib.import_module(module).Histogram()
    expected = [0] * (len(LATENCY_BUCKETS) + 1)
    for duration in [*durations, *LATENCY_BUCKETS]:  # the bounds themselves too
        histogram.observe(duration)
        expected[bisect.bisect_left(LATENCY_BUCKETS, duration)] += 1
    assert histogram.bucket_counts() == expected
    assert histogram.count == len(durations) + len(LATENCY_BUCKETS)


def test_counters_and_latency_of_exchanges(impl: ModuleType) -> None:
    hooks = FakeHooks()
    state = impl.RouteState("l", route("10.0.0.1:80"), hooks)
    dispatcher = impl.ListenerDispatcher([state])
    for status, seconds in ((200, 0.0004), (204, 0.003), (503, 0.2), (0, 30.0)):
        pick = dispatcher.begin(head(), "1.1.1.1")
        hooks.now += seconds
        dispatcher.end(pick, status)
    stats = state.stats[""]["10.0.0.1:80"]
    assert stats.response_counts() == [1, 0, 2, 0, 0, 1]
    histogram = state.latency[""]
    assert histogram.bucket_counts() == [1, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1]
    assert histogram.total == pytest.approx(30.2034)


def test_the_monotonic_clock_read_directly_is_time_monotonic(impl: ModuleType) -> None:
    """Hooks whose clock is ``time.monotonic`` are read without a Python call when compiled:
    the same clock, so a pick's start sits between two readings of ``time.monotonic``."""

    class MonotonicHooks(FakeHooks):
        time = staticmethod(time.monotonic)

    dispatcher = impl.ListenerDispatcher(
        [impl.RouteState("l", route("10.0.0.1:80"), MonotonicHooks())]
    )
    before = time.monotonic()
    pick = picked(dispatcher.begin(head(), "1.1.1.1"))
    after = time.monotonic()
    assert before <= pick.started <= after


def test_runtime_config_validation_lists_every_problem() -> None:
    bad = RuntimeConfig(
        listeners=(
            ListenerConfig(
                name="web",
                port=70000,
                routes=(
                    route("nonsense", policy="fastest"),
                    RouteConfig(name="r", hash_key=HashKey("header")),
                ),
            ),
            ListenerConfig(name="web", port=1, routes=()),
        )
    )
    with pytest.raises(ValueError, match="invalid proxy configuration") as caught:
        bad.validate()
    message = str(caught.value)
    for expected in (
        "listeners[0].port: must be between 0 and 65535",
        "listeners[0].routes[0].policy: must be one of",
        "expected HOST:PORT, got 'nonsense'",
        "listeners[0].routes[1].name: Duplicate value: 'r'",
        "listeners[0].routes[1].hashKey.name: Required value",
        "listeners[1].name: Duplicate value: 'web'",
    ):
        assert expected in message


def test_exposition_escapes_and_parses() -> None:
    out = Exposition()
    out.counter("x_requests_total", "Requests.\nSecond line", [({"path": 'a"b\\c\nd'}, 3)])
    out.gauge("x_up", "Up.", [({}, 1), ({"k": "v"}, 0.5)])
    out.histogram("x_seconds", "Latency.", (0.1, 1.0), [({"r": "a"}, [1, 2, 3], 4.5)])
    families = {f.name: f for f in text_string_to_metric_families(out.render())}
    assert families["x_requests"].samples[0].labels == {"path": 'a"b\\c\nd'}
    assert families["x_requests"].samples[0].value == 3
    assert [s.value for s in families["x_up"].samples] == [1, 0.5]
    buckets = [
        (s.labels["le"], s.value)
        for s in families["x_seconds"].samples
        if s.name.endswith("_bucket")
    ]
    assert buckets == [("0.1", 1), ("1.0", 3), ("+Inf", 6)]
    with pytest.raises(ValueError, match="added twice"):
        out.gauge("x_up", "again", [])
