"""
The storage errors. Each carries the Kubernetes ``reason`` and HTTP ``code`` the API server
answers with, and says what the client should do::

    StorageError
    ├── NotFoundError           404 NotFound        no live object at the key
    ├── AlreadyExistsError      409 AlreadyExists   create of a key that holds a live object
    ├── ConflictError           409 Conflict        stale expected revision: re-read, re-apply
    ├── ExpiredError            410 Expired         revision or continue token older than the
    │                                               history: re-list, then watch from the list
    ├── WatchOverflowError      410 Gone            the watcher fell too far behind: watch again
    ├── InvalidContinueError    400 BadRequest      a continue token this store did not issue
    ├── RevisionTooLargeError   504 Timeout         a revision the store has not reached yet
    └── StorageUnavailableError 503 ServiceUnavailable  closed, locked or failing database (retry)

All but StorageUnavailableError are :class:`~shoal.errors.PermanentError`: the same request fails
the same way until the client changes it (re-reads, re-lists). StorageUnavailableError is a
:class:`~shoal.errors.RetryableError`.
"""

from __future__ import annotations

from typing import ClassVar

from shoal.errors import PermanentError, RetryableError, ShoalError

__all__ = [
    "OPTIMISTIC_LOCK_MESSAGE",
    "AlreadyExistsError",
    "ConflictError",
    "ExpiredError",
    "InvalidContinueError",
    "NotFoundError",
    "RevisionTooLargeError",
    "StorageError",
    "StorageUnavailableError",
    "WatchOverflowError",
]

OPTIMISTIC_LOCK_MESSAGE = (
    "the object has been modified; please apply your changes to the latest version and try again"
)
"""Kubernetes' wording for a stale resourceVersion (``OptimisticLockErrorMsg``)."""


class StorageError(ShoalError):
    """A storage operation failed; ``reason`` and ``code`` are what the API server answers."""

    reason: ClassVar[str] = "InternalError"
    """The Kubernetes ``Status.reason``."""
    code: ClassVar[int] = 500
    """The HTTP status code."""

    def __init__(self, message: str, *, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key


class NotFoundError(StorageError, PermanentError):
    """No live object is stored at ``key``."""

    reason = "NotFound"
    code = 404

    def __init__(self, key: str) -> None:
        super().__init__(f"no object at {key}; create it first", key=key)


class AlreadyExistsError(StorageError, PermanentError):
    """A create found a live object at ``key``: update it instead, or delete it first."""

    reason = "AlreadyExists"
    code = 409

    def __init__(self, key: str) -> None:
        super().__init__(f"an object already exists at {key}; update it instead", key=key)


class ConflictError(StorageError, PermanentError):
    """The object changed since ``expected`` was read: re-read it, re-apply the change, retry."""

    reason = "Conflict"
    code = 409

    def __init__(self, key: str, *, expected: int, actual: int | None) -> None:
        super().__init__(
            f"{OPTIMISTIC_LOCK_MESSAGE} ({key}: expected revision {expected}, stored {actual})",
            key=key,
        )
        self.expected = expected
        self.actual = actual


class ExpiredError(StorageError, PermanentError):
    """The requested revision was compacted away: list again, then watch from the list's revision.

    ``oldest`` is the oldest revision still available (a list at it, or a watch from it, works).
    """

    reason = "Expired"
    code = 410

    def __init__(self, requested: int, oldest: int, *, continue_token: bool = False) -> None:
        if continue_token:
            message = (
                f"the continue token's revision {requested} is older than the oldest kept revision "
                f"{oldest}; start a new list without the continue token"
            )
        else:
            message = f"too old resource version: {requested} ({oldest})"
        super().__init__(message)
        self.requested = requested
        self.oldest = oldest


class WatchOverflowError(StorageError, PermanentError):
    """The watcher fell more than ``queue_size`` events behind and was closed.

    Nothing was dropped silently: every event up to ``last_revision`` was delivered. Watch again
    from ``last_revision`` (or, if that answers Expired, list again and watch from the list).
    """

    reason = "Gone"
    code = 410

    def __init__(self, prefix: str, queue_size: int, last_revision: int) -> None:
        super().__init__(
            f"the watch on {prefix!r} fell more than {queue_size} events behind and was closed "
            f"after revision {last_revision}; watch again from there, or list and watch again",
            key=prefix,
        )
        self.queue_size = queue_size
        self.last_revision = last_revision


class InvalidContinueError(StorageError, PermanentError):
    """A continue token this store did not issue, or one given with an explicit revision."""

    reason = "BadRequest"
    code = 400


class RevisionTooLargeError(StorageError, PermanentError):
    """A revision newer than any this store has written: use a revision the store returned."""

    reason = "Timeout"
    code = 504

    def __init__(self, requested: int, current: int) -> None:
        super().__init__(f"Too large resource version: {requested}, current: {current}")
        self.requested = requested
        self.current = current


class StorageUnavailableError(StorageError, RetryableError):
    """The store is closed, locked by another process, or its disk failed; retry later."""

    reason = "ServiceUnavailable"
    code = 503

    def __init__(self, message: str, *, retry_after: float = 1.0) -> None:
        StorageError.__init__(self, message)
        self.retry_after = retry_after
