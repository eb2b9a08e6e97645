"""Watches: replay from the log, then live events, with no gap and no duplicate, ever."""

from __future__ import annotations

import asyncio
import dataclasses
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from shoal.apiserver import (
    AsyncStore,
    Bookmark,
    Broadcaster,
    ConflictError,
    Event,
    EventType,
    ExpiredError,
    NotFoundError,
    RevisionTooLargeError,
    StorageSettings,
    StorageUnavailableError,
    Watch,
    WatchOverflowError,
    collection_key,
    object_key,
)

A = "/a/"
B = "/b/"
WAIT = 10.0
"""Every wait in these tests is bounded by this many seconds (none should take more than a few ms)."""


def event(revision: int, key: str, kind: EventType = EventType.MODIFIED) -> Event:
    return Event(kind, key, f'{{"rv":{revision}}}', revision, revision)


class ListLog:
    """A change log in memory, with a hook that runs in the middle of the next read."""

    def __init__(self, events: list[Event], compacted: int = 0) -> None:
        self.events = events
        self.compacted = compacted
        self.reads: list[tuple[int, int | None, int | None]] = []
        self.during_next_read: Callable[[], Awaitable[None]] | None = None

    async def changes(
        self, prefix: str, *, after: int, upto: int | None = None, limit: int | None = None
    ) -> list[Event]:
        self.reads.append((after, upto, limit))
        if after < self.compacted:
            raise ExpiredError(after, self.compacted)
        hook, self.during_next_read = self.during_next_read, None
        if hook is not None:
            await hook()
        found = [
            e
            for e in self.events
            if after < e.revision and (upto is None or e.revision <= upto)
            if e.key.startswith(prefix)
        ]
        return found[:limit] if limit is not None else found


def commit(log: ListLog, broadcaster: Broadcaster, *events: Event) -> None:
    """What the store's writer does: append to the log, then publish."""
    log.events.extend(events)
    broadcaster.publish(list(events))


async def take(watch: Watch, count: int) -> list[Event]:
    """The next ``count`` items of ``watch``, which must all be events."""
    async with asyncio.timeout(WAIT):
        got = [await anext(watch) for _ in range(count)]
    assert all(isinstance(item, Event) for item in got), got
    return [item for item in got if isinstance(item, Event)]


async def next_item(watch: Watch) -> Event | Bookmark:
    async with asyncio.timeout(WAIT):
        return await anext(watch)


async def eventually(condition: Callable[[], bool | Awaitable[bool]]) -> None:
    """Poll ``condition`` (sync or async) until it holds, bounded by WAIT; never a fixed sleep."""
    async with asyncio.timeout(WAIT):
        while True:
            holds = condition()
            if not isinstance(holds, bool):
                holds = await holds
            if holds:
                return
            await asyncio.sleep(0.001)


def history(first: int, last: int) -> list[Event]:
    """Events ``first..last``, alternating between prefixes A and B."""
    return [event(r, f"{A if r % 2 else B}k{r}") for r in range(first, last + 1)]


