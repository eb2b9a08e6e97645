"""
Health: which endpoints may take requests, and when a failed request may go again.

Theory of operation
-------------------
Four small state machines. None of them sleeps, reads a clock or touches a socket: the driver
passes ``now`` (seconds on a monotonic clock) into every call, feeds in what it observed (a check
result, a response outcome) and acts on the decisions that come back (frozen dataclasses). Each
machine can therefore be tested as a transcript: given these events at these times, expect these
decisions.

:class:`ActiveHealth` (HAProxy's ``check inter/rise/fall``)
    Says which endpoints are due a check (``due(now)``) and takes the results (``record``). A
    healthy endpoint turns unhealthy after ``fall`` failed checks in a row, an unhealthy one turns
    healthy after ``rise`` passed checks in a row. A new endpoint starts unhealthy (unless
    ``start_healthy``) and its *first* passed check admits it, so a replica that is not listening
    yet never gets traffic and one that is gets it after one check, not ``rise``.
:class:`OutlierDetector` (Envoy's outlier detection, passive)
    Watches the outcome of real requests. ``consecutive_5xx`` failures in a row (5xx responses or
    connect errors) or ``consecutive_connect_errors`` connect errors in a row eject the endpoint
    for ``base_ejection_time × times ejected`` (capped at ``max_ejection_time``); the multiplier
    steps back down by one for every ``multiplier_decay`` seconds without an ejection. An ejection
    that would take the ejected share of the endpoints above ``max_ejected_share`` is refused:
    the endpoint stays in and the next failure tries again. A passed active check readmits an
    ejected endpoint early.
:class:`RetryBudget`
    Decides whether a failed attempt may be tried again on another endpoint: a connect failure
    (the request never left) for any method, a reset or a retryable status only for idempotent
    methods whose body can be sent again; at most ``max_retries`` times per request, and only
    while retries in flight stay within ``max(min_concurrent_retries, budget_ratio × requests in
    flight)`` so retries cannot multiply the load on a struggling service (Envoy's retry budget).
:class:`PendingLimiter` (HAProxy's ``maxconn`` and queue)
    Admits at most ``max_in_flight`` requests per endpoint and queues up to ``max_pending`` more
    in arrival order; beyond that it rejects (503). ``finish`` hands the freed slot to the oldest
    waiting ticket.
"""

import math
from collections import deque
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from shoal import _cyshim as cython
else:
    try:
        import cython
    except ImportError:  # no Cython: the decorators and declarations below mean nothing then
        from shoal import _cyshim as cython

__all__ = [
    "IDEMPOTENT_METHODS",
    "ActiveCheckSettings",
    "ActiveHealth",
    "Admission",
    "CheckResult",
    "Ejected",
    "EjectionRefused",
    "Failure",
    "HealthState",
    "Outcome",
    "OutlierDetector",
    "OutlierEvent",
    "OutlierSettings",
    "PendingLimiter",
    "PendingSettings",
    "Readmitted",
    "RetryBudget",
    "RetryDecision",
    "RetrySettings",
    "Transition",
]

IDEMPOTENT_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})
"""RFC 9110 §9.2.2: sending these twice has the effect of sending them once."""


# -- Active checks ---------------------------------------------------------------------------


class HealthState(StrEnum):
    HEALTHY = "healthy"
    UNHEALTHY = "unhealthy"


@dataclass(frozen=True, slots=True)
class ActiveCheckSettings:
    """Active health checks (HTTP GET of a path, or a TCP connect)."""

    interval: float = 0.5
    """Seconds from the start of one check of an endpoint to the start of the next."""
    timeout: float = 0.5
    """Seconds the driver waits for a check before recording it as failed."""
    rise: int = 2
    """Passed checks in a row that bring an unhealthy endpoint back."""
    fall: int = 2
    """Failed checks in a row that take a healthy endpoint out."""
    http_path: str | None = None
    """The path to GET; None checks that a TCP connection opens."""
    healthy_statuses: tuple[int, int] = (200, 399)
    """The inclusive range of HTTP statuses that pass."""
    start_healthy: bool = False
    """Whether a new endpoint takes traffic before its first check passes."""


@dataclass(frozen=True, slots=True)
class CheckResult:
    """What one check found; ``detail`` says why it failed (for logs)."""

    passed: bool
    detail: str = ""

    @classmethod
    def from_status(cls, status: int, settings: ActiveCheckSettings) -> "CheckResult":
        low, high = settings.healthy_statuses
        if low <= status <= high:
            return cls(True)
        return cls(False, f"HTTP {status}")


