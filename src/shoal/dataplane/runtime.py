"""
The embeddable proxy: listeners, routes and health from a :class:`RuntimeConfig`, swapped live.

Use
---
::

    from shoal.dataplane.runtime import (
        Proxy, RuntimeConfig, ListenerConfig, RouteConfig, BackendConfig, ShardConfig, HashKey,
    )
    from shoal.dataplane.health import ActiveCheckSettings

    config = RuntimeConfig(
        listeners=(
            ListenerConfig(
                name="web:80", host="127.0.10.1", port=80,
                routes=(RouteConfig(name="web", backends=(BackendConfig("10.0.0.5:8080"),)),),
            ),
        ),
        admin=("127.0.0.1", 9901),
    )
    proxy = Proxy(config)              # validates; ValueError lists every problem
    await proxy.start()                # binds every listener (and the admin one)
    await proxy.apply(new_config)      # atomic swap while serving
    await proxy.shutdown(deadline=10)  # drain, then cut what is left

:meth:`Proxy.apply` validates and builds the whole new configuration before anything changes; a
bad one raises ValueError (or OSError when a new listener cannot bind) and the running one stays.
Then, with no ``await`` in between (so no request sees half of it):

* listeners are matched by bind address (``host:port``; by name when the port is 0): a kept one
  keeps its socket and connections and gets the new routes; a new one is bound first; a removed
  one stops accepting and drains in the background (idle client connections close, in-flight
  requests finish with ``Connection: close``, within ``drain_timeout``);
* routes are matched by listener and name: a kept route keeps its health state, ejection
  history, balancing state, limiter queue and counters, so an ``apply`` that only changes
  endpoints costs a dictionary rebuild, not a health reset or a hash table rebuild;
* a removed endpoint drains: no new request goes to it, requests in flight finish, its idle
  pooled connections are closed at once and busy ones when their exchange ends.

The cluster's service proxy calls ``apply`` on every endpoints change; nothing in it drops a
request. Requests that began before the swap finish on the endpoints they were given; their
retries go to the new configuration's endpoints.

Health checks run in one task: each route with ``health`` gets its endpoints checked (HTTP GET
of the path, or a TCP connect) every ``interval``; results go through
:class:`~shoal.dataplane.health.ActiveHealth`. Passive ejection, retries and pending limits are
per request (:mod:`shoal.dataplane.dispatch`).

``/healthz`` (200 once started, 503 while shutting down) and ``/metrics`` (Prometheus text,
:meth:`Proxy.metrics_text`) are served on the admin address. An :class:`AccessLog` writes one
line per exchange (combined-like or JSON).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from typing import Any, Final, TextIO

from shoal.dataplane.config import (
    BackendConfig,
    HashKey,
    ListenerConfig,
    RouteConfig,
    RuntimeConfig,
    ShardConfig,
)
from shoal.dataplane.dispatch import (
    LATENCY_BUCKETS,
    ListenerDispatcher,
    RequestPick,
    RouteState,
)
from shoal.dataplane.driver import Address, ProxyServer, ProxySettings, new_pool
from shoal.dataplane.health import ActiveCheckSettings, CheckResult, HealthState
from shoal.dataplane.metrics import CONTENT_TYPE, Exposition
from shoal.dataplane.native import compiled

__all__ = [
    "ACCESS_LOG_FORMATS",
    "AccessLog",
    "BackendConfig",
    "HashKey",
    "ListenerConfig",
    "Proxy",
    "RouteConfig",
    "RuntimeConfig",
    "ShardConfig",
]

log = logging.getLogger("shoal.dataplane.proxy")

ACCESS_LOG_FORMATS: Final = ("combined", "json")


class AccessLog:
    """One line per exchange on ``stream``: ``combined`` (nginx-like) or ``json``.

    combined: ``client - - [time] "METHOD target HTTP/x" status - "referer" "user-agent"
    upstream=host:port route=name shard=name duration=seconds``. The body size is not tracked
    (``-``).
    """

    def __init__(self, stream: TextIO, fmt: str = "combined") -> None:
        if fmt not in ACCESS_LOG_FORMATS:
            raise ValueError(f"access log format must be one of {list(ACCESS_LOG_FORMATS)}")
        self._stream = stream
        self._json = fmt == "json"

    def write(self, pick: RequestPick, status: int, duration: float) -> None:
        request = pick.request
        referer = agent = ""
        for name, value in request.headers:
            lowered = name.lower()
            if lowered == b"referer":
                referer = value.decode("latin-1")
            elif lowered == b"user-agent":
                agent = value.decode("latin-1")
        host, port = pick.address
        upstream = f"{host}:{port}" if host else "-"
        method = request.method.decode("latin-1")
        target = request.target.decode("latin-1")
        if self._json:
            line = json.dumps(
                {
                    "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                    "client": pick.peer,
                    "method": method,
                    "target": target,
                    "version": request.http_version.decode("latin-1"),
                    "status": status,
                    "referer": referer,
                    "userAgent": agent,
                    "upstream": upstream,
                    "route": pick.route.name,
                    "shard": pick.shard,
                    "tries": pick.tries + 1,
                    "duration": round(duration, 6),
                },
                separators=(",", ":"),
            )
        else:
            stamp = time.strftime("%d/%b/%Y:%H:%M:%S %z")
            line = (
                f'{pick.peer} - - [{stamp}] "{method} {target} HTTP/'
                f'{request.http_version.decode("latin-1")}" {status} - '
                f'"{referer or "-"}" "{agent or "-"}" upstream={upstream} '
                f"route={pick.route.name} shard={pick.shard or '-'} duration={duration:.6f}"
            )
        try:
            self._stream.write(line + "\n")
            self._stream.flush()
        except (OSError, ValueError) as error:  # a closed or full log never stops the proxy
            log.warning("access log write failed: %s", error)


@dataclass(slots=True)
class _Listener:
    config: ListenerConfig
    server: ProxyServer
    dispatcher: ListenerDispatcher
    routes: dict[str, RouteState]


def _listener_key(config: ListenerConfig) -> tuple[str, str, int]:
    if config.port == 0:  # any free port: the same listener is the same name on the same host
        return ("name", f"{config.name}@{config.host}", 0)
    return ("bind", config.host, config.port)


class _Hooks:
    """The loop's services for the route states (see :class:`shoal.dataplane.dispatch.Hooks`)."""

    def __init__(self, proxy: Proxy, loop: asyncio.AbstractEventLoop) -> None:
        self._proxy = proxy
        self._loop = loop
        self.time: Callable[[], float] = time.monotonic
        """The loop's clock, read twice per request: ``time.monotonic`` is asyncio's own
        ``loop.time()``, and uvloop's is the same monotonic clock kept in whole milliseconds
        behind it (never ahead), so a deadline read here and given to ``call_at`` fires no
        earlier than it says; it costs a third of uvloop's ``loop.time()`` and keeps the
        latency histograms finer than a millisecond."""
        self.timers: set[asyncio.TimerHandle] = set()

    def call_soon(self, callback: Callable[[], None]) -> None:
        self._loop.call_soon(callback)

    def call_at(self, when: float, callback: Callable[[], None]) -> None:
        timers = self.timers
        handle: asyncio.TimerHandle | None = None

        def fire() -> None:
            if handle is not None:
                timers.discard(handle)
            callback()

        handle = self._loop.call_at(when, fire)
        timers.add(handle)

    @property
    def logging(self) -> bool:
        return self._proxy.access_log is not None

    def request_done(self, pick: RequestPick, status: int, duration: float) -> None:
        access_log = self._proxy.access_log
        if access_log is not None:
            access_log.write(pick, status, duration)

    def health_changed(self) -> None:
        self._proxy._wake.set()


