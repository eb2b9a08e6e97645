"""
Consistent hashing: which shard owns a key.

Theory of operation
-------------------
A *hasher* is an immutable value built once from the shard names (and optional integer weights);
``lookup(key)`` then answers the owning shard, and ``candidates(key)`` the distinct shards in the
key's order of preference (the first is ``lookup(key)``; bounded loads and retries walk on).
Every algorithm starts from the key's :func:`key_hash`, so ``lookup_hash`` and ``index_of_hash``
answer from that hash alone (the proxy computes it from the request's bytes in place).
Every hash is stable across processes, machines and Python versions: keys are hashed with
``zlib.crc32`` and shard names with ``hashlib.blake2b``, never with ``hash()``.

Three algorithms, named as ``ShardedService.spec.hashing.algorithm`` names them:

``maglev`` (the default)
    Eisenbud et al., NSDI'16. Each shard walks its own pseudo-random permutation of a prime-sized
    table, and the shards take turns claiming their next free slot until the table is full. Every
    shard owns ``M/N`` slots to within one, so the load is as even as the keys allow, and a lookup
    is one crc32 and one index: O(1). The price is that turns interleave differently when the set
    changes, so a few keys move between shards that did not change. The excess shrinks as the
    table grows (measured: about ``0.05·N²/√M`` of the optimum); the table size must not follow
    the shard count, since a new size remaps every key. The default ``M = 524287`` keeps the
    excess under 2 % up to 16 shards for the usual shard names (``<name>-shard-<i>``; some sets
    of names reach 3.5 %) and builds in about 0.2-0.3 s: O(M log M), once per membership change.
``rendezvous``
    Highest random weight (Thaler & Ravishankar). Each shard scores the key; the best score wins.
    Movement is exactly minimal (only keys of the added or removed shard move), balance is as good
    as the key hash, and a lookup costs O(N) score computations.
``ring``
    A ketama-style ring: each shard places ``ring_points × weight`` points on a 32-bit circle and a
    key belongs to the next point clockwise. Movement is exactly minimal; the imbalance falls only
    as ``1/√points`` (ketama's 160 points give 10-20 % overload). O(log points) lookups.

:class:`BoundedLoads` adds Mirrokni, Thorup and Zadimoghaddam's "consistent hashing with bounded
loads" on top of any hasher: given live load counts, a key goes to the first of its candidates
whose load is below ``ceil(factor × (total + 1) × weight / total_weight)``, so one hot key cannot
push a shard beyond ``factor`` times its fair share.
"""

import array
import bisect
import hashlib
import math
import zlib
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

__all__ = [
    "ALGORITHMS",
    "BOUNDED_LOAD_FACTOR",
    "DEFAULT_ALGORITHM",
    "MAGLEV_TABLE_SIZE",
    "RING_POINTS",
    "BoundedLoads",
    "Hasher",
    "HashingSettings",
    "Key",
    "MaglevHasher",
    "RendezvousHasher",
    "RingHasher",
    "key_hash",
    "make_hasher",
]

Key = bytes | str
"""A shard key: bytes as they are, text as UTF-8."""

ALGORITHMS: Final = ("maglev", "rendezvous", "ring")
"""The algorithm names, as ``ShardedService.spec.hashing.algorithm`` spells them."""

DEFAULT_ALGORITHM: Final = "maglev"

MAGLEV_TABLE_SIZE: Final = 524287
"""The default Maglev table size, the prime 2¹⁹ − 1: the smallest of the primes we measured that
keeps excess movement under 2 % at 16 shards (Envoy's 65537 moves 5-10 % too many there)."""
RING_POINTS: Final = 1024
"""Default points per unit of weight on the ring."""
BOUNDED_LOAD_FACTOR: Final = 1.25
"""Default bounded-load factor (HAProxy's ``hash-balance-factor 125``)."""
_M64: Final = (1 << 64) - 1


@dataclass(frozen=True, slots=True)
class HashingSettings:
    """How shard keys map to shards."""

    algorithm: str = DEFAULT_ALGORITHM
    """One of :data:`ALGORITHMS`; ``maglev`` balances best with O(1) lookups (docs/dataplane-hashing.md)."""
    maglev_table_size: int = MAGLEV_TABLE_SIZE
    """Slots in the Maglev table, a prime; every router of a service must use the same size."""
    ring_points: int = RING_POINTS
    """Points per unit of weight on the ring; imbalance falls as 1/√points (ketama uses 160)."""
    bounded_load_factor: float = BOUNDED_LOAD_FACTOR
    """For :class:`BoundedLoads`: no shard takes more than this times its fair share of the load."""


