"""The base of every model: camelCase on the wire, snake_case in Python, unknown fields refused.

Structural validation (types, required fields, ranges) is pydantic's; the rules that span fields
(``selector`` must match the template's labels, a probe has exactly one handler) live in each model's
``_checks`` and are collected with their exact field paths by :func:`iter_issues`. Kubernetes'
own validation is split the same way, and so are its messages.
"""

from __future__ import annotations

import enum
import functools
import re
import types
import typing
from collections import abc
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


@functools.lru_cache(maxsize=1024)
def _rfc3339(value: datetime) -> str:
    # Cached: an API server writes the same few timestamps (this second's, the object's
    # creation) again and again, and equal datetimes name the same UTC text.
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
    """Every cross-field problem in ``model`` and the models inside it, with absolute paths.

    The order is the walk's: a model's own checks, then its fields in declaration order, depth
    first. The walk is the hot part of validating every object the API server stores, so it
    collects into one list, runs ``_checks`` only where a class defines some, and never visits
    a field whose type cannot hold a model (``labels: dict[str, str]``, ``replicas: int``)."""
    out: list[Check] = []
    _collect(model, base, out)
    return iter(out)


_PlanEntry = tuple[str, str]
_plans: dict[type[ShoalModel], tuple[bool, tuple[_PlanEntry, ...]]] = {}
"""Per model class: whether it has checks of its own, and the ``(name, alias)`` of the fields
that may hold a model. Classes are few and live for the whole process."""

_LEAVES: frozenset[type] = frozenset({str, int, float, bool, bytes, type(None), datetime})
"""Types whose values never contain a model."""


def _may_hold_model(annotation: Any) -> bool:
    """Whether a field of this type can hold a :class:`ShoalModel` (True when unsure)."""
    if isinstance(annotation, type) and annotation in _LEAVES:
        return False
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return False
    if origin is not None:
        args = typing.get_args(annotation)
        if origin is Annotated:
            return _may_hold_model(args[0])
        if origin in (typing.Union, types.UnionType, list, tuple, dict, set, frozenset) or (
            origin in (abc.Sequence, abc.Mapping)
        ):
            return any(_may_hold_model(arg) for arg in args if arg is not Ellipsis)
        return True
    # An enum's members are plain values; anything else unknown (Any, object) may hold one.
    return not (isinstance(annotation, type) and issubclass(annotation, enum.Enum))


def _plan(cls: type[ShoalModel]) -> tuple[bool, tuple[_PlanEntry, ...]]:
    plan = _plans.get(cls)
    if plan is None:
        own = cls._checks is not ShoalModel._checks
        fields = tuple(
            (name, field.alias or name)
            for name, field in cls.model_fields.items()
            if _may_hold_model(field.annotation)
        )
        plan = _plans[cls] = (own, fields)
    return plan


def _collect(model: ShoalModel, base: Path, out: list[Check]) -> None:
    own, fields = _plan(type(model))
    if own:
        for relative, message in model._checks():
            out.append((base + relative, message))
    for name, alias in fields:
        value = getattr(model, name)
        if value is not None:
            _walk(value, (*base, alias), out)


def _walk(value: object, path: Path, out: list[Check]) -> None:
    if isinstance(value, ShoalModel):
        _collect(value, path, out)
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            if not isinstance(item, _SCALARS):
                _walk(item, (*path, index), out)
    elif isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(item, _SCALARS):
                _walk(item, (*path, Key(str(key))), out)


_SCALARS = (str, int, float, type(None))
"""Values a walk has nothing to look into (bool is an int)."""
