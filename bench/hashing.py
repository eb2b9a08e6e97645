"""
Consistent hashing, side by side: shoal's maglev, rendezvous and ring against uhashring (ketama).

Run: ``python bench/hashing.py`` (needs ``pip install uhashring``, the peer; exits 2 without it).

For each algorithm, over 200k keys ``user{i}`` (the key set of docs/dataplane.md §2.3):

* keys moved when one shard is added (4 → 5, 16 → 17) or a middle one removed (5 → 4 without
  ``shard-2``, 16 → 15 without ``shard-8``), as a multiple of the optimum: the keys that had to move
  (those now on the added shard, or those that were on the removed one);
* max/mean load at 4 and 16 shards; "random" is a uniformly random assignment of the same keys,
  the noise floor no hash can beat on average;
* lookups per second in this one process (best of three passes), and the time to build at 16 shards;
* balance over other key sets of the same size (``{i}``, ``item-{i}``, ``u:{i}:x``,
  ``key_{i:08d}``, ``session/{i}``): max/mean at 4 and 16 shards on each, and their mean, against
  the spread of random assignments (mean of 20, and how often one exceeds 1.02), since one key
  set alone says little about a hash's balance at the noise floor.

Ratios to the peer are printed last. Absolute numbers depend on the machine; ratios travel.
"""

from __future__ import annotations

import collections
import datetime
import platform
import random
import re
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import cast

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from shoal.dataplane.hashing import MAGLEV_TABLE_SIZE, RING_POINTS, make_hasher

try:
    import uhashring  # type: ignore[import-untyped]
except ImportError:
    print(
        "bench/hashing.py compares against uhashring (ketama, as nginx and memcached clients hash);\n"
        "it is not installed. Install it for the benchmark only:  pip install uhashring",
        file=sys.stderr,
    )
    raise SystemExit(2) from None

KEYS = [f"user{i}" for i in range(200_000)]
FAMILIES = ("user{}", "{}", "item-{}", "u:{}:x", "key_{:08d}", "session/{}")
"""Key sets of the balance table (KEYS is the first)."""
PEER = "uhashring"
Lookup = Callable[[str], str]


def build(algorithm: str, shards: Sequence[str]) -> Lookup:
    if algorithm == PEER:
        ring = uhashring.HashRing(nodes=list(shards), hash_fn="ketama")
        return cast(Lookup, ring.get_node)
    return make_hasher(algorithm, shards).lookup


def names(count: int) -> list[str]:
    return [f"shard-{i}" for i in range(count)]


def movement(algorithm: str, before: Sequence[str], after: Sequence[str]) -> float:
    old, new = build(algorithm, before), build(algorithm, after)
    (changed,) = set(before) ^ set(after)
    moved = must = 0
    for key in KEYS:
        a, b = old(key), new(key)
        moved += a != b
        must += changed in (a, b)
    return moved / must


def balance(lookup: Lookup, count: int, keys: Sequence[str] = KEYS) -> float:
    load = collections.Counter(map(lookup, keys))
    return max(load.values()) / (len(keys) / count)


def lookups_per_second(lookup: Lookup) -> float:
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for key in KEYS:
            lookup(key)
        best = min(best, time.perf_counter() - start)
    return len(KEYS) / best


def measure(algorithm: str) -> dict[str, float]:
    start = time.perf_counter()
    at16 = build(algorithm, names(16))
    build_ms = (time.perf_counter() - start) * 1000
    at4 = build(algorithm, names(4))
    return {
        "add 4→5": movement(algorithm, names(4), names(5)),
        "rm 5→4": movement(algorithm, names(5), [n for n in names(5) if n != "shard-2"]),
        "add 16→17": movement(algorithm, names(16), names(17)),
        "rm 16→15": movement(algorithm, names(16), [n for n in names(16) if n != "shard-8"]),
        "max/mean 4": balance(at4, 4),
        "max/mean 16": balance(at16, 16),
        "Mlookups/s 4": lookups_per_second(at4) / 1e6,
        "Mlookups/s 16": lookups_per_second(at16) / 1e6,
        "build ms 16": build_ms,
    }


