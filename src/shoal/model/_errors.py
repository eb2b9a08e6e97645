"""Turn pydantic's validation errors into Kubernetes-style field errors with did-you-mean hints.

pydantic reports where (``loc``) and what (``type``); Kubernetes users expect ``spec.replicas: must
be >= 0, got -1``. This module walks the model types along each ``loc`` so that it can tell a map key
from a field name, drop the union-member tags pydantic adds, and, for an unknown field, name the
fields that were meant or say that the field is a Kubernetes one that shoal does not implement.
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Union

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from shoal.model._base import ShoalModel
from shoal.model._paths import Key, Path, Segment

__all__ = ["FieldError", "translate"]


@dataclass(frozen=True, slots=True)
class FieldError:
    """One translated error: ``on_key`` is true when the position is the key, not its value."""

    path: Path
    message: str
    on_key: bool = False
    offset: int = 0
    """Characters into the value where the problem is (a regexp error's position)."""


def translate(error: ValidationError, root: type[BaseModel], data: Any) -> list[FieldError]:
    """Translate every error of ``error`` (raised validating ``data`` as ``root``)."""
    out: list[FieldError] = []
    type_errors: dict[Path, list[tuple[str, Any]]] = {}
    for detail in error.errors(include_url=False):
        path, owner = _resolve(root, data, detail["loc"], detail["type"])
        kind = detail["type"]
        if kind in _TYPE_NAMES:
            type_errors.setdefault(path, []).append((_TYPE_NAMES[kind], detail.get("input")))
            continue
        out.append(_one(detail, path, owner))
    for path, expected in type_errors.items():
        names = list(dict.fromkeys(name for name, _ in expected))
        got = _type_word(expected[0][1])
        wanted = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]
        out.append(FieldError(path, f"Invalid value: must be {wanted}, got {got}"))
    return out


_TYPE_NAMES = {
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "an integer",
    "float_type": "a number",
    "float_parsing": "a number",
    "string_type": "a string",
    "bool_type": "a boolean (true or false)",
    "bool_parsing": "a boolean (true or false)",
    "list_type": "a list",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
    "datetime_type": "a date and time (RFC 3339, e.g. 2026-01-02T15:04:05Z)",
    "datetime_parsing": "a date and time (RFC 3339, e.g. 2026-01-02T15:04:05Z)",
    "datetime_from_date_parsing": "a date and time (RFC 3339, e.g. 2026-01-02T15:04:05Z)",
}


def _type_word(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, int | float):
        return f"number {value!r}"
    if isinstance(value, str):
        return f"string {value!r}"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return type(value).__name__


def _one(detail: ErrorDetails, path: Path, owner: type[BaseModel] | None) -> FieldError:
    kind = detail["type"]
    ctx: dict[str, Any] = dict(detail.get("ctx") or {})
    value = detail.get("input")
    if kind == "missing":
        return FieldError(path, "Required value")
    if kind == "extra_forbidden":
        return FieldError(path, _unknown_field(path, owner), on_key=True)
    if kind == "greater_than_equal":
        return FieldError(path, f"must be >= {ctx['ge']}, got {value!r}")
    if kind == "greater_than":
        return FieldError(path, f"must be > {ctx['gt']}, got {value!r}")
    if kind == "less_than_equal":
        return FieldError(path, f"must be <= {ctx['le']}, got {value!r}")
    if kind == "less_than":
        return FieldError(path, f"must be < {ctx['lt']}, got {value!r}")
    if kind == "too_short":
        n = ctx.get("min_length")
        return FieldError(
            path, f"Required value: must have at least {n} item{'s' if n != 1 else ''}"
        )
    if kind == "too_long":
        return FieldError(path, f"Too many: must have at most {ctx.get('max_length')} items")
    if kind == "string_too_long":
        return FieldError(path, f"Too long: must be no more than {ctx['max_length']} characters")
    if kind == "string_too_short":
        return FieldError(path, f"Invalid value: must be at least {ctx['min_length']} characters")
    if kind == "string_pattern_mismatch":
        return FieldError(
            path, f"Invalid value: {value!r}: must match the regular expression {ctx['pattern']!r}"
        )
    if kind in ("literal_error", "enum"):
        expected = str(ctx.get("expected", "")).replace("'", '"')
        return FieldError(path, f"Unsupported value: {value!r}: supported values: {expected}")
    if kind == "value_error":
        message = str(ctx.get("error", detail["msg"]))
        offset = 0
        marker = "at position "
        if message.startswith("invalid regular expression " + marker):
            offset = int(message[len("invalid regular expression " + marker) :].split(":", 1)[0])
        return FieldError(path, message, offset=offset)
    return FieldError(path, detail["msg"])


