"""kill -9 in the middle of many concurrent writes loses no acknowledged write, corrupts nothing."""

from __future__ import annotations

import asyncio
import os
import selectors
import subprocess
import sys
import time
from pathlib import Path

import pytest

from shoal.apiserver import (
    AsyncStore,
    Event,
    EventType,
    ExpiredError,
    NotFoundError,
    StorageSettings,
    Store,
)

HERE = Path(__file__).resolve().parent
SRC = HERE.parent.parent / "src"
WRITERS = 32
KILL_AFTER = 1_500
"""Acknowledged writes to see before the kill (the child is then in full flight)."""
DEADLINE = 30.0


def run_and_kill(path: Path) -> list[tuple[str, str, int]]:
    """Start the writer child, read its acknowledgements, SIGKILL it mid-stream; the acks."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
    }
    child = subprocess.Popen(
        [sys.executable, str(HERE / "crash_writer.py"), str(path), str(WRITERS)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    acknowledged: list[tuple[str, str, int]] = []
    try:
        assert child.stdout is not None
        selector = selectors.DefaultSelector()
        selector.register(child.stdout, selectors.EVENT_READ)
        buffer = b""
        deadline = time.monotonic() + DEADLINE
        while len(acknowledged) < KILL_AFTER:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"only {len(acknowledged)} writes acknowledged in {DEADLINE} s"
            if not selector.select(remaining):
                continue
            chunk = os.read(child.stdout.fileno(), 65536)
            assert chunk, (
                f"the writer exited early: {child.stderr.read() if child.stderr else b''!r}"
            )
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                if line != b"ready":
                    op, key, revision = line.decode().split()
                    acknowledged.append((op, key, int(revision)))
        child.kill()  # SIGKILL: no cleanup, no final checkpoint
        child.wait(timeout=DEADLINE)
        # Lines written before the kill but not read yet are acknowledgements too.
        rest = buffer + child.stdout.read()
        for line in rest.split(b"\n"):
            parts = line.decode().split()
            if len(parts) == 3:
                acknowledged.append((parts[0], parts[1], int(parts[2])))
        selector.close()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(timeout=DEADLINE)
        for stream in (child.stdout, child.stderr):
            if stream is not None:
                stream.close()
    assert child.returncode == -9
    return acknowledged


@pytest.fixture(scope="module")
def crashed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[tuple[str, str, int]]]:
    path = tmp_path_factory.mktemp("crash") / "store.db"
    return path, run_and_kill(path)


def test_every_acknowledged_write_survives(
    crashed: tuple[Path, list[tuple[str, str, int]]],
) -> None:
    """Each acknowledged write is in the log, as acknowledged; the log has no hole; SQLite's
    integrity check passes; each key's state follows its last acknowledged write."""
    path, acknowledged = crashed
    assert len(acknowledged) >= KILL_AFTER
    with Store(StorageSettings(path=path)) as store:
        assert store.integrity_check() == "ok"
        current = store.current_revision()
        log = {e.revision: e for e in store.changes("", after=1)}
        assert sorted(log) == list(range(2, current + 1)), "a committed batch is missing a row"
        kinds = {
            "create": EventType.ADDED,
            "update": EventType.MODIFIED,
            "delete": EventType.DELETED,
        }
        last: dict[str, tuple[str, int]] = {}
        for op, key, revision in acknowledged:
            event = log[revision]
            assert (event.type, event.key) == (kinds[op], key)
            last[key] = (op, revision)
        for key, (op, revision) in last.items():
            try:
                entry = store.get(key)
            except NotFoundError:
                # Deleted: by the acknowledged delete, or by one that committed unacknowledged.
                assert op == "delete" or store.changes(key, after=revision)
            else:
                assert entry.revision >= revision
        assert current >= max(revision for _, _, revision in acknowledged)


async def test_watch_resumes_after_the_crash(
    crashed: tuple[Path, list[tuple[str, str, int]]],
) -> None:
    """A watch from the last revision seen resumes (the unacknowledged commits first, then new
    writes); after compaction the same revision answers Expired."""
    path, acknowledged = crashed
    seen = max(revision for _, _, revision in acknowledged)
    settings = StorageSettings(path=path, compaction_interval=3600.0, bookmark_interval=None)
    async with asyncio.timeout(DEADLINE), AsyncStore.open(settings) as store:
        committed = await store.current_revision()
        async with store.watch("/registry/crash/", seen) as watch:
            created = await store.create("/registry/crash/items/after", {"after": True})
            got: list[Event] = []
            async for item in watch:
                assert isinstance(item, Event)
                got.append(item)
                if item.revision == created.revision:
                    break
        assert [e.revision for e in got] == [*range(seen + 1, committed + 1), created.revision]
        await store.compact(keep_revisions=0)
        with pytest.raises(ExpiredError) as caught:
            async with store.watch("/registry/crash/", seen):
                pass
        assert caught.value.oldest == created.revision
