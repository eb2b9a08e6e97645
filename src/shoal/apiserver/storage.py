"""
The API server's storage: a revision log of JSON objects in one SQLite file, in the style of kine.

Theory of operation
-------------------
One table, ``log``, is appended to by every write. A row is one version of one object::

    revision  key                                  created deleted prev_revision value
    7         /registry/core/pods/default/web-1    1       0       0             {...}
    8         /registry/core/pods/default/web-1    0       0       7             {...}
    9         /registry/core/pods/default/web-1    0       1       8             {...}  (a tombstone)

* ``revision`` is the row id, a global monotonic integer, and the object's ``resourceVersion``. The
  store's current revision is SQLite's AUTOINCREMENT counter, so a revision is never reused, even
  after compaction removed the newest rows. A new store starts at revision 1, so every real write has
  a revision of at least 2 and ``"0"`` (which means "any" to Kubernetes clients) never names one.
* A write appends a row whose ``prev_revision`` is the revision of the key's previous row (0 when
  the key has none). The UNIQUE index on ``(key, prev_revision)`` is the compare-and-swap: two
  writers that read the same predecessor cannot both append after it.
* A tombstone (``deleted = 1``) keeps the object's last value, so a DELETED event carries it.
* Compaction at revision *C* deletes every row that is superseded by a row at or below *C*, and
  every tombstone at or below *C*. The state at any revision ``>= C`` and every event after *C* stay
  exact; *C* is the oldest revision a client may still list at or watch from (older: Expired).

Durability: WAL mode with ``synchronous=FULL``; :meth:`Store.apply` returns only after ``COMMIT``
returned, so a write that was acknowledged survives ``kill -9`` and power loss. One process writes a
file at a time (an exclusive ``flock`` on ``<path>.lock``); other connections of the same process
only read. :class:`Store` is synchronous and not thread-safe: one connection, used from one thread at
a time. :mod:`shoal.apiserver.aiostorage` puts it behind asyncio (one writer thread, group commit).

The errors and what the API server answers with them are in :mod:`~shoal.apiserver.storage_errors`.
"""

from __future__ import annotations

import base64
import binascii
import builtins
import contextlib
import fcntl
import json
import os
import sqlite3
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shoal.apiserver.records import (
    Create,
    Delete,
    Entry,
    Event,
    EventType,
    Page,
    Update,
    Write,
    collection_key,
    encode,
    object_key,
    prefix_bounds,
)
from shoal.apiserver.storage_errors import (
    AlreadyExistsError,
    ConflictError,
    ExpiredError,
    InvalidContinueError,
    NotFoundError,
    RevisionTooLargeError,
    StorageError,
    StorageUnavailableError,
    WatchOverflowError,
)

__all__ = [
    "AlreadyExistsError",
    "ConflictError",
    "Create",
    "Delete",
    "Entry",
    "Event",
    "EventType",
    "ExpiredError",
    "InvalidContinueError",
    "NotFoundError",
    "Page",
    "RevisionTooLargeError",
    "StorageError",
    "StorageSettings",
    "StorageUnavailableError",
    "Store",
    "Update",
    "WatchOverflowError",
    "Write",
    "collection_key",
    "encode",
    "object_key",
]

SCHEMA_VERSION = 1
"""``PRAGMA user_version`` of the files this code writes."""


# --------------------------------------------------------------------------------------------
# Settings


@dataclass(frozen=True, slots=True)
class StorageSettings:
    """Where the store lives, how much history it keeps, and how watches are fed."""

    path: Path
    """The SQLite file. ``<path>-wal``, ``<path>-shm`` and ``<path>.lock`` live beside it."""
    history_seconds: float | None = 300.0
    """Keep at least this much history (etcd's default for Kubernetes: 5 minutes); None: no bound."""
    history_revisions: int | None = None
    """Keep at most this many revisions of history; None: no bound. With both bounds set, the
    stricter one wins (compaction goes to the newer of the two revisions)."""
    compaction_interval: float = 60.0
    """Seconds between automatic compactions by :class:`~shoal.apiserver.aiostorage.AsyncStore`."""
    compaction_step: int = 10_000
    """Revisions compacted per transaction, so writes are never blocked long by a compaction."""
    max_batch: int = 512
    """Most writes committed together (group commit: one fsync for the whole batch)."""
    max_pending_writes: int = 10_000
    """Writes queued for the writer thread before ``create``/``update``/``delete`` wait for room."""
    reader_threads: int = 2
    """Threads (each with its own connection) that serve get, list and watch replays."""
    watch_queue_size: int = 1_000
    """Events a watcher may lag behind before it is closed with :class:`WatchOverflowError`."""
    replay_page_size: int = 1_000
    """Events read from the log per query while a watch catches up from an old revision."""
    bookmark_interval: float | None = 60.0
    """An idle watch yields a Bookmark (the current revision) this often; None: never."""
    revision_wait: float = 3.0
    """How long a watch from a revision not published yet waits before RevisionTooLargeError
    (the revision a list returned can run microseconds ahead of the watch stream)."""
    busy_timeout: float = 5.0
    """Seconds a connection waits for a lock inside SQLite before giving up."""


