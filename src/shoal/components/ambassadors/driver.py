"""
The ambassadors' asyncio driver: the one place that touches sockets.

Theory of operation
-------------------
Clients connect to one listening address. Each client connection has its own parser
(:mod:`~shoal.components.ambassadors.resp` or :mod:`~shoal.components.ambassadors.memcache`) and a
queue of *slots*, one per request, in request order. For every request the planner
(:mod:`~shoal.components.ambassadors.planning`) says where it goes:

* a forwarded request's bytes are appended to a server connection's output and its slot to that
  connection's FIFO of requests awaiting replies;
* a split request gets one child slot per part, on each part's server, and a *gather* that merges
  the parts' replies into the parent slot when the last one arrives;
* an answered request's slot is filled at once.

Server connections are persistent and shared by every client (``server_connections`` per server,
twemproxy's default of one): requests from all clients are pipelined onto them, and since a server
answers in order, each reply fills the oldest slot of its connection's FIFO. A client's replies go
out as soon as the slot at the head of its queue is filled, so replies leave in request order while
the requests they answer run on several servers at once. Writes are batched: everything parsed
from one read is written to each server in one call, and every reply parsed from one read is
written to each client in one call.

A server connection that fails (refused, lost, a reply late by more than ``timeout``, bytes that
are not the protocol) fails every request waiting on it with an error naming the server, and
reports the failure to :class:`~shoal.components.ambassadors.servers.ServerHealth`; a server marked
down is probed again when its retry time comes and announced when it is back (log and metrics).

Back-pressure: a client with ``max_pending`` requests waiting, or whose socket is not draining,
is not read until it catches up.
"""

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, cast
from zlib import crc32

from shoal.components.ambassadors import memcache, resp
from shoal.components.ambassadors.config import AmbassadorSettings
from shoal.components.ambassadors.metrics import AmbassadorMetrics
from shoal.components.ambassadors.planning import (
    Answer,
    Forward,
    MemcachePlanner,
    RedisPlanner,
    Split,
    merge,
)
from shoal.components.ambassadors.resp import scan_commands, split_replies
from shoal.components.ambassadors.servers import (
    KeyRouter,
    ServerDown,
    ServerHealth,
    ServerSpec,
    ServerUp,
    hashed_part,
)

if TYPE_CHECKING:
    from shoal import _cyshim as cython
else:
    try:
        import cython
    except ImportError:  # no Cython: the decorators and declarations mean nothing then
        from shoal import _cyshim as cython

__all__ = ["Ambassador"]

log = logging.getLogger("shoal.ambassador")


_Slot = list
"""A reply owed to a client, in request order: ``[client, reply]``, ``reply`` None until known.

A two-item list, not an object: one is made per pipelined command, and a list is built in one
step where an instance costs a call to ``__init__`` (and it needs no attribute lookups)."""


class _PartSlot:
    """The reply to one part of a split request: it goes to the gather, not to the client."""

    __slots__ = ("gather", "index")

    def __init__(self, gather: "_Gather", index: int) -> None:
        self.gather = gather
        self.index = index


class _Gather:
    """The parts of a split request; the last reply to arrive merges them into ``slot``."""

    __slots__ = ("remaining", "replies", "slot", "split")

    def __init__(self, split: Split, slot: "list[Any]") -> None:
        self.split = split
        self.slot = slot
        self.replies: list[bytes] = [b""] * len(split.parts)
        self.remaining = len(split.parts)


def _fill(slot: "list[Any] | _PartSlot", reply: bytes, dirty: "list[_Client]") -> None:
    """Fill ``slot``; its client joins ``dirty`` (flushed at the end of the loop iteration)."""
    if type(slot) is _PartSlot:
        gather = slot.gather
        gather.replies[slot.index] = reply
        gather.remaining -= 1
        if gather.remaining:
            return
        filled = gather.slot
        filled[1] = merge(gather.split, gather.replies)
    else:
        assert type(slot) is list
        filled = slot
        filled[1] = reply
    client: _Client = filled[0]
    if not client.dirty:
        client.dirty = True
        dirty.append(client)


