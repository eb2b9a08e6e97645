"""
Benchmark of the API server through its HTTPS API, against the physical limit of the same disk.

    python bench/apiserver.py [--quick] [--dir DIR] [--client wrk|aiohttp]

Starts ``shoal server`` in its own process (``shoal.testing.api_server_process``: 127.0.0.1, a
free port, a fresh data directory) and measures, in one run:

* durable creates/s: POST of ConfigMaps from 1 and from 64 concurrent clients (each its own
  keep-alive connection); a create is counted when its 201 arrives, i.e. after the commit's fsync;
* durable updates/s: PUT of those ConfigMaps with the ``resourceVersion`` of their last answer
  (a compare-and-swap), 64 clients;

  both by ``wrk -t1`` (Debian's wrk; C, one thread, TLS, bearer token) with a Lua script when wrk
  is installed, so the server, not Python clients on the same 2 cores, is what is measured; or by
  aiohttp clients in this process (``--client aiohttp``, the only client before 2026-11-29). Every
  answer's status is checked (any other than 201/200 fails the run), and afterwards the store
  must hold every acknowledged object at the resourceVersion its answer named, and for creates
  exactly as many objects as were acknowledged;
* watch delivery latency with 100 concurrent watchers (``?watch=1``, one connection each): from
  the moment the writer holds the acknowledgement (201) of a create to the moment each watcher
  has read the event's line, both on this process's monotonic clock, p50/p99 (an event read
  before its acknowledgement counts as 0);
* listing 10,000 objects: one GET without ``limit``, and all pages with ``limit=500``, wall time
  including the JSON decoding of the answers (by orjson since 2026-11-29, by the json module
  before; the time until the whole body was received is printed too);
* the disk's limit: a bare SQLite insert loop with the same durability (WAL, synchronous=FULL,
  one commit per insert: the server's PRAGMAs, and each insert durable before the next, as each
  create is durable before its 201), in the same directory as the server's database, just before
  and just after the 64-client creates (the disk is shared and its fsync rate drifts: the ratios
  use the mean, and both are printed), and the ratio of the creates/s to it. The server commits concurrent writes in groups (one transaction and one fsync
  for all the writes queued, each answered after that commit); for context the same bare loop
  with 64 inserts per commit is printed too;
* the server process's CPU time per create, per update and for the lists (``/proc``), which
  says what the server costs independently of what else is running on the machine.

The watch and list phases use aiohttp clients in this process (TLS verified with the server's
CA). Prints a Markdown table with the goals of issue 3. ``--quick`` makes every phase smaller (2,000
objects to list). The server is stopped on the way out, on errors and on Ctrl-C too.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import platform
import shutil
import signal
import sqlite3
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

try:
    import orjson
except ImportError:  # a runtime dependency of shoal's; the json module decodes the same
    orjson = None  # type: ignore[assignment]

from shoal.testing import ServerProcess, api_server_process

Body = dict[str, Any]
CONFIGMAPS = "/api/v1/namespaces/{namespace}/configmaps"


@dataclass(frozen=True, slots=True)
class Sizes:
    single: int
    """Creates from one client."""
    objects: int
    """Creates from the concurrent clients; also the objects listed."""
    updates: int
    concurrency: int
    watchers: int
    watch_events: int
    bare: int


FULL = Sizes(
    single=500,
    objects=10_000,
    updates=5_000,
    concurrency=64,
    watchers=100,
    watch_events=200,
    bare=2_000,
)
QUICK = Sizes(
    single=100,
    objects=2_000,
    updates=1_000,
    concurrency=64,
    watchers=100,
    watch_events=40,
    bare=500,
)


def bare_sqlite(directory: Path, count: int, per_commit: int = 1) -> float:
    """Inserts/s of a plain loop, one durable transaction per ``per_commit`` inserts (1: the
    disk's fsync limit, the goal's yardstick). The server's PRAGMAs: WAL, synchronous=FULL."""
    for suffix in ("", "-wal", "-shm"):
        (directory / f"bare.db{suffix}").unlink(missing_ok=True)
    db = sqlite3.connect(directory / "bare.db", isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute(
        "CREATE TABLE log (revision INTEGER PRIMARY KEY AUTOINCREMENT, key TEXT, value TEXT)"
    )
    value = json.dumps(configmap("bench", "x"), separators=(",", ":"))
    start = time.perf_counter()
    for first in range(0, count, per_commit):
        db.execute("BEGIN IMMEDIATE")
        for i in range(first, min(first + per_commit, count)):
            db.execute("INSERT INTO log (key, value) VALUES (?, ?)", (f"/k/{i}", value))
        db.execute("COMMIT")
    elapsed = time.perf_counter() - start
    db.close()
    return count / elapsed


def server_cpu(server: ServerProcess) -> float:
    """CPU seconds (user + system) the server process has used so far (Linux ``/proc``)."""
    fields = Path(f"/proc/{server.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def configmap(namespace: str, name: str, **data: str) -> Body:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app": "bench"}},
        "data": {"k": "x" * 200, **data},
    }


