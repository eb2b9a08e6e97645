"""
The asyncio driver of the HTTP/1.1 reverse proxy: sockets, timers and pools around the sans-IO core.

Theory of operation
-------------------
:class:`ProxyServer` listens with ``loop.create_server``; every accepted connection gets a
:class:`_ClientProtocol` (an asyncio protocol, callbacks only: no task per request). Its
request parser (:mod:`shoal.dataplane.http1`) turns bytes into events; for each request head the
``route`` callable names the upstream address, :func:`shoal.dataplane.proxy.upstream_request`
writes the head for it, and an idle pooled connection is taken from :class:`UpstreamPool` (a
task is spawned only to open a new one). Body pieces go upstream as they arrive; the upstream's
:class:`~shoal.dataplane.http1.ResponseParser` events come back the same way, re-framed by
:func:`shoal.dataplane.proxy.client_response`. Nothing is buffered whole.

**The fast path.** When a connection is idle and its parser at rest, a read is first offered to
:func:`shoal.dataplane.fastpath.scan_request`: a whole common request (see that module) is taken
without the parser, and the received head, with the forwarding fields spliced in, goes upstream.
Likewise the first read of a response goes to :func:`~shoal.dataplane.fastpath.scan_response`.
Either leaves the exchange in the state the event path would have reached, so everything after
it (the rest of a body, retries, timeouts, pipelined bytes, which the parser then holds) is the
event path's; anything the scanners refuse goes through the parsers as before.

**Exchange cycle.** A client connection handles one request at a time; the parser holds
pipelined requests back until the current response has ended (``next_cycle``), so responses go
out in order. When both the request and the response have ended the upstream connection goes
back to the pool (if both sides allow keep-alive and it is clean) and the next request is parsed.
If the upstream answers before the request body has ended, its connection is closed, the rest
of the body is read and dropped, and the client connection closes after the response.

**Backpressure.** When a transport's write buffer is full (``pause_writing``) the driver stops
reading from the other side until it drains (``resume_writing``): client → upstream and upstream
→ client. A client that pipelines more than ``pipeline_buffer`` bytes ahead is not read until it
catches up. Reading a client is paused for several independent reasons at once (connecting,
upstream backpressure, pipelining); it resumes when none is left.

**Upgrade.** A request with ``Connection: upgrade`` is forwarded with its ``Upgrade``; if the
upstream answers ``101`` the two connections become a byte tunnel both ways (the bytes each
parser had buffered beyond the heads go across first). Any other answer is an ordinary response.

**Timeouts** are one timer per connection, re-armed lazily: each phase has a deadline computed
from when it began and, while exchanging, from the last byte seen on either side. Idle
(``keepalive_timeout``): close quietly. Reading a head (``request_head_timeout``): 408.
Exchanging (``upstream_timeout`` without a byte): 504 before the response head, else the
connection is cut. Connecting (``connect_timeout``): 504; refused or unreachable: 502; no route:
503; an upstream that breaks the protocol or closes early: 502.

**Errors stay on their connection.** A malformed request gets its status (400, 413, 431, 501...)
and that connection closes; nothing else is touched. A reused pooled connection that the upstream
had already closed is retried once on a new connection when nothing came back yet and the request
is idempotent and bodiless.

**Dispatching.** A :class:`Dispatcher` decides where requests go and hears how they ended:
``begin`` gives a :class:`Pick` (an upstream address, perhaps queued behind a per-endpoint limit:
the driver then waits for ``Pick.on_ready``), ``failed`` is told about a connect failure or a
reset before any response (it may move the pick to another endpoint: the driver resends what it
holds), ``response`` sees a final status before it is forwarded (it may ask for a retry
elsewhere, which the driver does only for idempotent bodiless requests, whose head it still
holds), and ``end`` closes every pick exactly once, with the status the client got (0 when none).
A plain ``route(request) -> Address | None`` callable is wrapped in a dispatcher that never
retries. Pooled connections are shared by every listener of one
:class:`~shoal.dataplane.runtime.Proxy`; :meth:`UpstreamPool.retain` names the addresses still
in use, and a connection to any other one is closed when it goes idle (drain).

**Shutdown** (:meth:`ProxyServer.shutdown`): stop accepting, close idle connections, let
in-flight exchanges finish with ``Connection: close`` within the deadline, then cut the rest.

**Two builds.** This source also compiles, unchanged, into ``shoal.dataplane._driver_c``
(:mod:`shoal.dataplane.native` chooses; ``ProxySettings.implementation``). The ``cython.*``
decorators and field annotations below mean nothing to the interpreter; compiled, the
connections and the pool are extension types with C fields and C calls between hot methods.
"""

import asyncio
import contextlib
import logging
import socket
import ssl as _ssl
from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Coroutine
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, cast

from shoal.dataplane.fastpath import forwarding_tail, scan_request, scan_response
from shoal.dataplane.health import Failure
from shoal.dataplane.http1 import (
    PARSERS,
    Data,
    EndOfMessage,
    Event,
    Limits,
    ProtocolError,
    Request,
    RequestParser,
    Response,
    ResponseParser,
    make_request_parser,
)
from shoal.dataplane.native import compiled
from shoal.dataplane.proxy import (
    BodyFramer,
    ForwardingSettings,
    client_response,
    error_response,
    upstream_request,
)

__all__ = [
    "LOOPS",
    "Address",
    "Admit",
    "ProxyServer",
    "ProxySettings",
    "Route",
    "UpstreamPool",
    "loop_factory",
    "new_pool",
]

if TYPE_CHECKING:
    from shoal import _cyshim as cython
else:
    try:
        import cython
    except ImportError:  # no Cython: the decorators and type names below mean nothing then
        from shoal import _cyshim as cython

log = logging.getLogger("shoal.dataplane.proxy")

Address = tuple[str, int]
"""An upstream's ``(host, port)``."""

Route = Callable[[Request], Address | None]
"""Chooses the upstream for a request head; ``None`` means none is available (503)."""

Admit = Callable[[Request, str], Request | bytes]
"""Called with each request head and the client's IP address before ``route``: returns the
request to route and forward (the same or a rewritten one), or a complete response (bytes) to
answer instead, after which the connection closes (sidecars' 401/429 use this)."""

LOOPS: Final = ("auto", "asyncio", "uvloop")
"""Event loop choices for :func:`loop_factory`."""

_RETRYABLE_METHODS: Final = frozenset({b"GET", b"HEAD", b"OPTIONS", b"TRACE", b"PUT", b"DELETE"})