@dataclass(frozen=True, slots=True)
class Transition:
    """An endpoint changed state at ``at``."""

    address: str
    state: HealthState
    at: float
    reason: str


@dataclass(slots=True)
class _Checked:
    state: HealthState
    next_at: float
    started_at: float | None = None
    streak: int = 0  # results in a row that argue against the current state
    ever_passed: bool = False


class ActiveHealth:
    """Active health of a set of endpoints; see the module docstring."""

    __slots__ = ("_endpoints", "_settings")

    @property
    def settings(self) -> ActiveCheckSettings:
        return self._settings

    def __init__(self, settings: ActiveCheckSettings | None = None) -> None:
        self._settings = settings or ActiveCheckSettings()
        if self._settings.rise < 1 or self._settings.fall < 1:
            raise ValueError("rise and fall must be at least 1")
        self._endpoints: dict[str, _Checked] = {}

    def sync(self, addresses: Iterable[str], now: float) -> None:
        """Make the set ``addresses``: new ones are due a check now, gone ones are forgotten."""
        wanted = set(addresses)
        for address in list(self._endpoints):
            if address not in wanted:
                del self._endpoints[address]
        start = HealthState.HEALTHY if self._settings.start_healthy else HealthState.UNHEALTHY
        for address in sorted(wanted - self._endpoints.keys()):
            self._endpoints[address] = _Checked(start, next_at=now)

    def due(self, now: float) -> list[str]:
        """Endpoints whose check should start now; each is not due again until recorded."""
        started = []
        for address, checked in self._endpoints.items():
            if checked.started_at is None and checked.next_at <= now:
                checked.started_at = now
                started.append(address)
        return started

    def next_deadline(self) -> float | None:
        """When the next check falls due (None when none is waiting)."""
        waiting = [c.next_at for c in self._endpoints.values() if c.started_at is None]
        return min(waiting, default=None)

    def record(self, address: str, result: CheckResult, now: float) -> Transition | None:
        """Take a check's result; the transition it caused, if any."""
        checked = self._endpoints.get(address)
        if checked is None:
            return None  # removed while its check ran
        started = now if checked.started_at is None else checked.started_at
        checked.started_at = None
        checked.next_at = max(now, started + self._settings.interval)
        if result.passed:
            first = not checked.ever_passed
            checked.ever_passed = True
            if checked.state is HealthState.HEALTHY:
                checked.streak = 0
                return None
            checked.streak += 1
            if first or checked.streak >= self._settings.rise:
                reason = "first check passed" if first else f"{checked.streak} checks passed"
                return self._turn(address, checked, HealthState.HEALTHY, now, reason)
            return None
        if checked.state is HealthState.UNHEALTHY:
            checked.streak = 0
            return None
        checked.streak += 1
        if checked.streak >= self._settings.fall:
            reason = f"{checked.streak} checks failed, last: {result.detail or 'failed'}"
            return self._turn(address, checked, HealthState.UNHEALTHY, now, reason)
        return None

    @staticmethod
    def _turn(
        address: str, checked: _Checked, state: HealthState, now: float, reason: str
    ) -> Transition:
        checked.state = state
        checked.streak = 0
        return Transition(address, state, now, reason)

    def addresses(self) -> frozenset[str]:
        return frozenset(self._endpoints)

    def state(self, address: str) -> HealthState:
        return self._endpoints[address].state

    def healthy(self) -> frozenset[str]:
        return frozenset(a for a, c in self._endpoints.items() if c.state is HealthState.HEALTHY)


# -- Passive outlier ejection ----------------------------------------------------------------


class Outcome(StrEnum):
    """How a proxied request ended, as far as the endpoint's health goes."""

    SUCCESS = "success"
    """Any response below 500."""
    SERVER_ERROR = "5xx"
    """A 5xx response, or a reset or timeout after the request was sent."""
    CONNECT_ERROR = "connect-error"
    """The connection could not be opened (refused, unreachable, connect timeout)."""


@dataclass(frozen=True, slots=True)
class OutlierSettings:
    """Passive outlier ejection from the outcomes of real requests."""

    consecutive_5xx: int = 5
    """Failures in a row (5xx or connect errors) that eject an endpoint (Envoy's default)."""
    consecutive_connect_errors: int = 3
    """Connect errors in a row that eject an endpoint: a refused connect is a strong signal."""
    base_ejection_time: float = 5.0
    """Seconds out for a first ejection; the n-th ejection lasts n times as long."""
    max_ejection_time: float = 300.0
    """The longest ejection, however often the endpoint was ejected."""
    multiplier_decay: float = 30.0
    """Seconds without an ejection that step the multiplier back down by one."""
    max_ejected_share: float = 0.5
    """Never eject more than this share of the endpoints (rounded down)."""