def client(server: ServerProcess, connections: int) -> aiohttp.ClientSession:
    """A session with up to ``connections`` keep-alive connections to the server."""
    return aiohttp.ClientSession(
        base_url=server.url,
        headers={**server.headers, "User-Agent": "shoal-bench/1"},
        connector=aiohttp.TCPConnector(
            ssl=server.ssl_context(), limit=connections, keepalive_timeout=300
        ),
        timeout=aiohttp.ClientTimeout(total=None, sock_read=60),
    )


async def expect(response: aiohttp.ClientResponse, status: int) -> Body:
    body: Body = await response.json()
    if response.status != status:
        raise RuntimeError(f"expected HTTP {status}, got {response.status}: {body}")
    return body


async def create_namespace(http: aiohttp.ClientSession, name: str) -> None:
    body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
    async with http.post("/api/v1/namespaces", json=body) as response:
        await expect(response, 201)


async def creates(
    server: ServerProcess, namespace: str, count: int, concurrency: int
) -> tuple[float, dict[str, str]]:
    """Creates/s with ``concurrency`` clients, and the created names' resourceVersions."""
    todo = list(range(count))
    versions: dict[str, str] = {}
    path = CONFIGMAPS.format(namespace=namespace)
    async with client(server, concurrency) as http:
        await create_namespace(http, namespace)

        async def worker() -> None:
            while todo:
                name = f"o{todo.pop():06d}"
                async with http.post(path, json=configmap(namespace, name)) as response:
                    created = await expect(response, 201)
                versions[name] = created["metadata"]["resourceVersion"]

        start = time.perf_counter()
        async with asyncio.TaskGroup() as tasks:
            for _ in range(concurrency):
                tasks.create_task(worker())
        elapsed = time.perf_counter() - start
    return count / elapsed, versions