@cython.cclass
class _ServerConn:
    """One persistent connection to a server, with the FIFO of slots awaiting its replies.

    An asyncio protocol (the loop calls its methods by name; not a subclass of
    ``asyncio.Protocol`` so that, compiled, it is an extension type with C fields).
    """

    backend: "_Backend" = cython.declare(object, visibility="public")
    ambassador: "Ambassador" = cython.declare(object, visibility="public")
    shared: "_Shared" = cython.declare(object, visibility="public")
    memcached: bool = cython.declare(object, visibility="public")
    clock: Callable[[], float] = cython.declare(object, visibility="public")
    """The loop's clock once connected."""
    transport: asyncio.Transport | None = cython.declare(object, visibility="public")
    state: str = cython.declare(object, visibility="public")
    """closed | connecting | open"""
    out: list[bytes] = cython.declare(object, visibility="public")
    """Requests to write at the end of the loop iteration."""
    pending: deque[list[Any] | _PartSlot] = cython.declare(object, visibility="public")
    """The slots awaiting this connection's replies, oldest first."""
    kinds: deque[bool] = cython.declare(object, visibility="public")
    """memcached only, aligned with ``pending``: is the reply a retrieval (VALUE ... END)?"""
    requests: int = cython.declare(object, visibility="public")
    """Requests sent on this connection (the metrics' per-server count)."""
    buf: bytes = cython.declare(object, visibility="public")
    queued: bool = cython.declare(object, visibility="public")
    """In the ambassador's list of connections to write at the end of the loop iteration."""
    since: float = cython.declare(object, visibility="public")
    """When the oldest pending request was sent (or the last reply came): the timeout's base."""

    def __init__(self, backend: "_Backend") -> None:
        self.backend = backend
        self.ambassador = backend.ambassador
        self.shared = self.ambassador.shared
        self.memcached = backend.memcached
        self.clock = time.monotonic
        self.transport = None
        self.state = "closed"
        self.out = []
        self.pending = deque()
        self.kinds = deque()
        self.requests = 0
        self.buf = b""
        self.queued = False
        self.since = 0.0

    # -- sending

    def send(
        self, raw: bytes, slot: "list[Any] | _PartSlot | None", now: float, retrieval: bool = False
    ) -> None:
        """Queue ``raw``; ``slot`` gets the reply (None: none is owed). ``retrieval``: memcached
        get-like reply."""
        if slot is not None:
            if not self.pending:
                self.since = now
            self.pending.append(slot)
            if self.backend.memcached:
                self.kinds.append(retrieval)
        self.out.append(raw)
        if not self.queued:
            self.queued = True
            self.shared.touched.append(self)
        if self.state == "closed":
            self.state = "connecting"
            self.ambassador.spawn(self.connect())

    @cython.ccall
    def flush(self) -> None:
        self.queued = False
        if self.transport is not None and self.out:
            out = self.out
            self.transport.write(out[0] if len(out) == 1 else b"".join(out))
            self.out = []

    async def connect(self) -> None:
        spec = self.backend.spec
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.ambassador.settings.connect_timeout):
                # A protocol by its methods, not by class (see the class docstring).
                await loop.create_connection(
                    lambda: cast(asyncio.Protocol, self), spec.host, spec.port
                )
        except TimeoutError:
            self.fail(f"connect timed out after {self.ambassador.settings.connect_timeout:g}s")
        except OSError as error:
            self.fail((error.strerror or str(error)).lower())

    # -- asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport) or hasattr(transport, "write")
        self.transport = transport  # type: ignore[assignment]  # uvloop's transports quack alike
        self.state = "open"
        self.clock = self.ambassador.loop.time
        self.since = self.clock()
        self.ambassador.server_ok(self.backend)
        if self.out:
            self.flush()

    @cython.annotation_typing(True)
    def data_received(self, data: bytes) -> None:
        buf = self.buf + data if self.buf else data
        pending = self.pending
        shared: _Shared = self.shared
        dirty = shared.dirty
        was_dirty = len(dirty)
        pos = 0
        try:
            if self.memcached:
                kinds = self.kinds
                while pending:
                    end = memcache.response_end(buf, pos, kinds[0])
                    if end < 0:
                        break
                    kinds.popleft()
                    _fill(pending.popleft(), buf[pos:end], dirty)
                    pos = end
            else:
                replies: list[bytes] = []
                bad: resp.ReplyError | None = None
                try:
                    pos = split_replies(buf, 0, len(pending), replies)
                except resp.ReplyError as error:
                    bad = error  # the replies before it are still answered
                popleft = pending.popleft
                for reply in replies:
                    slot = popleft()
                    if type(slot) is list:
                        slot[1] = reply
                        client: _Client = slot[0]
                        if not client.dirty:
                            client.dirty = True
                            dirty.append(client)
                    else:
                        _fill(slot, reply, dirty)
                if bad is not None:
                    raise bad
        except (resp.ReplyError, memcache.ResponseError, ValueError) as error:
            self.fail(f"protocol error from the server: {error}")
            buf, pos = b"", 0
        else:
            if pos < len(buf) and not pending:
                self.fail("the server sent bytes nobody asked for")
                buf, pos = b"", 0
        self.buf = buf[pos:] if pos < len(buf) else b""
        if pos:
            self.since = self.clock()
            if shared.health.any_down:
                self.ambassador.server_ok(self.backend)
        if len(dirty) > was_dirty:
            shared.schedule_flush()

    def eof_received(self) -> bool | None:
        return None  # close; connection_lost follows

    def pause_writing(self) -> None:
        """The server does not read: the requests wait in the transport's buffer."""

    def resume_writing(self) -> None:
        pass

    def connection_lost(self, exc: Exception | None) -> None:
        if self.state == "closed":
            return
        if exc is None and not self.pending and not self.out:
            # An idle connection closed by the server (Redis' `timeout`, a restart between
            # requests) failed nothing: reconnect on the next request without counting it.
            self.state = "closed"
            self.transport = None
            self.buf = b""
            return
        reason = "connection lost" if exc is None else f"connection lost: {exc}"
        self.fail(reason)

    def fail(self, reason: str) -> None:
        """Fail every waiting request and close; the next request (or the probe) reconnects."""
        self.state = "closed"
        transport, self.transport = self.transport, None
        if transport is not None:
            transport.abort()
        self.out = []
        self.buf = b""
        self.ambassador.server_failed(self.backend, reason)
        pending, self.pending = self.pending, deque()
        self.kinds = deque()
        error = self.backend.error()
        dirty = self.shared.dirty
        for slot in pending:
            _fill(slot, error, dirty)
        self.ambassador.metrics.server_errors[self.backend.spec.key] += len(pending)
        if dirty:
            self.shared.schedule_flush()

    def close(self) -> None:
        self.state = "closed"
        if self.transport is not None:
            self.transport.close()
            self.transport = None


