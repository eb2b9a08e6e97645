"""
The store behind asyncio: one writer thread with group commit, reader threads, watches.

Concurrency model
-----------------
* **One writer.** One connection writes (and holds the file's lock). Writes queue up on the
  event loop; the write loop takes everything queued (up to ``max_batch``), runs the batch's
  statements on the loop's thread (``Store.stage``: page-cache work, microseconds each), and
  hands the ``COMMIT``, whose fsync makes the whole batch durable at once (group commit), to the
  writer thread. While a commit is on the disk, the next batch gathers. A lone write is
  committed at once: batching adds no delay, only shares the fsync. Staging on the loop's
  thread costs one thread switch per batch instead of one per statement (each SQLite call
  releases the GIL, and a writer thread waiting to take it back made the two threads trade it
  several times per write). Compaction steps run on the writer thread, never while a batch is
  staged or committing (``_connection`` lock).
* **Acknowledge after commit, publish before acknowledging.** When the commit returned, the batch's
  events are published to the watch :class:`~shoal.apiserver.watching.Broadcaster` (in revision
  order, on the loop), then the writers' awaits return. A client that got its answer can read its
  write back, and every watch already holds the event.
* **Readers.** ``reader_threads`` threads, each with its own read-only connection (WAL lets them
  read while the writer writes), serve get, list and watch replays; a read sees every
  acknowledged write.
* **Cancellation.** Cancelling a caller's ``await`` does not cancel its write: it may still commit
  (as with any server, a client that gave up does not know).

Open with ``async with AsyncStore.open(settings) as store``; leaving the block commits the writes
already queued, ends every watch, stops the compaction loop and closes the connections.
"""

from __future__ import annotations

import asyncio
import builtins
import collections
import contextlib
import logging
import threading
from collections.abc import AsyncIterator, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from shoal.apiserver.storage import (
    Create,
    Delete,
    Entry,
    Event,
    Page,
    StorageError,
    StorageSettings,
    StorageUnavailableError,
    Store,
    Update,
    Write,
    encode,
)
from shoal.apiserver.watching import Broadcaster, Watch

__all__ = ["AsyncStore"]

logger = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class _Pending:
    write: Write
    done: asyncio.Future[Entry]