# --------------------------------------------------------------------------------------------
# Continue tokens


def _encode_continue(revision: int, after: str) -> str:
    payload = json.dumps({"v": 1, "rv": revision, "after": after}, separators=(",", ":"))
    return base64.urlsafe_b64encode(payload.encode()).decode().rstrip("=")


def _decode_continue(token: str) -> tuple[int, str]:
    try:
        padded = token + "=" * (-len(token) % 4)
        payload = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
        revision, after = payload["rv"], payload["after"]
        if payload.get("v") != 1 or not isinstance(revision, int) or not isinstance(after, str):
            raise ValueError("bad fields")
    except (ValueError, KeyError, TypeError, binascii.Error, UnicodeError) as exc:
        raise InvalidContinueError(
            "the continue token is not valid; pass the token from the previous page unchanged, "
            "or start a new list without it"
        ) from exc
    if not after:
        raise InvalidContinueError("the continue token names no position; start a new list")
    return revision, after


# --------------------------------------------------------------------------------------------
# The store

_SCHEMA = """
CREATE TABLE IF NOT EXISTS log (
    revision INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL,
    created INTEGER NOT NULL,
    deleted INTEGER NOT NULL,
    create_revision INTEGER NOT NULL,
    prev_revision INTEGER NOT NULL,
    written REAL NOT NULL,
    value TEXT NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS log_key_prev ON log (key, prev_revision);
CREATE INDEX IF NOT EXISTS log_key_revision ON log (key, revision);
CREATE INDEX IF NOT EXISTS log_written ON log (written);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
INSERT OR IGNORE INTO meta (name, value) VALUES ('compacted', 0);
"""

_LIST = """
SELECT key, value, revision, create_revision FROM log AS row
WHERE {range} AND revision <= :revision AND deleted = 0
  AND NOT EXISTS (SELECT 1 FROM log AS next WHERE next.key = row.key
                  AND next.prev_revision = row.revision AND next.revision <= :revision)
ORDER BY key LIMIT :limit
"""
_LIST_QUERIES = {
    (first, bounded): _LIST.format(
        range=("key >= :low" if first else "key > :after") + (" AND key < :high" if bounded else "")
    )
    for first in (True, False)
    for bounded in (True, False)
}
"""The list query by (first page?, bounded prefix?). The NOT EXISTS keeps a key's newest row at
the revision: the one with no successor at or below it (a one-row probe of ``log_key_prev``)."""


def _event(row: tuple[int, str, int, int, int, str]) -> Event:
    revision, key, created, deleted, create_revision, raw = row
    kind = EventType.DELETED if deleted else EventType.ADDED if created else EventType.MODIFIED
    return Event(kind, key, raw, revision, create_revision)