async def updates(
    server: ServerProcess, namespace: str, versions: dict[str, str], count: int, concurrency: int
) -> float:
    """Updates/s: PUT with the last known resourceVersion (a compare-and-swap)."""
    names = sorted(versions)[:count]
    per_name = max(1, count // len(names))
    todo = list(names)
    done = 0
    path = CONFIGMAPS.format(namespace=namespace)
    async with client(server, concurrency) as http:

        async def worker() -> None:
            nonlocal done
            while todo:
                name = todo.pop()
                for n in range(per_name):
                    obj = configmap(namespace, name, n=str(n))
                    obj["metadata"]["resourceVersion"] = versions[name]
                    async with http.put(f"{path}/{name}", json=obj) as response:
                        updated = await expect(response, 200)
                    versions[name] = updated["metadata"]["resourceVersion"]
                    done += 1

        start = time.perf_counter()
        async with asyncio.TaskGroup() as tasks:
            for _ in range(concurrency):
                tasks.create_task(worker())
        elapsed = time.perf_counter() - start
    return done / elapsed


def decode(raw: bytes) -> Any:
    """The client's JSON decoding of list answers: orjson when installed (a lean client, as wrk
    is for the writes; the json module needs 2-3 times its CPU on the same shared cores)."""
    return orjson.loads(raw) if orjson is not None else json.loads(raw)


async def listing(server: ServerProcess, namespace: str) -> tuple[float, float, float, int, int]:
    """Seconds for one GET of the whole collection (decoded; and until its body was received),
    for all pages of 500; item counts."""
    path = CONFIGMAPS.format(namespace=namespace)
    async with client(server, 1) as http:
        async with http.get(path, params={"limit": "1"}) as response:  # warm the connection
            await expect(response, 200)
        start = time.perf_counter()
        async with http.get(path) as response:
            raw = await response.read()
            received = time.perf_counter() - start
            whole = decode(raw)
            if response.status != 200:
                raise RuntimeError(f"list answered {response.status}")
        one = time.perf_counter() - start
        start = time.perf_counter()
        paged = 0
        token: str | None = None
        while True:
            params = {"limit": "500"}
            if token:
                params["continue"] = token
            async with http.get(path, params=params) as response:
                if response.status != 200:
                    raise RuntimeError(f"a page answered {response.status}")
                page = decode(await response.read())
            paged += len(page["items"])
            token = page["metadata"].get("continue")
            if not token:
                break
        pages = time.perf_counter() - start
    return one, received, pages, len(whole["items"]), paged


async def watch_latency(
    server: ServerProcess, watchers: int, events: int
) -> tuple[list[float], list[float]]:
    """Seconds from each create's acknowledgement to each watcher holding its event (negative
    when the event arrived first), and from issuing the create (so including its fsync)."""
    namespace = "watched"
    path = CONFIGMAPS.format(namespace=namespace)
    issued: dict[str, float] = {}
    acknowledged: dict[str, float] = {}
    received: list[tuple[str, float]] = []
    counts = [0] * watchers
    expected = events + 1  # the warm-up write, then the measured ones
    progress = asyncio.Condition()

    async with client(server, watchers + 1) as http:
        await create_namespace(http, namespace)
        async with http.get(path) as response:
            revision = (await expect(response, 200))["metadata"]["resourceVersion"]

        async def watcher(index: int) -> None:
            params = {"watch": "1", "resourceVersion": revision, "timeoutSeconds": "600"}
            async with http.get(path, params=params) as response:
                if response.status != 200:
                    raise RuntimeError(f"watch answered {response.status}")
                async for line in response.content:
                    now = time.monotonic()
                    event = json.loads(line)
                    if event["type"] != "ADDED":
                        continue
                    received.append((event["object"]["metadata"]["name"], now))
                    counts[index] += 1
                    async with progress:
                        progress.notify_all()
                    if counts[index] == expected:
                        return

        async def all_have(n: int) -> None:
            async with progress:
                await progress.wait_for(lambda: min(counts) >= n)

        async def write(name: str) -> None:
            issued[name] = time.monotonic()
            async with http.post(path, json=configmap(namespace, name)) as response:
                await expect(response, 201)
            acknowledged[name] = time.monotonic()

        async with asyncio.timeout(300), asyncio.TaskGroup() as tasks:
            for index in range(watchers):
                tasks.create_task(watcher(index))
            await write("warmup")  # every watch is established once all hold this event
            await all_have(1)
            for i in range(events):
                # One write at a time; the next once every watcher has the last: latency, not
                # throughput.
                await write(f"w{i:05d}")
                await all_have(i + 2)
                await asyncio.sleep(0.002)

    after_ack: list[float] = []
    after_issue: list[float] = []
    for name, at in received:
        if name != "warmup":
            after_ack.append(at - acknowledged[name])
            after_issue.append(at - issued[name])
    return after_ack, after_issue


# --------------------------------------------------------------------------------------------
# The lean load client: wrk (C, one thread, OpenSSL) with a Lua script, so the creates and
# updates measure the server rather than Python clients sharing its 2 cores. The scripts count
# every status (a create must answer 201, an update 200), time the phase on the monotonic clock
# (LuaJIT's FFI), and record the acknowledged names, which are checked against the store after.

_LUA_COMMON = r"""
local ffi = require("ffi")
ffi.cdef[[
typedef struct { long tv_sec; long tv_nsec; } shoal_timespec;
int clock_gettime(int clk, shoal_timespec *tp);
]]
local ts = ffi.new("shoal_timespec")
local function now()
  ffi.C.clock_gettime(1, ts)  -- CLOCK_MONOTONIC
  return tonumber(ts.tv_sec) + tonumber(ts.tv_nsec) * 1e-9
end
local threads = {}
function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end
local idle = nil
-- wrk calls request() once before the run to check the script (that request is never sent):
-- that first call is answered with an idle request, and the clock starts at the second.
local checked = false
local function verified()
  if not checked then
    checked = true
    return true
  end
  if started == nil then started = now() end
  return false
end
local function finish()
  elapsed = now() - started
  names = table.concat(acked, "\n")
  io.write("QUOTA\n")
  io.flush()
end
local function count(status, body, want)
  if status == want then
    ok = ok + 1
    acked[ok] = string.match(body, '"name":"([^"]+)"') .. " " ..
      string.match(body, '"resourceVersion":"([0-9]+)"')
  else
    bad = bad + 1
    if bad <= 3 then io.stderr:write("HTTP " .. status .. ": " .. body .. "\n") end
  end
  if ok + bad == quota then finish() end
end
function done(summary, latency, requests)
  local t = threads[1]
  io.write(string.format("RESULT ok=%d bad=%d elapsed=%.6f p50_us=%d p99_us=%d\n",
    t:get("ok"), t:get("bad"), t:get("elapsed") or -1, latency:percentile(50),
    latency:percentile(99)))
  local f = assert(io.open(output, "w"))
  f:write(t:get("names") or "")
  f:close()
end
local function common(args)
  quota = tonumber(args[1])
  headers = {["Content-Type"] = "application/json",
             ["Authorization"] = "Bearer " .. os.getenv("SHOAL_BENCH_TOKEN")}
  path = args[2]
  ns = args[3]
  ok, bad, sent, elapsed, started = 0, 0, 0, nil, nil
  acked = {}
  filler = string.rep("x", 200)
  -- Once the quota is sent, each connection asks for /healthz (not counted) until wrk is
  -- stopped, so no create or update is in flight unaccounted for when the phase ends.
  idle = wrk.format("GET", "/healthz", headers)
end
"""

CREATE_LUA = (
    _LUA_COMMON
    + r"""
output = os.getenv("SHOAL_BENCH_OUTPUT")
function init(args)
  common(args)
  prefix = "w" .. id .. "-"
end
function request()
  if verified() then return idle end
  if sent >= quota then return idle end
  sent = sent + 1
  local body = '{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"' .. prefix .. sent ..
    '","namespace":"' .. ns .. '","labels":{"app":"bench"}},"data":{"k":"' .. filler .. '"}}'
  return wrk.format("POST", path, headers, body)
end
function response(status, headers, body)
  if status == 200 and body == "ok" then return end  -- a /healthz answer
  count(status, body, 201)
end
"""
)

UPDATE_LUA = (
    _LUA_COMMON
    + r"""
output = os.getenv("SHOAL_BENCH_OUTPUT")
function init(args)
  common(args)
  -- A ring of "name resourceVersion" to update; each answer puts the name back with its new
  -- resourceVersion, so every PUT is a compare-and-swap on the version the server last gave.
  ring, head, tail = {}, 1, 0
  for line in io.lines(args[4]) do
    local name, rv = string.match(line, "(%S+) (%S+)")
    tail = tail + 1
    ring[tail] = {name, rv}
  end
  serial = 0
end
function request()
  if verified() then return idle end
  if sent >= quota or head > tail then return idle end
  sent = sent + 1
  local item = ring[head]
  ring[head] = nil
  head = head + 1
  serial = serial + 1
  local body = '{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"' .. item[1] ..
    '","namespace":"' .. ns .. '","labels":{"app":"bench"},"resourceVersion":"' .. item[2] ..
    '"},"data":{"k":"' .. filler .. '","n":"' .. serial .. '"}}'
  return wrk.format("PUT", path .. "/" .. item[1], headers, body)
end
function response(status, headers, body)
  if status == 200 and body == "ok" then return end  -- a /healthz answer
  count(status, body, 200)
  if status == 200 then
    local name, rv = string.match(acked[ok], "(%S+) (%S+)")
    tail = tail + 1
    ring[tail] = {name, rv}
  end
end
"""
)


@dataclass(frozen=True, slots=True)
class WrkRun:
    ok: int
    """Answers with the expected status (201 for a create, 200 for an update)."""
    bad: int
    """Any other answer (the run fails if there is one)."""
    seconds: float
    """From the first request to the answer that completed the quota (monotonic clock)."""
    p50_ms: float
    p99_ms: float
    acked: dict[str, str]
    """Each acknowledged object's name and the resourceVersion its answer carried."""
    server_cpu: float
    """The server process's CPU seconds while wrk ran (its connections' TLS handshakes
    included; the checks after it not)."""

    @property
    def rate(self) -> float:
        return self.ok / self.seconds


async def run_wrk(
    server: ServerProcess,
    directory: Path,
    script: str,
    *,
    connections: int,
    quota: int,
    path: str,
    namespace: str,
    extra: tuple[str, ...] = (),
) -> WrkRun:
    """``quota`` requests by ``wrk -t1 -c<connections>`` with ``script``; stopped (SIGINT) as
    soon as the script saw the last answer, so its idle /healthz requests cost almost nothing."""
    lua = directory / "phase.lua"
    lua.write_text(script)
    output = directory / "acked.txt"
    output.unlink(missing_ok=True)
    args = ["wrk", "-t1", f"-c{connections}", "-d600s", "--timeout", "60s", "-s", str(lua)]
    args += [server.url + path, "--", str(quota), path, namespace, *extra]
    cpu = server_cpu(server)
    process = await asyncio.create_subprocess_exec(
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        # The token in the environment, not on the command line (which any local user sees).
        env={**os.environ, "SHOAL_BENCH_OUTPUT": str(output), "SHOAL_BENCH_TOKEN": server.token},
    )
    assert process.stdout is not None
    assert process.stderr is not None
    lines: list[str] = []
    try:
        async with asyncio.timeout(600):
            while line := (await process.stdout.readline()).decode():
                lines.append(line)
                if line.strip() == "QUOTA":
                    process.send_signal(signal.SIGINT)
            errors = (await process.stderr.read()).decode()
            await process.wait()
        cpu = server_cpu(server) - cpu
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    result = next((line for line in lines if line.startswith("RESULT ")), None)
    if result is None:
        raise RuntimeError(f"wrk gave no result:\n{''.join(lines)}{errors}")
    fields = dict(item.split("=", 1) for item in result.split()[1:])
    answers = [line.split(" ", 1) for line in output.read_text().splitlines() if line]
    acked = {name: version for name, version in answers}  # noqa: C416 (the last answer of each)
    run = WrkRun(
        ok=int(fields["ok"]),
        bad=int(fields["bad"]),
        seconds=float(fields["elapsed"]),
        p50_ms=int(fields["p50_us"]) / 1000,
        p99_ms=int(fields["p99_us"]) / 1000,
        acked=acked,
        server_cpu=cpu,
    )
    if run.bad or run.ok != quota or len(answers) != quota or run.seconds <= 0:
        raise RuntimeError(f"wrk: {run.ok} expected answers, {run.bad} others:\n{errors}")
    return run


async def stored_versions(server: ServerProcess, namespace: str) -> dict[str, str]:
    """Every object of the namespace's ConfigMaps: name to resourceVersion (one list)."""
    async with (
        client(server, 1) as http,
        http.get(CONFIGMAPS.format(namespace=namespace)) as response,
    ):
        items = (await expect(response, 200))["items"]
    return {item["metadata"]["name"]: item["metadata"]["resourceVersion"] for item in items}


def check_durable(run: WrkRun, stored: dict[str, str], what: str) -> None:
    """Every acknowledged write is in the store, at the version its answer named, and the store
    holds nothing the client was not told about (no write in flight when the phase ended)."""
    lost = [name for name, version in run.acked.items() if stored.get(name) != version]
    if lost:
        raise RuntimeError(f"{what}: {len(lost)} acknowledged writes not in the store: {lost[:5]}")


async def wrk_creates(
    server: ServerProcess, directory: Path, namespace: str, count: int, concurrency: int
) -> tuple[WrkRun, dict[str, str]]:
    """Creates by wrk, then checked: the namespace holds exactly the acknowledged objects."""
    async with client(server, 1) as http:
        await create_namespace(http, namespace)
    path = CONFIGMAPS.format(namespace=namespace)
    run = await run_wrk(
        server,
        directory,
        CREATE_LUA,
        connections=concurrency,
        quota=count,
        path=path,
        namespace=namespace,
    )
    stored = await stored_versions(server, namespace)
    check_durable(run, stored, "creates")
    if len(stored) != count:
        raise RuntimeError(f"creates: {count} acknowledged, {len(stored)} in the store")
    return run, stored


async def wrk_updates(
    server: ServerProcess,
    directory: Path,
    namespace: str,
    versions: dict[str, str],
    count: int,
    concurrency: int,
) -> WrkRun:
    """Updates by wrk (PUT with the resourceVersion last answered), then checked: each updated
    object is in the store at the version its last answer named."""
    ring = directory / "ring.txt"
    ring.write_text("".join(f"{name} {version}\n" for name, version in sorted(versions.items())))
    path = CONFIGMAPS.format(namespace=namespace)
    run = await run_wrk(
        server,
        directory,
        UPDATE_LUA,
        connections=concurrency,
        quota=count,
        path=path,
        namespace=namespace,
        extra=(str(ring),),
    )
    stored = await stored_versions(server, namespace)
    check_durable(run, stored, "updates")
    return run


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def verdict(met: bool) -> str:
    return "met" if met else "**NOT met**"


@contextlib.asynccontextmanager
async def server_in(directory: Path) -> AsyncIterator[ServerProcess]:
    """``shoal server`` in its own process; SIGKILLed if it is still there when we leave."""
    server: ServerProcess | None = None
    try:
        async with api_server_process(data_dir=directory, stop_timeout=5.0) as server:
            yield server
    finally:
        if server is not None:
            server.kill()  # a no-op when it has exited


@dataclass(frozen=True, slots=True)
class Load:
    """What the create and update phases measured."""

    single: float
    """Creates/s from one client."""
    created: float
    """Creates/s from ``Sizes.concurrency`` clients."""
    create_cpu: float
    """The server's CPU seconds per create (concurrent phase)."""
    updated: float
    update_cpu: float
    bare_before: float
    """Bare SQLite inserts/s just before the concurrent creates (the disk is shared and its
    fsync rate drifts within a minute: the yardstick is taken next to what it measures)."""
    bare_after: float
    """... and just after them."""
    latencies: str
    """Create and update latency percentiles (wrk only)."""


async def load_phases(server: ServerProcess, directory: Path, sizes: Sizes, lean: bool) -> Load:
    """Creates from 1 client, the bare loop, creates from ``sizes.concurrency`` clients, the
    bare loop again, then updates; with the server's CPU per create and per update."""
    if lean:
        single_run, _ = await wrk_creates(server, directory, "single", sizes.single, 1)
        bare_before = bare_sqlite(directory, sizes.bare)
        created_run, versions = await wrk_creates(
            server, directory, "bench", sizes.objects, sizes.concurrency
        )
        bare_after = bare_sqlite(directory, sizes.bare)
        updated_run = await wrk_updates(
            server, directory, "bench", versions, sizes.updates, sizes.concurrency
        )
        return Load(
            single=single_run.rate,
            created=created_run.rate,
            create_cpu=created_run.server_cpu / sizes.objects,
            updated=updated_run.rate,
            update_cpu=updated_run.server_cpu / sizes.updates,
            bare_before=bare_before,
            bare_after=bare_after,
            latencies=(
                f"create p50/p99 {created_run.p50_ms:.1f}/{created_run.p99_ms:.1f} ms, "
                f"update p50/p99 {updated_run.p50_ms:.1f}/{updated_run.p99_ms:.1f} ms"
            ),
        )
    single, _ = await creates(server, "single", sizes.single, 1)
    bare_before = bare_sqlite(directory, sizes.bare)
    cpu = server_cpu(server)
    created, versions = await creates(server, "bench", sizes.objects, sizes.concurrency)
    create_cpu = (server_cpu(server) - cpu) / sizes.objects
    bare_after = bare_sqlite(directory, sizes.bare)
    cpu = server_cpu(server)
    updated = await updates(server, "bench", versions, sizes.updates, sizes.concurrency)
    update_cpu = (server_cpu(server) - cpu) / sizes.updates
    return Load(
        single, created, create_cpu, updated, update_cpu, bare_before, bare_after, latencies=""
    )


async def run(directory: Path, sizes: Sizes, quick: bool, lean: bool) -> None:
    started = time.perf_counter()
    grouped = bare_sqlite(directory, sizes.bare * 4, per_commit=sizes.concurrency)
    async with server_in(directory / "server") as server:
        load = await load_phases(server, directory, sizes, lean)
        cpu = server_cpu(server)
        one, received, pages, objects, paged = await listing(server, "bench")
        list_cpu = server_cpu(server) - cpu
        after_ack, after_issue = await watch_latency(server, sizes.watchers, sizes.watch_events)
    single, created, create_cpu = load.single, load.created, load.create_cpu
    updated, update_cpu, latencies = load.updated, load.update_cpu, load.latencies
    bare_before, bare_after = load.bare_before, load.bare_after
    bare = (bare_before + bare_after) / 2
    elapsed = time.perf_counter() - started

    p50, p99 = (max(0.0, percentile(after_ack, f)) for f in (0.50, 0.99))
    early = sum(1 for delay in after_ack if delay <= 0) / len(after_ack)
    i50, i99 = (percentile(after_issue, f) for f in (0.50, 0.99))
    n = sizes.concurrency
    rows = [
        (
            "bare SQLite inserts/s (WAL, FULL, 1 per commit)",
            f"{bare:,.0f}",
            f"the disk's limit (mean of {bare_before:,.0f} just before and {bare_after:,.0f} "
            f"just after the {sizes.concurrency}-client creates)",
        ),
        (
            f"bare SQLite inserts/s (WAL, FULL, {sizes.concurrency} per commit)",
            f"{grouped:,.0f}",
            "for context: the same loop with group commit, as the server commits (not the goal's "
            "yardstick)",
        ),
        ("durable creates/s, 1 client", f"{single:,.0f}", f"{single / bare:.2f}× bare"),
        (
            f"durable creates/s, {n} clients",
            f"{created:,.0f}",
            f"{created / bare:.2f}× bare; goal ≥ 1,000/s and ≥ 0.5× bare: "
            + verdict(created >= 1000 and created >= 0.5 * bare)
            + f"; server CPU {create_cpu * 1000:.2f} ms per create"
            + (f"; {latencies.split(', ')[0]}" if latencies else ""),
        ),
        (
            f"durable updates/s (PUT with resourceVersion), {n} clients",
            f"{updated:,.0f}",
            f"{updated / bare:.2f}× bare; server CPU {update_cpu * 1000:.2f} ms per update"
            + (f"; {latencies.split(', ')[1]}" if latencies else ""),
        ),
        (
            f"watch delivery after the ack, p50 / p99, {sizes.watchers} watchers",
            f"{p50 * 1000:.2f} ms / {p99 * 1000:.2f} ms",
            f"{len(after_ack):,} deliveries, {early:.0%} read before the writer read its 201 "
            "(counted as 0); goal p99 < 20 ms: " + verdict(p99 < 0.020),
        ),
        (
            f"watch delivery after issuing the POST, p50 / p99, {sizes.watchers} watchers",
            f"{i50 * 1000:.2f} ms / {i99 * 1000:.2f} ms",
            "includes the write's commit and fsync: " + verdict(i99 < 0.020) + " as well",
        ),
        (
            f"list {objects:,} objects, one GET",
            f"{one * 1000:.0f} ms",
            ("goal < 500 ms: " + verdict(one < 0.5) if objects >= 10_000 else "(--quick)")
            + f"; body received after {received * 1000:.0f} ms (the rest is this client's "
            f"JSON decoding); server CPU {list_cpu * 1000:.0f} ms for this GET and the pages",
        ),
        (f"list {paged:,} objects, pages of 500", f"{pages * 1000:.0f} ms", "all pages"),
    ]
    command = "python bench/apiserver.py" + (" --quick" if quick else "")
    command += f" --client {'wrk' if lean else 'aiohttp'}"
    print(f"date: {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC; {elapsed:.0f} s in all")
    print(f"command: {command}")
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, load average "
        f"{os.getloadavg()[0]:.2f}; Python {platform.python_version()}, aiohttp "
        f"{aiohttp.__version__}, SQLite {sqlite3.sqlite_version}; data in {directory}"
    )
    print()
    print("| measure | result | comparison |")
    print("|---|---:|---|")
    for name, value, note in rows:
        print(f"| {name} | {value} | {note} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[1].strip())
    parser.add_argument("--quick", action="store_true", help="smaller phases (about 30 s)")
    parser.add_argument("--dir", type=Path, default=None, help="where to put the data")
    parser.add_argument(
        "--client",
        choices=("wrk", "aiohttp"),
        default="wrk" if shutil.which("wrk") else "aiohttp",
        help="the load client of the create and update phases (default: wrk when installed)",
    )
    args = parser.parse_args()
    # SIGTERM unwinds like Ctrl-C, so the server is stopped either way.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    directory = Path(tempfile.mkdtemp(prefix="shoal-bench-api-", dir=args.dir))
    (directory / "server").mkdir(mode=0o700)
    try:
        sizes = QUICK if args.quick else FULL
        asyncio.run(run(directory, sizes, args.quick, args.client == "wrk"))
    except KeyboardInterrupt:
        print("interrupted; the server was stopped", file=sys.stderr)
        sys.exit(130)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
