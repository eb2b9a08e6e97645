"""The crash test's child: many concurrent writers; prints each acknowledged write, flushed.

Run as ``python crash_writer.py STORE_PATH WRITERS``. Each line is ``<op> <key> <revision>``,
printed only after the store acknowledged the write (so after its commit was durable). The parent
kills this process with SIGKILL while it writes.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from shoal.apiserver import AsyncStore, StorageSettings


async def writer(store: AsyncStore, number: int) -> None:
    for i in range(1_000_000):
        key = f"/registry/crash/items/w{number}-{i}"
        entry = await store.create(key, {"writer": number, "i": i, "n": 0})
        print(f"create {key} {entry.revision}", flush=True)
        entry = await store.update(key, {"writer": number, "i": i, "n": 1}, entry.revision)
        print(f"update {key} {entry.revision}", flush=True)
        if i % 3 == 0:
            entry = await store.delete(key, entry.revision)
            print(f"delete {key} {entry.revision}", flush=True)


async def main(path: Path, writers: int) -> None:
    settings = StorageSettings(path=path, compaction_interval=3600.0)
    async with AsyncStore.open(settings) as store:
        print("ready", flush=True)
        async with asyncio.TaskGroup() as tasks:
            for number in range(writers):
                tasks.create_task(writer(store, number))


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), int(sys.argv[2])))
