"""Endpoint pickers: weights respected, exclusions honoured, decisions replayable."""

from __future__ import annotations

import collections
import random
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shoal.dataplane.balancing import (
    POLICIES,
    Endpoint,
    HashPicker,
    LeastRequest,
    RandomPicker,
    SmoothWeightedRoundRobin,
    make_picker,
)

from .implementations import IMPLEMENTATIONS, names_from


@pytest.fixture(scope="module", params=IMPLEMENTATIONS, autouse=True)
def implementation(request: pytest.FixtureRequest) -> Iterator[str]:
    """Every test here runs on the pure source and on its compiled build (module-scoped, so
    Hypothesis's tests can share it)."""
    with names_from(
        globals(),
        "balancing",
        ["HashPicker", "LeastRequest", "RandomPicker", "SmoothWeightedRoundRobin", "make_picker"],
        request.param,
    ):
        yield request.param


SHARED_HASH_PICKER = HashPicker(random.Random(0))
weight_lists = st.lists(st.integers(1, 10), min_size=1, max_size=8)


def endpoints_for(weights: list[int]) -> list[Endpoint]:
    return [Endpoint(f"10.0.0.{i}:80", w) for i, w in enumerate(weights)]


class TestSmoothWeightedRoundRobin:
    def test_nginx_sequence(self) -> None:
        """Weights 5, 1, 1 give nginx's documented smooth order a a b a c a a."""
        a, b, c = Endpoint("a", 5), Endpoint("b", 1), Endpoint("c", 1)
        picker = SmoothWeightedRoundRobin()
        picks = [picker.pick([a, b, c]) for _ in range(7)]
        assert [p.address for p in picks if p] == list("aabacaa")

    @given(weights=weight_lists, rounds=st.integers(1, 3))
    def test_each_window_gives_exact_weights(self, weights: list[int], rounds: int) -> None:
        """Every window of sum(weights) picks chooses each endpoint exactly weight times."""
        endpoints = endpoints_for(weights)
        picker = SmoothWeightedRoundRobin()
        for _ in range(rounds):
            window = collections.Counter(
                p.address for p in (picker.pick(endpoints) for _ in range(sum(weights))) if p
            )
            assert window == {e.address: e.weight for e in endpoints}

    @given(weights=weight_lists, data=st.data())
    def test_excluded_endpoints_are_never_picked(
        self, weights: list[int], data: st.DataObject
    ) -> None:
        """Exclusions are skipped; when everything is excluded the answer is None."""
        endpoints = endpoints_for(weights)
        excluded = data.draw(st.sets(st.sampled_from([e.address for e in endpoints])))
        picker = SmoothWeightedRoundRobin()
        for _ in range(20):
            pick = picker.pick(endpoints, exclude=excluded)
            if len(excluded) == len(endpoints):
                assert pick is None
            else:
                assert pick is not None
                assert pick.address not in excluded

    def test_state_forgets_departed_endpoints(self) -> None:
        """Churned endpoints do not accumulate state."""
        picker = SmoothWeightedRoundRobin()
        for generation in range(100):
            picker.pick([Endpoint(f"gen{generation}-{i}") for i in range(3)])
        assert len(picker._current) <= 2 * 3 + 8 + 3