class TestWatch:
    async def test_replay_then_live(self) -> None:
        """A watch replays the events after its revision under its prefix, then follows live ones."""
        log = ListLog(history(2, 10))
        broadcaster = Broadcaster(10)
        async with Watch(broadcaster, log, A, 4) as watch:
            replayed = await take(watch, 3)
            assert [e.revision for e in replayed] == [5, 7, 9]
            commit(log, broadcaster, event(11, A + "x"), event(12, B + "y"), event(13, A + "z"))
            live = await take(watch, 2)
            assert [e.revision for e in live] == [11, 13]
            assert watch.revision == 13

    async def test_write_during_the_last_replay_read_is_delivered_once(self) -> None:
        """The classic race: an event committed while the replay read runs is neither lost (it
        comes live) nor repeated (the read stops at the revision noted when subscribing)."""
        log = ListLog(history(2, 10))
        broadcaster = Broadcaster(10)

        async def write_now() -> None:
            commit(log, broadcaster, event(11, A + "race"))

        log.during_next_read = write_now
        async with Watch(broadcaster, log, A, 1) as watch:
            got = await take(watch, 5)
            assert [e.revision for e in got] == [3, 5, 7, 9, 11]
            commit(log, broadcaster, event(12, A + "after"))
            assert [e.revision for e in await take(watch, 1)] == [12]

    async def test_catch_up_reads_pages_no_further_than_published(self) -> None:
        """A far-behind watch reads bounded pages, each ending at the published revision."""
        log = ListLog(history(2, 40))
        broadcaster = Broadcaster(40)
        async with Watch(broadcaster, log, A, 1, page_size=4) as watch:
            got = await take(watch, 19)
        assert [e.revision for e in got] == list(range(3, 41, 2))
        assert len(log.reads) > 3
        assert all(upto == 40 for _, upto, _ in log.reads)
        assert all(limit == 4 for _, _, limit in log.reads[:-1])

    async def test_overflow_closes_with_gone_and_loses_nothing(self) -> None:
        """A watcher that falls behind is closed with a 410 naming what it got; watching again
        from there delivers the rest."""
        log = ListLog(history(2, 3))
        broadcaster = Broadcaster(3)
        async with Watch(broadcaster, log, A, 1, queue_size=3) as watch:
            assert [e.revision for e in await take(watch, 1)] == [3]
            commit(log, broadcaster, *[event(r, A + f"k{r}") for r in range(4, 9)])
            with pytest.raises(WatchOverflowError) as caught:
                await take(watch, 1)
        error = caught.value
        assert (error.reason, error.code, error.last_revision) == ("Gone", 410, 3)
        assert len(broadcaster) == 0
        async with Watch(broadcaster, log, A, error.last_revision) as again:
            assert [e.revision for e in await take(again, 5)] == [4, 5, 6, 7, 8]

    async def test_bookmark_when_idle(self) -> None:
        """An idle watch says how far it is known to be complete."""
        log = ListLog(history(2, 3))
        broadcaster = Broadcaster(3)
        async with Watch(broadcaster, log, A, 3, bookmark_interval=0.01) as watch:
            commit(log, broadcaster, event(4, B + "elsewhere"))
            assert await next_item(watch) == Bookmark(4)
            assert watch.revision == 4

    async def test_expired_on_enter(self) -> None:
        log = ListLog(history(8, 10), compacted=7)
        with pytest.raises(ExpiredError) as caught:
            async with Watch(Broadcaster(10), log, A, 5):
                pass
        assert (caught.value.requested, caught.value.oldest) == (5, 7)

    async def test_too_large_revision(self) -> None:
        with pytest.raises(RevisionTooLargeError):
            async with Watch(Broadcaster(10), ListLog([]), A, 12, revision_wait=0.01):
                pass

    async def test_waits_for_a_revision_about_to_be_published(self) -> None:
        """A revision a list returned may be committed but not yet published: the watch waits."""
        log = ListLog(history(2, 10))
        broadcaster = Broadcaster(10)
        watch = Watch(broadcaster, log, A, 11, revision_wait=WAIT)
        async with asyncio.timeout(WAIT), asyncio.TaskGroup() as tasks:
            entering = tasks.create_task(watch.start())
            await eventually(lambda: bool(broadcaster._waiters))
            commit(log, broadcaster, event(11, A + "x"))
            await entering
            commit(log, broadcaster, event(12, B + "y"), event(13, A + "z"))
            assert [e.revision for e in await take(watch, 1)] == [13]
        watch.close()

    async def test_close_ends_iteration_even_while_waiting(self) -> None:
        broadcaster = Broadcaster(1)
        watch = Watch(broadcaster, ListLog([]), A, 1)
        got: list[Event | Bookmark] = []

        async def consume() -> None:
            async for item in watch:
                got.append(item)

        async with asyncio.timeout(WAIT), asyncio.TaskGroup() as tasks:
            tasks.create_task(consume())
            await eventually(lambda: len(broadcaster) > 0)
            watch.close()
        assert got == []

    def test_events_must_come_in_order(self) -> None:
        broadcaster = Broadcaster(5)
        with pytest.raises(RuntimeError, match="revision order"):
            broadcaster.publish([event(5, A)])


