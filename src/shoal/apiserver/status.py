"""Kubernetes ``Status`` objects: the body of every error the API server answers.

Each error has a machine-readable ``reason`` and the HTTP ``code`` that goes with it, as in
k8s.io/apimachinery/pkg/api/errors; ``Invalid`` (422) lists the field ``causes``. Clients
(kubectl, client-go, lightkube) switch on ``reason``, so the pairs below must not drift.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["REASON_CODES", "APIError", "Cause", "status_body", "success_status"]

REASON_CODES: dict[str, int] = {
    "BadRequest": 400,
    "Unauthorized": 401,
    "Forbidden": 403,
    "NotFound": 404,
    "MethodNotAllowed": 405,
    "NotAcceptable": 406,
    "AlreadyExists": 409,
    "Conflict": 409,
    "Gone": 410,
    "Expired": 410,
    "RequestEntityTooLarge": 413,
    "UnsupportedMediaType": 415,
    "Invalid": 422,
    "TooManyRequests": 429,
    "InternalError": 500,
    "ServiceUnavailable": 503,
    "Timeout": 504,
}


@dataclass(frozen=True, slots=True)
class Cause:
    """One reason for an ``Invalid`` (or ``Conflict``) answer, tied to a field."""

    type: str
    """``FieldValueInvalid``, ``FieldValueRequired``, ``FieldValueNotSupported``,
    ``FieldValueDuplicate``, ``FieldValueForbidden``, ``FieldValueTooLong``, ``FieldManagerConflict``."""
    message: str
    field: str = ""

    def to_dict(self) -> dict[str, str]:
        out = {"reason": self.type, "message": self.message}
        if self.field:
            out["field"] = self.field
        return out


@dataclass(slots=True)
class APIError(Exception):
    """An error to answer with a ``Status``; raise it anywhere in request handling."""

    reason: str
    message: str
    name: str | None = None
    group: str | None = None
    kind: str | None = None
    causes: list[Cause] = field(default_factory=list)
    retry_after_seconds: int | None = None

    def __post_init__(self) -> None:
        if self.reason not in REASON_CODES:
            raise ValueError(f"unknown Status reason {self.reason!r}")
        Exception.__init__(self, self.message)

    @property
    def code(self) -> int:
        return REASON_CODES[self.reason]

    def to_status(self) -> dict[str, Any]:
        return status_body(
            self.reason,
            self.message,
            name=self.name,
            group=self.group,
            kind=self.kind,
            causes=self.causes,
            retry_after_seconds=self.retry_after_seconds,
        )


def status_body(
    reason: str,
    message: str,
    *,
    name: str | None = None,
    group: str | None = None,
    kind: str | None = None,
    causes: Iterable[Cause] = (),
    retry_after_seconds: int | None = None,
) -> dict[str, Any]:
    """A failure ``Status`` as Kubernetes writes it."""
    details: dict[str, Any] = {}
    if name is not None:
        details["name"] = name
    if group is not None:
        details["group"] = group
    if kind is not None:
        details["kind"] = kind
    cause_list = [cause.to_dict() for cause in causes]
    if cause_list:
        details["causes"] = cause_list
    if retry_after_seconds is not None:
        details["retryAfterSeconds"] = retry_after_seconds
    body: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": REASON_CODES[reason],
    }
    if details:
        body["details"] = details
    return body


def success_status(*, name: str, group: str, kind: str, uid: str | None = None) -> dict[str, Any]:
    """The ``Status`` a DELETE answers when the object is gone at once."""
    details: dict[str, Any] = {"name": name, "group": group, "kind": kind}
    if uid is not None:
        details["uid"] = uid
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": details,
    }