class TestRandomAndLeastRequest:
    def test_random_follows_weights(self) -> None:
        """Weighted random over 30k picks lands within 2 points of each weight's share."""
        endpoints = endpoints_for([1, 2, 5])
        picker = RandomPicker(random.Random(7))
        load = collections.Counter(
            p.address for p in (picker.pick(endpoints) for _ in range(30_000)) if p
        )
        for endpoint in endpoints:
            assert load[endpoint.address] / 30_000 == pytest.approx(endpoint.weight / 8, abs=0.02)

    @pytest.mark.parametrize("policy", ["random", "least-request", "hash"])
    def test_a_seeded_picker_replays_its_decisions(self, policy: str) -> None:
        """Given the same seed, a picker makes the same decisions."""
        endpoints = endpoints_for([1, 2, 3, 4])
        runs = []
        for _ in range(2):
            picker = make_picker(policy, random.Random(42))
            runs.append([picker.pick(endpoints) for _ in range(200)])
        assert runs[0] == runs[1]

    @given(loads=st.lists(st.integers(0, 50), min_size=2, max_size=10), seed=st.integers())
    def test_two_choices_never_pick_the_busiest(self, loads: list[int], seed: int) -> None:
        """With two choices the uniquely busiest endpoint always loses its comparison."""
        endpoints = [Endpoint(f"e{i}", in_flight=n) for i, n in enumerate(loads)]
        picker = LeastRequest(random.Random(seed), choices=2, exact_up_to=0)
        busiest = max(loads)
        for _ in range(10):
            pick = picker.pick(endpoints)
            assert pick is not None
            if loads.count(busiest) == 1:
                assert pick.in_flight < busiest

    @given(
        loads=st.lists(st.tuples(st.integers(0, 50), st.integers(1, 5)), min_size=1, max_size=16),
        picks=st.integers(1, 40),
    )
    def test_small_sets_get_the_exact_least_loaded(
        self, loads: list[tuple[int, int]], picks: int
    ) -> None:
        """Up to exact_up_to endpoints, every pick is a least loaded one (per unit of weight)."""
        endpoints = [Endpoint(f"e{i}", w, in_flight=n) for i, (n, w) in enumerate(loads)]
        picker = LeastRequest(random.Random(0))
        for _ in range(picks):
            pick = picker.pick(endpoints)
            assert pick is not None
            assert all(pick.in_flight * e.weight <= e.in_flight * pick.weight for e in endpoints)
            pick.in_flight += 1

    def test_equally_loaded_endpoints_take_turns(self) -> None:
        endpoints = [Endpoint(f"e{i}") for i in range(4)]
        picker = make_picker("least-request", random.Random(5))
        picks = [picker.pick(endpoints) for _ in range(8)]
        assert [p.address for p in picks if p] == [f"e{i % 4}" for i in range(8)]
        assert picker.pick(endpoints, exclude={"e1"}) is not None

    def test_exact_least_keeps_a_closed_loop_even(self) -> None:
        """32 requests always in flight over 4 endpoints: exactly 8 each, as leastconn does
        (two random choices let one drift to 10 or more for a while)."""
        endpoints = [Endpoint(f"e{i}") for i in range(4)]
        rng = random.Random(11)
        picker = LeastRequest(rng)
        flying = []
        for _ in range(32):
            pick = picker.pick(endpoints)
            assert pick is not None
            pick.in_flight += 1
            flying.append(pick)
        for _ in range(2_000):
            done = flying.pop(rng.randrange(len(flying)))
            done.in_flight -= 1
            pick = picker.pick(endpoints)
            assert pick is not None
            pick.in_flight += 1
            flying.append(pick)
            assert max(e.in_flight for e in endpoints) == 8

    def test_least_request_compares_per_unit_of_weight(self) -> None:
        """4 in flight on weight 4 is lighter than 2 in flight on weight 1."""
        heavy, light = Endpoint("heavy", 4, in_flight=4), Endpoint("light", 1, in_flight=2)
        picker = LeastRequest(random.Random(1))
        assert all(picker.pick([light, heavy]) is heavy for _ in range(10))

    def test_least_request_follows_in_flight_changes(self) -> None:
        """The driver's counter updates steer the next picks."""
        a, b = Endpoint("a"), Endpoint("b")
        picker = LeastRequest(random.Random(3))
        for _ in range(100):
            pick = picker.pick([a, b])
            assert pick is not None
            pick.in_flight += 1
        assert abs(a.in_flight - b.in_flight) <= 1


class TestHashPicker:
    @given(keys=st.lists(st.text(max_size=10), min_size=1, max_size=60), data=st.data())
    def test_exclusion_moves_only_the_excluded_endpoints_keys(
        self, keys: list[str], data: st.DataObject
    ) -> None:
        """A key stays on its endpoint unless that endpoint is excluded."""
        endpoints = endpoints_for([1, 1, 2, 1])
        picker = SHARED_HASH_PICKER  # built once: its Maglev table is cached per endpoint set
        out = data.draw(st.sampled_from([e.address for e in endpoints]))
        for key in keys:
            before = picker.pick(endpoints, key)
            after = picker.pick(endpoints, key, exclude={out})
            assert before is not None
            assert after is not None
            assert after.address != out
            assert before is after or before.address == out

    def test_same_key_same_endpoint_across_rebuilt_sets(self) -> None:
        """New Endpoint objects with the same addresses keep every key where it was."""
        picker = HashPicker(random.Random(0))
        first, second = endpoints_for([1, 1, 1]), endpoints_for([1, 1, 1])
        for key in (f"user{i}" for i in range(300)):
            a, b = picker.pick(first, key), picker.pick(second, key)
            assert a is not None
            assert b is not None
            assert a.address == b.address

    def test_everything_excluded_gives_none(self) -> None:
        """No endpoint left: None, with or without a key."""
        endpoints = endpoints_for([1, 1])
        picker = HashPicker(random.Random(0))
        everyone = {e.address for e in endpoints}
        assert picker.pick(endpoints, "k", exclude=everyone) is None
        assert picker.pick(endpoints, None, exclude=everyone) is None


def test_policy_names_and_errors() -> None:
    """Each policy name builds its picker; unknown names and bad weights are refused."""
    for policy in POLICIES:
        assert make_picker(policy, random.Random(0)).policy == policy
    with pytest.raises(ValueError, match="unknown balancing policy 'fastest'"):
        make_picker("fastest")
    with pytest.raises(ValueError, match="positive integer"):
        Endpoint("a", 0)
    assert make_picker("random").pick([]) is None