@dataclass(frozen=True, slots=True)
class ProxySettings:
    """Everything the driver can be told; every field has a working default."""

    limits: Limits = field(default_factory=Limits)
    """Head, header count and body size limits for requests (431, 413)."""
    forwarding: ForwardingSettings = field(default_factory=ForwardingSettings)
    """X-Forwarded-For/-Proto and Via."""
    parser: str = "auto"
    """Request parser: ``auto`` (httptools when installed), ``httptools`` or ``python``."""
    connect_timeout: float = 5.0
    """Seconds to open an upstream connection (504 after)."""
    request_head_timeout: float = 30.0
    """Seconds from a request's first byte to the end of its head (408 after)."""
    keepalive_timeout: float = 60.0
    """Seconds an idle client connection stays open between requests."""
    upstream_timeout: float = 60.0
    """Seconds without a byte from either side while a request is in flight (504 after)."""
    pool_max_idle: int = 64
    """Idle keep-alive connections kept per upstream address."""
    pool_idle_timeout: float = 30.0
    """Seconds an idle upstream connection is kept."""
    pipeline_buffer: int = 256 * 1024
    """Bytes a client may send ahead of the request being answered before it is not read."""
    backlog: int = 1024
    """Listen backlog."""
    fast_path: bool = True
    """Take common requests and responses whole (:mod:`shoal.dataplane.fastpath`); off: every
    message goes through the parsers and events (the same behaviour, more CPU)."""
    implementation: str = "auto"
    """``compiled`` (the Cython build of this module and its helpers), ``python``, or ``auto``:
    compiled when built, unless ``SHOAL_PURE_PYTHON=1`` (see :mod:`shoal.dataplane.native`)."""
    compiled_loop: bool = True
    """With the compiled implementation, serve plain connections (no TLS, no ``admit`` hook) on
    the compiled event loop (:mod:`shoal.dataplane._loop_c`), which carries the common exchange
    and hands everything else to this driver; off: this driver serves every connection."""


class Pick:
    """Where one request goes: the driver reads :attr:`address`; the rest is the dispatcher's.

    A plain slotted class (not a dataclass): one is made per request on the hot path.
    """

    __slots__ = ("address", "on_ready", "queued", "state")

    def __init__(self, address: Address, state: object = None, *, queued: bool = False) -> None:
        self.address = address
        """The upstream's ``(host, port)`` for the current attempt."""
        self.state = state
        """Whatever the dispatcher keeps about the request."""
        self.queued = queued
        """Waiting for a free slot on the endpoint: call :attr:`on_ready` when it may go."""
        self.on_ready: Callable[[], None] | None = None
        """Set by the driver when :attr:`queued`; the dispatcher calls it (soon, not re-entrantly)."""


class Dispatcher(ABC):
    """Chooses upstreams and hears how exchanges ended; see *Dispatching* in the module docstring."""

    __slots__ = ()

    @abstractmethod
    def begin(self, request: Request, peer: str) -> Pick | None:
        """The pick for a new request; ``None``: no upstream (the driver answers 503)."""

    def failed(self, pick: Pick, failure: Failure, replayable: bool) -> bool:
        """The current attempt failed before any response; True: ``pick`` now names another."""
        return False

    def response(self, pick: Pick, status: int) -> bool:
        """A final response head came; True: drop it and retry on the endpoint ``pick`` now names.

        Asked only when the driver can resend the request (idempotent, no body).
        """
        return False

    def end(self, pick: Pick, status: int) -> None:  # noqa: B027 -- optional, as failed() is
        """The exchange is over; ``status`` is what the client got, 0 when nothing was sent."""


class _RouteDispatcher(Dispatcher):
    """A plain route callable as a dispatcher that never retries."""

    __slots__ = ("route",)

    def __init__(self, route: Route) -> None:
        self.route = route

    def begin(self, request: Request, peer: str) -> Pick | None:
        address = self.route(request)
        return None if address is None else Pick(address)


def loop_factory(name: str = "auto") -> Callable[[], asyncio.AbstractEventLoop]:
    """A new-loop factory: ``uvloop``, ``asyncio``, or ``auto`` (uvloop when installed)."""
    if name not in LOOPS:
        raise ValueError(f"unknown loop {name!r}: must be one of {list(LOOPS)}")
    if name != "asyncio":
        try:
            import uvloop  # optional speed-up
        except ImportError:
            if name == "uvloop":
                raise
        else:
            factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
            return factory
    return asyncio.new_event_loop


# --- the upstream side --------------------------------------------------------------------------


@cython.cclass
class _UpstreamProtocol:
    """One connection to an upstream; owned by at most one client exchange at a time.

    An asyncio protocol (the loop calls its methods by name; not a subclass of
    ``asyncio.Protocol`` so that the compiled build can be an extension type with C fields).
    """

    pool: "UpstreamPool"
    address: Address
    transport: asyncio.Transport | None
    parser: ResponseParser
    owner: "_ClientProtocol | None"
    closed: cython.bint
    idle_since: cython.double
    exchanges: cython.long
    corked: list[bytes] | None
    """Writes held back while a client's read is handled, sent as one (see ``flush``)."""
    early: bytes | None
    """Taken over from the compiled loop: bytes it read before the transport existed."""
    unsent: bytes | None
    """Taken over from the compiled loop: request bytes the socket had not taken yet."""

    def __init__(self, pool: "UpstreamPool", address: Address) -> None:
        self.pool = pool
        self.address = address
        self.transport = None
        self.parser = ResponseParser()
        self.owner = None
        self.closed = False
        self.idle_since = 0.0
        self.exchanges = 0
        self.corked = None
        self.early = None
        self.unsent = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses but have the same methods.
        self.transport = cast(asyncio.Transport, transport)
        if self.unsent:
            transport.write(self.unsent)  # type: ignore[attr-defined]
        self.unsent = None
        early, self.early = self.early, None
        if early:  # before the transport's first read: the order of the bytes is kept
            self.data_received(early)

    def data_received(self, data: bytes) -> None:
        owner: _ClientProtocol | None = self.owner  # typed: a C call when compiled
        if owner is None:  # an idle connection has nothing to say
            self.close()
            return
        owner.upstream_data(self, data)

    def eof_received(self) -> bool | None:
        return None  # close; connection_lost tells the owner

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        owner = self.owner
        if owner is not None:
            owner.upstream_lost(self)
        else:
            self.pool.discard(self)

    def pause_writing(self) -> None:
        if self.owner is not None:
            self.owner.pause_reading("upstream-full")

    def resume_writing(self) -> None:
        if self.owner is not None:
            self.owner.resume_reading("upstream-full")

    def write(self, data: bytes) -> None:
        corked = self.corked
        if corked is not None:
            corked.append(data)
        elif self.transport is not None and not self.closed:
            self.transport.write(data)

    def flush(self) -> None:
        """Send the writes held back since ``corked`` was set, in one system call."""
        corked = self.corked
        if corked is None:
            return
        self.corked = None
        if corked:
            self.write(corked[0] if len(corked) == 1 else b"".join(corked))

    def close(self) -> None:
        self.owner = None
        self.corked = None
        if self.transport is not None:
            self.transport.close()