class Proxy:
    """Listeners with routes, live-reconfigurable; see the module docstring."""

    def __init__(
        self,
        config: RuntimeConfig,
        settings: ProxySettings | None = None,
        *,
        access_log: AccessLog | None = None,
        drain_timeout: float = 30.0,
        reuse_port: bool = False,
    ) -> None:
        config.validate()
        self.config = config
        """The configuration serving now."""
        self.settings = settings or ProxySettings()
        self.access_log = access_log
        self.drain_timeout = drain_timeout
        """Seconds a removed listener's connections get to finish."""
        self.reuse_port = reuse_port
        """Bind with SO_REUSEPORT (worker processes sharing ports)."""
        self.pool = new_pool(self.settings)
        """Upstream keep-alive connections, shared by every listener."""
        native = compiled("dispatch", self.settings.implementation)
        # The compiled build of dispatch.py (same source) when chosen: see shoal.dataplane.native.
        self._route_state: type[RouteState] = RouteState if native is None else native.RouteState
        self._dispatcher: type[ListenerDispatcher] = (
            ListenerDispatcher if native is None else native.ListenerDispatcher
        )
        self._listeners: dict[tuple[str, str, int], _Listener] = {}
        self._admin: asyncio.Server | None = None
        self._admin_address: tuple[str, int] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._draining: set[ProxyServer] = set()
        self._wake = asyncio.Event()
        self._hooks: _Hooks | None = None
        self._started = False
        self._stopping = False
        self._lock = asyncio.Lock()
        self.applied = 0
        """Configurations applied since start (the first one included)."""

    # --- lifecycle ---

    async def start(self) -> None:
        """Bind every listener and the admin address, and start health checking."""
        if self._started:
            raise RuntimeError("the proxy is already started")
        loop = asyncio.get_running_loop()
        self._hooks = _Hooks(self, loop)
        self._started = True
        try:
            await self._apply(self.config)
        except BaseException:
            await self.shutdown(0)
            raise
        self._spawn(self._health_loop())

    async def apply(self, config: RuntimeConfig) -> None:
        """Swap to ``config`` while serving (see the module docstring)."""
        if not self._started or self._stopping:
            raise RuntimeError("apply needs a started proxy that is not shutting down")
        config.validate()
        await self._apply(config)

    async def shutdown(self, deadline: float = 10.0) -> None:
        """Stop accepting everywhere, let in-flight requests finish within ``deadline`` seconds,
        cut the rest, close upstream connections and stop every task."""
        self._stopping = True
        servers = [listener.server for listener in self._listeners.values()]
        servers.extend(self._draining)
        self._listeners.clear()
        if servers:
            await asyncio.gather(*(server.shutdown(deadline) for server in servers))
        if self._admin is not None:
            self._admin.close()
        self.pool.close()
        if self._hooks is not None:
            for handle in self._hooks.timers:
                handle.cancel()
            self._hooks.timers.clear()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        if self._admin is not None:
            await self._admin.wait_closed()
            self._admin = None
        await asyncio.sleep(0)

    async def __aenter__(self) -> Proxy:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.shutdown()

    # --- views ---

    def address(self, listener: str) -> Address:
        """The bound ``(host, port)`` of the listener named ``listener``."""
        for entry in self._listeners.values():
            if entry.config.name == listener:
                return entry.server.address
        raise KeyError(f"no listener named {listener!r}")

    @property
    def admin_address(self) -> Address | None:
        """The admin listener's bound ``(host, port)``."""
        if self._admin is None or not self._admin.sockets:
            return None
        name = self._admin.sockets[0].getsockname()
        return str(name[0]), int(name[1])

    def routes(self) -> Iterator[RouteState]:
        """Every route state serving now."""
        for entry in self._listeners.values():
            yield from entry.routes.values()

    def route(self, listener: str, name: str) -> RouteState:
        """The state of route ``name`` of listener ``listener``."""
        for entry in self._listeners.values():
            if entry.config.name == listener and name in entry.routes:
                return entry.routes[name]
        raise KeyError(f"no route {name!r} on listener {listener!r}")

    # --- applying ---

    async def _apply(self, config: RuntimeConfig) -> None:
        async with self._lock:
            hooks = self._hooks
            assert hooks is not None
            wanted = {_listener_key(listener): listener for listener in config.listeners}
            # Build every route state first: nothing changes if any of them fails.
            built: dict[tuple[str, str, int], dict[str, RouteState]] = {}
            for key, listener in wanted.items():
                old = self._listeners.get(key)
                states: dict[str, RouteState] = {}
                for route in listener.routes:
                    previous = old.routes.get(route.name) if old is not None else None
                    if (
                        previous is not None
                        and previous.config == route
                        and previous.listener == listener.name
                    ):
                        # Unchanged (most routes, when one Service's endpoints change): keep it.
                        states[route.name] = previous
                        continue
                    states[route.name] = self._route_state(listener.name, route, hooks, previous)
                built[key] = states
            # Bind new listeners (before anything is removed, so a failure changes nothing).
            added: dict[tuple[str, str, int], _Listener] = {}
            removed = [key for key in self._listeners if key not in wanted]
            try:
                for key, listener in wanted.items():
                    if key not in self._listeners:
                        added[key] = await self._bind(listener, built[key], removed)
            except BaseException:
                for fresh in added.values():
                    await fresh.server.shutdown(0)
                raise
            # The swap: no await from here to the end of the block.
            for key, listener in wanted.items():
                entry = self._listeners.get(key)
                if entry is None:
                    self._listeners[key] = added[key]
                    continue
                entry.config = listener
                entry.routes = built[key]
                entry.dispatcher.install(built[key].values())
            gone = [self._listeners.pop(key) for key in removed]
            live = {a for states in built.values() for s in states.values() for a in s.addresses}
            self.pool.retain(frozenset(live))
            self.config = config
            self.applied += 1
            self._wake.set()
            for entry in gone:
                self._spawn(self._drain(entry.server))
            await self._apply_admin(config.admin)

    async def _bind(
        self,
        listener: ListenerConfig,
        routes: dict[str, RouteState],
        removed: list[tuple[str, str, int]],
    ) -> _Listener:
        dispatcher = self._dispatcher(routes.values())
        server = ProxyServer(dispatcher, self.settings, pool=self.pool)
        try:
            await server.start(listener.host, listener.port, reuse_port=self.reuse_port)
        except OSError:
            # The address may be held by a listener this configuration removes: free it first.
            freed = [key for key in removed if key[0] == "bind" and key[2] == listener.port]
            if not freed:
                raise
            for key in freed:
                entry = self._listeners[key]
                entry.server.stop_accepting()
            await server.start(listener.host, listener.port, reuse_port=self.reuse_port)
        return _Listener(listener, server, dispatcher, routes)

    async def _apply_admin(self, admin: tuple[str, int] | None) -> None:
        if admin == self._admin_address and (admin is None or self._admin is not None):
            return
        if self._admin is not None:
            self._admin.close()
            await self._admin.wait_closed()
            self._admin = None
        self._admin_address = admin
        if admin is not None:
            # With worker processes every one serves the admin port (SO_REUSEPORT): a scrape
            # sees the counters of the worker the kernel hands the connection to.
            self._admin = await asyncio.start_server(
                self._serve_admin, admin[0], admin[1], reuse_port=self.reuse_port or None
            )

    async def _drain(self, server: ProxyServer) -> None:
        self._draining.add(server)
        try:
            await server.shutdown(self.drain_timeout)
        finally:
            self._draining.discard(server)

    # --- tasks ---

    def _spawn(self, coroutine: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- active health checks ---

    async def _health_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            now = loop.time()
            deadline: float | None = None
            for route in list(self.routes()):
                active = route.active
                if active is None:
                    continue
                for address in active.due(now):
                    self._spawn(self._check(route, address, active.settings))
                following = active.next_deadline()
                if following is not None and (deadline is None or following < deadline):
                    deadline = following
            self._wake.clear()
            timeout = None if deadline is None else max(0.0, deadline - loop.time())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)

    async def _check(self, route: RouteState, address: str, settings: ActiveCheckSettings) -> None:
        host, _, port = address.rpartition(":")
        host = host.strip("[]")
        try:
            result = await asyncio.wait_for(
                _probe(host, int(port), address, settings), settings.timeout
            )
        except TimeoutError:
            result = CheckResult(False, "timed out")
        except OSError as error:
            result = CheckResult(False, error.strerror or type(error).__name__)
        current = route.latest()
        active = current.active
        if active is None:
            return
        loop = asyncio.get_running_loop()
        transition = active.record(address, result, loop.time())
        current.check_result(transition, address, result.passed)
        self._wake.set()

    # --- admin ---

    async def _serve_admin(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10.0)
            parts = head.split(b"\r\n", 1)[0].split(b" ")
            method = parts[0] if parts else b""
            path = parts[1].split(b"?", 1)[0] if len(parts) > 1 else b""
            if method not in (b"GET", b"HEAD"):
                status, ctype, body = 405, "text/plain", b"only GET and HEAD\n"
            elif path == b"/healthz":
                if self._stopping:
                    status, ctype, body = 503, "text/plain", b"shutting down\n"
                else:
                    status, ctype, body = 200, "text/plain", b"ok\n"
            elif path == b"/metrics":
                status, ctype, body = 200, CONTENT_TYPE, self.metrics_text().encode()
            else:
                status, ctype, body = 404, "text/plain", b"try /healthz or /metrics\n"
            reason = {200: b"OK", 404: b"Not Found", 405: b"Method Not Allowed"}.get(
                status, b"Service Unavailable"
            )
            writer.write(
                b"HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n"
                b"Connection: close\r\n\r\n" % (status, reason, ctype.encode(), len(body))
            )
            if method != b"HEAD":
                writer.write(body)
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError):
            pass
        finally:
            writer.close()
            if task is not None:
                self._tasks.discard(task)

    def metrics_text(self) -> str:
        """The Prometheus text exposition of every counter (see docs/dataplane-proxy.md)."""
        out = Exposition()
        routes = list(self.routes())

        def per_endpoint() -> Iterator[tuple[dict[str, str], RouteState, str, str, Any]]:
            for route in routes:
                for shard, by_address in route.stats.items():
                    for address, stats in by_address.items():
                        labels = {
                            "listener": route.listener,
                            "route": route.name,
                            "shard": shard,
                            "endpoint": address,
                        }
                        yield labels, route, shard, address, stats

        classes = ("none", "1xx", "2xx", "3xx", "4xx", "5xx")
        out.counter(
            "shoal_proxy_requests_total",
            "Requests answered, by route, shard, endpoint and status class (none: no status).",
            (
                ({**labels, "code": classes[index]}, count)
                for labels, _, _, _, stats in per_endpoint()
                for index, count in enumerate(stats.response_counts())
                if count or index in (2, 5)
            ),
        )
        out.counter(
            "shoal_proxy_upstream_connect_errors_total",
            "Attempts whose upstream connection could not be opened.",
            ((labels, stats.connect_errors) for labels, _, _, _, stats in per_endpoint()),
        )
        out.counter(
            "shoal_proxy_upstream_resets_total",
            "Attempts whose upstream connection closed before a response.",
            ((labels, stats.resets) for labels, _, _, _, stats in per_endpoint()),
        )
        out.counter(
            "shoal_proxy_ejections_total",
            "Times an endpoint was ejected by passive outlier detection.",
            ((labels, stats.ejections) for labels, _, _, _, stats in per_endpoint()),
        )
        out.gauge(
            "shoal_proxy_endpoint_in_flight",
            "Requests in flight to an endpoint.",
            (
                (labels, _in_flight(route, address))
                for labels, route, _, address, _ in per_endpoint()
            ),
        )
        out.gauge(
            "shoal_proxy_endpoint_up",
            "1 when the endpoint takes requests (passing checks, not ejected), else 0.",
            (
                (labels, 0 if address in route.excluded else 1)
                for labels, route, _, address, _ in per_endpoint()
            ),
        )
        out.gauge(
            "shoal_proxy_endpoint_healthy",
            "Active check state: 1 healthy, 0 unhealthy (only for routes with health checks).",
            (
                (labels, 1 if _healthy(route, address) else 0)
                for labels, route, _, address, _ in per_endpoint()
                if route.active is not None
            ),
        )
        out.counter(
            "shoal_proxy_retries_total",
            "Requests sent again to another endpoint.",
            (({"listener": r.listener, "route": r.name}, r.retries) for r in routes),
        )
        out.counter(
            "shoal_proxy_unavailable_total",
            "Requests that found no endpoint to go to (answered 503).",
            (({"listener": r.listener, "route": r.name}, r.unavailable) for r in routes),
        )
        out.counter(
            "shoal_proxy_shard_requests_total",
            "Requests routed to a shard, by result (routed, unavailable, failed).",
            (
                (
                    {"listener": r.listener, "route": r.name, "shard": name, "result": result},
                    value,
                )
                for r in routes
                if r.router is not None
                for name, counters in r.router.counters.items()
                if name in r.router.table.shards
                for result, value in (
                    ("routed", counters.routed),
                    ("unavailable", counters.unavailable),
                    ("failed", counters.failed),
                )
            ),
        )
        out.histogram(
            "shoal_proxy_request_duration_seconds",
            "Time from a request's head to the end of its exchange, by route and shard.",
            LATENCY_BUCKETS,
            (
                (
                    {"listener": r.listener, "route": r.name, "shard": shard},
                    histogram.bucket_counts(),
                    histogram.total,
                )
                for r in routes
                for shard, histogram in r.latency.items()
                if histogram.count or shard == "" or r.router is not None
            ),
        )
        out.gauge(
            "shoal_proxy_active_connections",
            "Client connections open, by listener.",
            (
                ({"listener": entry.config.name}, entry.server.active_connections)
                for entry in self._listeners.values()
            ),
        )
        out.gauge(
            "shoal_proxy_upstream_idle_connections",
            "Idle pooled upstream connections.",
            [({}, self.pool.idle_count())],
        )
        out.counter(
            "shoal_proxy_config_applies_total",
            "Configurations applied since start.",
            [({}, self.applied)],
        )
        return out.render()


def _in_flight(route: RouteState, address: str) -> int:
    for endpoint in route.endpoints():
        if endpoint.address == address:
            return endpoint.in_flight
    return 0


def _healthy(route: RouteState, address: str) -> bool:
    active = route.active
    if active is None:
        return True
    try:
        return active.state(address) is HealthState.HEALTHY
    except KeyError:
        return False


async def _probe(host: str, port: int, address: str, settings: ActiveCheckSettings) -> CheckResult:
    """One active check: a TCP connect, or an HTTP/1.1 GET whose status decides."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        if settings.http_path is None:
            return CheckResult(True)
        writer.write(
            b"GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: shoal-proxy-health\r\n"
            b"Connection: close\r\n\r\n" % (settings.http_path.encode(), address.encode())
        )
        await writer.drain()
        line = await reader.readline()
        parts = line.split(b" ", 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
            return CheckResult(False, f"not an HTTP response: {line[:40]!r}")
        return CheckResult.from_status(int(parts[1]), settings)
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
