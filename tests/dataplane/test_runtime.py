# ruff: noqa: SIM117 -- backends outlive the proxy on purpose: nested blocks say so
"""The embeddable Proxy against real backends on 127.0.0.1, with both request parsers.

Covers the feature path: balancing policies, the shard router, retries on another endpoint,
passive ejection and readmission of a killed backend, active checks, pending limits, draining a
removed endpoint, live swaps under load with zero failures, listeners added and removed, the
admin listener's /healthz and /metrics (parsed with prometheus_client), and the access log.
Every wait polls with a deadline; nothing sleeps to wait for readiness.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import replace

import pytest
from prometheus_client.parser import text_string_to_metric_families

from shoal.dataplane.driver import ProxySettings
from shoal.dataplane.health import (
    ActiveCheckSettings,
    OutlierSettings,
    PendingSettings,
    RetrySettings,
)
from shoal.dataplane.runtime import (
    AccessLog,
    BackendConfig,
    HashKey,
    ListenerConfig,
    Proxy,
    RouteConfig,
    RuntimeConfig,
    ShardConfig,
)

from .implementations import IMPLEMENTATIONS

WAIT = 10.0


class Backend:
    """A keep-alive HTTP/1.1 server answering its name; behaviour set per test.

    ``status`` is the answer's status, ``health_status`` the answer to ``/healthz``, and while
    ``gate`` is set, requests to ``/slow`` wait for it.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.status = 200
        self.health_status = 200
        self.gate: asyncio.Event | None = None
        self.requests = 0
        self.paths: list[str] = []
        self.open_connections = 0
        self.tasks: set[asyncio.Task[None]] = set()
        self.server: asyncio.Server | None = None
        self.port = 0

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.tasks.add(task)
        self.open_connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                path = head.split(b" ", 2)[1].decode()
                if path == "/healthz":
                    status = self.health_status
                else:
                    self.requests += 1
                    self.paths.append(path)
                    status = self.status
                    if path == "/slow" and self.gate is not None:
                        await self.gate.wait()
                body = self.name.encode()
                writer.write(
                    b"HTTP/1.1 %d X\r\nContent-Length: %d\r\n\r\n%s" % (status, len(body), body)
                )
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self.open_connections -= 1
            writer.close()
            self.tasks.discard(task)

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Close the listening socket and every connection (a killed backend)."""
        if self.server is None:
            return
        self.server.close()
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.server.wait_closed()
        self.server = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"


@contextlib.asynccontextmanager
async def backends(*names: str) -> AsyncIterator[list[Backend]]:
    started = [Backend(name) for name in names]
    try:
        for backend in started:
            await backend.start()
        yield started
    finally:
        for backend in started:
            await backend.stop()


class Client:
    """A keep-alive client on one connection (reconnects after the proxy closes it)."""

    def __init__(self, address: tuple[str, int]) -> None:
        self.address = address
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def get(self, path: str = "/", headers: dict[str, str] | None = None) -> tuple[int, str]:
        if self.writer is None or self.reader is None or self.reader.at_eof():
            await self.close()
            self.reader, self.writer = await asyncio.wait_for(
                asyncio.open_connection(*self.address), WAIT
            )
        assert self.reader is not None
        assert self.writer is not None
        reader = self.reader
        extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        self.writer.write(f"GET {path} HTTP/1.1\r\nHost: test\r\n{extra}\r\n".encode())
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT)
        lines = head.decode().split("\r\n")
        status = int(lines[0].split()[1])
        fields = {k.lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:] if x)}
        body = await asyncio.wait_for(
            reader.readexactly(int(fields.get("content-length", "0"))), WAIT
        )
        if fields.get("connection", "").lower() == "close":
            await self.close()
        return status, body.decode()

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(ConnectionError):
                await self.writer.wait_closed()
        self.reader = self.writer = None


async def until(condition: Callable[[], bool]) -> None:
    """Poll ``condition`` (every few ms) until it holds, or fail after ``WAIT`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT
    while not condition():
        if loop.time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.005)


@pytest.fixture(
    params=[
        "python",
        "httptools",
        *(["compiled-httptools"] if "compiled" in IMPLEMENTATIONS else []),
    ]
)
def parser(request: pytest.FixtureRequest) -> str:
    """A request parser, on the pure-Python implementation or (``compiled-``) the compiled one."""
    return str(request.param)


def one_route(route: RouteConfig, admin: bool = False) -> RuntimeConfig:
    return RuntimeConfig(
        listeners=(ListenerConfig(name="web", port=0, routes=(route,)),),
        admin=("127.0.0.1", 0) if admin else None,
    )


def plain(*addresses: str, **fields: object) -> RouteConfig:
    return RouteConfig(
        name="web",
        backends=tuple(BackendConfig(a) for a in addresses),
        **fields,  # type: ignore[arg-type]
    )


@contextlib.asynccontextmanager
async def running(config: RuntimeConfig, parser: str, **options: object) -> AsyncIterator[Proxy]:
    implementation, _, parser = parser.rpartition("-")
    settings = ProxySettings(parser=parser, implementation=implementation or "python")
    proxy = Proxy(config, settings, **options)  # type: ignore[arg-type]
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.shutdown(2.0)


# --- balancing and routing --------------------------------------------------------------------


async def test_round_robin_over_two_backends(parser: str) -> None:
    async with (
        backends("a", "b") as (a, b),
        running(one_route(plain(a.address, b.address)), parser) as proxy,
    ):
        client = Client(proxy.address("web"))
        answers = [(await client.get())[1] for _ in range(6)]
        await client.close()
        assert sorted(answers) == ["a", "a", "a", "b", "b", "b"]
        assert answers[0] != answers[1]


async def test_hash_on_header_keeps_a_user_on_one_backend(parser: str) -> None:
    route = plain("127.0.0.1:1", "127.0.0.1:2", policy="hash", hash_key=HashKey("header", "X-User"))
    async with backends("a", "b", "c") as servers:
        route = replace(route, backends=tuple(BackendConfig(s.address) for s in servers))
        async with running(one_route(route), parser) as proxy:
            client = Client(proxy.address("web"))
            seen = {}
            # 30 users: with 3 backends on random ports, 5 users all hashed to one backend ~1% of runs.
            for user in (f"user-{n}" for n in range(30)):
                answers = {(await client.get("/", {"X-User": user}))[1] for _ in range(3)}
                assert len(answers) == 1
                seen[user] = answers.pop()
            await client.close()
            assert len(set(seen.values())) >= 2


async def test_shard_router_sends_a_key_to_one_shard(parser: str) -> None:
    async with backends("s0a", "s0b", "s1a", "s1b") as (s0a, s0b, s1a, s1b):
        route = RouteConfig(
            name="users",
            shard_regexp="/users/([^/]+)",
            shards=(
                ShardConfig("shard-0", (BackendConfig(s0a.address), BackendConfig(s0b.address))),
                ShardConfig("shard-1", (BackendConfig(s1a.address), BackendConfig(s1b.address))),
            ),
        )
        async with running(one_route(route, admin=True), parser) as proxy:
            client = Client(proxy.address("web"))
            shards_seen = set()
            for user in range(12):
                answers = {(await client.get(f"/users/u{user}/photos/{i}"))[1] for i in range(4)}
                shard = {name[:2] for name in answers}
                assert len(shard) == 1, answers  # one shard per key, replicas balanced inside
                shards_seen |= shard
            await client.close()
            assert shards_seen == {"s0", "s1"}
            router = proxy.route("web", "users").router
            assert router is not None
            assert sum(c.routed for c in router.counters.values()) == 48
            metrics = await admin_get(proxy, "/metrics")
            families = {f.name: f for f in text_string_to_metric_families(metrics)}
            routed = {
                s.labels["shard"]: s.value
                for s in families["shoal_proxy_shard_requests"].samples
                if s.labels["result"] == "routed"
            }
            assert sum(routed.values()) == 48
            assert set(routed) == {"shard-0", "shard-1"}


async def test_longest_prefix_route_wins(parser: str) -> None:
    async with backends("api", "site") as (api, site):
        config = RuntimeConfig(
            listeners=(
                ListenerConfig(
                    name="web",
                    port=0,
                    routes=(
                        RouteConfig(name="site", backends=(BackendConfig(site.address),)),
                        RouteConfig(
                            name="api", path_prefix="/api/", backends=(BackendConfig(api.address),)
                        ),
                    ),
                ),
            )
        )
        async with running(config, parser) as proxy:
            client = Client(proxy.address("web"))
            assert (await client.get("/api/v1"))[1] == "api"
            assert (await client.get("/index.html"))[1] == "site"
            await client.close()


# --- admin ------------------------------------------------------------------------------------


async def admin_get(proxy: Proxy, path: str) -> str:
    address = proxy.admin_address
    assert address is not None
    reader, writer = await asyncio.open_connection(*address)
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: admin\r\n\r\n".encode())
        data = await asyncio.wait_for(reader.read(), WAIT)
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    return body.decode()


async def test_admin_healthz_and_metrics_parse(parser: str) -> None:
    """/metrics is valid text exposition with the documented families and counts."""
    async with (
        backends("a") as (a,),
        running(one_route(plain(a.address), admin=True), parser) as proxy,
    ):
        client = Client(proxy.address("web"))
        for _ in range(3):
            assert (await client.get())[0] == 200
        a.status = 404
        assert (await client.get())[0] == 404
        await client.close()
        assert await admin_get(proxy, "/healthz") == "ok\n"
        families = {
            f.name: f for f in text_string_to_metric_families(await admin_get(proxy, "/metrics"))
        }
        by_code = {
            s.labels["code"]: s.value
            for s in families["shoal_proxy_requests"].samples
            if s.labels["endpoint"] == a.address
        }
        assert by_code["2xx"] == 3
        assert by_code["4xx"] == 1
        duration = families["shoal_proxy_request_duration_seconds"]
        counts = [s.value for s in duration.samples if s.name.endswith("_count")]
        assert sum(counts) == 4
        assert families["shoal_proxy_request_duration_seconds"].type == "histogram"
        for name in (
            "shoal_proxy_retries",
            "shoal_proxy_ejections",
            "shoal_proxy_active_connections",
            "shoal_proxy_endpoint_up",
            "shoal_proxy_upstream_connect_errors",
        ):
            assert name in families, name


# --- retries, ejection, health ------------------------------------------------------------------


async def test_connect_failure_is_retried_on_another_endpoint(parser: str) -> None:
    """A dead endpoint costs no failed request: each attempt on it goes again elsewhere."""
    async with backends("a", "dead") as (a, dead):
        await dead.stop()  # its port now refuses connections
        route = plain(
            a.address,
            dead.address,
            retry=RetrySettings(max_retries=1),
            outlier=OutlierSettings(consecutive_connect_errors=1000, consecutive_5xx=1000),
        )
        async with running(one_route(route), parser) as proxy:
            client = Client(proxy.address("web"))
            answers = [await client.get() for _ in range(8)]
            await client.close()
            assert answers == [(200, "a")] * 8
            state = proxy.route("web", "web")
            assert state.retries == 4
            assert state.stats[""][dead.address].connect_errors == 4


async def test_retryable_status_of_an_idempotent_request_goes_elsewhere(parser: str) -> None:
    async with backends("good", "busy") as (good, busy):
        busy.status = 503
        route = plain(good.address, busy.address, outlier=OutlierSettings(consecutive_5xx=1000))
        async with running(one_route(route), parser) as proxy:
            client = Client(proxy.address("web"))
            answers = [await client.get() for _ in range(6)]
            await client.close()
            assert answers == [(200, "good")] * 6
            assert busy.requests == 3
            assert proxy.route("web", "web").retries == 3


async def test_killed_backend_is_ejected_and_readmitted(parser: str) -> None:
    """Connect errors eject a killed backend (no traffic goes there); after the ejection time it
    is tried again and, once it is back, takes its share."""
    async with backends("a", "b") as (a, b):
        route = plain(
            a.address,
            b.address,
            outlier=OutlierSettings(consecutive_connect_errors=2, base_ejection_time=0.3),
        )
        async with running(one_route(route, admin=True), parser) as proxy:
            state = proxy.route("web", "web")
            client = Client(proxy.address("web"))
            await b.stop()
            failures = 0
            for _ in range(10):
                status, _ = await client.get()
                failures += status != 200
            assert failures == 0  # connect failures were retried on a
            assert b.address in proxy.route("web", "web").excluded
            assert state.stats[""][b.address].ejections == 1
            await b.start()  # same port
            served: list[str] = []

            async def b_serves() -> bool:
                served.append((await client.get())[1])
                return served[-1] == "b"

            loop = asyncio.get_running_loop()
            deadline = loop.time() + WAIT
            while not await b_serves():
                assert loop.time() < deadline, "b was never readmitted"
            await client.close()
            assert b.address not in proxy.route("web", "web").excluded
            metrics = await admin_get(proxy, "/metrics")
            assert (
                f'shoal_proxy_ejections_total{{listener="web",route="web",shard="",endpoint="{b.address}"}} 1'
                in metrics
            )


async def test_active_http_checks_take_an_endpoint_out_and_back(parser: str) -> None:
    async with backends("a", "b") as (a, b):
        health = ActiveCheckSettings(
            interval=0.05, timeout=1.0, rise=2, fall=2, http_path="/healthz"
        )
        route = plain(a.address, b.address, health=health)
        async with running(one_route(route), parser) as proxy:
            state = proxy.route("web", "web")
            assert state.active is not None
            await until(lambda: state.active is not None and len(state.active.healthy()) == 2)
            b.health_status = 500
            await until(lambda: b.address in proxy.route("web", "web").excluded)
            client = Client(proxy.address("web"))
            before = b.requests
            assert {(await client.get())[1] for _ in range(6)} == {"a"}
            assert b.requests == before
            b.health_status = 200
            await until(lambda: b.address not in proxy.route("web", "web").excluded)
            assert {(await client.get())[1] for _ in range(6)} == {"a", "b"}
            await client.close()


async def test_active_tcp_check_of_a_backend_that_is_not_listening(parser: str) -> None:
    async with backends("a", "b") as (a, b):
        await b.stop()
        health = ActiveCheckSettings(interval=0.05, timeout=1.0)
        async with running(one_route(plain(a.address, b.address, health=health)), parser) as proxy:
            state = proxy.route("web", "web")
            await until(lambda: state.active is not None and a.address in state.active.healthy())
            assert b.address in state.excluded
            client = Client(proxy.address("web"))
            assert {(await client.get())[1] for _ in range(4)} == {"a"}
            await client.close()


async def test_pending_limit_queues_then_sends_in_order(parser: str) -> None:
    """With one request allowed in flight, a second waits for the first and then goes."""
    async with backends("a") as (a,):
        a.gate = asyncio.Event()
        route = plain(a.address, pending=PendingSettings(max_in_flight=1, max_pending=1))
        async with running(one_route(route), parser) as proxy:
            first, second, third = (Client(proxy.address("web")) for _ in range(3))
            state = proxy.route("web", "web")
            async with asyncio.TaskGroup() as tasks:
                slow = tasks.create_task(first.get("/slow"))
                await until(lambda: a.requests == 1)
                queued = tasks.create_task(second.get("/next"))
                await until(lambda: state.queued == 1)
                assert await third.get("/rejected") == (
                    503,
                    "503 Service Unavailable\nno upstream available\n",
                )
                assert a.requests == 1  # the queued one has not gone yet
                a.gate.set()
            assert slow.result() == (200, "a")
            assert queued.result() == (200, "a")
            assert a.paths == ["/slow", "/next"]
            assert state.queued == 0
            assert [e.in_flight for e in state.endpoints()] == [0]
            for client in (first, second, third):
                await client.close()


# --- live reconfiguration -------------------------------------------------------------------------


async def test_removed_endpoint_drains(parser: str) -> None:
    """After an apply without b: its idle pooled connection closes at once, the request in flight
    to it finishes, then its last connection closes; new requests go to a."""
    async with backends("a", "b") as (a, b):
        async with running(one_route(plain(b.address)), parser) as proxy:
            first, second = Client(proxy.address("web")), Client(proxy.address("web"))
            assert await first.get() == (200, "b")
            b.gate = asyncio.Event()
            async with asyncio.TaskGroup() as tasks:
                slow = tasks.create_task(first.get("/slow"))
                await until(lambda: b.requests == 2)
                assert await second.get() == (200, "b")  # a second upstream connection, now idle
                assert b.open_connections == 2
                await proxy.apply(one_route(plain(a.address)))
                await until(lambda: b.open_connections == 1)  # the idle one was closed
                assert await second.get() == (200, "a")
                b.gate.set()
            assert slow.result() == (200, "b")
            await until(lambda: b.open_connections == 0)
            assert await first.get() == (200, "a")
            await first.close()
            await second.close()


async def test_live_swaps_under_load_fail_nothing(parser: str) -> None:
    """Ten applies while eight keep-alive clients loop: every request gets a 200 from a backend
    of the configuration in force, including rolling replacement of every backend."""
    async with backends("a", "b", "c", "d", "e") as servers:
        async with running(
            one_route(plain(servers[0].address, servers[1].address)), parser
        ) as proxy:
            stop = asyncio.Event()
            done = [0]
            failures: list[object] = []

            async def load() -> None:
                client = Client(proxy.address("web"))
                try:
                    while not stop.is_set():
                        try:
                            status, _ = await client.get()
                        except (OSError, asyncio.IncompleteReadError) as error:
                            failures.append(error)
                            await client.close()
                            continue
                        if status != 200:
                            failures.append(status)
                        done[0] += 1
                finally:
                    await client.close()

            async with asyncio.TaskGroup() as tasks:
                for _ in range(8):
                    tasks.create_task(load())
                for swap in range(10):
                    mark = done[0]
                    await until(lambda mark=mark: done[0] >= mark + 20)  # type: ignore[misc]
                    chosen = [servers[swap % 5], servers[(swap + 1) % 5]]
                    await proxy.apply(one_route(plain(*(s.address for s in chosen))))
                mark = done[0]
                await until(lambda: done[0] >= mark + 20)
                stop.set()
            assert failures == []
            assert proxy.applied == 11
            assert done[0] >= 220


async def test_rolling_replacement_with_backends_stopped_after_draining(parser: str) -> None:
    """Replace each backend with a new one: start the new one, apply, wait for the old one's
    requests to end, stop it. No request fails."""
    async with backends("a", "b") as (a, b), backends("c", "d") as (c, d):
        async with running(one_route(plain(a.address, b.address)), parser) as proxy:
            stop = asyncio.Event()
            done = [0]
            failures: list[object] = []

            async def load() -> None:
                client = Client(proxy.address("web"))
                try:
                    while not stop.is_set():
                        try:
                            status, _ = await client.get()
                        except (OSError, asyncio.IncompleteReadError) as error:
                            failures.append(error)
                            await client.close()
                            continue
                        if status != 200:
                            failures.append(status)
                        done[0] += 1
                finally:
                    await client.close()

            async with asyncio.TaskGroup() as tasks:
                for _ in range(4):
                    tasks.create_task(load())
                for old, current in ((a, [c, b]), (b, [c, d])):
                    mark = done[0]
                    await until(lambda mark=mark: done[0] >= mark + 20)  # type: ignore[misc]
                    await proxy.apply(one_route(plain(*(s.address for s in current))))
                    state = proxy.route("web", "web")
                    # Drained: nothing in flight to it (its old Endpoint object left the table).
                    await until(lambda old=old: old.open_connections == 0)  # type: ignore[misc]
                    await old.stop()
                    assert all(e.address != old.address for e in state.endpoints())
                mark = done[0]
                await until(lambda: done[0] >= mark + 20)
                stop.set()
            assert failures == []


async def test_listeners_are_added_and_removed_by_apply(parser: str) -> None:
    async with backends("a") as (a,):
        web = ListenerConfig(name="web", port=0, routes=(plain(a.address),))
        api = ListenerConfig(name="api", port=0, routes=(plain(a.address),))
        async with running(RuntimeConfig(listeners=(web,)), parser) as proxy:
            old_address = proxy.address("web")
            client = Client(old_address)
            assert await client.get() == (200, "a")
            await proxy.apply(RuntimeConfig(listeners=(web, api)))
            assert proxy.address("web") == old_address  # kept: same socket
            other = Client(proxy.address("api"))
            assert await other.get() == (200, "a")
            await proxy.apply(RuntimeConfig(listeners=(api,)))
            with pytest.raises(KeyError):
                proxy.address("web")
            # The removed listener's idle keep-alive connection was closed; new ones are refused.
            await until(lambda: client.reader is not None and client.reader.at_eof())
            with pytest.raises(ConnectionRefusedError):
                await asyncio.open_connection(*old_address)
            assert await other.get() == (200, "a")
            await client.close()
            await other.close()


async def test_invalid_apply_keeps_the_running_configuration(parser: str) -> None:
    async with backends("a") as (a,), running(one_route(plain(a.address)), parser) as proxy:
        bad = one_route(replace(plain(a.address), policy="fastest", path_prefix="api"))
        with pytest.raises(
            ValueError, match=r"pathPrefix: must start .*\n.*policy: must be one of"
        ):
            await proxy.apply(bad)
        with pytest.raises(ValueError, match="shardRegexp"):
            await proxy.apply(
                one_route(
                    RouteConfig(
                        name="s",
                        shard_regexp="(",
                        shards=(ShardConfig("x", (BackendConfig(a.address),)),),
                    )
                )
            )
        client = Client(proxy.address("web"))
        assert await client.get() == (200, "a")
        await client.close()
        assert proxy.applied == 1


async def test_access_log_json_and_combined(parser: str) -> None:
    for fmt in ("json", "combined"):
        stream = io.StringIO()
        async with (
            backends("a") as (a,),
            running(
                one_route(plain(a.address)), parser, access_log=AccessLog(stream, fmt)
            ) as proxy,
        ):
            client = Client(proxy.address("web"))
            await client.get("/x?y=1", {"User-Agent": "tester"})
            await client.close()
        [line] = stream.getvalue().splitlines()
        if fmt == "json":
            entry = json.loads(line)
            assert entry["status"] == 200
            assert entry["target"] == "/x?y=1"
            assert entry["upstream"] == a.address
            assert entry["userAgent"] == "tester"
            assert entry["route"] == "web"
        else:
            assert '"GET /x?y=1 HTTP/1.1" 200 - "-" "tester"' in line
            assert f"upstream={a.address} route=web" in line


async def test_readmission_after_a_swap_reaches_the_new_configuration(parser: str) -> None:
    """An endpoint ejected under one configuration is readmitted in the next one: the ejection
    timer set before the swap updates the routes that serve after it."""
    async with backends("a", "b") as (a, b):
        outlier = OutlierSettings(consecutive_connect_errors=1, base_ejection_time=0.2)
        config = one_route(plain(a.address, b.address, outlier=outlier))
        async with running(config, parser) as proxy:
            client = Client(proxy.address("web"))
            await b.stop()
            for _ in range(4):
                assert (await client.get())[0] == 200
            assert b.address in proxy.route("web", "web").excluded
            await proxy.apply(
                one_route(plain(a.address, b.address, outlier=outlier, policy="random"))
            )
            assert b.address in proxy.route("web", "web").excluded  # the ejection carried over
            await b.start()
            await until(lambda: b.address not in proxy.route("web", "web").excluded)
            await client.close()


async def test_service_proxy_shape_one_listener_per_service_on_loopback_ips(parser: str) -> None:
    """kube-proxy's shape: a listener per Service port on its own 127.x address. An apply that
    changes one Service's endpoints rebuilds that route only; the others keep their objects."""
    async with backends("a", "b") as (a, b):

        def config(web_backends: tuple[str, ...]) -> RuntimeConfig:
            listeners = [
                ListenerConfig(
                    name=f"default/svc{i}:http",
                    host=f"127.0.77.{i + 1}",
                    port=0,
                    routes=(plain(a.address),),
                )
                for i in range(20)
            ]
            listeners.append(
                ListenerConfig(
                    name="default/web:http",
                    host="127.0.78.1",
                    port=0,
                    routes=(plain(*web_backends),),
                )
            )
            return RuntimeConfig(listeners=tuple(listeners))

        async with running(config((a.address,)), parser) as proxy:
            before = {r.listener: r for r in proxy.routes()}
            host, port = proxy.address("default/web:http")
            assert host == "127.0.78.1"
            client = Client((host, port))
            assert await client.get() == (200, "a")
            await proxy.apply(config((b.address,)))
            after = {r.listener: r for r in proxy.routes()}
            assert [name for name in after if after[name] is not before[name]] == [
                "default/web:http"
            ]
            assert proxy.address("default/web:http") == (host, port)
            assert await client.get() == (200, "b")
            other = Client(proxy.address("default/svc7:http"))
            assert await other.get() == (200, "a")
            await client.close()
            await other.close()


async def test_a_port_in_use_fails_start_and_apply_cleanly() -> None:
    """start() raises and leaves nothing bound; apply() raises and keeps what was running."""
    async with backends("a") as (a,):
        busy = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
        try:
            port = busy.sockets[0].getsockname()[1]
            taken = ListenerConfig(name="taken", port=port, routes=(plain(a.address),))
            proxy = Proxy(RuntimeConfig(listeners=(taken,)))
            with pytest.raises(OSError, match="address already in use"):
                await proxy.start()
            async with running(one_route(plain(a.address)), "python") as proxy:
                web = proxy.config.listeners[0]
                with pytest.raises(OSError, match="address already in use"):
                    await proxy.apply(RuntimeConfig(listeners=(web, taken)))
                assert proxy.applied == 1
                client = Client(proxy.address("web"))
                assert await client.get() == (200, "a")
                await client.close()
        finally:
            busy.close()
            await busy.wait_closed()
