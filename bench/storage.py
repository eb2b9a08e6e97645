"""
Benchmark of the API server's storage, against the physical limit of the same disk.

    python bench/storage.py [--dir DIR] [--creates N] [--concurrency C]

Measures, in one run, in a fresh directory (default: the system's temporary directory):

* the disk's limit: a bare SQLite insert loop with the same durability (WAL, synchronous=FULL,
  one transaction per insert), i.e. how many acknowledged writes/s one fsync at a time allows;
* durable creates/s and updates/s through AsyncStore with C concurrent writers (group commit), and
  with one writer (every write waits for its own fsync);
* watch delivery latency with 100 watchers: from the moment a create is issued until each watcher
  holds the event (so it includes the commit's fsync), p50/p99;
* listing 10,000 objects (one page; and the same decoded to dicts).

Prints a Markdown table with the issue's goals.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import platform
import shutil
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

from shoal.apiserver import AsyncStore, Event, StorageSettings, collection_key, object_key


def bare_sqlite(directory: Path, count: int) -> float:
    """Inserts/s of a plain loop, one durable transaction per insert: the disk's fsync limit."""
    db = sqlite3.connect(directory / "bare.db", isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute(
        "CREATE TABLE log (revision INTEGER PRIMARY KEY AUTOINCREMENT, key TEXT, value TEXT)"
    )
    value = '{"kind":"ConfigMap","data":{"k":"' + "x" * 200 + '"}}'
    start = time.perf_counter()
    for i in range(count):
        db.execute("BEGIN IMMEDIATE")
        db.execute("INSERT INTO log (key, value) VALUES (?, ?)", (f"/k/{i}", value))
        db.execute("COMMIT")
    elapsed = time.perf_counter() - start
    db.close()
    return count / elapsed


def body(name: str, **extra: object) -> dict[str, object]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": "bench", "labels": {"app": "bench"}},
        "data": {"k": "x" * 200},
        **extra,
    }


async def creates(store: AsyncStore, prefix: str, count: int, concurrency: int) -> float:
    queue = list(range(count))

    async def worker() -> None:
        while queue:
            i = queue.pop()
            await store.create(f"{prefix}o{i:06d}", body(f"o{i}"))

    start = time.perf_counter()
    async with asyncio.TaskGroup() as tasks:
        for _ in range(concurrency):
            tasks.create_task(worker())
    return count / (time.perf_counter() - start)