def family_balance(algorithm: str, family: str, count: int) -> float:
    keys = [family.format(i) for i in range(len(KEYS))]
    return balance(build(algorithm, names(count)), count, keys)


def random_maxima(count: int, trials: int, seed: int) -> list[float]:
    """Max/mean of ``trials`` uniformly random assignments of the keys to ``count`` shards."""
    rng = random.Random(seed)
    values = []
    for _ in range(trials):
        load = collections.Counter(rng.randrange(count) for _ in KEYS)
        values.append(max(load.values()) / (len(KEYS) / count))
    return values


def random_spread(count: int, trials: int = 20) -> tuple[float, float]:
    """Mean max/mean of random assignments, and the share of them above 1.02."""
    values = random_maxima(count, trials, 20261130)
    return sum(values) / trials, sum(v > 1.02 for v in values) / trials


def random_floor(count: int, trials: int = 5) -> float:
    """Mean max/mean of a uniformly random assignment of the keys to ``count`` shards."""
    return sum(random_maxima(count, trials, 20260101)) / trials


def main() -> None:
    algorithms = ["maglev", "rendezvous", "ring", PEER]
    results = {a: measure(a) for a in algorithms}
    columns = list(results[PEER])
    print(
        f"# {datetime.date.today()}  Python {platform.python_version()}  {platform.machine()}  "
        f"{len(KEYS):,} keys; maglev M={MAGLEV_TABLE_SIZE}, ring {RING_POINTS} points/shard, "
        f"uhashring {getattr(uhashring, '__version__', '?')} ketama (160 points/node)"
    )
    print()
    print("| algorithm | " + " | ".join(columns) + " |")
    print("|---|" + "---|" * len(columns))
    for algorithm in algorithms:
        row = results[algorithm]
        print(f"| {algorithm} | " + " | ".join(f"{row[c]:.3f}" for c in columns) + " |")
    print(
        "| random (noise floor, mean of 5) | | | | | "
        f"{random_floor(4):.3f} | {random_floor(16):.3f} | | | |"
    )
    print()
    print(f"Ratios to {PEER} (movement and max/mean: lower is better; lookups/s: higher is better)")
    print()
    print("| algorithm | " + " | ".join(columns) + " |")
    print("|---|" + "---|" * len(columns))
    for algorithm in algorithms[:-1]:
        row, peer = results[algorithm], results[PEER]
        print(f"| {algorithm} | " + " | ".join(f"{row[c] / peer[c]:.2f}×" for c in columns) + " |")
    print()
    print(f"Balance (max/mean) over key sets of {len(KEYS):,} keys, at 4 / 16 shards")
    print()
    shown = [
        re.sub(r"\{(:[^}]*)?\}", lambda m: "{i" + (m.group(1) or "") + "}", f) for f in FAMILIES
    ]
    print("| algorithm | " + " | ".join(shown) + " | mean |")
    print("|---|" + "---|" * (len(FAMILIES) + 1))
    for algorithm in algorithms:
        cells, sums = [], [0.0, 0.0]
        for family in FAMILIES:
            pair = [family_balance(algorithm, family, count) for count in (4, 16)]
            sums = [total + value for total, value in zip(sums, pair, strict=True)]
            cells.append(f"{pair[0]:.3f} / {pair[1]:.3f}")
        means = f"{sums[0] / len(FAMILIES):.3f} / {sums[1] / len(FAMILIES):.3f}"
        print(f"| {algorithm} | " + " | ".join(cells) + f" | {means} |")
    (mean4, over4), (mean16, over16) = random_spread(4), random_spread(16)
    print()
    print(
        f"Random assignment of {len(KEYS):,} keys, 20 trials: mean max/mean {mean4:.3f} at 4 "
        f"shards ({over4:.0%} above 1.02), {mean16:.3f} at 16 ({over16:.0%} above 1.02)."
    )


if __name__ == "__main__":
    main()