@cython.cclass
class UpstreamPool:
    """Idle keep-alive connections per upstream address (most recently used first)."""

    _settings: ProxySettings
    _idle_timeout: cython.double
    _max_idle: cython.long
    _idle: dict[Address, list[_UpstreamProtocol]]
    _sweeper: asyncio.TimerHandle | None
    _closed: cython.bint
    _loop: asyncio.AbstractEventLoop | None
    _live: Collection[Address] | None
    _opened: cython.long
    _reused: cython.long
    _engines: list[Any]
    """Compiled loops keeping their own idle connections under this pool's rules."""

    def __init__(self, settings: ProxySettings | None = None) -> None:
        self._settings = settings or ProxySettings()
        self._idle_timeout = self._settings.pool_idle_timeout
        self._max_idle = self._settings.pool_max_idle
        self._idle = {}
        self._sweeper = None
        self._closed = False
        self._loop = None
        self._live = None
        self._opened = 0
        self._reused = 0
        self._engines = []

    def attach(self, engine: Any) -> None:
        """A compiled loop's idle connections follow :meth:`retain` and :meth:`close` too."""
        self._engines.append(engine)
        engine.retain(() if self._closed else self._live)

    def detach(self, engine: Any) -> None:
        """Forget a compiled loop (it has closed)."""
        if engine in self._engines:
            self._engines.remove(engine)

    @property
    def opened(self) -> int:
        """Connections opened so far (by this pool and the compiled loops attached to it)."""
        return self._opened + sum(int(engine.opened) for engine in self._engines)

    @property
    def reused(self) -> int:
        """Exchanges that took an idle connection instead of opening one."""
        return self._reused + sum(int(engine.reused_count) for engine in self._engines)

    def _get_loop(self) -> asyncio.AbstractEventLoop:
        # get_running_loop() costs a getpid() system call; the pool lives on one loop.
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        return loop

    def idle_count(self, address: Address | None = None) -> int:
        """Idle connections kept (for one address, or for all)."""
        engines = sum(int(engine.idle_count(address)) for engine in self._engines)
        if address is not None:
            return len(self._idle.get(address, ())) + engines
        return sum(len(v) for v in self._idle.values()) + engines

    def retain(self, live: Collection[Address] | None) -> None:
        """Keep connections only to ``live`` addresses (None: any): close the others' idle ones now
        and the busy ones when they are released (an endpoint that left drains this way)."""
        self._live = live
        if live is None:
            return
        for engine in self._engines:
            engine.retain(live)
        for address, idle in self._idle.items():
            if address not in live:
                for conn in idle:
                    conn.close()
                idle.clear()

    @cython.ccall
    def take(self, address: Address, now: float = -1.0) -> _UpstreamProtocol | None:
        """An idle connection to ``address`` still open and fresh, or ``None``.

        ``now``: the loop's clock if the caller has just read it (one reading per read event)."""
        idle = self._idle.get(address)
        if not idle:
            return None
        if now < 0:
            loop = self._loop or self._get_loop()
            now = loop.time()
        deadline = now - self._idle_timeout
        conn: _UpstreamProtocol
        while idle:
            conn = idle.pop()
            if not conn.closed and conn.idle_since > deadline:
                self._reused += 1
                return conn
            conn.close()
        return None

    @cython.annotation_typing(False)  # compiled, the result would be taken for a C type
    async def connect(self, address: Address) -> _UpstreamProtocol:
        """A new connection to ``address``."""
        loop = asyncio.get_running_loop()
        _, protocol = await loop.create_connection(
            lambda: cast(asyncio.Protocol, _UpstreamProtocol(self, address)), address[0], address[1]
        )
        self._opened += 1
        return cast(_UpstreamProtocol, protocol)

    @cython.ccall
    def release(self, conn: _UpstreamProtocol, now: float = -1.0) -> None:
        """Keep ``conn`` for reuse, or close it when the pool is full or closed (``now``: as for
        :meth:`take`)."""
        conn.owner = None
        idle = self._idle.get(conn.address)
        if idle is None:
            idle = self._idle[conn.address] = []
        live = self._live
        if (
            self._closed
            or conn.closed
            or len(idle) >= self._max_idle
            or (live is not None and conn.address not in live)
        ):
            conn.close()
            return
        loop = self._loop or self._get_loop()
        conn.idle_since = loop.time() if now < 0 else now
        idle.append(conn)
        if self._sweeper is None:
            self._sweeper = loop.call_later(self._settings.pool_idle_timeout, self._sweep)

    def discard(self, conn: _UpstreamProtocol) -> None:
        """Forget a connection that closed while idle."""
        idle = self._idle.get(conn.address)
        if idle and conn in idle:
            idle.remove(conn)

    def _sweep(self) -> None:
        self._sweeper = None
        loop = self._get_loop()
        deadline = loop.time() - self._settings.pool_idle_timeout
        remaining = False
        conn: _UpstreamProtocol
        for idle in self._idle.values():
            stale = []
            for conn in idle:
                if conn.idle_since <= deadline:
                    stale.append(conn)  # noqa: PERF401 -- a typed loop (compiled: C field reads)
            for conn in stale:
                idle.remove(conn)
                conn.close()
            remaining = remaining or bool(idle)
        if remaining and not self._closed:
            self._sweeper = loop.call_later(self._settings.pool_idle_timeout / 2, self._sweep)

    def close(self) -> None:
        """Close every idle connection and keep no more."""
        self._closed = True
        for engine in list(self._engines):
            engine.retain(())
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for idle in self._idle.values():
            for conn in idle:
                conn.close()
            idle.clear()


def new_pool(settings: ProxySettings | None = None) -> UpstreamPool:
    """An upstream pool of the implementation ``settings`` choose (compiled or pure Python)."""
    settings = settings or ProxySettings()
    native = compiled("driver", settings.implementation)
    pool: UpstreamPool = (UpstreamPool if native is None else native.UpstreamPool)(settings)
    return pool


# --- the client side ----------------------------------------------------------------------------

_LENGTH_FRAMER: Final = BodyFramer("length")
"""Passes a ``Content-Length`` body through (stateless, so one serves every connection)."""

# The phases of a client connection (C constants when compiled).
_IDLE: int = cython.declare(cython.int, 0)
_HEAD: int = cython.declare(cython.int, 1)
_EXCHANGE: int = cython.declare(cython.int, 2)
_TUNNEL: int = cython.declare(cython.int, 3)