async def updates(store: AsyncStore, prefix: str, count: int, concurrency: int) -> float:
    page = await store.list(prefix)
    entries = list(page.entries)
    per_key = max(1, count // len(entries))
    todo = [(entry.key, entry.revision) for entry in entries][: count // per_key]

    async def worker() -> None:
        while todo:
            key, revision = todo.pop()
            for n in range(per_key):
                revision = (await store.update(key, body(key, n=n), revision)).revision

    start = time.perf_counter()
    async with asyncio.TaskGroup() as tasks:
        for _ in range(concurrency):
            tasks.create_task(worker())
    return per_key * (count // per_key) / (time.perf_counter() - start)


async def watch_latency(store: AsyncStore, watchers: int, events: int) -> list[float]:
    """Seconds from issuing a create to each watcher holding its event."""
    prefix = collection_key("", "configmaps", "watched")
    samples: list[float] = []
    start_revision = await store.current_revision()
    ready = 0
    all_ready = asyncio.Event()

    async def watcher() -> None:
        nonlocal ready
        async with store.watch(prefix, start_revision) as watch:
            ready += 1
            if ready == watchers:
                all_ready.set()
            seen = 0
            async for item in watch:
                if isinstance(item, Event):
                    samples.append(time.perf_counter() - item.value["t0"])
                    seen += 1
                    if seen == events:
                        return

    async with asyncio.timeout(120), asyncio.TaskGroup() as tasks:
        for _ in range(watchers):
            tasks.create_task(watcher())
        await all_ready.wait()
        for i in range(events):
            # One write at a time, a few ms apart: latency, not throughput.
            key = object_key("", "configmaps", f"w{i}", "watched")
            await store.create(key, body(f"w{i}", t0=time.perf_counter()))
            await asyncio.sleep(0.002)
    return samples


async def listing(store: AsyncStore, prefix: str) -> tuple[float, float, float, int]:
    """Seconds to list the prefix in one page, to decode it, and to list it in pages of 500."""
    start = time.perf_counter()
    page = await store.list(prefix)
    listed = time.perf_counter() - start
    start = time.perf_counter()
    decoded = [entry.value for entry in page.entries]
    decode = time.perf_counter() - start
    start = time.perf_counter()
    token: str | None = None
    paged = 0
    while True:
        part = await store.list(prefix, limit=500, continue_token=token)
        paged += len(part.entries)
        token = part.continue_token
        if token is None:
            break
    pages = time.perf_counter() - start
    assert paged == len(decoded) == len(page.entries)
    return listed, decode, pages, len(page.entries)


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def run(directory: Path, args: argparse.Namespace) -> None:
    bare = bare_sqlite(directory, args.bare)
    settings = StorageSettings(path=directory / "store.db", compaction_interval=3600.0)
    prefix = collection_key("", "configmaps", "bench")
    async with AsyncStore.open(settings) as store:
        single = await creates(store, collection_key("", "configmaps", "single"), 500, 1)
        created = await creates(store, prefix, args.creates, args.concurrency)
        updated = await updates(store, prefix, args.creates, args.concurrency)
        list_prefix = collection_key("", "configmaps", "list")
        await creates(store, list_prefix, 10_000, args.concurrency)
        listed, decoded, paged, objects = await listing(store, list_prefix)
        latencies = await watch_latency(store, 100, args.watch_events)

    p50, p99 = percentile(latencies, 0.50), percentile(latencies, 0.99)
    rows = [
        ("bare SQLite inserts/s (WAL, FULL, 1 per commit)", f"{bare:,.0f}", "the disk's limit"),
        ("durable creates/s, 1 writer", f"{single:,.0f}", f"{single / bare:.2f}× bare"),
        (
            f"durable creates/s, {args.concurrency} writers",
            f"{created:,.0f}",
            f"{created / bare:.2f}× bare (goal ≥ 1,000/s and ≥ 0.5×): "
            + ("met" if created >= 1000 and created >= 0.5 * bare else "NOT met"),
        ),
        (
            f"durable updates/s (CAS), {args.concurrency} writers",
            f"{updated:,.0f}",
            f"{updated / bare:.2f}× bare",
        ),
        (
            "watch delivery p50 / p99, 100 watchers",
            f"{p50 * 1000:.2f} ms / {p99 * 1000:.2f} ms",
            f"{len(latencies):,} deliveries; goal p99 < 20 ms: "
            + ("met" if p99 < 0.020 else "NOT met"),
        ),
        (
            f"list {objects:,} objects, one page",
            f"{listed * 1000:.0f} ms",
            "goal < 500 ms: " + ("met" if listed < 0.5 else "NOT met"),
        ),
        (f"decode those {objects:,} objects to dicts", f"{decoded * 1000:.0f} ms", ""),
        (f"list {objects:,} objects in pages of 500", f"{paged * 1000:.0f} ms", "all pages"),
    ]
    print(f"date: {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC")
    print(f"command: python bench/storage.py {' '.join(sys.argv[1:])}".rstrip())
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}, SQLite {sqlite3.sqlite_version}, store in {directory}"
    )
    print()
    print("| measure | result | comparison |")
    print("|---|---:|---|")
    for name, value, note in rows:
        print(f"| {name} | {value} | {note} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[1])
    parser.add_argument("--dir", type=Path, default=None, help="where to put the test files")
    parser.add_argument("--creates", type=int, default=10_000, help="creates (and updates)")
    parser.add_argument("--concurrency", type=int, default=64, help="concurrent writers")
    parser.add_argument("--bare", type=int, default=1_000, help="bare SQLite inserts")
    parser.add_argument("--watch-events", type=int, default=300, help="events per watcher")
    args = parser.parse_args()
    directory = Path(tempfile.mkdtemp(prefix="shoal-bench-", dir=args.dir))
    try:
        asyncio.run(run(directory, args))
    finally:
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
