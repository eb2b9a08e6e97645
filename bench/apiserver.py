"""
Benchmark of the API server through its HTTPS API, against the physical limit of the same disk.

    python bench/apiserver.py [--quick] [--dir DIR]

Starts ``shoal server`` in its own process (``shoal.testing.api_server_process``: 127.0.0.1, a
free port, a fresh data directory) and measures, in one run, with aiohttp clients in this process
(TLS verified with the server's CA, bearer token, keep-alive connections):

* durable creates/s: POST of ConfigMaps from 1 and from 64 concurrent clients (each its own
  keep-alive connection); a create is counted when its 201 arrives, i.e. after the commit's fsync;
* durable updates/s: PUT of those ConfigMaps with their ``resourceVersion``, 64 clients;
* watch delivery latency with 100 concurrent watchers (``?watch=1``, one connection each): from
  the moment the writer holds the acknowledgement (201) of a create to the moment each watcher
  has read the event's line, both on this process's monotonic clock, p50/p99 (an event read
  before its acknowledgement counts as 0);
* listing 10,000 objects: one GET without ``limit``, and all pages with ``limit=500``, wall time
  including the JSON decoding of the answers;
* the disk's limit: a bare SQLite insert loop with the same durability (WAL, synchronous=FULL,
  one commit per insert), in the same directory as the server's database, before and after the
  server's phases (the disk is shared: the ratios use the mean), and the ratio of the creates/s
  to it;
* the server process's CPU time per create, per update and for the lists (``/proc``), which
  says what the server costs independently of what else is running on the machine.

Prints a Markdown table with the goals of issue 3. ``--quick`` makes every phase smaller (2,000
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


def bare_sqlite(directory: Path, count: int) -> float:
    """Inserts/s of a plain loop, one durable transaction per insert: the disk's fsync limit."""
    db = sqlite3.connect(directory / "bare.db", isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute(
        "CREATE TABLE log (revision INTEGER PRIMARY KEY AUTOINCREMENT, key TEXT, value TEXT)"
    )
    value = json.dumps(configmap("bench", "x"), separators=(",", ":"))
    start = time.perf_counter()
    for i in range(count):
        db.execute("BEGIN IMMEDIATE")
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
            whole = json.loads(raw)
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
                page = await expect(response, 200)
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


async def run(directory: Path, sizes: Sizes, quick: bool) -> None:
    started = time.perf_counter()
    # The disk's limit is measured before and after the server's phases (the disk is shared;
    # the ratios use the mean, and both are printed).
    bare_before = bare_sqlite(directory, sizes.bare)
    async with server_in(directory / "server") as server:
        single, _ = await creates(server, "single", sizes.single, 1)
        cpu = server_cpu(server)
        created, versions = await creates(server, "bench", sizes.objects, sizes.concurrency)
        create_cpu = (server_cpu(server) - cpu) / sizes.objects
        cpu = server_cpu(server)
        updated = await updates(server, "bench", versions, sizes.updates, sizes.concurrency)
        update_cpu = (server_cpu(server) - cpu) / sizes.updates
        cpu = server_cpu(server)
        one, received, pages, objects, paged = await listing(server, "bench")
        list_cpu = server_cpu(server) - cpu
        after_ack, after_issue = await watch_latency(server, sizes.watchers, sizes.watch_events)
    (directory / "bare.db").unlink()
    for suffix in ("-wal", "-shm"):
        (directory / f"bare.db{suffix}").unlink(missing_ok=True)
    bare_after = bare_sqlite(directory, sizes.bare)
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
            f"the disk's limit (mean of {bare_before:,.0f} before and {bare_after:,.0f} after)",
        ),
        ("durable creates/s, 1 client", f"{single:,.0f}", f"{single / bare:.2f}× bare"),
        (
            f"durable creates/s, {n} clients",
            f"{created:,.0f}",
            f"{created / bare:.2f}× bare; goal ≥ 1,000/s and ≥ 0.5× bare: "
            + verdict(created >= 1000 and created >= 0.5 * bare)
            + f"; server CPU {create_cpu * 1000:.2f} ms per create",
        ),
        (
            f"durable updates/s (PUT with resourceVersion), {n} clients",
            f"{updated:,.0f}",
            f"{updated / bare:.2f}× bare; server CPU {update_cpu * 1000:.2f} ms per update",
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
    args = parser.parse_args()
    # SIGTERM unwinds like Ctrl-C, so the server is stopped either way.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    directory = Path(tempfile.mkdtemp(prefix="shoal-bench-api-", dir=args.dir))
    (directory / "server").mkdir(mode=0o700)
    try:
        asyncio.run(run(directory, QUICK if args.quick else FULL, args.quick))
    except KeyboardInterrupt:
        print("interrupted; the server was stopped", file=sys.stderr)
        sys.exit(130)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