# --------------------------------------------------------------------------------------------
# Against the real store


@pytest.fixture
def settings(tmp_path: Path) -> StorageSettings:
    return StorageSettings(
        path=tmp_path / "store.db",
        compaction_interval=3600.0,
        bookmark_interval=None,
        replay_page_size=5,
    )


@pytest.fixture
async def store(settings: StorageSettings) -> AsyncIterator[AsyncStore]:
    async with AsyncStore.open(settings) as opened:
        yield opened


PODS = collection_key("", "pods")
OTHER = collection_key("", "configmaps")


class TestAsyncStore:
    async def test_crud_through_the_writer(self, store: AsyncStore) -> None:
        key = object_key("", "pods", "a", "ns")
        created = await store.create(key, {"v": 1})
        updated = await store.update(key, {"v": 2}, created.revision)
        with pytest.raises(ConflictError):
            await store.update(key, {"v": 3}, created.revision)
        assert await store.get(key) == updated
        deleted = await store.delete(key, updated.revision)
        assert deleted.value == {"v": 2}
        with pytest.raises(NotFoundError):
            await store.get(key)
        assert await store.current_revision() == deleted.revision

    async def test_an_acknowledged_write_is_in_every_watch(self, store: AsyncStore) -> None:
        """Events are published before writes are acknowledged (read-your-writes for watchers)."""
        async with store.watch(PODS, 1) as watch:
            entry = await store.create(object_key("", "pods", "a", "ns"), {})
            assert store.published_revision >= entry.revision
            assert watch._subscription is not None
            assert [e.revision for e in watch._subscription.events] == [entry.revision]

    async def test_concurrent_writers_and_watchers_see_the_same_log(
        self, store: AsyncStore
    ) -> None:
        """Watches started at random moments, from random revisions, while writers race, each
        deliver exactly the logged events after their revision under their prefix, in order."""
        rng = random.Random(7)
        watches: list[tuple[Watch, int, list[Event | Bookmark]]] = []
        writers_done = asyncio.Event()

        async def writer(number: int) -> None:
            for i in range(40):
                prefix = PODS if rng.random() < 0.8 else OTHER
                key = f"{prefix}ns/w{number}-{i % 7}"
                try:
                    entry = await store.get(key)
                except NotFoundError:
                    await store.create(key, {"writer": number, "i": i})
                    continue
                try:
                    if rng.random() < 0.3:
                        await store.delete(key, entry.revision)
                    else:
                        await store.update(key, {"writer": number, "i": i}, entry.revision)
                except (ConflictError, NotFoundError):
                    pass

        async def follow(watch: Watch, got: list[Event | Bookmark]) -> None:
            async with watch:
                async for item in watch:
                    got.append(item)

        async def start_watchers(tasks: asyncio.TaskGroup) -> None:
            while not writers_done.is_set() and len(watches) < 40:
                current = store.published_revision
                start = rng.choice([1, max(1, current - rng.randrange(30)), current])
                watch = store.watch(PODS, start)
                got: list[Event | Bookmark] = []
                watches.append((watch, start, got))
                tasks.create_task(follow(watch, got))
                await asyncio.sleep(rng.random() / 100)

        async with asyncio.timeout(WAIT * 3), asyncio.TaskGroup() as tasks:
            tasks.create_task(start_watchers(tasks))
            async with asyncio.TaskGroup() as writing:
                for number in range(8):
                    writing.create_task(writer(number))
            writers_done.set()
            final = (await store.changes(PODS, after=1))[-1].revision
            await eventually(lambda: all(watch.revision >= final for watch, _, _ in watches))
            for watch, _, _ in watches:
                watch.close()

        assert len(watches) > 5
        for _, start, got in watches:
            expected = await store.changes(PODS, after=start)
            assert got == expected, f"watch from {start}"

    async def test_watch_from_a_compacted_revision_is_expired(self, store: AsyncStore) -> None:
        """After compaction an old revision answers 410 Expired with the oldest one; a live
        watch carries on."""
        key = object_key("", "pods", "a", "ns")
        first = await store.create(key, {"v": 0})
        async with store.watch(PODS, first.revision) as live:
            for v in range(1, 6):
                await store.update(key, {"v": v}, None)
            compacted = await store.compact(keep_revisions=2)
            assert compacted == await store.compacted_revision() == first.revision + 3
            with pytest.raises(ExpiredError) as caught:
                async with store.watch(PODS, first.revision):
                    pass
            assert (caught.value.reason, caught.value.code) == ("Expired", 410)
            assert caught.value.oldest == compacted
            async with store.watch(PODS, compacted) as resumed:
                assert [e.value for e in await take(resumed, 2)] == [{"v": 4}, {"v": 5}]
            assert [e.value for e in await take(live, 5)] == [{"v": v} for v in range(1, 6)]

    async def test_overflow_with_the_real_store(self, settings: StorageSettings) -> None:
        async with AsyncStore.open(dataclasses.replace(settings, watch_queue_size=4)) as store:
            async with store.watch(PODS, 1) as watch:
                for i in range(10):
                    await store.create(f"{PODS}ns/p{i}", {"i": i})
                with pytest.raises(WatchOverflowError) as caught:
                    await take(watch, 1)
            async with store.watch(PODS, caught.value.last_revision) as again:
                got = await take(again, 10)
            assert [e.value for e in got] == [{"i": i} for i in range(10)]

    async def test_bookmarks(self, settings: StorageSettings) -> None:
        tuned = dataclasses.replace(settings, bookmark_interval=0.01)
        async with AsyncStore.open(tuned) as store, store.watch(PODS, 1) as watch:
            elsewhere = await store.create(f"{OTHER}ns/c", {})
            assert await next_item(watch) == Bookmark(elsewhere.revision)

    async def test_closing_ends_watches_and_refuses_writes(self, settings: StorageSettings) -> None:
        got: list[Event | Bookmark] = []
        async with AsyncStore.open(settings) as store:
            watch = store.watch(PODS, 1)

            async def consume() -> None:
                async for item in watch:
                    got.append(item)

            async with asyncio.timeout(WAIT), asyncio.TaskGroup() as tasks:
                tasks.create_task(consume())
                await store.create(f"{PODS}ns/a", {})
                await eventually(lambda: len(got) == 1)
                store._stop()
        with pytest.raises(StorageUnavailableError, match="closed"):
            await store.create(f"{PODS}ns/b", {})
        with pytest.raises(StorageUnavailableError, match="closed"):
            await store.get(f"{PODS}ns/a")
        assert [e.type for e in got if isinstance(e, Event)] == [EventType.ADDED]

    async def test_body_exceptions_are_not_wrapped(self, settings: StorageSettings) -> None:
        """An error inside the ``async with`` comes out as itself, not an ExceptionGroup."""
        with pytest.raises(KeyError):
            async with AsyncStore.open(settings):
                raise KeyError("mine")

    async def test_periodic_compaction(self, settings: StorageSettings) -> None:
        tuned = dataclasses.replace(
            settings, compaction_interval=0.01, history_seconds=None, history_revisions=1
        )
        async with AsyncStore.open(tuned) as store:
            key = f"{PODS}ns/a"
            await store.create(key, {"v": 0})
            for v in range(1, 4):
                await store.update(key, {"v": v}, None)
            target = await store.current_revision() - 1

            async def compacted() -> bool:
                return await store.compacted_revision() >= target

            await eventually(compacted)
            assert (await store.get(key)).value == {"v": 3}