class _Backend:
    """A server and its connections."""

    __slots__ = ("ambassador", "conns", "memcached", "next", "spec")

    def __init__(self, ambassador: "Ambassador", spec: ServerSpec, connections: int) -> None:
        self.ambassador = ambassador
        self.spec = spec
        self.memcached = ambassador.settings.protocol == "memcached"
        self.conns = [_ServerConn(self) for _ in range(connections)]
        self.next = 0

    def conn(self) -> _ServerConn:
        conns = self.conns
        if len(conns) == 1:
            return conns[0]
        self.next = (self.next + 1) % len(conns)
        return conns[self.next]

    def error(self) -> bytes:
        return self.ambassador.planner.unavailable(self.spec.key)


@cython.cclass
class _Client:
    """One client connection: parse, plan, dispatch; replies written in request order.

    An asyncio protocol, like :class:`_ServerConn` (an extension type when compiled).
    """

    ambassador: "Ambassador" = cython.declare(object, visibility="public")
    shared: "_Shared" = cython.declare(object, visibility="public")
    transport: asyncio.Transport | None = cython.declare(object, visibility="public")
    slots: deque[list[Any]] = cython.declare(object, visibility="public")
    """A ``[client, reply]`` slot per request, in request order."""
    dirty: bool = cython.declare(object, visibility="public")
    """In the ambassador's list of clients to write to at the end of the loop iteration."""
    closing: bool = cython.declare(object, visibility="public")
    paused: bool = cython.declare(object, visibility="public")
    write_paused: bool = cython.declare(object, visibility="public")
    max_pending: int = cython.declare(object, visibility="public")
    clock: Callable[[], float] = cython.declare(object, visibility="public")
    memcached: bool = cython.declare(object, visibility="public")
    rparser: resp.RequestParser = cython.declare(object, visibility="public")
    """The Redis parser (memcached clients never feed it)."""
    mparser: memcache.RequestParser = cython.declare(object, visibility="public")
    """The memcached parser (Redis clients never feed it)."""
    max_args: int = cython.declare(object, visibility="public")
    max_bulk: int = cython.declare(object, visibility="public")
    """The Redis parser's limits, for the fast path run on a fresh read."""

    def __init__(self, ambassador: "Ambassador") -> None:
        self.ambassador = ambassador
        self.shared = ambassador.shared
        self.transport = None
        self.slots = deque()
        self.dirty = False
        self.closing = False
        self.paused = False
        self.write_paused = False
        settings = ambassador.settings
        self.max_pending = settings.max_pending
        self.clock = ambassador.loop.time  # looked up once: it runs once per read
        self.memcached = settings.protocol == "memcached"
        limit = settings.value_limit()
        self.mparser = memcache.RequestParser(max_value_bytes=limit)
        self.rparser = resp.RequestParser(max_bulk_bytes=limit, scan=scan_commands)
        self.max_args = self.rparser.max_args
        self.max_bulk = self.rparser.max_bulk_bytes

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's transports quack alike
        self.ambassador.clients.add(self)
        self.ambassador.metrics.clients_total += 1

    def eof_received(self) -> bool | None:
        return None  # close; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.ambassador.clients.discard(self)

    def pause_writing(self) -> None:
        self.write_paused = True
        self._pause()

    def resume_writing(self) -> None:
        self.write_paused = False
        self._resume()

    def _pause(self) -> None:
        if not self.paused and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()

    def _resume(self) -> None:
        if (
            self.paused
            and not self.write_paused
            and len(self.slots) <= self.max_pending // 2
            and self.transport is not None
        ):
            self.paused = False
            self.transport.resume_reading()

    @cython.annotation_typing(True)
    def data_received(self, data: bytes) -> None:
        if self.closing:
            return
        shared: _Shared = self.shared
        now = self.clock()
        slots = self.slots
        backends = shared.backends
        metrics = shared.metrics
        if self.memcached:
            mplan = self.ambassador.mc_planner
            mc_events = self.mparser.feed(data)
            metrics.requests += len(mc_events)
            for event in mc_events:
                if isinstance(event, memcache.Request):
                    plan = mplan.plan(event, now)
                else:
                    metrics.bad_requests += 1
                    slots.append([self, event.reply])
                    if event.fatal:
                        self.closing = True
                        break
                    continue
                if self._dispatch(plan, now, backends):
                    break
        else:
            parser = self.rparser
            if parser.clean and data[:1] == b"*":
                # The parser holds nothing: ordinary commands are taken straight from this
                # read (the same fast path feed() starts with, without its bookkeeping).
                events: list[resp.Command | resp.BadRequest] = []
                pos = scan_commands(data, 0, events, self.max_args, self.max_bulk)
                if pos < len(data):
                    events.extend(parser.feed(data[pos:] if pos else data))
            else:
                events = parser.feed(data)
            metrics.requests += len(events)
            # The router's hot path inlined (KeyRouter.usable_owner for the commands of
            # RedisPlanner.single, names in either case): one Maglev table index per command.
            single = shared.single
            owners = shared.owners
            names = shared.names
            size = len(owners)
            lookup = shared.lookup
            tag, tag_char = shared.tag, shared.tag_char
            health = shared.health
            first = shared.first
            touched = shared.touched
            bad_request = resp.BadRequest
            for revent in events:
                if isinstance(revent, bad_request):
                    metrics.bad_requests += 1
                    slots.append([self, revent.reply])
                    if revent.fatal:
                        self.closing = True
                        break
                    continue
                args, raw = revent
                if len(args) > 1 and (args[0] in single or args[0].upper() in single):
                    key = args[1]
                    if tag_char >= 0 and tag_char in key:
                        key = hashed_part(key, tag)
                    server = names[owners[crc32(key) % size]] if size else lookup(key)
                    if not health.any_down or health.available(server, now):
                        conn: _ServerConn = first[server] if first else backends[server].conn()
                        conn.requests += 1
                        slot = [self, None]
                        slots.append(slot)
                        if conn.state == "open":
                            # conn.send, inlined: this runs once per pipelined command.
                            pending = conn.pending
                            if not pending:
                                conn.since = now
                            pending.append(slot)
                            conn.out.append(raw)
                            if not conn.queued:
                                conn.queued = True
                                touched.append(conn)
                        else:
                            conn.send(raw, slot, now)
                        continue
                plan = self.ambassador.redis_planner.plan(args, raw, now)
                if self._dispatch(plan, now, backends):
                    break
        if slots and (slots[0][1] is not None or self.closing) and not self.dirty:
            self.dirty = True
            shared.dirty.append(self)
        if shared.touched or shared.dirty:
            shared.schedule_flush()
        if len(slots) > self.max_pending:
            self._pause()

    def _dispatch(
        self, plan: Forward | Split | Answer, now: float, backends: dict[str, _Backend]
    ) -> bool:
        """Carry out one plan; True when the connection is to close after the replies so far."""
        if type(plan) is Forward:
            conn = backends[plan.server].conn()
            conn.requests += 1
            if plan.reply:
                slot: list[Any] = [self, None]
                self.slots.append(slot)
                conn.send(plan.raw, slot, now, plan.retrieval)
            else:
                conn.send(plan.raw, None, now)
            return False
        if type(plan) is Split:
            parent: list[Any] = [self, None]
            self.slots.append(parent)
            gather = _Gather(plan, parent)
            for index, part in enumerate(plan.parts):
                conn = backends[part.server].conn()
                conn.requests += 1
                conn.send(part.raw, _PartSlot(gather, index), now, self.memcached)
            self.ambassador.metrics.splits += 1
            return False
        assert type(plan) is Answer
        self.ambassador.metrics.answered += 1
        self.slots.append([self, plan.reply])
        if plan.close:
            self.closing = True
            return True
        return False

    @cython.ccall
    @cython.annotation_typing(True)
    def flush(self) -> None:
        """Write every reply at the head of the queue that is known, in one write."""
        self.dirty = False
        slots = self.slots
        if slots and slots[0][1] is not None:
            out: list[bytes] = []
            popleft = slots.popleft
            while slots and slots[0][1] is not None:
                out.append(popleft()[1])
            if self.transport is not None:
                self.transport.write(out[0] if len(out) == 1 else b"".join(out))
            if self.paused:
                self._resume()
        if self.closing and not slots and self.transport is not None:
            self.transport.close()


