"""
The Kubernetes-compatible API server.

Storage (a kine-style revision log in one SQLite file, and its watches):

* :mod:`~shoal.apiserver.storage`: the synchronous :class:`Store` (one connection) and its
  settings; :mod:`~shoal.apiserver.records` the key format and records;
  :mod:`~shoal.apiserver.storage_errors` the errors (each carries the Kubernetes reason and code
  it maps to).
* :mod:`~shoal.apiserver.aiostorage`: :class:`AsyncStore`, the store behind asyncio (one writer
  thread with group commit, reader threads, compaction on a timer).
* :mod:`~shoal.apiserver.watching`: the broadcaster that fans committed events out to watches,
  and :class:`Watch` (replay from the log, then live events, with no gap and no duplicate).

The storage design, durability and error mapping are in ``docs/storage.md``.
"""

from shoal.apiserver.aiostorage import AsyncStore
from shoal.apiserver.storage import (
    AlreadyExistsError,
    ConflictError,
    Create,
    Delete,
    Entry,
    Event,
    EventType,
    ExpiredError,
    InvalidContinueError,
    NotFoundError,
    Page,
    RevisionTooLargeError,
    StorageError,
    StorageSettings,
    StorageUnavailableError,
    Store,
    Update,
    WatchOverflowError,
    Write,
    collection_key,
    object_key,
)
from shoal.apiserver.watching import Bookmark, Broadcaster, Watch

__all__ = [
    "AlreadyExistsError",
    "AsyncStore",
    "Bookmark",
    "Broadcaster",
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
    "Watch",
    "WatchOverflowError",
    "Write",
    "collection_key",
    "object_key",
]
