"""
Endpoint pickers: which replica gets the next request.

Theory of operation
-------------------
A *picker* chooses one endpoint from a sequence of :class:`Endpoint`\\ s: ``pick(endpoints,
key=None, exclude=())``. It does no I/O and reads no clock; the only randomness comes from the
``random.Random`` it is given, so a seeded picker replays the same decisions. The driver owns the
endpoints: it bumps :attr:`Endpoint.in_flight` when a request starts and drops it when the
request ends, and it passes the addresses it must avoid (ejected, unhealthy, already tried by
this request) in ``exclude`` rather than filtering the sequence, so that a hashed key keeps its
endpoint while another endpoint is out. ``pick`` returns ``None`` when every endpoint is
excluded; the driver answers 503.

Policies (the names ``shoal proxy --policy`` takes):

``round-robin``
    nginx's smooth weighted round robin: each pick adds every endpoint's weight to its running
    score, takes the highest score and subtracts the total weight from it. Over any window of
    ``sum(weights)`` picks each endpoint is chosen exactly ``weight`` times, spread evenly
    (weights 5, 1, 1 give a a b a c a a, not a a a a a b c).
``least-request``
    Power of two choices (Mitzenmacher): draw two distinct endpoints at random, keep the one with
    fewer requests in flight per unit of weight. Nearly as good as scanning every endpoint, and
    no herd forms on the single least-loaded one.
``random``
    Weighted random choice.
``hash``
    Consistent hashing of the request's key (header, cookie, client address or path capture) over
    the endpoint addresses (:mod:`shoal.dataplane.hashing`); an excluded endpoint's keys walk on to
    their next candidate and every other key stays put. Without a key it picks at random.
"""

import bisect
import itertools
import random
from abc import ABC, abstractmethod
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Final

from shoal.dataplane.hashing import (
    DEFAULT_ALGORITHM,
    Hasher,
    HashingSettings,
    Key,
    make_hasher,
)

__all__ = [
    "POLICIES",
    "BalancingSettings",
    "Endpoint",
    "HashPicker",
    "LeastRequest",
    "Picker",
    "RandomPicker",
    "SmoothWeightedRoundRobin",
    "make_picker",
]

POLICIES: Final = ("round-robin", "least-request", "random", "hash")
"""The balancing policies, as ``shoal proxy --policy`` names them."""


@dataclass(frozen=True, slots=True)
class BalancingSettings:
    """How a replicated service (or one shard's replicas) spreads requests."""

    policy: str = "round-robin"
    """One of :data:`POLICIES`."""
    choices: int = 2
    """For ``least-request`` over more than ``exact_least_up_to`` endpoints: endpoints drawn per
    pick (2 is the power of two choices, as Envoy's default)."""
    exact_least_up_to: int = 16
    """For ``least-request``: up to this many endpoints, every one is compared and the least
    loaded wins (HAProxy's leastconn), ties in turn; 0 always draws ``choices``."""
    hash_algorithm: str = DEFAULT_ALGORITHM
    """For ``hash``: the consistent-hashing algorithm over the endpoint addresses."""
    hash_table_size: int = 65537
    """For ``hash`` with ``maglev``: a smaller table than the shard router's, since replica sets
    are small and change more often (Envoy's default size)."""


@dataclass(slots=True, eq=False)
class Endpoint:
    """One upstream address; the driver keeps :attr:`in_flight` current.

    ``address`` and ``weight`` never change (a new weight is a new endpoint in a new table);
    equality is identity, so counters stay attached to the object the driver updates.
    """

    address: str
    """``host:port``."""
    weight: int = 1
    """Relative share of requests, a positive integer."""
    in_flight: int = 0
    """Requests sent and not yet finished; read by ``least-request``."""

    def __post_init__(self) -> None:
        if self.weight < 1:
            raise ValueError(f"weight of {self.address} must be a positive integer")


class Picker(ABC):
    """Chooses an endpoint for a request; see the module docstring."""

    __slots__ = ()

    policy: str
    """The name in :data:`POLICIES`."""

    @abstractmethod
    def pick(
        self,
        endpoints: Sequence[Endpoint],
        key: Key | None = None,
        exclude: Collection[str] = (),
    ) -> Endpoint | None:
        """The endpoint for the next request, or ``None`` when all are excluded."""


class SmoothWeightedRoundRobin(Picker):
    """nginx's smooth weighted round robin (ngx_http_upstream_round_robin.c's algorithm)."""

    __slots__ = ("_current",)

    policy = "round-robin"

    def __init__(self) -> None:
        self._current: dict[str, int] = {}

    def pick(
        self,
        endpoints: Sequence[Endpoint],
        key: Key | None = None,
        exclude: Collection[str] = (),
    ) -> Endpoint | None:
        if len(endpoints) == 1:
            # One endpoint: the general loop below would leave its score as it was.
            only = endpoints[0]
            return None if only.address in exclude else only
        current = self._current
        if len(current) > 2 * len(endpoints) + 8:
            # Forget endpoints that left the set, so the state stays the size of the set.
            live = {e.address for e in endpoints}
            self._current = current = {a: c for a, c in current.items() if a in live}
        best: Endpoint | None = None
        best_score = 0
        total = 0
        for endpoint in endpoints:
            if endpoint.address in exclude:
                continue
            score = current.get(endpoint.address, 0) + endpoint.weight
            current[endpoint.address] = score
            total += endpoint.weight
            if best is None or score > best_score:
                best, best_score = endpoint, score
        if best is not None:
            current[best.address] = best_score - total
        return best


