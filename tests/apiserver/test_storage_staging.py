"""Group commit split in two: the batch's statements staged, then one durable commit.

``Store.stage`` runs a batch's statements without committing (the API server stages on its event
loop's thread), ``Store.commit`` makes them durable (on the writer thread). Nothing staged is
visible to a reader, nor acknowledged, before the commit; compaction never runs in between.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from shoal.apiserver import (
    AlreadyExistsError,
    AsyncStore,
    NotFoundError,
    StorageSettings,
    Store,
    collection_key,
    object_key,
)
from shoal.apiserver.records import Create, Event, Update, encode


def key(name: str) -> str:
    return object_key("", "configmaps", name, "default")


def settings(tmp_path: Path) -> StorageSettings:
    return StorageSettings(path=tmp_path / "store.db", compaction_interval=3600.0)


def test_staged_writes_are_invisible_until_committed(tmp_path: Path) -> None:
    with Store(settings(tmp_path)) as writer, Store(settings(tmp_path), exclusive=False) as reader:
        results = writer.stage([Create(key("a"), encode({"v": 1}))])
        assert [type(r) for r in results] == [Event]
        with pytest.raises(NotFoundError):
            reader.get(key("a"))
        assert reader.current_revision() == 1
        writer.commit()
        assert reader.get(key("a")).value == {"v": 1}
        assert reader.current_revision() == 2


def test_a_rolled_back_stage_leaves_nothing(tmp_path: Path) -> None:
    with Store(settings(tmp_path)) as store:
        store.stage([Create(key("a"), encode({"v": 1})), Create(key("b"), encode({"v": 2}))])
        store.rollback()
        assert store.current_revision() == 1
        with pytest.raises(NotFoundError):
            store.get(key("a"))
        # The connection is usable again, and revisions continue from the committed state.
        assert store.create(key("a"), {"v": 3}).revision == 2


async def test_a_batch_of_failures_commits_nothing_and_the_next_batch_works(
    tmp_path: Path,
) -> None:
    async with AsyncStore.open(settings(tmp_path)) as store:
        await store.create(key("a"), {"v": 1})
        revision = await store.current_revision()
        outcomes = await asyncio.gather(
            *(store.create(key("a"), {"v": n}) for n in range(5)),
            store.update(key("missing"), {"v": 0}, None),
            return_exceptions=True,
        )
        assert [type(o) for o in outcomes] == [AlreadyExistsError] * 5 + [NotFoundError]
        assert await store.current_revision() == revision
        entry = await store.update(key("a"), {"v": 2}, revision)
        assert entry.revision == revision + 1


async def test_writes_and_compaction_interleave_without_sharing_the_connection(
    tmp_path: Path,
) -> None:
    """Compaction steps (writer thread) and staged batches (loop thread) take turns on the one
    writing connection: every write lands, history is compacted, the file is intact."""
    async with AsyncStore.open(settings(tmp_path)) as store:
        names = [f"o{n:03d}" for n in range(40)]

        async def rewrite(name: str) -> None:
            entry = await store.create(key(name), {"v": 0})
            for value in range(1, 10):
                entry = await store.update(key(name), {"v": value}, entry.revision)

        async def compact_repeatedly() -> None:
            for _ in range(20):
                await store.compact(keep_revisions=5)
                await asyncio.sleep(0)

        async with asyncio.TaskGroup() as tasks:
            for name in names:
                tasks.create_task(rewrite(name))
            tasks.create_task(compact_repeatedly())
        page = await store.list(collection_key("", "configmaps", "default"))
        assert {e.key: e.value for e in page.entries} == {key(n): {"v": 9} for n in names}
        assert await store.compact(keep_revisions=0) == await store.current_revision()
    with Store(settings(tmp_path)) as reopened:
        assert reopened.integrity_check() == "ok"
        assert len(reopened.list(collection_key("", "configmaps", "default")).entries) == 40


def test_update_after_a_staged_create_in_the_same_batch(tmp_path: Path) -> None:
    """Later writes of a staged batch see the earlier ones (one transaction)."""
    with Store(settings(tmp_path)) as store:
        results = store.stage(
            [Create(key("a"), encode({"v": 1})), Update(key("a"), encode({"v": 2}), 2)]
        )
        assert [type(r) for r in results] == [Event, Event]
        store.commit()
        assert store.get(key("a")).value == {"v": 2}
