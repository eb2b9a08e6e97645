"""
The glue between the driver and the pure cores: one :class:`RouteState` per configured route.

Theory of operation
-------------------
The driver (:mod:`shoal.dataplane.driver`) asks a :class:`ListenerDispatcher` for a pick per
request head and reports how each attempt ended; the dispatcher finds the route (longest path
prefix) and its :class:`RouteState` does the rest with the pure cores:

* **Choosing.** A sharded route asks its :class:`~shoal.dataplane.routing.Router` (key = first
  capture of ``shardRegexp`` over the path, hashed shard, balanced replica); a plain route asks
  its :mod:`~shoal.dataplane.balancing` picker (with a key from the path, a header, a cookie or the
  client address for ``hash``). Both skip ``excluded``: the endpoints failing active checks
  (:class:`~shoal.dataplane.health.ActiveHealth`) or ejected by the
  :class:`~shoal.dataplane.health.OutlierDetector`, a frozenset recomputed only when health
  changes, never per request.
* **Admission.** The :class:`~shoal.dataplane.health.PendingLimiter` sends, queues (the pick is
  marked ``queued`` and the driver waits for ``on_ready``) or rejects (the next endpoint is tried;
  503 when none is left).
* **Outcomes.** Every attempt is closed exactly once: its endpoint's in-flight count drops, its
  limiter slot passes to the oldest waiter, and the outcome (success, 5xx, connect error) feeds
  the outlier detector. An ejection schedules its own end (``call_at``), so an endpoint nobody
  sends to is still readmitted on time.
* **Retries.** After a connect failure, a reset or a retryable status, the
  :class:`~shoal.dataplane.health.RetryBudget` decides; a retry goes to another endpoint (the
  ones already tried are excluded) of the route's *current* state, so a retry after a
  configuration swap never goes to a removed endpoint.

**Swaps.** A new configuration builds new route states; each takes over its predecessor's
``_Shared`` part (health, outlier history, retry budget, limiter and its queue, pickers' state
and counters), keyed by listener and route name, so a swap is cheap (no health reset, no Maglev
rebuild unless the shard names change) and requests in flight finish against the objects they
started with. Endpoint objects of addresses that stay are reused, so in-flight counts carry on.

Nothing here reads a clock or touches a socket directly: :class:`Hooks` brings the loop's clock
and timers, and the access log.

**Two builds.** This source also compiles, unchanged, into ``shoal.dataplane._dispatch_c``
(:mod:`shoal.dataplane.native`): the per-request classes are extension types there, which is why
:class:`RequestPick` is a :class:`~shoal.dataplane.driver.Pick` in shape rather than a subclass.
"""

import logging
import random
import re
import time
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Final, Protocol

from shoal.dataplane.balancing import BalancingSettings, Endpoint, Picker, make_picker
from shoal.dataplane.config import BackendConfig, RouteConfig, split_address
from shoal.dataplane.driver import Address, Dispatcher, Pick
from shoal.dataplane.health import (
    ActiveHealth,
    Admission,
    Ejected,
    Failure,
    Outcome,
    OutlierDetector,
    OutlierEvent,
    PendingLimiter,
    Readmitted,
    RetryBudget,
    Transition,
)
from shoal.dataplane.http1 import Request
from shoal.dataplane.routing import (
    Router,
    RoutingSettings,
    RoutingTable,
    request_path,
    shard_key,
)

__all__ = [
    "LATENCY_BUCKETS",
    "EndpointStats",
    "Histogram",
    "Hooks",
    "ListenerDispatcher",
    "RequestPick",
    "RouteState",
]

if TYPE_CHECKING:
    from shoal import _cyshim as cython
else:
    try:
        import cython
    except ImportError:  # no Cython: the decorators and declarations below mean nothing then
        from shoal import _cyshim as cython