class LeastRequest(Picker):
    """The fewest requests in flight per unit of weight.

    Up to ``exact_up_to`` endpoints every one is compared (as HAProxy's leastconn): a random
    sample of two lets one endpoint collect several more requests than the others for a while,
    and an app whose cost grows with its concurrency (a thread per connection under one GIL)
    pays for every extra one. Ties go to the endpoints in turn, so an idle set is served round
    robin. Above ``exact_up_to`` the power of ``choices`` random choices keeps a pick O(1).
    """

    __slots__ = ("_choices", "_exact_up_to", "_rng", "_turn")

    policy = "least-request"

    def __init__(self, rng: random.Random, choices: int = 2, exact_up_to: int = 16) -> None:
        if choices < 1:
            raise ValueError(f"choices must be at least 1, not {choices}")
        if exact_up_to < 0:
            raise ValueError(f"exact_up_to must not be negative, not {exact_up_to}")
        self._rng = rng
        self._choices = choices
        self._exact_up_to = exact_up_to
        self._turn = 0

    def pick(
        self,
        endpoints: Sequence[Endpoint],
        key: Key | None = None,
        exclude: Collection[str] = (),
    ) -> Endpoint | None:
        pool = [e for e in endpoints if e.address not in exclude] if exclude else endpoints
        count = len(pool)
        if not count:
            return None
        if count <= self._exact_up_to:
            # Start one further each pick: of equally loaded endpoints, each gets its turn.
            start = self._turn % count
            self._turn = start + 1
            best = pool[start]
            for step in range(1, count):
                other = pool[(start + step) % count]
                if other.in_flight * best.weight < best.in_flight * other.weight:
                    best = other
            return best
        if count <= self._choices:
            drawn: Sequence[Endpoint] = pool
        else:
            drawn = self._rng.sample(pool, self._choices)
        best = drawn[0]
        for other in itertools.islice(drawn, 1, None):
            # other.in_flight / other.weight < best.in_flight / best.weight, without floats.
            if other.in_flight * best.weight < best.in_flight * other.weight:
                best = other
        return best


class RandomPicker(Picker):
    """Weighted random choice."""

    __slots__ = ("_rng",)

    policy = "random"

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng

    def pick(
        self,
        endpoints: Sequence[Endpoint],
        key: Key | None = None,
        exclude: Collection[str] = (),
    ) -> Endpoint | None:
        pool = [e for e in endpoints if e.address not in exclude] if exclude else endpoints
        if not pool:
            return None
        cumulative = list(itertools.accumulate(e.weight for e in pool))
        point = self._rng.random() * cumulative[-1]
        return pool[bisect.bisect_right(cumulative, point)]


class HashPicker(Picker):
    """Consistent hashing of the request's key over the endpoint addresses.

    The hasher is built once per endpoint set (addresses and weights) and kept until the set
    changes; exclusions never rebuild it.
    """

    __slots__ = ("_cache_key", "_fallback", "_hasher", "_settings")

    policy = "hash"

    def __init__(self, rng: random.Random, settings: BalancingSettings | None = None) -> None:
        self._settings = settings or BalancingSettings(policy="hash")
        self._fallback = RandomPicker(rng)
        self._hasher: Hasher | None = None
        self._cache_key: tuple[tuple[str, int], ...] = ()

    def _hasher_for(self, endpoints: Sequence[Endpoint]) -> Hasher:
        cache_key = tuple((e.address, e.weight) for e in endpoints)
        if self._hasher is None or cache_key != self._cache_key:
            self._hasher = make_hasher(
                self._settings.hash_algorithm,
                [e.address for e in endpoints],
                [e.weight for e in endpoints],
                settings=HashingSettings(
                    algorithm=self._settings.hash_algorithm,
                    maglev_table_size=self._settings.hash_table_size,
                ),
            )
            self._cache_key = cache_key
        return self._hasher

    def pick(
        self,
        endpoints: Sequence[Endpoint],
        key: Key | None = None,
        exclude: Collection[str] = (),
    ) -> Endpoint | None:
        if key is None or not endpoints:
            return self._fallback.pick(endpoints, None, exclude)
        hasher = self._hasher_for(endpoints)
        by_address = {e.address: e for e in endpoints}
        if not exclude:
            return by_address[hasher.lookup(key)]
        for address in hasher.candidates(key):
            if address not in exclude:
                return by_address[address]
        return None


def make_picker(
    policy: str,
    rng: random.Random | None = None,
    settings: BalancingSettings | None = None,
) -> Picker:
    """A new picker for ``policy`` (one of :data:`POLICIES`); ``rng`` defaults to a fresh one."""
    settings = settings or BalancingSettings(policy=policy)
    rng = rng or random.Random()  # noqa: S311 -- load balancing, not cryptography
    if policy == "round-robin":
        return SmoothWeightedRoundRobin()
    if policy == "least-request":
        return LeastRequest(rng, settings.choices, settings.exact_least_up_to)
    if policy == "random":
        return RandomPicker(rng)
    if policy == "hash":
        return HashPicker(rng, settings)
    raise ValueError(f"unknown balancing policy {policy!r}: must be one of {list(POLICIES)}")
