"""The base of every model: camelCase on the wire, snake_case in Python, unknown fields refused.

Structural validation (types, required fields, ranges) is pydantic's; the rules that span fields
(``selector`` must match the template's labels, a probe has exactly one handler) live in each model's
``_checks`` and are collected with their exact field paths by :func:`iter_issues`. Kubernetes'
own validation is split the same way, and so are its messages.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar

from pydantic import AfterValidator, BaseModel, ConfigDict, PlainSerializer
from pydantic.alias_generators import to_camel

from shoal.model._paths import Key, Path

__all__ = ["Check", "ShoalModel", "Time", "field_name", "iter_issues"]


def _utc(value: datetime) -> datetime:
    # A time without a zone is taken as UTC, as Kubernetes writes every time in UTC.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _rfc3339(value: datetime) -> str:
    text = value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")
    if value.microsecond:
        text += f".{value.microsecond:06d}"
    return text + "Z"


Time = Annotated[
    datetime, AfterValidator(_utc), PlainSerializer(_rfc3339, return_type=str, when_used="json")
]
"""A point in time, always UTC, written as RFC 3339 (``2026-11-23T19:42:37Z``)."""

Check = tuple[Path, str]
"""A problem found by a model's cross-field rules: the path (relative to the model) and the message."""


class ShoalModel(BaseModel):
    """Base of all object-model classes."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
        extra="forbid",
        validate_assignment=True,
        use_attribute_docstrings=True,
        regex_engine="python-re",
    )

    k8s_unsupported: ClassVar[frozenset[str]] = frozenset()
    """Kubernetes fields of this type that shoal knows of but does not implement.

    A manifest that uses one is refused with a message that says so by name, rather than the
    generic "unknown field" (and never silently accepted and ignored)."""

    def _checks(self) -> Iterator[Check]:
        """Cross-field rules of this model; override to add some."""
        return iter(())

    def to_dict(self) -> dict[str, Any]:
        """The object as Kubernetes would serialize it: camelCase keys, unset fields left out."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


def field_name(alias: str) -> str:
    """The Python name of a field from its camelCase alias (``httpGet`` -> ``http_get``)."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", alias).lower()


def iter_issues(model: ShoalModel, base: Path = ()) -> Iterator[Check]:
    """Every cross-field problem in ``model`` and the models inside it, with absolute paths."""
    for relative, message in model._checks():
        yield base + relative, message
    for name, field in type(model).model_fields.items():
        alias = field.alias or name
        yield from _walk(getattr(model, name), (*base, alias))


def _walk(value: object, path: Path) -> Iterator[Check]:
    if isinstance(value, ShoalModel):
        yield from iter_issues(value, path)
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            yield from _walk(item, (*path, index))
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _walk(item, (*path, Key(str(key))))