@cython.cclass
class _ClientProtocol:
    """One client connection: the exchange state machine (see the module docstring).

    An asyncio protocol, like :class:`_UpstreamProtocol` (methods called by name).
    """

    _server: "ProxyServer"
    _settings: ProxySettings
    _loop: asyncio.AbstractEventLoop
    _parser: RequestParser
    _transport: asyncio.Transport | None
    _peer: str
    _dispatcher: Dispatcher
    _request: Request | None
    _pick: Pick | None
    _status: cython.long
    _address: Address | None
    _upstream: _UpstreamProtocol | None
    _upstream_seen: cython.bint
    _upstream_keep: cython.bint
    _reused: cython.bint
    _retry_head: bytes | None
    _up_framer: BodyFramer | None
    _down_framer: BodyFramer | None
    _pending: list[bytes] | None
    _request_done: cython.bint
    _response_started: cython.bint
    _response_done: cython.bint
    _keep_alive: cython.bint
    _tunnel: cython.bint
    _closing: cython.bint
    _eof: cython.bint
    _write_paused: cython.bint
    _paused: set[str]
    _phase: cython.int
    _phase_since: cython.double
    _last_activity: cython.double
    _timer: asyncio.TimerHandle | None
    _timer_at: cython.double
    _out: list[bytes] | None
    _feeding: cython.bint
    _fast: cython.bint
    """The fast path (:mod:`shoal.dataplane.fastpath`) may take common messages whole."""
    _fast_down: cython.bint
    """The current response may be taken whole (an HTTP/1.1 request, not HEAD or Upgrade)."""
    _clean: cython.bint
    """The request parser is at rest: a read may be taken whole by the fast path."""
    _hold: cython.bint
    """The current request was taken whole: the parser must hold what comes until it ends."""
    _tail: bytes
    _limits: Limits
    _pool: UpstreamPool
    _timeouts: tuple[float, float, float]
    """Seconds of each phase but the tunnel, by phase number."""
    _adopted: tuple[Any, ...] | None
    """What the compiled loop handed over, until ``connection_made`` carries on with it."""

    def __init__(self, server: "ProxyServer") -> None:
        self._server = server
        self._settings = server.settings
        self._loop = asyncio.get_running_loop()
        self._parser = server.new_parser()
        self._transport = None
        self._peer = ""
        self._dispatcher = server.dispatcher
        self._request = None
        self._pick = None
        self._status = 0
        self._address = None
        self._upstream = None
        self._upstream_seen = False
        self._upstream_keep = False
        self._reused = False
        self._retry_head = None
        self._up_framer = None
        self._down_framer = None
        self._pending = None
        self._request_done = False
        self._response_started = False
        self._response_done = False
        self._keep_alive = True
        self._tunnel = False
        self._closing = False
        self._eof = False
        self._write_paused = False
        self._paused = set()
        self._phase = _IDLE
        self._phase_since = 0.0
        self._last_activity = 0.0
        self._timer = None
        self._timer_at = 0.0
        self._out = None
        self._feeding = False
        self._fast = server.fast
        self._fast_down = False
        self._clean = True
        self._hold = False
        self._tail = b"\r\n"
        self._limits = server.settings.limits
        self._pool = server.pool
        settings = server.settings
        self._timeouts = (
            settings.keepalive_timeout,
            settings.request_head_timeout,
            settings.upstream_timeout,
        )
        self._adopted = None

    def adopted(self, state: tuple[Any, ...]) -> None:
        """Carry on, once connected, with what the compiled loop handed over (see
        :meth:`ProxyServer.adopt`)."""
        self._adopted = state

    # --- asyncio callbacks ---

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        self._peer = str(peer[0]) if isinstance(peer, tuple) else "unknown"
        forwarding = self._settings.forwarding
        self._tail = forwarding_tail(self._peer, forwarding.scheme, forwarding.x_forwarded_for)
        self._server.connections.add(self)
        self._set_phase(_IDLE, self._loop.time())
        if self._adopted is not None:
            self._resume()

    def _resume(self) -> None:
        """Carry on from where the compiled loop handed the connection over: before a request
        (its bytes read so far), or within an exchange it had begun (see ``_loop_c``)."""
        assert self._adopted is not None
        stage, data, request, pick, head, up_sock, reused, unsent, lost, timeout, detail = (
            self._adopted
        )
        self._adopted = None
        if stage == ADOPT_REQUEST:
            self.data_received(data)
            return
        # The request was taken whole and its pick begun: as _start left it.
        self._open_exchange(request, self._loop.time())
        self._request_done = True
        self._hold = True
        self._pick = pick
        self._up_framer = None
        self._retry_head = (
            head if request.framing == "none" and request.method in _RETRYABLE_METHODS else None
        )
        if stage == ADOPT_SEND:
            if pick.queued:
                self._wait_for_slot(pick, [head])
            else:
                self.pause_reading("connect")
                self._send_to(pick.address, [head])
            return
        if stage == ADOPT_CONNECT_FAILED:
            self._pending = [head]
            if not self._retry_elsewhere(Failure.CONNECT, self._pending, True):
                if timeout:
                    self._upstream_failed(504, "connecting to the upstream timed out")
                else:
                    self._upstream_failed(502, f"cannot connect to the upstream: {detail}")
            return
        # ADOPT_SENT: the request went upstream; the response had not been taken.
        conn = _UpstreamProtocol(self._pool, pick.address)
        self._address = pick.address
        self._attach(conn, reused)
        if lost:  # closed or reset before answering: retried or answered 502 as ever
            conn.closed = True
            self.upstream_lost(conn)
            return
        conn.early = data or None
        conn.unsent = unsent or None
        self._server.spawn(_wrap_upstream(conn, up_sock))

    def data_received(self, data: bytes) -> None:
        now = self._last_activity = self._loop.time()
        if self._tunnel:
            if self._upstream is not None:
                self._upstream.write(data)
            return
        if self._phase == _IDLE:
            if self._clean and self._fast:
                # The common request, whole in this read: no parser, no events (fastpath.py).
                scanned = scan_request(data, self._limits)
                if scanned is not None:
                    request, end = scanned
                    self._hold = True
                    self._start(request, data, end, now)
                    return
            # The head timer is armed only if the head is still incomplete after this read.
            self._phase = _HEAD
            self._phase_since = now
        if self._hold:
            self._hold = False
            self._parser.hold()  # bytes after a request taken whole wait for its end
        self._clean = False
        self._feeding = True
        try:
            self._handle(self._parser.feed(data))
        finally:
            self._feeding = False
            upstream = self._upstream
            if upstream is not None:
                upstream.flush()
        if self._phase == _HEAD:
            self._arm_head_timer()
        if (
            self._request_done
            and not self._closing
            and self._parser.buffered > self._settings.pipeline_buffer
        ):
            self.pause_reading("pipeline")

    def eof_received(self) -> bool:
        self._eof = True
        if self._tunnel:
            upstream = self._upstream
            if upstream is not None and upstream.transport is not None:
                with contextlib.suppress(OSError, RuntimeError):
                    upstream.transport.write_eof()
            return True
        if self._hold:
            self._hold = False
            self._parser.hold()
        self._clean = False
        self._handle(self._parser.feed_eof())
        return self._request is not None and not self._closing

    def connection_lost(self, exc: Exception | None) -> None:
        self._closing = True
        self._out = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._upstream is not None:
            self._detach(False)
        self._end_pick(self._status if self._response_started else 0)
        self._server.connection_done(self)

    def pause_writing(self) -> None:
        self._write_paused = True
        upstream = self._upstream
        if upstream is not None and upstream.transport is not None:
            upstream.transport.pause_reading()

    def resume_writing(self) -> None:
        self._write_paused = False
        upstream = self._upstream
        if upstream is not None and upstream.transport is not None and not upstream.closed:
            upstream.transport.resume_reading()

    # --- reading control ---

    def pause_reading(self, reason: str) -> None:
        if not self._paused and self._transport is not None and not self._closing:
            self._transport.pause_reading()
        self._paused.add(reason)

    def resume_reading(self, reason: str) -> None:
        if reason not in self._paused:
            return
        self._paused.discard(reason)
        if not self._paused and self._transport is not None and not self._closing:
            self._transport.resume_reading()

    @property
    def idle(self) -> bool:
        """Between requests with nothing buffered: safe to close while draining."""
        return self._request is None and not self._parser.buffered

    def drain(self) -> None:
        """The server is shutting down: close now if idle, else after the current response."""
        self._keep_alive = False
        if self.idle and not self._tunnel:
            self._close()

    # --- client events ---

    def _handle(self, events: list[Event]) -> None:
        for event in events:
            if self._closing:
                return
            kind = type(event)
            if kind is Data:
                assert isinstance(event, Data)
                if self._up_framer is not None:
                    self._to_upstream(self._up_framer.data(event.data))
            elif kind is Request:
                assert isinstance(event, Request)
                self._start(event)
            elif kind is EndOfMessage:
                self._request_done = True
                if self._up_framer is not None:
                    self._to_upstream(self._up_framer.end())
                if self._response_done:
                    self._finish()
            else:
                assert isinstance(event, ProtocolError)
                self._reject(event)

    @cython.cfunc
    def _to_upstream(self, data: bytes) -> None:
        if not data:
            return
        if self._pending is not None:
            self._pending.append(data)
        elif self._upstream is not None:
            self._upstream.write(data)

    @cython.cfunc
    def _open_exchange(self, request: Request, now: float) -> None:
        """The state every exchange starts from (``_start``, and ``_resume`` for one the
        compiled loop began)."""
        self._set_phase(_EXCHANGE, now)
        self._request = request
        self._status = 0
        self._request_done = self._response_started = self._response_done = False
        self._keep_alive = request.keep_alive and not self._server.draining
        self._fast_down = (
            self._fast
            and request.http_version == b"1.1"
            and request.method != b"HEAD"
            and request.upgrade is None
        )

    @cython.cfunc
    def _start(
        self, request: Request, data: bytes | None = None, end: int = 0, now: float = -1.0
    ) -> None:
        """Begin an exchange for ``request``; with ``data``, the fast path took the whole request
        from it (head up to ``end``, then the whole body)."""
        self._open_exchange(request, self._loop.time() if now < 0 else now)
        admit = self._server.admit
        if admit is not None:
            try:
                admitted = admit(request, self._peer)
            except Exception:
                log.exception("admit failed for %r", request.target)
                self._local_response(500, "admission failed")
                return
            if isinstance(admitted, bytes):
                self._detach(False)
                if not self._closing:
                    self._send(admitted)
                self._close()
                return
            if admitted is not request:
                self._request = request = admitted
                if data is not None:  # rewritten: forward it the general way
                    body = data[end:]
                    head, framer = upstream_request(request, self._peer, self._settings.forwarding)
                    data, end = head + framer.data(body) + framer.end(), -1
        try:
            pick = self._dispatcher.begin(request, self._peer)
        except Exception:
            log.exception("route failed for %r", request.target)
            self._local_response(500, "routing failed")
            return
        if pick is None:
            self._local_response(503, "no upstream available")
            return
        self._pick = pick
        if data is None:
            head, self._up_framer = upstream_request(request, self._peer, self._settings.forwarding)
        else:
            # Taken whole: the received head with the forwarding fields spliced in, and the body.
            self._request_done = True
            self._up_framer = None
            if end < 0:
                head = data
            elif end == len(data):
                head = data[: end - 2] + self._tail
            else:
                head = data[: end - 2] + self._tail + data[end:]
        self._retry_head = (
            head if request.framing == "none" and request.method in _RETRYABLE_METHODS else None
        )
        if pick.queued:
            self._wait_for_slot(pick, [head])
            return
        self._address = address = pick.address
        conn: _UpstreamProtocol | None = self._pool.take(address, now)
        if conn is None:
            self._connect(address, head)
            return
        self._attach(conn, True)
        if conn.corked is None and conn.transport is not None:
            conn.transport.write(head)  # conn.write, without the call
        else:
            conn.write(head)

    def _wait_for_slot(self, pick: Pick, pending: list[bytes]) -> None:
        """The endpoint is at its limit: hold what came so far until the dispatcher says go."""
        self._pending = pending
        self.pause_reading("connect")

        def ready() -> None:
            if self._pick is not pick or self._closing or self._pending is None:
                return
            held, self._pending = self._pending, None
            self._send_to(pick.address, held)

        pick.on_ready = ready

    def _send_to(self, address: Address, held: list[bytes]) -> None:
        """Send the held head (and body so far) to ``address``, on a pooled or new connection."""
        self._address = address
        conn: _UpstreamProtocol | None = self._pool.take(address)
        if conn is None:
            self._pending = held
            self._server.spawn(self._open(address))
            return
        self._attach(conn, True)
        conn.write(b"".join(held))
        self.resume_reading("connect")

    def _connect(self, address: Address, head: bytes) -> None:
        self._pending = [head]
        self.pause_reading("connect")
        self._server.spawn(self._open(address))

    def _retry_elsewhere(self, failure: Failure, held: list[bytes], replayable: bool) -> bool:
        """Ask the dispatcher for another endpoint after ``failure``; True if the request went."""
        pick = self._pick
        if pick is None or self._closing:
            return False
        try:
            again = self._dispatcher.failed(pick, failure, replayable)
        except Exception:
            log.exception("dispatcher failed")
            again = False
        if not again:
            return False
        if pick.queued:
            self._wait_for_slot(pick, held)
        else:
            self.pause_reading("connect")
            self._send_to(pick.address, held)
        return True

    async def _open(self, address: Address) -> None:
        try:
            conn = await asyncio.wait_for(
                self._server.pool.connect(address), self._settings.connect_timeout
            )
        except TimeoutError:
            if self._pending is None or not self._retry_elsewhere(
                Failure.CONNECT, self._pending, True
            ):
                self._upstream_failed(504, "connecting to the upstream timed out")
            return
        except OSError as error:
            if self._pending is None or not self._retry_elsewhere(
                Failure.CONNECT, self._pending, True
            ):
                self._upstream_failed(502, f"cannot connect to the upstream: {error.strerror}")
            return
        if self._closing or self._pending is None:
            conn.close()
            return
        pending, self._pending = self._pending, None
        self._attach(conn, False)
        conn.write(b"".join(pending))
        self.resume_reading("connect")

    @cython.cfunc
    def _attach(self, conn: _UpstreamProtocol, reused: bool) -> None:
        assert self._request is not None
        conn.owner = self
        conn.exchanges += 1
        conn.parser.expect(self._request.method)
        self._upstream = conn
        self._reused = reused
        self._upstream_seen = False
        if self._feeding:
            conn.corked = []  # the head and any body in this read go out as one write
        if self._write_paused and conn.transport is not None:
            conn.transport.pause_reading()

    @cython.cfunc
    def _detach(self, reuse: bool) -> None:
        conn = self._upstream
        if conn is None:
            return
        self._upstream = None
        conn.owner = None
        if self._paused:
            self.resume_reading("upstream-full")
        if reuse and not conn.closed and not conn.parser.buffered:
            if conn.corked is not None:
                conn.flush()
            if self._write_paused and conn.transport is not None:
                conn.transport.resume_reading()
            conn.parser.next_cycle()
            self._pool.release(conn)
        else:
            conn.close()

    # --- upstream events ---

    @cython.ccall
    def upstream_data(self, conn: _UpstreamProtocol, data: bytes) -> None:
        self._last_activity = self._loop.time()
        if not self._upstream_seen:
            self._upstream_seen = True
            if self._fast_down and self._request_done:
                # The common response head, first in this read: rewritten whole (fastpath.py).
                keep = self._keep_alive and not self._server.draining
                scanned = scan_response(data, keep)
                if scanned is not None:
                    status, out, rest, up = scanned
                    self._fast_response(conn, keep, status, out, rest, up)
                    return
        if self._tunnel:
            if self._transport is not None:
                self._transport.write(data)
            return
        # Everything this read produces for the client (head, body, chunk ends) is one write.
        self._out = []
        try:
            self._upstream_events(conn, conn.parser.feed(data))
        finally:
            self._flush()

    @cython.cfunc
    def _send(self, data: bytes) -> None:
        out = self._out
        if out is not None:
            out.append(data)
        elif self._transport is not None:
            self._transport.write(data)

    @cython.cfunc
    def _flush(self) -> None:
        out = self._out
        if out is None:
            return
        self._out = None
        if out and self._transport is not None:
            self._transport.write(out[0] if len(out) == 1 else b"".join(out))

    def _upstream_events(self, conn: _UpstreamProtocol, events: list[Event]) -> None:
        for event in events:
            kind = type(event)
            if kind is Data:
                assert isinstance(event, Data)
                if self._down_framer is not None:
                    piece = self._down_framer.data(event.data)
                    if piece:
                        self._send(piece)
            elif kind is Response:
                assert isinstance(event, Response)
                self._on_response(conn, event)
            elif kind is EndOfMessage:
                self._on_response_end()
            else:
                assert isinstance(event, ProtocolError)
                self._upstream_broken(event)
            if self._tunnel or self._upstream is not conn or self._closing:
                return

    def upstream_lost(self, conn: _UpstreamProtocol) -> None:
        if conn is not self._upstream:
            return
        if self._tunnel:
            self._upstream = None
            self._close()
            return
        if (
            self._reused
            and not self._upstream_seen
            and self._retry_head is not None
            and self._address is not None
            and not self._response_started
        ):
            # The upstream had closed this pooled connection before reading the request.
            log.debug("stale pooled connection to %s; retrying on a new one", self._address)
            self._upstream = None
            conn.owner = None
            head, self._retry_head = self._retry_head, None
            self._connect(self._address, head)
            return
        if (
            self._retry_head is not None
            and self._request_done
            and not self._response_started
            and not conn.parser.buffered
        ):
            # Reset before any response: an idempotent bodiless request may go to another one.
            self._upstream = None
            conn.owner = None
            if self._retry_elsewhere(Failure.RESET, [self._retry_head], True):
                return
            self._upstream = conn
            conn.owner = self
        self._out = []
        try:
            self._upstream_events(conn, conn.parser.feed_eof())
        finally:
            self._flush()
        if self._upstream is conn:  # the response had ended; the connection just closed
            self._detach(False)

    def _on_response(self, conn: _UpstreamProtocol, response: Response) -> None:
        request = self._request
        assert request is not None
        send = self._send
        status = response.status
        forwarding = self._settings.forwarding
        if status < 200 and status != 101:
            if request.http_version == b"1.1":
                head, _, _ = client_response(response, request, True, forwarding)
                send(head)
            return
        if status == 101:
            if request.upgrade is None:
                self._upstream_broken(ProtocolError(502, "upstream switched protocols unasked"))
                return
            head, _, _ = client_response(response, request, True, forwarding)
            send(head)
            self._status = 101
            self._tunnel = True
            self._response_started = True
            self._set_phase(_TUNNEL, self._loop.time())
            rest = conn.parser.take_buffer()
            if rest:
                send(rest)
            early = self._parser.take_buffer()
            if early:
                conn.write(early)
            self.resume_reading("pipeline")
            return
        pick = self._pick
        if (
            status >= 500
            and pick is not None
            and self._retry_head is not None
            and self._request_done
            and self._dispatcher.response(pick, status)
        ):
            # The dispatcher moved the pick: drop this answer and resend the held head.
            self._detach(False)
            self.pause_reading("connect")
            self._send_to(pick.address, [self._retry_head])
            return
        self._status = status
        keep = self._keep_alive and not self._server.draining
        head, self._down_framer, self._keep_alive = client_response(
            response, request, keep, forwarding
        )
        self._upstream_keep = response.keep_alive
        self._response_started = True
        send(head)

    @cython.cfunc
    def _fast_response(
        self, conn: _UpstreamProtocol, keep: bool, status: int, out: bytes, rest: int, up: bool
    ) -> None:
        """What ``_on_response`` (and ``_on_response_end``) do, for a head taken whole."""
        self._status = status
        self._keep_alive = keep
        self._upstream_keep = up
        self._response_started = True
        transport = self._transport
        if transport is not None:
            transport.write(out)
        if rest:
            # The rest of the body goes through the parser and the general path.
            self._down_framer = _LENGTH_FRAMER
            conn.parser.continue_body(rest)
            return
        self._response_done = True
        self._finish(False)

    @cython.cfunc
    def _on_response_end(self) -> None:
        self._response_done = True
        if self._down_framer is not None:
            end = self._down_framer.end()
            if end:
                self._send(end)
        if not self._request_done:
            # Answered before the request body ended: the upstream connection is unusable and
            # the client's remaining body is read and dropped, then the connection closes.
            self._detach(False)
            self._up_framer = None
            self._keep_alive = False
            return
        self._finish()

    @cython.cfunc
    def _end_pick(self, status: int) -> None:
        pick = self._pick
        if pick is not None:
            self._pick = None
            try:
                self._dispatcher.end(pick, status)
            except Exception:
                log.exception("dispatcher failed at the end of an exchange")

    @cython.cfunc
    def _finish(self, parsed: bool = True) -> None:
        """The exchange is over: reuse or close the upstream connection, start the next cycle.

        ``parsed`` is False when the response was taken whole (its parser was never fed)."""
        if parsed:
            self._detach(self._upstream_keep)
        else:
            conn = self._upstream
            if conn is not None:  # _detach without the parser's calls
                self._upstream = None
                conn.owner = None
                if self._paused:
                    self.resume_reading("upstream-full")
                if self._upstream_keep and not conn.closed:
                    if self._write_paused and conn.transport is not None:
                        conn.transport.resume_reading()
                    self._pool.release(conn, self._last_activity)
                else:
                    conn.close()
        pick = self._pick
        if pick is not None:
            self._pick = None
            try:
                self._dispatcher.end(pick, self._status)
            except Exception:
                log.exception("dispatcher failed at the end of an exchange")
        self._request = None
        self._up_framer = self._down_framer = None
        if not self._keep_alive or self._server.draining:
            self._close()
            return
        # A response taken whole ends in the upstream read that upstream_data just timed: one
        # clock reading per read event. Other ends (an upstream closing, a timer) read it anew.
        now = self._last_activity if not parsed else self._loop.time()
        self._phase = _IDLE  # _set_phase, inlined
        self._phase_since = now
        deadline = now + self._timeouts[_IDLE]
        if self._timer is None or deadline < self._timer_at:
            self._arm(deadline)
        if self._paused:
            self.resume_reading("pipeline")
        if self._hold:
            # Taken whole and nothing came since: the parser is still at rest.
            self._hold = False
            if self._eof:
                self._close()
            return
        events = self._parser.next_cycle()
        if events or self._parser.buffered:
            self._phase = _HEAD
            self._handle(events)
            if self._phase == _HEAD:
                self._arm_head_timer()
        elif self._eof:
            self._close()
        else:
            self._clean = self._parser.at_rest

    # --- failures ---

    def _upstream_failed(self, status: int, detail: str) -> None:
        self._pending = None
        if self._closing:
            return
        self._local_response(status, detail)

    def _upstream_broken(self, error: ProtocolError) -> None:
        self._detach(False)
        if not self._response_started:
            self._local_response(error.status, error.detail)
        else:
            self._abort()

    def _reject(self, error: ProtocolError) -> None:
        if self._response_started:
            self._abort()
            return
        self._detach(False)
        self._local_response(error.status, error.detail)

    def _local_response(self, status: int, detail: str) -> None:
        if status >= 500:
            log.info("%s %s: %s", self._peer, status, detail)
        self._detach(False)
        if not self._closing:
            self._send(error_response(status, detail))
            self._end_pick(status)
        self._close()

    def _close(self) -> None:
        if self._closing:
            return
        self._flush()
        self._closing = True
        self._detach(False)
        self._end_pick(self._status if self._response_started else 0)
        if self._transport is not None:
            self._transport.close()

    def _abort(self) -> None:
        self._flush()
        self._closing = True
        self._detach(False)
        self._end_pick(self._status if self._response_started else 0)
        if self._transport is not None:
            self._transport.abort()

    # --- timers ---

    @cython.cfunc
    def _set_phase(self, phase: int, now: float) -> None:
        self._phase = phase
        self._phase_since = now
        if phase == _TUNNEL:
            return
        deadline = now + self._timeouts[phase]
        if self._timer is None or deadline < self._timer_at:
            self._arm(deadline)

    def _arm_head_timer(self) -> None:
        """Make sure the timer fires by the head's deadline (the head is still incomplete)."""
        if self._closing:
            return
        deadline = self._phase_since + self._settings.request_head_timeout
        if self._timer is None or deadline < self._timer_at:
            self._arm(deadline)

    @cython.cfunc
    def _arm(self, deadline: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = deadline
        self._timer = self._loop.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        phase = self._phase
        if self._closing or phase == _TUNNEL:
            return
        since = self._phase_since
        if phase == _EXCHANGE:
            since = max(since, self._last_activity)
        deadline = since + self._timeouts[phase]
        if self._loop.time() < deadline:
            self._arm(deadline)
        elif phase == _IDLE:
            self._close()
        elif phase == _HEAD:
            self._local_response(408, "the request head did not arrive in time")
        elif self._response_started:
            self._abort()
        else:
            self._pending = None
            self._local_response(504, "the upstream did not answer in time")


# --- the server ---------------------------------------------------------------------------------

# How the compiled loop (``_loop_c``) hands a connection over: ``ProxyServer.adopt``'s stage.
ADOPT_REQUEST: Final = 0
"""Between requests: the bytes read so far are fed to the parser."""
ADOPT_SEND: Final = 1
"""A request taken and begun, not sent (a queued pick, or a name to resolve)."""
ADOPT_CONNECT_FAILED: Final = 2
"""A request taken and begun whose new upstream connection failed."""
ADOPT_SENT: Final = 3
"""A request sent upstream whose response head the loop did not take (or that was lost)."""


async def _wrap_upstream(conn: _UpstreamProtocol, sock: socket.socket) -> None:
    """Give an upstream socket taken over from the compiled loop a transport."""
    try:
        await asyncio.get_running_loop().create_connection(lambda: cast(Any, conn), sock=sock)
    except OSError:
        sock.close()
        conn.connection_lost(None)  # the owner retries or answers, as for any lost connection
    except BaseException:
        sock.close()
        raise


def _listen(host: str | None, port: int, *, reuse_port: bool, backlog: int) -> list[socket.socket]:
    """Listening sockets for ``host:port`` as ``loop.create_server`` makes them."""
    infos = socket.getaddrinfo(
        host, port, family=socket.AF_UNSPEC, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )
    sockets: list[socket.socket] = []
    seen: set[tuple[Any, ...]] = set()
    try:
        for family, kind, proto, _, address in infos:
            if (family, address) in seen:
                continue
            seen.add((family, address))
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                sock.bind(address)
            except OSError as error:  # worded as loop.create_server words it
                raise OSError(
                    error.errno,
                    f"error while attempting to bind on address {address!r}: "
                    f"{(error.strerror or str(error)).lower()}",
                ) from None
            sock.listen(backlog)
            sock.setblocking(False)
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets


def _compiled_loop() -> Any:
    """The compiled event loop module, or None where it was not built."""
    try:
        import shoal.dataplane._loop_c as module  # optional: built by setup.py
    except ImportError:
        return None
    return module


class ProxyServer:
    """An HTTP/1.1 reverse proxy on one listening socket; see the module docstring.

    ``async with ProxyServer(route) as proxy: await proxy.start("127.0.0.1", 0)``; leaving the
    block (or :meth:`shutdown`) drains it.
    """

    def __init__(
        self,
        route: Route | Dispatcher,
        settings: ProxySettings | None = None,
        *,
        admit: Admit | None = None,
        pool: UpstreamPool | None = None,
    ) -> None:
        self.route = route
        self.dispatcher: Dispatcher = (
            route if isinstance(route, Dispatcher) else _RouteDispatcher(route)
        )
        """Where requests go (a plain ``route`` callable is wrapped in one)."""
        self.admit = admit
        """Optional filter run before ``route`` (see :data:`Admit`)."""
        self.settings = settings or ProxySettings()
        if self.settings.parser not in PARSERS:
            raise ValueError(f"unknown parser {self.settings.parser!r}")
        self._parser_class: Callable[[Limits], RequestParser] = type(
            make_request_parser(self.settings.parser, self.settings.limits)
        )
        self.fast = self.settings.fast_path and self.settings.forwarding.via is None
        """Whether connections may use :mod:`shoal.dataplane.fastpath` for common messages."""
        native = compiled("driver", self.settings.implementation)
        self.implementation = "python" if native is None else "compiled"
        """``compiled`` or ``python``: the connections' code (see :mod:`shoal.dataplane.native`)."""
        self._protocol: type[_ClientProtocol] = (
            _ClientProtocol if native is None else native._ClientProtocol
        )
        self._own_pool = pool is None
        self.pool = pool if pool is not None else new_pool(self.settings)
        self.connections: set[_ClientProtocol] = set()
        self.draining = False
        self._server: asyncio.Server | None = None
        self._engine: Any = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._all_closed: asyncio.Event | None = None

    @property
    def parser_name(self) -> str:
        """``httptools`` or ``python``: the request parser in use."""
        return "httptools" if "Httptools" in repr(self._parser_class) else "python"

    def new_parser(self) -> RequestParser:
        return self._parser_class(self.settings.limits)

    async def start(
        self,
        host: str | None = "127.0.0.1",
        port: int = 0,
        *,
        reuse_port: bool = False,
        sock: socket.socket | None = None,
        ssl: _ssl.SSLContext | None = None,
    ) -> None:
        """Start listening (on ``sock`` when given, else on ``host:port``); TLS with ``ssl``."""
        loop = asyncio.get_running_loop()
        loop_module = self._loop_module(ssl)
        if loop_module is not None:
            if sock is not None:
                sock.listen(self.settings.backlog)
                sock.setblocking(False)
                sockets = [sock]
            else:
                sockets = _listen(host, port, reuse_port=reuse_port, backlog=self.settings.backlog)
            engine = loop_module.Engine(self, sockets, self.settings, self.pool)
            engine.start(loop)
            self.pool.attach(engine)
            self._engine = engine
            return
        if sock is not None:
            self._server = await loop.create_server(
                lambda: cast(asyncio.Protocol, self._protocol(self)),
                sock=sock,
                backlog=self.settings.backlog,
                ssl=ssl,
            )
        else:
            self._server = await loop.create_server(
                lambda: cast(asyncio.Protocol, self._protocol(self)),
                host,
                port,
                reuse_port=reuse_port or None,
                backlog=self.settings.backlog,
                ssl=ssl,
            )

    def _loop_module(self, ssl: _ssl.SSLContext | None) -> Any:
        """The compiled loop when it may serve this server's connections (else None)."""
        if (
            ssl is not None
            or self.admit is not None
            or not self.fast
            or not self.settings.compiled_loop
            or self.implementation != "compiled"
        ):
            return None
        return _compiled_loop()

    @property
    def engine(self) -> str:
        """``compiled-loop`` when the compiled loop serves plain connections, else ``asyncio``."""
        return "asyncio" if self._engine is None else "compiled-loop"

    @property
    def address(self) -> Address:
        """The first listening socket's ``(host, port)``."""
        if self._engine is not None:
            sockets = self._engine.sockets
        else:
            assert self._server is not None
            sockets = self._server.sockets
        assert sockets
        name = sockets[0].getsockname()
        return str(name[0]), int(name[1])

    @property
    def active_connections(self) -> int:
        """Client connections open (on the compiled loop and on this driver)."""
        engine = self._engine
        return len(self.connections) + (0 if engine is None else int(engine.clients))

    def stop_accepting(self) -> None:
        """Close the listening sockets; accepted connections carry on."""
        if self._server is not None:
            self._server.close()
        if self._engine is not None:
            self._engine.stop_accepting()

    def adopt(
        self,
        fd: int,
        stage: int,
        data: bytes = b"",
        request: Request | None = None,
        pick: Pick | None = None,
        head: bytes = b"",
        up_fd: int = -1,
        reused: bool = False,
        unsent: bytes = b"",
        lost: bool = False,
        timeout: bool = False,
        detail: str = "",
    ) -> None:
        """Take over a client connection (and perhaps its upstream one) from the compiled loop,
        at ``stage`` (one of the ``ADOPT_*`` values); it stays with this driver until it closes."""
        sock = socket.socket(fileno=fd)
        up_sock = socket.socket(fileno=up_fd) if up_fd >= 0 else None
        protocol = self._protocol(self)
        protocol.adopted(
            (stage, data, request, pick, head, up_sock, reused, unsent, lost, timeout, detail)
        )
        self.spawn(self._adopt(protocol, sock, up_sock, pick))

    async def _adopt(
        self,
        protocol: _ClientProtocol,
        sock: socket.socket,
        up_sock: socket.socket | None,
        pick: Pick | None,
    ) -> None:
        try:
            await asyncio.get_running_loop().connect_accepted_socket(
                lambda: cast(asyncio.Protocol, protocol), sock
            )
        except BaseException:
            sock.close()
            if up_sock is not None:
                up_sock.close()
            if pick is not None:  # begun by the loop: every pick ends exactly once
                try:
                    self.dispatcher.end(pick, 0)
                except Exception:
                    log.exception("dispatcher failed at the end of an exchange")
            raise

    def engine_drained(self) -> None:
        """The compiled loop has no client connection left while draining."""
        if not self.connections and self._all_closed is not None:
            self._all_closed.set()

    def spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        """Run ``coroutine`` as a task the server keeps (and cancels on shutdown)."""
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def connection_done(self, conn: _ClientProtocol) -> None:
        self.connections.discard(conn)
        if (
            not self.connections
            and self._all_closed is not None
            and (self._engine is None or not self._engine.clients)
        ):
            self._all_closed.set()

    async def shutdown(self, deadline: float = 10.0) -> None:
        """Stop accepting, finish in-flight exchanges within ``deadline`` seconds, then cut the rest."""
        self.draining = True
        if self._server is not None:
            self._server.close()
        self._all_closed = asyncio.Event()
        engine = self._engine
        if engine is not None:
            engine.drain()
        for conn in list(self.connections):
            conn.drain()
        if self.connections or (engine is not None and engine.clients):
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._all_closed.wait(), deadline)
        if engine is not None:
            engine.close()
            self.pool.detach(engine)
        for conn in list(self.connections):
            conn._abort()
        if self._own_pool:
            self.pool.close()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
        # Let the transports' connection_lost callbacks run before the loop may close.
        await asyncio.sleep(0)

    async def __aenter__(self) -> "ProxyServer":
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.shutdown()