def _unknown_field(path: Path, owner: type[BaseModel] | None) -> str:
    name = str(path[-1]) if path else "?"
    if owner is None:
        return f'unknown field "{name}"'
    if issubclass(owner, ShoalModel) and name in owner.k8s_unsupported:
        return (
            f'field not supported: "{name}" is a Kubernetes field that shoal does not implement; '
            "remove it (see docs/model.md for what is supported)"
        )
    known = [field.alias or key for key, field in owner.model_fields.items()]
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    if not close:
        close = [
            k
            for k in known
            if k.lower() == name.lower() or k.lower() == name.lower().replace("_", "")
        ]
    hint = f'; did you mean "{close[0]}"?' if close else f"; known fields: {', '.join(known)}"
    return f'unknown field "{name}"{hint}'


def _resolve(
    root: type[BaseModel], data: Any, loc: Sequence[int | str], error_type: str
) -> tuple[Path, type[BaseModel] | None]:
    """Map pydantic's ``loc`` to a clean path, and find the model that owns the last segment."""
    path: list[Segment] = []
    annotation: Any = root
    owner: type[BaseModel] | None = None
    current = data
    last = len(loc) - 1
    for index, raw in enumerate(loc):
        present = _has(current, raw)
        keep_missing = index == last and error_type in ("missing", "extra_forbidden")
        if not present and not keep_missing:
            continue  # a union member's tag, such as 'int' or 'function-after[...]'
        model = _model_in(annotation)
        if model is not None and isinstance(raw, str):
            owner = model
            field = _field_by_alias(model, raw)
            annotation = field.annotation if field is not None else None
            path.append(field.alias or raw if field is not None else raw)
        elif isinstance(raw, int):
            annotation = _item_type(annotation)
            path.append(raw)
        else:
            mapping_value = _value_type(annotation)
            if mapping_value is not _NOT_A_MAPPING:
                annotation = mapping_value
                path.append(Key(str(raw)))
            else:
                annotation = None
                path.append(str(raw))
        current = current[raw] if present else None
    return tuple(path), owner


def _has(container: Any, key: int | str) -> bool:
    if isinstance(container, dict):
        return key in container
    if isinstance(container, list) and isinstance(key, int):
        return 0 <= key < len(container)
    return False


_NOT_A_MAPPING = object()


def _unwrapped(annotation: Any) -> Iterable[Any]:
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        yield from _unwrapped(typing.get_args(annotation)[0])
    elif origin is Union or origin is types.UnionType:
        for arg in typing.get_args(annotation):
            if arg is not type(None):
                yield from _unwrapped(arg)
    else:
        yield annotation


def _model_in(annotation: Any) -> type[BaseModel] | None:
    for candidate in _unwrapped(annotation):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def _item_type(annotation: Any) -> Any:
    for candidate in _unwrapped(annotation):
        if typing.get_origin(candidate) in (list, tuple, Sequence):
            args = typing.get_args(candidate)
            return args[0] if args else None
    return None


def _value_type(annotation: Any) -> Any:
    for candidate in _unwrapped(annotation):
        if typing.get_origin(candidate) is dict:
            args = typing.get_args(candidate)
            return args[1] if len(args) == 2 else None
    return _NOT_A_MAPPING


def _field_by_alias(model: type[BaseModel], name: str) -> Any:
    for key, field in model.model_fields.items():
        if field.alias == name or key == name:
            return field
    return None