@dataclass(frozen=True, slots=True)
class Ejected:
    """``address`` is out from ``at`` until ``until`` (its ``times``-th ejection)."""

    address: str
    at: float
    until: float
    times: int
    reason: str


@dataclass(frozen=True, slots=True)
class EjectionRefused:
    """``address`` met the ejection rule but ejecting it would exceed the maximum share."""

    address: str
    at: float
    reason: str


@dataclass(frozen=True, slots=True)
class Readmitted:
    """``address`` takes requests again from ``at``."""

    address: str
    at: float
    reason: str


OutlierEvent = Ejected | EjectionRefused | Readmitted


# The per-request state below is made of extension types when compiled (see
# shoal.dataplane.native): C fields read without a lookup by name, declared in _health_c.pxd
# (the annotations here are the same fields, for the pure build and type checkers); the methods
# marked ccall are C calls from the compiled dispatcher.


@cython.cclass
class _Watched:
    failures: int
    connect_errors: int
    times: int
    """The ejection multiplier."""
    ejected_until: float | None
    calm_since: float
    """When the multiplier last stepped down or the endpoint came back."""

    def __init__(self) -> None:
        self.failures = 0
        self.connect_errors = 0
        self.times = 0
        self.ejected_until = None
        self.calm_since = 0.0