if not cython.compiled:
    # The compiled build cimports the health machines' extension types under these names (see
    # _dispatch_c.pyx): fields so typed make their per-request methods C calls.
    _CPendingLimiter = PendingLimiter
    _COutlierDetector = OutlierDetector
    _CRetryBudget = RetryBudget
    # ... and reads the monotonic clock with a C call (the same clock, the same float).
    _monotonic = time.monotonic

log = logging.getLogger("shoal.dataplane.proxy")

LATENCY_BUCKETS: Final = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
"""Upper bounds (seconds) of the request latency histogram buckets."""

# Enum members read per request, as globals (through their class: ~70 ns each).
_QUEUE: Final = Admission.QUEUE
_REJECT: Final = Admission.REJECT
_SUCCESS: Final = Outcome.SUCCESS
_SERVER_ERROR: Final = Outcome.SERVER_ERROR
_BUCKETS: Final = 15
"""Buckets of the latency histogram: one per bound of LATENCY_BUCKETS, then +Inf."""
assert len(LATENCY_BUCKETS) + 1 == _BUCKETS


@cython.cfunc
@cython.inline
@cython.locals(index=cython.long, bound=cython.double)
def _latency_bucket(duration: cython.double) -> cython.long:
    """The bucket of ``duration``: the first whose bound is not below it (``bisect_left``);
    most requests land in the first few, so a scan from the bottom beats a bisection."""
    index = 0
    for bound in LATENCY_BUCKETS:
        if duration <= bound:
            return index
        index += 1
    return index


class Hooks(Protocol):
    """What the route states need from their runtime (the event loop, the access log)."""

    def time(self) -> float:
        """The loop's monotonic clock."""

    def call_soon(self, callback: Callable[[], None]) -> None: ...

    def call_at(self, when: float, callback: Callable[[], None]) -> None: ...

    @property
    def logging(self) -> bool:
        """Whether :meth:`request_done` wants to hear of every exchange (an access log is on)."""

    def request_done(self, pick: "RequestPick", status: int, duration: float) -> None:
        """An exchange ended (for the access log)."""

    def health_changed(self) -> None:
        """Active checks should be looked at again (endpoints were added)."""


# The per-request classes below are extension types when compiled (see shoal.dataplane.native):
# ``cython.declare(..., visibility="public")`` makes a C field that Python code can still read.


@cython.cclass
class EndpointStats:
    """Counters of one endpoint in one shard of one route (for ``/metrics``)."""

    # Six C numbers when compiled (counted per request without a Python int), a list when not;
    # read through response_counts().
    responses: list[int] = cython.declare(cython.longlong[6])
    """By status class: index 1-5 for 1xx-5xx, 0 for exchanges that got no status."""
    connect_errors: int = cython.declare(cython.long, visibility="public")
    resets: int = cython.declare(cython.long, visibility="public")
    ejections: int = cython.declare(cython.long, visibility="public")

    @cython.locals(index=cython.long)
    def __init__(self) -> None:
        if not cython.compiled:
            self.responses = [0] * 6
        for index in range(6):
            self.responses[index] = 0
        self.connect_errors = 0
        self.resets = 0
        self.ejections = 0

    @cython.locals(index=cython.long)
    def response_counts(self) -> list[int]:
        """Answers by status class (see :attr:`responses`)."""
        return [self.responses[index] for index in range(6)]


@cython.cclass
class Histogram:
    """A latency histogram over :data:`LATENCY_BUCKETS` (counts per bucket, not cumulative)."""

    # One C number per bucket when compiled, a list when not; read through bucket_counts().
    counts: list[int] = cython.declare(cython.longlong[15])  # _BUCKETS
    total: float = cython.declare(cython.double, visibility="public")
    count: int = cython.declare(cython.long, visibility="public")

    @cython.locals(index=cython.long)
    def __init__(self) -> None:
        if not cython.compiled:
            self.counts = [0] * _BUCKETS
        for index in range(_BUCKETS):
            self.counts[index] = 0
        self.total = 0.0
        self.count = 0

    @cython.ccall
    def observe(self, value: float) -> None:
        self.counts[_latency_bucket(value)] += 1
        self.total += value
        self.count += 1

    @cython.locals(index=cython.long)
    def bucket_counts(self) -> list[int]:
        """Observations per bucket, in the order of :data:`LATENCY_BUCKETS` (then +Inf)."""
        return [self.counts[index] for index in range(_BUCKETS)]