class Store:
    """The revision log on one SQLite connection (synchronous; one thread at a time).

    Open with ``exclusive=True`` (the default) to write: it takes the file's lock and creates the
    schema. Further connections of the same process pass ``exclusive=False`` and only read.
    """

    def __init__(self, settings: StorageSettings, *, exclusive: bool = True) -> None:
        self.settings = settings
        self._lock_fd: int | None = None
        path = Path(settings.path)
        if exclusive:
            self._lock_fd = _lock(path)
        try:
            new = not path.exists()
            self._db = sqlite3.connect(
                path,
                isolation_level=None,  # transactions are explicit: BEGIN IMMEDIATE ... COMMIT
                check_same_thread=False,  # handed between threads, never used by two at once
                timeout=settings.busy_timeout,
                cached_statements=64,
            )
            self._setup(exclusive=exclusive)
            if new and exclusive:
                _fsync_directory(path.parent)
        except BaseException:
            self.close()
            raise

    def _setup(self, *, exclusive: bool) -> None:
        db = self._db
        mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise StorageUnavailableError(
                f"{self.settings.path}: SQLite refused WAL mode ({mode}); put the store on a "
                "local file system"
            )
        db.execute("PRAGMA synchronous=FULL")
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise StorageUnavailableError(
                f"{self.settings.path} was written by a newer shoal (schema {version}); "
                "upgrade shoal or use another data directory"
            )
        if exclusive and version < SCHEMA_VERSION:
            db.execute("BEGIN IMMEDIATE")
            # One statement at a time: executescript() would COMMIT before the user_version.
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    db.execute(statement)
            # Revision 1 is the store's birth, so no write ever gets revision 0 or 1.
            db.execute("INSERT INTO sqlite_sequence (name, seq) VALUES ('log', 1)")
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            db.execute("COMMIT")
        if not exclusive:
            db.execute("PRAGMA query_only = 1")

    def close(self) -> None:
        """Close the connection and release the lock (idempotent)."""
        db = getattr(self, "_db", None)
        if db is not None:
            db.close()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- reading ----------------------------------------------------------------------------

    @contextlib.contextmanager
    def _snapshot(self) -> Iterator[sqlite3.Connection]:
        """A read transaction: every statement inside sees the same committed state."""
        db = self._db
        nested = db.in_transaction
        if not nested:
            db.execute("BEGIN")
        try:
            yield db
        finally:
            if not nested and db.in_transaction:
                db.execute("COMMIT")

    def _revision(self, db: sqlite3.Connection) -> int:
        row = db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'log'").fetchone()
        return int(row[0]) if row is not None else 1

    def _compacted(self, db: sqlite3.Connection) -> int:
        return int(db.execute("SELECT value FROM meta WHERE name = 'compacted'").fetchone()[0])

    def current_revision(self) -> int:
        """The revision of the last committed write (1 for a new store)."""
        with _errors(), self._snapshot() as db:
            return self._revision(db)

    def compacted_revision(self) -> int:
        """The oldest revision still listable and watchable (0 before the first compaction)."""
        with _errors(), self._snapshot() as db:
            return self._compacted(db)

    def get(self, key: str) -> Entry:
        """The live object at ``key``; :class:`NotFoundError` if there is none."""
        with _errors(), self._snapshot() as db:
            row = db.execute(
                "SELECT key, value, revision, create_revision, deleted FROM log WHERE key = ? "
                "ORDER BY revision DESC LIMIT 1",
                (key,),
            ).fetchone()
        if row is None or row[4]:
            raise NotFoundError(key)
        return Entry(row[0], row[1], row[2], row[3])

    def list(
        self,
        prefix: str,
        *,
        limit: int | None = None,
        continue_token: str | None = None,
        revision: int | None = None,
    ) -> Page:
        """The live objects whose keys start with ``prefix``, in key order, as of one revision.

        ``revision`` None lists the latest state. ``limit`` (None or 0: no limit) cuts the list
        into pages; every page of one list is read at the first page's revision, so the pages
        together are one consistent snapshot. ExpiredError when that revision was compacted.
        """
        after: str | None = None
        if continue_token is not None:
            if revision is not None:
                raise InvalidContinueError(
                    "a revision may not be given with a continue token; the token carries it"
                )
            revision, suffix = _decode_continue(continue_token)
            after = prefix + suffix
        low, high = prefix_bounds(prefix)
        with _errors(), self._snapshot() as db:
            current = self._revision(db)
            compacted = self._compacted(db)
            if revision is None:
                revision = current
            elif revision > current:
                raise RevisionTooLargeError(revision, current)
            if revision < compacted:
                raise ExpiredError(revision, compacted, continue_token=continue_token is not None)
            params = {
                "low": low,
                "high": high,
                "after": after,
                "revision": revision,
                "limit": limit + 1 if limit else -1,
            }
            query = _LIST_QUERIES[after is None, high is not None]
            rows = db.execute(query, params).fetchall()
        token = None
        if limit and len(rows) > limit:
            rows = rows[:limit]
            token = _encode_continue(revision, rows[-1][0][len(prefix) :])
        return Page(tuple(Entry(*row) for row in rows), revision, token)

    def changes(
        self, prefix: str, *, after: int, upto: int | None = None, limit: int | None = None
    ) -> builtins.list[Event]:
        """The events with ``after < revision <= upto`` under ``prefix``, oldest first.

        :class:`ExpiredError` when events after ``after`` were compacted away (``after`` is
        older than :meth:`compacted_revision`).
        """
        low, high = prefix_bounds(prefix)
        sql = (
            "SELECT revision, key, created, deleted, create_revision, value FROM log "
            "WHERE revision > ? AND revision <= ?"
        )
        params: list[object] = [after, upto if upto is not None else 2**63 - 1]
        if prefix:
            sql += " AND key >= ? AND key < ?"
            params += [low, high]
        sql += " ORDER BY revision LIMIT ?"
        params.append(limit if limit is not None else -1)
        with _errors(), self._snapshot() as db:
            compacted = self._compacted(db)
            if after < compacted:
                raise ExpiredError(after, compacted)
            return [_event(row) for row in db.execute(sql, params)]

    # -- writing ----------------------------------------------------------------------------

    def apply(self, writes: Sequence[Write]) -> builtins.list[Event | StorageError]:
        """Apply ``writes`` in order, in one transaction with one fsync (a group commit).

        Each write succeeds or fails on its own: the result list holds, for each write, its
        event or the :class:`StorageError` it failed with. Returns only after the commit is
        durable. A database failure rolls the whole batch back and raises StorageUnavailableError.
        """
        results = self.stage(writes)
        self.commit()
        return results

    def stage(self, writes: Sequence[Write]) -> builtins.list[Event | StorageError]:
        """The first half of :meth:`apply`: ``BEGIN IMMEDIATE`` and the writes' statements,
        without committing. :meth:`commit` (which syncs) or :meth:`rollback` must follow, on
        this connection, before anything else uses it; none of the results is durable (nor may
        be acknowledged) until :meth:`commit` returned. A database failure rolls back and
        raises StorageUnavailableError.

        The statements only touch SQLite's page cache: the pages reach the WAL file, and the
        disk, in the ``COMMIT``. So the API server stages on its event loop's thread and hands
        only the commit to its writer thread: one thread switch per batch instead of one per
        statement (each statement releases and takes back the GIL)."""
        db = self._db
        now = time.time()
        results: builtins.list[Event | StorageError] = []
        with _errors():
            db.execute("BEGIN IMMEDIATE")
            try:
                revision = self._revision(db)
                for write in writes:
                    try:
                        event = self._apply(db, write, revision + 1, now)
                    except StorageError as exc:
                        results.append(exc)
                    else:
                        revision = event.revision
                        results.append(event)
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
        return results

    def commit(self) -> None:
        """Commit what :meth:`stage` wrote: returns once it is durable (WAL, synchronous=FULL:
        the WAL is fsynced). A failure rolls back and raises StorageUnavailableError."""
        db = self._db
        with _errors():
            try:
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise

    def rollback(self) -> None:
        """Abandon what :meth:`stage` wrote (nothing of it was ever visible to readers)."""
        with _errors():
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")

    def _apply(self, db: sqlite3.Connection, write: Write, revision: int, now: float) -> Event:
        latest = db.execute(
            "SELECT revision, create_revision, deleted, value FROM log WHERE key = ? "
            "ORDER BY revision DESC LIMIT 1",
            (write.key,),
        ).fetchone()
        live = latest is not None and not latest[2]
        prev = latest[0] if latest is not None else 0
        if isinstance(write, Create):
            if live:
                raise AlreadyExistsError(write.key)
            event = Event(EventType.ADDED, write.key, write.raw, revision, revision)
        else:
            if not live:
                raise NotFoundError(write.key)
            if write.expected_revision is not None and write.expected_revision != prev:
                raise ConflictError(write.key, expected=write.expected_revision, actual=prev)
            if isinstance(write, Update):
                event = Event(EventType.MODIFIED, write.key, write.raw, revision, latest[1])
            else:
                event = Event(EventType.DELETED, write.key, latest[3], revision, latest[1])
        try:
            db.execute(
                "INSERT INTO log (revision, key, created, deleted, create_revision, "
                "prev_revision, written, value) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    revision,
                    write.key,
                    event.type is EventType.ADDED,
                    event.type is EventType.DELETED,
                    event.create_revision,
                    prev,
                    now,
                    event.raw,
                ),
            )
        except sqlite3.IntegrityError as exc:  # another writer appended after ``prev`` first
            raise ConflictError(write.key, expected=prev, actual=None) from exc
        return event

    def create(self, key: str, value: Mapping[str, Any]) -> Entry:
        """Store a new object; :class:`AlreadyExistsError` if ``key`` holds a live one."""
        return self._one(Create(key, encode(value)))

    def update(self, key: str, value: Mapping[str, Any], expected_revision: int | None) -> Entry:
        """Replace the object at ``key``; :class:`ConflictError` if ``expected_revision`` (when
        not None) is not its current revision, :class:`NotFoundError` if there is none."""
        return self._one(Update(key, encode(value), expected_revision))

    def delete(self, key: str, expected_revision: int | None = None) -> Entry:
        """Delete the object at ``key``; returns its last value at the delete's revision."""
        return self._one(Delete(key, expected_revision))

    def _one(self, write: Write) -> Entry:
        (result,) = self.apply([write])
        if isinstance(result, StorageError):
            raise result
        return result.entry

    # -- compaction -------------------------------------------------------------------------

    def compaction_target(
        self,
        *,
        keep_revisions: int | None = None,
        keep_seconds: float | None = None,
        now: float | None = None,
    ) -> int:
        """The revision a compaction keeping this much history goes to (never backwards)."""
        with _errors(), self._snapshot() as db:
            current = self._revision(db)
            target = self._compacted(db)
            if keep_revisions is not None:
                target = max(target, current - max(keep_revisions, 0))
            if keep_seconds is not None:
                cutoff = (time.time() if now is None else now) - keep_seconds
                row = db.execute("SELECT MAX(revision) FROM log WHERE written <= ?", (cutoff,))
                old = row.fetchone()[0]
                if old is not None:
                    target = max(target, int(old))
            return min(target, current)

    def compact_step(self, target: int, step: int) -> int:
        """Compact up to ``min(target, compacted + step)`` in one transaction; the new revision.

        Deletes the rows that a row at or below the new compacted revision supersedes, and the
        tombstones at or below it. Steps go in revision order, so a key's whole history before a
        removed tombstone is gone with it and a later create of the key starts a fresh chain.
        """
        db = self._db
        with _errors():
            db.execute("BEGIN IMMEDIATE")
            try:
                low = self._compacted(db)
                high = min(target, low + max(step, 1))
                if high > low:
                    db.execute("UPDATE meta SET value = ? WHERE name = 'compacted'", (high,))
                    db.execute(
                        "DELETE FROM log WHERE revision IN (SELECT prev_revision FROM log "
                        "WHERE revision > ? AND revision <= ? AND prev_revision > 0)",
                        (low, high),
                    )
                    db.execute(
                        "DELETE FROM log WHERE revision > ? AND revision <= ? AND deleted = 1",
                        (low, high),
                    )
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
        return max(high, low)

    def compact(
        self,
        *,
        keep_revisions: int | None = None,
        keep_seconds: float | None = None,
        now: float | None = None,
    ) -> int:
        """Drop history older than the bounds given (the settings' when none is); the new
        compacted revision. The latest version of every live object is always kept."""
        if keep_revisions is None and keep_seconds is None:
            keep_revisions = self.settings.history_revisions
            keep_seconds = self.settings.history_seconds
        target = self.compaction_target(
            keep_revisions=keep_revisions, keep_seconds=keep_seconds, now=now
        )
        compacted = self.compacted_revision()
        while compacted < target:
            compacted = self.compact_step(target, self.settings.compaction_step)
        return compacted

    def integrity_check(self) -> str:
        """SQLite's ``PRAGMA integrity_check``: ``"ok"``, or what is broken."""
        with _errors():
            rows = self._db.execute("PRAGMA integrity_check").fetchall()
        return "\n".join(str(row[0]) for row in rows)


@contextlib.contextmanager
def _errors() -> Iterator[None]:
    """Turn SQLite's failures (disk full, I/O error, busy, closed) into StorageUnavailableError."""
    try:
        yield
    except sqlite3.IntegrityError:
        raise
    except (sqlite3.OperationalError, sqlite3.DatabaseError, sqlite3.ProgrammingError) as exc:
        raise StorageUnavailableError(f"the store's database failed: {exc}") from exc


def _lock(path: Path) -> int:
    lock_path = path.with_name(path.name + ".lock")
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise StorageUnavailableError(
            f"{path} is in use by another process (it holds {lock_path}); stop that server, or "
            "use another data directory",
            retry_after=5.0,
        ) from None
    return fd


def _fsync_directory(directory: Path) -> None:
    """Make a new file's directory entry durable (SQLite syncs its WAL's, not the database's)."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