class AsyncStore:
    """The revision log for asyncio code: the API server's storage. See the module docstring."""

    def __init__(self, settings: StorageSettings, writer: Store) -> None:
        """Use :meth:`open`, which starts and stops the writer and compaction tasks."""
        self.settings = settings
        self._writer = writer
        self._write_thread = ThreadPoolExecutor(1, thread_name_prefix="shoal-storage-writer")
        self._readers: list[Store] = []
        self._readers_lock = threading.Lock()
        self._reader_local = threading.local()
        self._read_threads = ThreadPoolExecutor(
            max(settings.reader_threads, 1),
            thread_name_prefix="shoal-storage-reader",
            initializer=self._open_reader,
        )
        self._pending: collections.deque[_Pending] = collections.deque()
        self._has_work = asyncio.Event()
        self._room = asyncio.Semaphore(max(settings.max_pending_writes, 1))
        self._broadcaster = Broadcaster(writer.current_revision())
        self._stopping = asyncio.Event()
        self._closed = False
        self._loop_reader: Store | None = None
        self._loop = asyncio.get_running_loop()
        self._connection = asyncio.Lock()
        """Held while the writing connection is in use (a batch from its first statement to its
        commit, a compaction step): the loop's thread and the writer's thread take turns."""
        self.observers: list[Callable[[list[Event]], None]] = []
        """Called on the loop with each commit's events, after the watches got them and before
        the writers are answered (for caches of stored state)."""

    @classmethod
    @contextlib.asynccontextmanager
    async def open(cls, settings: StorageSettings) -> AsyncIterator[AsyncStore]:
        """Open (creating if needed) the store at ``settings.path`` for the duration of a block.

        StorageUnavailableError if another process has it open.
        """
        writer = await asyncio.to_thread(Store, settings)
        store = cls(settings, writer)
        loop = asyncio.get_running_loop()
        # Not a TaskGroup: it would wrap the caller's own exceptions in an ExceptionGroup. The
        # tasks are referenced here until they finish, and awaited on the way out.
        tasks = [
            loop.create_task(store._write_loop(), name="shoal-storage-writer"),
            loop.create_task(store._compaction_loop(), name="shoal-storage-compaction"),
        ]
        try:
            yield store
        finally:
            store._stop()
            try:
                await asyncio.gather(*tasks)
            finally:
                await asyncio.to_thread(store._close_connections)

    # -- lifecycle --------------------------------------------------------------------------

    def _stop(self) -> None:
        """Refuse new writes, let the queued ones commit, end the watches and the loops."""
        if self._closed:
            return
        self._closed = True
        self._stopping.set()
        self._broadcaster.close()
        self._has_work.set()  # the writer commits what is queued, then returns

    def _close_connections(self) -> None:
        self._write_thread.shutdown(wait=True)
        self._read_threads.shutdown(wait=True)
        self._writer.close()
        with self._readers_lock:
            for reader in self._readers:
                reader.close()
            self._readers.clear()

    def _open_reader(self) -> None:
        reader = Store(self.settings, exclusive=False)
        self._reader_local.store = reader
        with self._readers_lock:
            self._readers.append(reader)

    # -- writing ----------------------------------------------------------------------------

    async def _write_loop(self) -> None:
        loop = asyncio.get_running_loop()
        pending = self._pending
        while True:
            if not pending:
                if self._closed:
                    return
                self._has_work.clear()
                await self._has_work.wait()
                continue
            batch = [pending.popleft() for _ in range(min(len(pending), self.settings.max_batch))]
            for _ in batch:
                self._room.release()
            writes = [item.write for item in batch]
            try:
                async with self._connection:
                    # The statements on this thread (page-cache work, microseconds each), the
                    # commit and its fsync on the writer's: one thread switch per batch.
                    results = self._writer.stage(writes)
                    if any(isinstance(result, Event) for result in results):
                        await loop.run_in_executor(self._write_thread, self._writer.commit)
                    else:
                        self._writer.rollback()  # every write failed: nothing to make durable
            except BaseException as exc:
                failure = (
                    exc
                    if isinstance(exc, StorageError)
                    else StorageUnavailableError(f"the store's writer failed: {exc!r}")
                )
                for item in batch:
                    if not item.done.done():
                        item.done.set_exception(failure)
                if not isinstance(exc, StorageError):
                    self._stop()  # a bug or a cancellation: refuse writes from now on
                    raise
                logger.error("a batch of %d writes failed: %s", len(batch), exc)
                continue
            committed = [r for r in results if isinstance(r, Event)]
            self._broadcaster.publish(committed)
            for observer in self.observers:
                try:
                    observer(committed)
                except Exception:  # an observer's bug must not stop the writer
                    logger.exception("a commit observer failed")
            for item, result in zip(batch, results, strict=True):
                if item.done.done():  # the caller was cancelled; the write happened all the same
                    continue
                if isinstance(result, Event):
                    item.done.set_result(result.entry)
                else:
                    item.done.set_exception(result)

    async def _submit(self, write: Write) -> Entry:
        await self._room.acquire()
        if self._closed:
            self._room.release()
            raise StorageUnavailableError("the store is closed (the server is shutting down)")
        # The loop the store was opened on (asyncio.get_running_loop() costs a getpid() call).
        done: asyncio.Future[Entry] = self._loop.create_future()
        self._pending.append(_Pending(write, done))
        self._has_work.set()
        return await done

    async def create(self, key: str, value: Mapping[str, Any]) -> Entry:
        """Store a new object at ``key``: its entry, durable; AlreadyExistsError if one is live."""
        return await self._submit(Create(key, encode(value)))

    async def update(
        self, key: str, value: Mapping[str, Any], expected_revision: int | None
    ) -> Entry:
        """Replace the object at ``key``. With ``expected_revision``, only if it is still the
        object's revision (ConflictError otherwise); NotFoundError if there is no object."""
        return await self._submit(Update(key, encode(value), expected_revision))

    async def delete(self, key: str, expected_revision: int | None = None) -> Entry:
        """Delete the object at ``key``: its last value, at the delete's revision.
        NotFoundError if there is none; ConflictError on a stale ``expected_revision``."""
        return await self._submit(Delete(key, expected_revision))

    # -- reading ----------------------------------------------------------------------------

    def _on_reader(self, call: Callable[[Store], T]) -> T:
        store: Store = self._reader_local.store
        return call(store)

    async def _read(self, call: Callable[[Store], T]) -> T:
        if self._closed:
            raise StorageUnavailableError("the store is closed (the server is shutting down)")
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._read_threads, self._on_reader, call)
        except RuntimeError as exc:  # the executor was shut down under us
            raise StorageUnavailableError(f"the store is closed: {exc}") from exc

    async def get(self, key: str) -> Entry:
        """The live object at ``key``; NotFoundError if there is none."""
        return await self._read(lambda store: store.get(key))

    def get_now(self, key: str) -> Entry:
        """:meth:`get` on the calling thread (the event loop's), with a connection of its own.

        A point read through the key index takes microseconds, less than handing it to a
        reader thread and back (two thread switches and a future); WAL readers never wait for
        the writer. Lists and watch replays, which can be long, stay on the reader threads.
        """
        if self._closed:
            raise StorageUnavailableError("the store is closed (the server is shutting down)")
        reader = self._loop_reader
        if reader is None:
            reader = Store(self.settings, exclusive=False)
            with self._readers_lock:
                self._readers.append(reader)
            self._loop_reader = reader
        return reader.get(key)

    async def list(
        self,
        prefix: str,
        *,
        limit: int | None = None,
        continue_token: str | None = None,
        revision: int | None = None,
    ) -> Page:
        """One page of the objects under ``prefix`` (see :meth:`Store.list`)."""
        return await self._read(
            lambda store: store.list(
                prefix, limit=limit, continue_token=continue_token, revision=revision
            )
        )

    async def changes(
        self, prefix: str, *, after: int, upto: int | None = None, limit: int | None = None
    ) -> builtins.list[Event]:
        """Logged events with ``after < revision <= upto`` under ``prefix``; ExpiredError if
        compacted away."""
        return await self._read(
            lambda store: store.changes(prefix, after=after, upto=upto, limit=limit)
        )

    async def current_revision(self) -> int:
        """The revision of the last committed write."""
        return await self._read(lambda store: store.current_revision())

    async def compacted_revision(self) -> int:
        """The oldest revision still listable and watchable."""
        return await self._read(lambda store: store.compacted_revision())

    @property
    def published_revision(self) -> int:
        """The last revision every watch has been offered (at most the committed revision)."""
        return self._broadcaster.revision

    @property
    def watchers(self) -> int:
        """The number of watches following live events."""
        return len(self._broadcaster)

    def watch(self, prefix: str, from_revision: int) -> Watch:
        """The events after ``from_revision`` under ``prefix``, then live ones.

        ``async with store.watch(prefix, revision) as watch: async for event in watch: ...``
        Entering raises ExpiredError (with ``.oldest``) if ``from_revision`` was compacted,
        RevisionTooLargeError if the store does not reach it within ``revision_wait``.
        """
        settings = self.settings
        return Watch(
            self._broadcaster,
            self,
            prefix,
            from_revision,
            queue_size=settings.watch_queue_size,
            page_size=settings.replay_page_size,
            bookmark_interval=settings.bookmark_interval,
            revision_wait=settings.revision_wait,
        )

    # -- compaction -------------------------------------------------------------------------

    async def compact(
        self, *, keep_revisions: int | None = None, keep_seconds: float | None = None
    ) -> int:
        """Drop history beyond the bounds (the settings' when none is given); the new compacted
        revision. Runs on the writer thread in steps, so writes interleave with it."""
        if keep_revisions is None and keep_seconds is None:
            keep_revisions = self.settings.history_revisions
            keep_seconds = self.settings.history_seconds
        loop = asyncio.get_running_loop()
        writer = self._writer
        async with self._connection:
            target = await loop.run_in_executor(
                self._write_thread,
                lambda: writer.compaction_target(
                    keep_revisions=keep_revisions, keep_seconds=keep_seconds
                ),
            )
        step = self.settings.compaction_step
        compacted = await self.compacted_revision()
        while compacted < target:
            async with self._connection:  # one step at a time: writes interleave
                compacted = await loop.run_in_executor(
                    self._write_thread, writer.compact_step, target, step
                )
        return compacted

    async def _compaction_loop(self) -> None:
        interval = self.settings.compaction_interval
        while True:
            try:
                async with asyncio.timeout(interval):
                    await self._stopping.wait()
                return
            except TimeoutError:
                pass
            try:
                await self.compact()
            except StorageUnavailableError as exc:
                logger.warning("compaction failed, will retry in %.0f s: %s", interval, exc)