@cython.freelist(256)  # one per request in flight: reused, not allocated, when compiled
@cython.cclass
class RequestPick:
    """The pick of one request, with what its route state needs to finish it.

    A :class:`~shoal.dataplane.driver.Pick` in shape (``address``, ``state``, ``queued``,
    ``on_ready``), not by inheritance, so that the compiled build can be an extension type.
    """

    address: Address = cython.declare(object, visibility="public")
    state: object = cython.declare(object, visibility="public")
    queued: bool = cython.declare(cython.bint, visibility="public")
    on_ready: Callable[[], None] | None = cython.declare(object, visibility="public")
    route: "RouteState" = cython.declare(object, visibility="public")
    """The route state the request began on (its retry budget and counters)."""
    chooser: "RouteState" = cython.declare(object, visibility="public")
    """The route state that chose the current attempt's endpoint (the latest at retries)."""
    request: Request = cython.declare(object, visibility="public")
    peer: str = cython.declare(object, visibility="public")
    started: float = cython.declare(cython.double, visibility="public")
    endpoint: Endpoint | None = cython.declare(object, visibility="public")
    limiter: "_Admission | None" = cython.declare(object, visibility="public")
    shard: str = cython.declare(object, visibility="public")
    stats: EndpointStats | None = cython.declare(EndpointStats, visibility="public")
    ticket: int = cython.declare(cython.long, visibility="public")
    open: bool = cython.declare(cython.bint, visibility="public")
    """An attempt holds an endpoint slot (sent, or queued)."""
    retrying: bool = cython.declare(cython.bint, visibility="public")
    """The current attempt is a retry holding a slot of the retry budget."""
    tries: int = cython.declare(cython.long, visibility="public")
    tried: frozenset[str] = cython.declare(frozenset, visibility="public")

    def __init__(self, route: "RouteState", request: Request, peer: str, started: float) -> None:
        self._start(route, request, peer, started)

    @cython.cfunc
    def _start(self, route: "RouteState", request: Request, peer: str, started: float) -> None:
        """What ``__init__`` does; :meth:`RouteState.begin` calls it on ``__new__``'s object
        (compiled, that skips building an argument tuple for ``__init__``)."""
        self.address = ("", 0)
        self.state = None
        self.queued = False
        self.on_ready = None
        self.route = route
        self.chooser = route
        self.request = request
        self.peer = peer
        self.started = started
        self.endpoint = None
        self.limiter = None
        self.shard = ""
        self.stats = None
        self.ticket = 0
        self.open = False
        self.retrying = False
        self.tries = 0
        self.tried = frozenset()


@cython.cclass
class _Admission:
    """A route's pending limiter and the picks queued on it."""

    limiter: PendingLimiter = cython.declare(_CPendingLimiter, visibility="public")
    """Compiled, its ``admit`` and ``finish`` (once per request each) are C calls."""
    waiters: dict[int, RequestPick] = cython.declare(dict, visibility="public")
    issued: int = cython.declare(cython.long, visibility="public")
    """The last ticket given to a request (tickets name the queued ones)."""

    def __init__(self, limiter: PendingLimiter) -> None:
        self.limiter = limiter
        self.waiters = {}
        self.issued = 0