def key_hash(key: Key) -> int:
    """The 32-bit hash of a key, the same on every machine (CRC-32 of the UTF-8 bytes)."""
    return zlib.crc32(key.encode() if isinstance(key, str) else key)


def _name_hash(name: str, salt: bytes = b"") -> int:
    """A 64-bit hash of a shard name (blake2b), stable everywhere."""
    digest = hashlib.blake2b(name.encode(), digest_size=8, salt=salt).digest()
    return int.from_bytes(digest, "big")


def _is_prime(n: int) -> bool:
    if n < 2:
        return False
    if n % 2 == 0:
        return n == 2
    return all(n % d for d in range(3, math.isqrt(n) + 1, 2))


def _check_shards(shards: Sequence[str], weights: Sequence[int] | None) -> tuple[int, ...]:
    if not shards:
        raise ValueError("a hasher needs at least one shard")
    if len(set(shards)) != len(shards):
        raise ValueError(f"shard names must be unique: {list(shards)}")
    if weights is None:
        return (1,) * len(shards)
    if len(weights) != len(shards):
        raise ValueError(f"{len(weights)} weights for {len(shards)} shards")
    if any(w < 1 for w in weights):
        raise ValueError(f"weights must be positive integers: {list(weights)}")
    return tuple(weights)


class Hasher(ABC):
    """An immutable map from keys to shard names; see the module docstring."""

    __slots__ = ("_shards", "_weights")

    algorithm: str
    """The name this algorithm has in :data:`ALGORITHMS`."""

    def __init__(self, shards: Sequence[str], weights: Sequence[int] | None = None) -> None:
        self._weights = _check_shards(shards, weights)
        self._shards = tuple(shards)

    @property
    def shards(self) -> tuple[str, ...]:
        """The shard names, in the order given."""
        return self._shards

    @property
    def weights(self) -> tuple[int, ...]:
        """The shards' weights, aligned with :attr:`shards`."""
        return self._weights

    @abstractmethod
    def lookup(self, key: Key) -> str:
        """The shard that owns ``key``."""

    def index(self, key: Key) -> int:
        """The position in :attr:`shards` of :meth:`lookup`'s answer."""
        return self.index_of_hash(key_hash(key))

    def index_of_hash(self, hashed: int) -> int:
        """:meth:`index` of a key whose :func:`key_hash` is ``hashed`` (the router's hot path:
        the proxy hashes the key's bytes where they lie in the request, never making a string)."""
        return self._shards.index(self.lookup_hash(hashed))

    @abstractmethod
    def lookup_hash(self, hashed: int) -> str:
        """:meth:`lookup` of a key whose :func:`key_hash` is ``hashed``."""

    @abstractmethod
    def candidates(self, key: Key) -> Iterator[str]:
        """Every shard once, in ``key``'s order of preference; the first is ``lookup(key)``."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({list(self._shards)!r}, weights={list(self._weights)!r})"


class MaglevHasher(Hasher):
    """Maglev hashing: a prime-sized table that every shard fills in turns."""

    __slots__ = ("_owners", "_size", "_table")

    algorithm = "maglev"

    def __init__(
        self,
        shards: Sequence[str],
        weights: Sequence[int] | None = None,
        *,
        table_size: int = MAGLEV_TABLE_SIZE,
    ) -> None:
        super().__init__(shards, weights)
        size = table_size
        if not _is_prime(size) or size < len(shards):
            raise ValueError(f"table_size must be a prime of at least {len(shards)}, not {size}")
        self._size = size
        self._owners = self._build(size)
        self._table: tuple[str, ...] | None = None

    def _build(self, size: int) -> "bytes | array.array[int]":
        n = len(self._shards)
        skips = [_name_hash(name, b"skip") % (size - 1) + 1 for name in self._shards]
        # Each shard's permutation is offset, offset + skip, offset + 2·skip, ... (mod size);
        # `cursor` holds the next slot of each one's walk.
        cursor = [_name_hash(name, b"offset") % size for name in self._shards]
        owner = [-1] * size
        heaviest = max(self._weights)
        credit = [0] * n  # weighted turns: a shard claims when its credit reaches `heaviest`
        filled = 0
        while True:
            for i in range(n):
                credit[i] += self._weights[i]
                if credit[i] < heaviest:
                    continue
                credit[i] -= heaviest
                slot, skip = cursor[i], skips[i]
                while owner[slot] >= 0:
                    slot += skip
                    if slot >= size:
                        slot -= size
                owner[slot] = i
                slot += skip
                cursor[i] = slot - size if slot >= size else slot
                filled += 1
                if filled == size:
                    # Owners as shard positions, one byte each when they fit: the table is read
                    # once per request at a random slot, and 512 KiB of bytes stays in cache
                    # where 4 MiB of pointers (a tuple of names) missed it on every lookup.
                    return bytes(owner) if n <= 256 else array.array("I", owner)

    @property
    def table(self) -> tuple[str, ...]:
        """The owner of every slot; a key goes to ``table[key_hash(key) % len(table)]``."""
        if self._table is None:  # built on demand: the lookups read the compact owners
            names = self._shards
            self._table = tuple(names[o] for o in self._owners)
        return self._table

    def lookup(self, key: Key) -> str:
        return self._shards[
            self._owners[zlib.crc32(key.encode() if isinstance(key, str) else key) % self._size]
        ]

    def lookup_hash(self, hashed: int) -> str:
        return self._shards[self._owners[hashed % self._size]]

    def index_of_hash(self, hashed: int) -> int:
        return self._owners[hashed % self._size]

    def candidates(self, key: Key) -> Iterator[str]:
        # Walk the table forward from the key's slot: owners are interleaved pseudo-randomly,
        # so this is a cheap, stable preference order (used only when the first choice is full).
        start = key_hash(key) % self._size
        seen: set[str] = set()
        owners, names, size, want = self._owners, self._shards, self._size, len(self._shards)
        for step in range(size):
            name = names[owners[(start + step) % size]]
            if name not in seen:
                seen.add(name)
                yield name
                if len(seen) == want:
                    return
        # A shard with no slot at all (weights so skewed that it never got a turn) comes last.
        yield from (name for name in self._shards if name not in seen)


def _mix64(x: int) -> int:
    """The murmur3 64-bit finalizer: every input bit affects every output bit."""
    x = ((x ^ (x >> 33)) * 0xFF51AFD7ED558CCD) & _M64
    x = ((x ^ (x >> 33)) * 0xC4CEB9FE1A85EC53) & _M64
    return x ^ (x >> 33)


class RendezvousHasher(Hasher):
    """Highest random weight: the shard with the best score for the key wins."""

    __slots__ = ("_seeded", "_uniform")

    algorithm = "rendezvous"

    def __init__(self, shards: Sequence[str], weights: Sequence[int] | None = None) -> None:
        super().__init__(shards, weights)
        self._seeded = tuple(
            (_name_hash(name, b"hrw"), name, w)
            for name, w in zip(self._shards, self._weights, strict=True)
        )
        self._uniform = len(set(self._weights)) == 1

    def _scores(self, key: Key) -> Iterator[tuple[float, str]]:
        return self._scores_of_hash(key_hash(key))

    def _scores_of_hash(self, h: int) -> Iterator[tuple[float, str]]:
        h = h | (h << 32)
        if self._uniform:
            for seed, name, _ in self._seeded:
                yield _mix64(h ^ seed), name
        else:
            # Weighted HRW (Schindelhauer & Schomaker): score = -w / ln(u), u uniform in (0, 1).
            for seed, name, weight in self._seeded:
                u = (_mix64(h ^ seed) + 1) / (_M64 + 2)
                yield -weight / math.log(u), name

    def lookup(self, key: Key) -> str:
        return self.lookup_hash(key_hash(key))

    def lookup_hash(self, hashed: int) -> str:
        if self._uniform:
            # The hot path: integer scores, no floats, no generator.
            h = hashed | (hashed << 32)
            best_score = -1
            best = ""
            for seed, name, _ in self._seeded:
                x = h ^ seed
                x = ((x ^ (x >> 33)) * 0xFF51AFD7ED558CCD) & _M64
                x = ((x ^ (x >> 33)) * 0xC4CEB9FE1A85EC53) & _M64
                x ^= x >> 33
                if x > best_score:
                    best_score, best = x, name
            return best
        return max(self._scores_of_hash(hashed))[1]

    def candidates(self, key: Key) -> Iterator[str]:
        for _, name in sorted(self._scores(key), reverse=True):
            yield name


class RingHasher(Hasher):
    """A ketama-style ring of ``points × weight`` points per shard on a 32-bit circle."""

    __slots__ = ("_owners", "_points")

    algorithm = "ring"

    def __init__(
        self,
        shards: Sequence[str],
        weights: Sequence[int] | None = None,
        *,
        points: int = RING_POINTS,
    ) -> None:
        super().__init__(shards, weights)
        if points < 1:
            raise ValueError(f"points must be at least 1, not {points}")
        placed: list[tuple[int, str]] = []
        for name, weight in zip(self._shards, self._weights, strict=True):
            count = points * weight
            # Like ketama, one digest gives four 32-bit points.
            for block in range((count + 3) // 4):
                digest = hashlib.blake2b(f"{name}-{block}".encode(), digest_size=16).digest()
                for quarter in range(min(4, count - 4 * block)):
                    point = int.from_bytes(digest[4 * quarter : 4 * quarter + 4], "big")
                    placed.append((point, name))
        # Ties (two shards on one point) break by name, so the order is the same everywhere.
        placed.sort()
        self._points = [p for p, _ in placed]
        self._owners = tuple(name for _, name in placed)

    def lookup(self, key: Key) -> str:
        return self.lookup_hash(key_hash(key))

    def lookup_hash(self, hashed: int) -> str:
        index = bisect.bisect_left(self._points, hashed)
        return self._owners[index if index < len(self._owners) else 0]

    def candidates(self, key: Key) -> Iterator[str]:
        start = bisect.bisect_left(self._points, key_hash(key))
        seen: set[str] = set()
        owners, count = self._owners, len(self._owners)
        for step in range(count):
            name = owners[(start + step) % count]
            if name not in seen:
                seen.add(name)
                yield name
                if len(seen) == len(self._shards):
                    return


def make_hasher(
    algorithm: str,
    shards: Sequence[str],
    weights: Sequence[int] | None = None,
    *,
    settings: HashingSettings | None = None,
) -> Hasher:
    """Build the hasher named ``algorithm`` (one of :data:`ALGORITHMS`) over ``shards``."""
    settings = settings or HashingSettings(algorithm=algorithm)
    if algorithm == "maglev":
        return MaglevHasher(shards, weights, table_size=settings.maglev_table_size)
    if algorithm == "rendezvous":
        return RendezvousHasher(shards, weights)
    if algorithm == "ring":
        return RingHasher(shards, weights, points=settings.ring_points)
    raise ValueError(f"unknown hashing algorithm {algorithm!r}: must be one of {list(ALGORITHMS)}")


class BoundedLoads:
    """Consistent hashing with bounded loads (Mirrokni, Thorup & Zadimoghaddam, 2016).

    Pure: the caller owns the load counts (requests in flight per shard, say) and passes them in.
    A key goes to its first candidate whose load is below its capacity,
    ``ceil(factor × (total + 1) × weight / total_weight)``; the ``+ 1`` counts the request being
    placed, so the capacities always add up to more than the load and some candidate has room.
    """

    __slots__ = ("_factor", "_hasher", "_total_weight", "_weights")

    def __init__(self, hasher: Hasher, factor: float = BOUNDED_LOAD_FACTOR) -> None:
        if not factor > 1.0:
            raise ValueError(f"factor must be above 1.0, not {factor}")
        self._hasher = hasher
        self._factor = factor
        self._weights = dict(zip(hasher.shards, hasher.weights, strict=True))
        self._total_weight = sum(hasher.weights)

    @property
    def hasher(self) -> Hasher:
        return self._hasher

    def capacity(self, shard: str, total_load: int) -> int:
        """How much load ``shard`` may carry when ``total_load`` is placed before this key."""
        share = (total_load + 1) * self._weights[shard] / self._total_weight
        return math.ceil(self._factor * share)

    def lookup(self, key: Key, loads: Mapping[str, int]) -> str:
        """The first of ``key``'s candidates with room, given the current ``loads``."""
        total = sum(loads.get(name, 0) for name in self._hasher.shards)
        for name in self._hasher.candidates(key):
            if loads.get(name, 0) < self.capacity(name, total):
                return name
        raise AssertionError("unreachable: the capacities add up to more than the load")