@cython.cclass
class _Shared:
    """What every connection's hot path reads, in one place (C fields when compiled), and the
    end-of-iteration flush.

    Writes wait for the end of the loop iteration: then the requests read from every client that
    was readable go to each server in one write (one syscall, one read for the server), and the
    replies to a client's pipeline, coming from several servers, go back in one.
    """

    backends: dict[str, "_Backend"] = cython.declare(object, visibility="public")
    metrics: AmbassadorMetrics = cython.declare(object, visibility="public")
    health: ServerHealth = cython.declare(object, visibility="public")
    first: dict[str, _ServerConn] = cython.declare(object, visibility="public")
    """With one connection per server, each server's connection (the hot path skips conn())."""
    single: frozenset[bytes] = cython.declare(object, visibility="public")
    """The commands of RedisPlanner.single in upper and lower case (others are upper-cased)."""
    owners: bytes = cython.declare(object, visibility="public")
    """Maglev's table as one byte per slot, the index of its server in ``names`` (64 KiB
    stays in cache where the table of references does not); empty with other hashers."""
    names: tuple[str, ...] = cython.declare(object, visibility="public")
    lookup: Callable[[bytes], str] = cython.declare(object, visibility="public")
    tag: bytes = cython.declare(object, visibility="public")
    tag_char: int = cython.declare(object, visibility="public")
    """The tag's first byte as an int, -1 when tags are off (``int in bytes`` is a memchr,
    where ``bytes in bytes`` first tries the argument as an int and builds an exception)."""
    touched: list[_ServerConn] = cython.declare(object, visibility="public")
    """Server connections with requests to write at the end of this loop iteration."""
    dirty: list[_Client] = cython.declare(object, visibility="public")
    """Clients with replies to write at the end of this loop iteration."""
    scheduled: bool = cython.declare(object, visibility="public")
    call_soon: Callable[[Callable[[], None]], object] = cython.declare(object, visibility="public")

    def __init__(
        self, router: KeyRouter, single: frozenset[bytes], metrics: AmbassadorMetrics
    ) -> None:
        self.metrics = metrics
        self.backends = {}
        self.first = {}
        self.health = router.health
        self.single = frozenset(spelled for name in single for spelled in (name, name.lower()))
        names = tuple(sorted(set(router.table)))
        self.names = names
        index = {name: at for at, name in enumerate(names)}
        self.owners = bytes(index[name] for name in router.table) if len(names) < 256 else b""
        self.lookup = router.lookup
        self.tag = router.tag
        self.tag_char = router.tag_open[0] if router.tag_open else -1
        self.touched = []
        self.dirty = []
        self.scheduled = False

    def attach(self, backends: dict[str, "_Backend"]) -> None:
        """The servers' connections (made after this, since each connection holds it)."""
        self.backends = backends
        self.first = (
            {key: backend.conns[0] for key, backend in backends.items()}
            if all(len(backend.conns) == 1 for backend in backends.values())
            else {}
        )

    @cython.ccall
    def schedule_flush(self) -> None:
        """Run :meth:`flush` at the end of this loop iteration (once, however often asked)."""
        if not self.scheduled:
            self.scheduled = True
            self.call_soon(self.flush)

    @cython.annotation_typing(True)
    def flush(self) -> None:
        """Write what every client sent this loop iteration, one write per server connection,
        and every reply that became known, one write per client."""
        self.scheduled = False
        touched = self.touched
        conn: _ServerConn
        if touched:
            for conn in touched:
                conn.flush()
            touched.clear()
        dirty = self.dirty
        client: _Client
        if dirty:
            clients = dirty[:]
            dirty.clear()
            for client in clients:
                client.flush()