@cython.cclass
class _Shared:
    """The part of a route that survives configuration swaps (see the module docstring)."""

    config: RouteConfig = cython.declare(object, visibility="public")
    active: ActiveHealth | None = cython.declare(object, visibility="public")
    outlier: OutlierDetector = cython.declare(_COutlierDetector, visibility="public")
    budget: RetryBudget = cython.declare(_CRetryBudget, visibility="public")
    """Compiled, their per-request methods (``record``, ``request_started``, ...) are C calls."""
    admission: _Admission = cython.declare(_Admission, visibility="public")
    router: Router | None = cython.declare(object, visibility="public")
    picker: Picker | None = cython.declare(object, visibility="public")
    endpoints: dict[str, Endpoint] = cython.declare(dict, visibility="public")
    stats: dict[str, dict[str, EndpointStats]] = cython.declare(dict, visibility="public")
    latency: dict[str, Histogram] = cython.declare(dict, visibility="public")
    counters: list[int] = cython.declare(list, visibility="public")
    """Retries granted and requests that found no endpoint (one list, shared across swaps)."""
    excluded: frozenset[str] = cython.declare(frozenset, visibility="public")
    pick_from: Callable[..., Endpoint | None] | None = cython.declare(object, visibility="public")
    """The picker's ``pick``, bound once (no lookup by name per request)."""

    def __init__(
        self,
        config: RouteConfig,
        active: ActiveHealth | None,
        outlier: OutlierDetector,
        budget: RetryBudget,
        admission: _Admission,
        router: Router | None,
        picker: Picker | None,
        endpoints: dict[str, Endpoint],
        stats: dict[str, dict[str, EndpointStats]],
        latency: dict[str, Histogram],
        counters: list[int],
    ) -> None:
        self.config = config
        self.active = active
        self.outlier = outlier
        self.budget = budget
        self.admission = admission
        self.router = router
        self.picker = picker
        self.endpoints = endpoints
        self.stats = stats
        self.latency = latency
        self.counters = counters
        self.excluded = frozenset()
        self.pick_from = None if picker is None else picker.pick


