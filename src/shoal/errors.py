"""
Every error shoal raises on purpose, and what to do about it.

The type of an error carries its retry policy: a *permanent* error fails the same way however often
it is retried (fix the input, the configuration or the environment first); a *retryable* error may
succeed later and says how long to wait. Controllers and CLIs decide by type, never by message.

::

    ShoalError
    ├── PermanentError              do not retry: fix what the message names
    │   ├── InvalidObjectsError     objects failed validation; ``.issues`` lists every problem with
    │   │                           its file, line, column and field path
    │   ├── CompileError            a valid pattern cannot be turned into primitives
    │   └── RenderError             an object cannot be expressed for the chosen target
    └── RetryableError              may succeed later; ``.retry_after`` is a hint in seconds

Error messages follow Kubernetes' wording ("must be", "must not", "may not") and name the field.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

__all__ = [
    "CompileError",
    "InvalidObjectsError",
    "Issue",
    "PermanentError",
    "RenderError",
    "RetryableError",
    "ShoalError",
    "SourceLocation",
]


@dataclass(frozen=True, slots=True)
class SourceLocation:
    """A position in a source file; ``line`` and ``column`` count from 1, as editors do."""

    file: str
    line: int
    column: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


@dataclass(frozen=True, slots=True)
class Issue:
    """One problem with one field of one object.

    ``path`` is the Kubernetes-style field path (``spec.template.spec.containers[0].name``); it is
    empty for a problem with a whole document (a YAML syntax error, for example).
    """

    message: str
    path: str = ""
    location: SourceLocation | None = None

    def __str__(self) -> str:
        where = f"{self.location}: " if self.location is not None else ""
        what = f"{self.path}: " if self.path else ""
        return f"{where}{what}{self.message}"


class ShoalError(Exception):
    """The root of every error shoal raises on purpose."""


class PermanentError(ShoalError):
    """Retrying will not help: the input, configuration or environment must change first."""


class RetryableError(ShoalError):
    """The operation may succeed later; ``retry_after`` (seconds) is how long to wait at least."""

    def __init__(self, message: str, *, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class InvalidObjectsError(PermanentError):
    """One or more objects are invalid. Every problem found is listed, not just the first."""

    def __init__(self, issues: Iterable[Issue]) -> None:
        self.issues: Sequence[Issue] = tuple(issues)
        count = len(self.issues)
        head = f"{count} problem{'s' if count != 1 else ''} found"
        super().__init__("\n".join([head, *(str(issue) for issue in self.issues)]))


class CompileError(PermanentError):
    """A valid pattern object cannot be compiled into primitive objects (the message says why)."""


class RenderError(PermanentError):
    """An object cannot be expressed for the chosen target (the message says what to change)."""