class Ambassador:
    """A Redis or memcached ambassador: ``start``, then ``address``; ``shutdown`` to stop.

    >>> ambassador = Ambassador([ServerSpec("127.0.0.1", 7001)], AmbassadorSettings())
    """

    def __init__(
        self, servers: list[ServerSpec], settings: AmbassadorSettings | None = None
    ) -> None:
        self.settings = settings = settings or AmbassadorSettings()
        self.router = KeyRouter(
            servers,
            algorithm=settings.algorithm,
            hash_tag=settings.hash_tag,
            health=settings.health,
        )
        by_key = {spec.key: spec for spec in servers}
        self.redis_planner = RedisPlanner(self.router, by_key)
        self.mc_planner = MemcachePlanner(self.router, by_key)
        self.planner: RedisPlanner | MemcachePlanner = (
            self.mc_planner if settings.protocol == "memcached" else self.redis_planner
        )
        self.metrics = AmbassadorMetrics(
            protocol=settings.protocol, servers={s.key: s.address for s in servers}
        )
        self.shared = _Shared(self.router, self.redis_planner.single_names, self.metrics)
        self.backends = {
            spec.key: _Backend(self, spec, settings.server_connections) for spec in servers
        }
        self.shared.attach(self.backends)
        self.clients: set[_Client] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._sweeper: asyncio.TimerHandle | None = None
        self._server: asyncio.Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        assert self._loop is not None, "start() first"
        return self._loop

    @property
    def address(self) -> tuple[str, int]:
        """The bound ``(host, port)``."""
        assert self._server is not None, "start() first"
        host, port = self._server.sockets[0].getsockname()[:2]
        return host, port

    async def start(
        self, host: str = "127.0.0.1", port: int = 0, *, reuse_port: bool = False
    ) -> None:
        """Listen on ``host:port``; ``reuse_port``: share it with other processes (workers)."""
        self._loop = asyncio.get_running_loop()
        self.shared.call_soon = self._loop.call_soon
        self._server = await self._loop.create_server(
            lambda: cast(asyncio.Protocol, _Client(self)),
            host,
            port,
            backlog=self.settings.backlog,
            reuse_port=reuse_port or None,
        )
        self._schedule_sweep()

    def render_metrics(self) -> str:
        """The Prometheus text exposition of this ambassador's counters."""
        for key, backend in self.backends.items():
            # Counted per connection on the hot path (an int, not a Counter lookup).
            self.metrics.server_requests[key] = sum(conn.requests for conn in backend.conns)
        return self.metrics.render(len(self.clients))

    def spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        """Run ``coroutine`` in the background, keeping a reference until it ends."""
        task = self.loop.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- health

    def server_failed(self, backend: _Backend, reason: str) -> None:
        key = backend.spec.key
        self.metrics.server_failures[key] += 1
        event = self.router.health.failed(key, reason, self.loop.time())
        if event is not None:
            self._on_down(backend, event)

    def server_ok(self, backend: _Backend) -> None:
        event = self.router.health.succeeded(backend.spec.key)
        if event is not None:
            self._on_up(event)

    def _on_down(self, backend: _Backend, event: ServerDown) -> None:
        self.metrics.server_up[event.server] = 0
        self.metrics.server_downs[event.server] += 1
        action = (
            "its keys go to the next server"
            if event.ejected
            else "requests for its keys get an error"
        )
        log.warning(
            "server %s (%s) is down: %s; %s; retrying in %.1fs",
            event.server,
            backend.spec.address,
            event.reason,
            action,
            event.until - self.loop.time(),
        )
        old = self._timers.pop(event.server, None)
        if old is not None:
            old.cancel()
        self._timers[event.server] = self.loop.call_at(event.until, self._probe, backend)

    def _on_up(self, event: ServerUp) -> None:
        self.metrics.server_up[event.server] = 1
        timer = self._timers.pop(event.server, None)
        if timer is not None:
            timer.cancel()
        log.warning("server %s is back", event.server)

    def _probe(self, backend: _Backend) -> None:
        self._timers.pop(backend.spec.key, None)
        conn = backend.conns[0]
        if conn.state == "closed":
            conn.state = "connecting"
            self.spawn(conn.connect())

    def _schedule_sweep(self) -> None:
        interval = max(0.05, min(1.0, self.settings.timeout / 4))
        self._sweeper = self.loop.call_later(interval, self._sweep)

    def _sweep(self) -> None:
        now = self.loop.time()
        limit = self.settings.timeout
        for backend in self.backends.values():
            for conn in backend.conns:
                if conn.pending and conn.state == "open" and now - conn.since > limit:
                    conn.fail(f"no reply within {limit:g}s")
        self._schedule_sweep()

    # -- stopping

    async def shutdown(self, grace: float = 5.0) -> None:
        """Stop accepting, let replies owed to clients arrive (up to ``grace`` s), close all."""
        if self._server is not None:
            self._server.close()
        deadline = self.loop.time() + grace
        # Polled: replies land from many server connections; the wait is bounded and brief.
        while any(c.slots for c in self.clients) and self.loop.time() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        for client in list(self.clients):
            if client.transport is not None:
                client.transport.close()
        if self._sweeper is not None:
            self._sweeper.cancel()
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        for backend in self.backends.values():
            for conn in backend.conns:
                conn.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 1.0)