@cython.cclass
class RouteState:
    """One route of one listener, as of one configuration (see the module docstring)."""

    listener: str = cython.declare(object, visibility="public")
    config: RouteConfig = cython.declare(object, visibility="public")
    name: str = cython.declare(object, visibility="public")
    prefix: bytes = cython.declare(bytes, visibility="public")
    successor: "RouteState | None" = cython.declare(object, visibility="public")
    _hooks: Hooks = cython.declare(object, visibility="public")
    _time: Callable[[], float] = cython.declare(object, visibility="public")
    _monotonic_time: bool = cython.declare(cython.bint, visibility="public")
    """Whether :attr:`_time` is ``time.monotonic`` (then read without a Python call)."""
    _log: bool = cython.declare(cython.bint, visibility="public")
    _shared: _Shared = cython.declare(_Shared, visibility="public")
    _addresses: dict[str, Address] = cython.declare(dict, visibility="public")
    _endpoints: tuple[Endpoint, ...] = cython.declare(tuple, visibility="public")
    _hash_source: str = cython.declare(object, visibility="public")
    _key_name: bytes = cython.declare(bytes, visibility="public")
    _key_pattern: re.Pattern[str] | None = cython.declare(object, visibility="public")

    def __init__(
        self,
        listener: str,
        config: RouteConfig,
        hooks: Hooks,
        previous: "RouteState | None" = None,
        rng: random.Random | None = None,
    ) -> None:
        self.listener = listener
        self.config = config
        self.name = config.name
        self.prefix = config.path_prefix.encode("latin-1")
        self.successor = None
        self._hooks = hooks
        self._time = hooks.time
        self._monotonic_time = hooks.time is time.monotonic
        self._log = hooks.logging
        rng = rng or random.Random()  # noqa: S311 -- load balancing, not cryptography
        old = previous._shared if previous is not None else None
        now = hooks.time()

        # Endpoint objects: keep those whose address and weight stay (in-flight counts go on).
        known = old.endpoints if old is not None else {}
        endpoints: dict[str, Endpoint] = {}
        groups: dict[str, list[Endpoint]] = {}
        for shard_name, backends in _groups(config):
            members = groups.setdefault(shard_name, [])
            for backend in backends:
                endpoint = known.get(backend.address)
                if endpoint is None or endpoint.weight != backend.weight:
                    endpoint = endpoints.get(backend.address) or Endpoint(
                        backend.address, backend.weight
                    )
                endpoints[backend.address] = endpoint
                members.append(endpoint)
        self._addresses = {a: split_address(a) for a in endpoints}

        router: Router | None = None
        picker: Picker | None = None
        if config.sharded:
            settings = RoutingSettings(
                shard_regexp=config.shard_regexp, hashing=config.hashing, policy=config.policy
            )
            reuse = (
                old is not None and old.router is not None and old.config.policy == config.policy
            )
            previous_table = old.router.table if reuse and old and old.router else None
            if previous_table is not None and previous_table.hashing != config.hashing:
                previous_table = None
            table = RoutingTable.build(groups, settings=settings, previous=previous_table)
            if reuse and old is not None and old.router is not None:
                router = old.router
                router.swap(table)
            else:
                router = Router(table, policy=config.policy, rng=rng)
            self._endpoints = ()
        else:
            self._endpoints = tuple(groups.get("", ()))
            if old is not None and old.picker is not None and old.config.policy == config.policy:
                picker = old.picker
            else:
                picker = make_picker(config.policy, rng, BalancingSettings(policy=config.policy))

        health = config.health
        if old is not None and old.active is not None and health == old.config.health:
            active: ActiveHealth | None = old.active
        else:
            active = ActiveHealth(health) if health is not None else None
        if active is not None:
            active.sync(endpoints, now)
        if old is not None and old.outlier.settings == config.outlier:
            outlier = old.outlier
        else:
            outlier = OutlierDetector(config.outlier)
        outlier.sync(endpoints)
        if old is not None and old.config.retry == config.retry:
            budget = old.budget
        else:
            budget = RetryBudget(config.retry)
        if old is not None and old.config.pending == config.pending:
            admission = old.admission
        else:
            admission = _Admission(PendingLimiter(config.pending))
        admission.limiter.forget(endpoints.keys())

        stats: dict[str, dict[str, EndpointStats]] = {}
        old_stats = old.stats if old is not None else {}
        for shard_name, members in groups.items():
            by_address = old_stats.get(shard_name, {})
            stats[shard_name] = {
                e.address: by_address.get(e.address) or EndpointStats() for e in members
            }
        old_latency = old.latency if old is not None else {}
        latency = {name: old_latency.get(name) or Histogram() for name in groups}
        latency.setdefault("", old_latency.get("") or Histogram())
        self._shared = _Shared(
            config,
            active,
            outlier,
            budget,
            admission,
            router,
            picker,
            endpoints,
            stats,
            latency,
            old.counters if old is not None else [0, 0],
        )
        self._refresh()

        key = config.hash_key
        self._hash_source = key.source if config.policy == "hash" and not config.sharded else ""
        self._key_name = key.name.lower().encode("latin-1")
        self._key_pattern = re.compile(key.regexp) if key.regexp is not None else None
        if previous is not None:
            previous.successor = self

    # --- views for the runtime and /metrics ---

    @property
    def addresses(self) -> Iterable[Address]:
        return self._addresses.values()

    @property
    def active(self) -> ActiveHealth | None:
        return self._shared.active

    @property
    def router(self) -> Router | None:
        return self._shared.router

    @property
    def excluded(self) -> frozenset[str]:
        return self._shared.excluded

    @property
    def retries(self) -> int:
        """Retries granted (requests sent again to another endpoint)."""
        return self._shared.counters[0]

    @property
    def unavailable(self) -> int:
        """Requests that found no endpoint (every one excluded, full, or none configured)."""
        return self._shared.counters[1]

    @property
    def stats(self) -> Mapping[str, Mapping[str, EndpointStats]]:
        return self._shared.stats

    @property
    def latency(self) -> Mapping[str, Histogram]:
        return self._shared.latency

    @property
    def queued(self) -> int:
        """Requests waiting for an endpoint slot (pending limits)."""
        return len(self._shared.admission.waiters)

    def endpoints(self) -> Iterable[Endpoint]:
        return self._shared.endpoints.values()

    def latest(self) -> "RouteState":
        route = self
        while route.successor is not None:
            route = route.successor
        return route

    # --- health ---

    def _refresh(self) -> None:
        """Recompute the excluded set, here and in the latest state: health events can arrive
        through an older state (a request or timer from before a swap) that shares the health
        machines with the current one."""
        latest = self.latest()
        for state in (self, latest) if latest is not self else (self,):
            shared = state._shared
            out = set(shared.outlier.ejected())
            if shared.active is not None:
                out |= shared.endpoints.keys() - shared.active.healthy()
            shared.excluded = frozenset(out & shared.endpoints.keys())

    def check_result(self, transition: Transition | None, address: str, passed: bool) -> None:
        """An active check of ``address`` ended (the runtime recorded it in :attr:`active`)."""
        shared = self._shared
        if transition is not None:
            log.info(
                "route %s: %s is %s (%s)",
                self.name,
                transition.address,
                transition.state,
                transition.reason,
            )
        if passed and address in shared.outlier.ejected():
            self._outlier_events(shared.outlier.readmit(address, self._hooks.time()))
        if transition is not None:
            self._refresh()

    def _outlier_events(self, events: list[OutlierEvent]) -> None:
        shared = self._shared
        for event in events:
            if isinstance(event, Ejected):
                log.warning(
                    "route %s: ejected %s until +%.1fs (%s)",
                    self.name,
                    event.address,
                    event.until - event.at,
                    event.reason,
                )
                for by_address in shared.stats.values():
                    stats = by_address.get(event.address)
                    if stats is not None:
                        stats.ejections += 1
                self._hooks.call_at(event.until, self._tick)
            elif isinstance(event, Readmitted):
                log.info("route %s: readmitted %s (%s)", self.name, event.address, event.reason)
            else:
                log.warning("route %s: not ejecting %s: %s", self.name, event.address, event.reason)
        if events:
            self._refresh()

    def _tick(self) -> None:
        self._outlier_events(self._shared.outlier.tick(self._hooks.time()))

    # --- the request path ---

    @cython.ccall
    @cython.locals(pick=RequestPick)
    def begin(self, request: Request, peer: str) -> RequestPick | None:
        shared = self._shared
        pick = RequestPick.__new__(RequestPick)
        pick._start(self, request, peer, _monotonic() if self._monotonic_time else self._time())
        if not self._choose(pick, shared.excluded):
            shared.counters[1] += 1
            return None
        shared.budget.request_started()
        return pick

    @cython.cfunc
    @cython.locals(shared=_Shared, admission=_Admission)
    def _choose(self, pick: RequestPick, exclude: frozenset[str]) -> bool:
        """Point ``pick`` at an endpoint outside ``exclude`` and admit it; False if none is left."""
        shared = self._shared
        admission = shared.admission
        request = pick.request
        router = shared.router
        pick_from = shared.pick_from
        rejected = 0
        shard_hash = -1
        shard_key_of: str | None = None
        while True:
            if router is not None:
                if shard_hash < 0:  # the same key for every endpoint tried
                    shard_hash = router.target_hash(request.target)
                    if router.keyed:
                        shard_key_of = router.key(request_path(request.target))
                shard, endpoint = router.choose_hash(shard_hash, shard_key_of, exclude)
            else:
                assert pick_from is not None
                key = self._key(request, pick.peer) if self._hash_source else None
                endpoint = pick_from(self._endpoints, key, exclude)
                shard = ""
            if endpoint is None:
                return False
            address = endpoint.address
            admission.issued += 1
            ticket = admission.issued
            decision = admission.limiter.admit(address, ticket)
            if decision is _REJECT:
                # Full with a full queue: try the next endpoint (each one at most once).
                rejected += 1
                if rejected > len(shared.endpoints):
                    return False
                exclude = exclude | {address}
                continue
            pick.chooser = self
            pick.endpoint = endpoint
            pick.shard = shard
            pick.address = self._addresses[address]
            pick.stats = shared.stats[shard][address]
            pick.limiter = admission
            pick.ticket = ticket
            pick.open = True
            if decision is _QUEUE:
                pick.queued = True
                admission.waiters[ticket] = pick
            else:
                pick.queued = False
                endpoint.in_flight += 1
            return True

    @cython.cfunc
    def _key(self, request: Request, peer: str) -> bytes | str | None:
        source = self._hash_source
        if source == "client-address":
            return peer
        if source == "path":
            path = request_path(request.target)
            return path if self._key_pattern is None else shard_key(self._key_pattern, path)
        name = self._key_name if source == "header" else b"cookie"
        for field, value in request.headers:
            if len(field) == len(name) and field.lower() == name:
                if source == "header":
                    return value
                found = _cookie(value, self._key_name)
                if found is not None:
                    return found
        return None

    @cython.cfunc
    @cython.locals(admission=_Admission, chooser="RouteState")
    def _close(self, pick: RequestPick, outcome: Outcome | None, now: float) -> None:
        """End the current attempt of ``pick``: free its slot, feed the outcome to ejection."""
        if not pick.open:
            return
        pick.open = False
        endpoint = pick.endpoint
        admission = pick.limiter
        assert endpoint is not None
        assert admission is not None
        address = endpoint.address
        if pick.queued:
            pick.queued = False
            admission.waiters.pop(pick.ticket, None)
            admission.limiter.cancel(address, pick.ticket)
            return
        endpoint.in_flight -= 1
        ticket = admission.limiter.finish(address)
        if ticket is not None:
            waiter = admission.waiters.pop(ticket, None)
            if waiter is not None and waiter.queued:
                waiter.queued = False
                assert waiter.endpoint is not None
                waiter.endpoint.in_flight += 1
                ready = waiter.on_ready
                if ready is not None:
                    self._hooks.call_soon(ready)
        if outcome is not None:
            chooser = pick.chooser
            events = chooser._shared.outlier.record(address, outcome, now)
            if events:
                chooser._outlier_events(events)

    def _retry(
        self, pick: RequestPick, failure: Failure, status: int | None, replayable: bool
    ) -> bool:
        """Whether ``pick`` may go again after ``failure``; if so it points elsewhere."""
        budget = pick.route._shared.budget
        if pick.retrying:
            budget.retry_finished()
            pick.retrying = False
        decision = budget.decide(
            pick.request.method.decode("latin-1"),
            failure,
            pick.tries,
            body_replayable=replayable,
            status=status,
        )
        if not decision.retry:
            return False
        return self._retry_granted(pick)

    def _retry_granted(self, pick: RequestPick) -> bool:
        budget = pick.route._shared.budget
        pick.retrying = True
        pick.tries += 1
        assert pick.endpoint is not None
        pick.tried = pick.tried | {pick.endpoint.address}
        current: RouteState = self.latest()
        if not current._choose(pick, current._shared.excluded | pick.tried):
            budget.retry_finished()
            pick.retrying = False
            return False
        pick.route._shared.counters[0] += 1
        return True

    @cython.ccall
    def failed(self, pick: RequestPick, failure: Failure, replayable: bool) -> bool:
        stats = pick.stats
        if stats is not None:
            if failure is Failure.CONNECT:
                stats.connect_errors += 1
            else:
                stats.resets += 1
        outcome = Outcome.CONNECT_ERROR if failure is Failure.CONNECT else Outcome.SERVER_ERROR
        self._close(pick, outcome, self._hooks.time())
        return self._retry(pick, failure, None, replayable)

    @cython.ccall
    @cython.locals(stats=EndpointStats)
    def response(self, pick: RequestPick, status: int) -> bool:
        if status not in self.config.retry.retry_statuses:
            return False
        budget = self._shared.budget
        if pick.retrying:
            budget.retry_finished()
            pick.retrying = False
        decision = budget.decide(
            pick.request.method.decode("latin-1"), Failure.STATUS, pick.tries, status=status
        )
        if not decision.retry:
            return False
        stats = pick.stats
        if stats is not None:
            stats.responses[5] += 1
        self._close(pick, Outcome.SERVER_ERROR, self._hooks.time())
        return self._retry_granted(pick)

    @cython.ccall
    @cython.locals(stats=EndpointStats, histogram=Histogram)
    def end(self, pick: RequestPick, status: int) -> None:
        now = _monotonic() if self._monotonic_time else self._time()
        if pick.open:
            if status == 0:
                outcome: Outcome | None = None
            elif status >= 500:
                outcome = _SERVER_ERROR
            else:
                outcome = _SUCCESS
            self._close(pick, outcome, now)
        shared = self._shared
        shared.budget.request_finished()
        if pick.retrying:
            pick.retrying = False
            shared.budget.retry_finished()
        stats = pick.stats
        if stats is not None:
            stats.responses[status // 100 if 100 <= status < 600 else 0] += 1
        duration = now - pick.started
        histogram = shared.latency.get(pick.shard)
        if histogram is not None:
            histogram.observe(duration)  # compiled: a C call (the histogram is typed)
        if status >= 500 and shared.router is not None:
            shared.router.count_failure(pick.shard)
        if self._log:
            self._hooks.request_done(pick, status, duration)


def _groups(config: RouteConfig) -> Iterable[tuple[str, Iterable[BackendConfig]]]:
    if config.sharded:
        for shard in config.shards:
            yield shard.name, shard.backends
    else:
        yield "", config.backends


def _cookie(header: bytes, name: bytes) -> bytes | None:
    for part in header.split(b";"):
        key, sep, value = part.strip().partition(b"=")
        if sep and key.lower() == name:
            return value
    return None


class ListenerDispatcher(Dispatcher):
    """The driver's dispatcher for one listener: longest-prefix route, then its state."""

    __slots__ = ("routes",)

    def __init__(self, routes: Iterable[RouteState] = ()) -> None:
        self.routes: tuple[RouteState, ...] = ()
        self.install(routes)

    def install(self, routes: Iterable[RouteState]) -> None:
        """Route every later request by ``routes`` (one assignment: atomic for the loop)."""
        self.routes = tuple(sorted(routes, key=lambda r: len(r.prefix), reverse=True))

    @cython.locals(target=bytes)
    def begin(self, request: Request, peer: str) -> Pick | None:
        target = request.target
        route: RouteState
        for route in self.routes:
            if target.startswith(route.prefix) or (
                target[:1] != b"/"
                and request_path(target).encode("latin-1").startswith(route.prefix)
            ):
                # A RequestPick is a Pick in shape (see there), not by inheritance.
                return route.begin(request, peer)  # type: ignore[return-value]
        return None

    # The picks are this dispatcher's own RequestPicks; annotated, not cast (cast is a call).

    def failed(self, pick: Pick | RequestPick, failure: Failure, replayable: bool) -> bool:
        picked: RequestPick = pick  # type: ignore[assignment]
        route: RouteState = picked.route
        return route.failed(picked, failure, replayable)

    def response(self, pick: Pick | RequestPick, status: int) -> bool:
        picked: RequestPick = pick  # type: ignore[assignment]
        route: RouteState = picked.route
        return route.response(picked, status)

    def end(self, pick: Pick | RequestPick, status: int) -> None:
        picked: RequestPick = pick  # type: ignore[assignment]
        route: RouteState = picked.route
        route.end(picked, status)