@cython.cclass
class OutlierDetector:
    """Passive ejection over a set of endpoints; see the module docstring."""

    _settings: OutlierSettings
    _endpoints: dict[str, _Watched]
    _out: int

    def __init__(self, settings: OutlierSettings | None = None) -> None:
        self._settings = settings or OutlierSettings()
        if not 0.0 <= self._settings.max_ejected_share <= 1.0:
            raise ValueError("max_ejected_share must be between 0 and 1")
        self._endpoints = {}
        self._out = 0  # endpoints ejected: tick() scans nothing while it is 0 (the common case)

    @property
    def settings(self) -> OutlierSettings:
        return self._settings

    def sync(self, addresses: Iterable[str]) -> None:
        """Make the set ``addresses``; a gone endpoint's history is forgotten."""
        wanted = set(addresses)
        for address in list(self._endpoints):
            if address not in wanted:
                del self._endpoints[address]
        for address in wanted:
            self._endpoints.setdefault(address, _Watched())
        self._out = sum(1 for w in self._endpoints.values() if w.ejected_until is not None)

    @property
    def max_ejected(self) -> int:
        """How many endpoints may be out at once."""
        return math.floor(self._settings.max_ejected_share * len(self._endpoints) + 1e-9)

    def ejected(self) -> frozenset[str]:
        """The endpoints out right now (as of the last call that took ``now``)."""
        return frozenset(a for a, w in self._endpoints.items() if w.ejected_until is not None)

    def next_deadline(self) -> float | None:
        """When the next ejection ends (call :meth:`tick` then)."""
        ends = [w.ejected_until for w in self._endpoints.values() if w.ejected_until is not None]
        return min(ends, default=None)

    def tick(self, now: float) -> list[OutlierEvent]:
        """Readmit every endpoint whose ejection has ended by ``now``."""
        events: list[OutlierEvent] = []
        if not self._out:
            return events
        for address, watched in self._endpoints.items():
            until = watched.ejected_until
            if until is not None and until <= now:
                self._readmit(watched, until)
                events.append(Readmitted(address, until, "ejection time over"))
        return events

    def readmit(self, address: str, now: float) -> list[OutlierEvent]:
        """An active check passed: bring ``address`` back early if it is out."""
        events = self.tick(now)
        watched = self._endpoints.get(address)
        if watched is not None and watched.ejected_until is not None:
            self._readmit(watched, now)
            events.append(Readmitted(address, now, "active check passed"))
        return events

    def _readmit(self, watched: _Watched, at: float) -> None:
        self._out -= 1
        watched.ejected_until = None
        watched.failures = watched.connect_errors = 0
        watched.calm_since = at

    @cython.ccall
    @cython.locals(found=_Watched, watched=_Watched)
    def record(self, address: str, outcome: Outcome, now: float) -> list[OutlierEvent]:
        """Take one request's outcome; readmissions due by ``now`` come first in the result."""
        if outcome is _SUCCESS and not self._out:
            # The common case, once per request: nothing is out, a success resets the streaks.
            found = self._endpoints.get(address)
            if found is not None and found.failures:
                found.failures = found.connect_errors = 0
            return []
        events = self.tick(now)
        watched = self._endpoints.get(address)
        if watched is None or watched.ejected_until is not None:
            return events  # unknown, or a request that was in flight when it was ejected
        if outcome is Outcome.SUCCESS:
            watched.failures = watched.connect_errors = 0
            return events
        watched.failures += 1
        if outcome is Outcome.CONNECT_ERROR:
            watched.connect_errors += 1
        else:
            watched.connect_errors = 0
        settings = self._settings
        if watched.connect_errors >= settings.consecutive_connect_errors:
            reason = f"{watched.connect_errors} connect errors in a row"
        elif watched.failures >= settings.consecutive_5xx:
            reason = f"{watched.failures} failures in a row"
        else:
            return events
        if len(self.ejected()) + 1 > self.max_ejected:
            events.append(
                EjectionRefused(address, now, f"{reason}; {self.max_ejected} already out")
            )
            return events
        if watched.times and settings.multiplier_decay > 0:
            steps = int((now - watched.calm_since) // settings.multiplier_decay)
            watched.times = max(0, watched.times - steps)
        watched.times += 1
        duration = min(settings.base_ejection_time * watched.times, settings.max_ejection_time)
        watched.ejected_until = now + duration
        self._out += 1
        events.append(Ejected(address, now, now + duration, watched.times, reason))
        return events


# -- Retries ---------------------------------------------------------------------------------


class Failure(StrEnum):
    """How an attempt failed, as far as retrying goes."""

    CONNECT = "connect"
    """The connection never opened: the endpoint saw nothing, any method may go again."""
    RESET = "reset"
    """The request was (maybe partly) sent and no response came: the endpoint may have acted."""
    STATUS = "status"
    """A response with a status in ``retry_statuses``."""


@dataclass(frozen=True, slots=True)
class RetrySettings:
    """Retrying failed attempts on another endpoint."""

    max_retries: int = 1
    """Extra attempts per request (HAProxy ``retries``, Envoy's ``num_retries`` both default low)."""
    retry_statuses: tuple[int, ...] = (502, 503, 504)
    """Responses retried (idempotent requests only): the endpoint is down or draining."""
    budget_ratio: float = 0.2
    """Retries in flight may be this share of the requests in flight."""
    min_concurrent_retries: int = 3
    """Retries in flight always allowed, however few requests there are."""


@dataclass(frozen=True, slots=True)
class RetryDecision:
    """Whether to try again, and why (for logs and metrics)."""

    retry: bool
    reason: str


@cython.cclass
class RetryBudget:
    """Retry decisions within a concurrency budget; see the module docstring.

    The driver calls :meth:`request_started` / :meth:`request_finished` around every request and,
    when :meth:`decide` says yes, :meth:`retry_finished` when the retry attempt ends.
    """

    _settings: RetrySettings
    _active: int
    _retrying: int

    def __init__(self, settings: RetrySettings | None = None) -> None:
        self._settings = settings or RetrySettings()
        self._active = 0
        self._retrying = 0

    @property
    def active(self) -> int:
        return self._active

    @property
    def retrying(self) -> int:
        return self._retrying

    @cython.ccall
    def request_started(self) -> None:
        self._active += 1

    @cython.ccall
    def request_finished(self) -> None:
        if self._active <= 0:
            raise RuntimeError("request_finished without request_started")
        self._active -= 1

    def retry_finished(self) -> None:
        if self._retrying <= 0:
            raise RuntimeError("retry_finished without a retry")
        self._retrying -= 1

    def allowance(self) -> int:
        """How many retries may be in flight now."""
        settings = self._settings
        return max(settings.min_concurrent_retries, int(settings.budget_ratio * self._active))

    def decide(
        self,
        method: str,
        failure: Failure,
        retries_so_far: int,
        *,
        body_replayable: bool = True,
        status: int | None = None,
    ) -> RetryDecision:
        """Whether an attempt that failed with ``failure`` may go again; yes takes a budget slot."""
        settings = self._settings
        if retries_so_far >= settings.max_retries:
            return RetryDecision(False, f"{retries_so_far} of {settings.max_retries} retries used")
        if failure is Failure.STATUS and status not in settings.retry_statuses:
            return RetryDecision(False, f"status {status} is not retried")
        if failure is not Failure.CONNECT:
            if method.upper() not in IDEMPOTENT_METHODS:
                return RetryDecision(False, f"{method} is not idempotent and may have arrived")
            if not body_replayable:
                return RetryDecision(False, "the request body was streamed and cannot be resent")
        if self._retrying >= self.allowance():
            return RetryDecision(False, f"retry budget spent ({self._retrying} in flight)")
        self._retrying += 1
        return RetryDecision(True, f"{failure} failure, retry {retries_so_far + 1}")


# -- Pending-request limits ------------------------------------------------------------------


class Admission(StrEnum):
    SEND = "send"
    """Send now: the endpoint has a free slot."""
    QUEUE = "queue"
    """Wait: :meth:`PendingLimiter.finish` returns the ticket when a slot frees."""
    REJECT = "reject"
    """The endpoint's queue is full: answer 503 (or try another endpoint)."""


# The members the per-request paths return and compare, as module names: reading one through
# its class costs ~70 ns (EnumType.__getattr__), a global a few. (The compiled build rebinds
# them to the pure module's members, see _health_c.pyx.)
_SEND = Admission.SEND
_QUEUE = Admission.QUEUE
_REJECT = Admission.REJECT
_SUCCESS = Outcome.SUCCESS


@dataclass(frozen=True, slots=True)
class PendingSettings:
    """Per-endpoint concurrency and queue limits."""

    max_in_flight: int = 1024
    """Requests sent to one endpoint at once (Envoy's ``max_requests`` default)."""
    max_pending: int = 1024
    """Requests waiting for one endpoint beyond that (Envoy's ``max_pending_requests`` default)."""


@cython.cclass
class _Slots:
    in_flight: int
    queue: deque[int] | None

    def __init__(self) -> None:
        self.in_flight = 0
        self.queue = None


@cython.cclass
class PendingLimiter:
    """Per-endpoint admission: send, queue, or reject; see the module docstring.

    Tickets are the driver's integers (one per request), returned when a queued request may go.
    """

    _settings: PendingSettings
    _max_in_flight: int
    _endpoints: dict[str, _Slots]

    def __init__(self, settings: PendingSettings | None = None) -> None:
        self._settings = settings or PendingSettings()
        self._max_in_flight = self._settings.max_in_flight
        if self._settings.max_in_flight < 1 or self._settings.max_pending < 0:
            raise ValueError("max_in_flight must be at least 1 and max_pending at least 0")
        self._endpoints = {}

    @cython.locals(slots=_Slots)
    def in_flight(self, address: str) -> int:
        slots = self._endpoints.get(address)
        return 0 if slots is None else slots.in_flight

    @cython.locals(slots=_Slots)
    def pending(self, address: str) -> int:
        slots = self._endpoints.get(address)
        return 0 if slots is None or slots.queue is None else len(slots.queue)

    @cython.ccall
    @cython.locals(slots=_Slots)
    def admit(self, address: str, ticket: int) -> Admission:
        """Ask to send request ``ticket`` to ``address``."""
        slots = self._endpoints.get(address)
        if slots is None:
            slots = self._endpoints[address] = _Slots()
        if slots.in_flight < self._max_in_flight:
            slots.in_flight += 1
            return _SEND
        if slots.queue is None:
            slots.queue = deque()
        if len(slots.queue) < self._settings.max_pending:
            slots.queue.append(ticket)
            return _QUEUE
        return _REJECT

    @cython.ccall
    @cython.locals(slots=_Slots)
    def finish(self, address: str) -> int | None:
        """A request to ``address`` ended; the queued ticket that takes its slot, if any."""
        slots = self._endpoints.get(address)
        if slots is None or slots.in_flight <= 0:
            raise RuntimeError(f"finish({address!r}) without a request in flight")
        if slots.queue:
            return slots.queue.popleft()  # the slot passes straight to the oldest waiter
        slots.in_flight -= 1  # the entry stays (no churn per request); forget() drops idle ones
        return None

    def forget(self, keep: Collection[str]) -> None:
        """Drop the idle entries of addresses not in ``keep`` (endpoints that left)."""
        for address in [a for a, s in self._endpoints.items() if a not in keep]:
            slots = self._endpoints[address]
            if not slots.in_flight and not slots.queue:
                del self._endpoints[address]

    @cython.locals(slots=_Slots)
    def cancel(self, address: str, ticket: int) -> bool:
        """Take a queued ticket out (its client left or it timed out); False if not queued."""
        slots = self._endpoints.get(address)
        if slots is None or not slots.queue or ticket not in slots.queue:
            return False
        slots.queue.remove(ticket)
        return True
