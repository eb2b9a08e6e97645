"""Validation of request bodies: model kinds by their pydantic models, CRD kinds by their schema.

Unknown fields follow ``fieldValidation`` (Kubernetes' default is ``Warn``):

* ``Strict``: 400 BadRequest ``strict decoding error: unknown field "spec.foo"`` (the same
  reason and wording as the Kubernetes API server: unknown fields are a decoding error there);
* ``Warn``: the fields are dropped and each becomes a ``Warning: 299`` header;
* ``Ignore``: the fields are dropped silently.

Every other problem is a 422 ``Invalid`` whose causes carry the field paths. The result is the
object to store: normalized by the model (defaults filled in) or pruned and defaulted by the
CRD schema.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import ValidationError

from shoal.apiserver.records import copy_json
from shoal.apiserver.resources import Resource
from shoal.apiserver.status import APIError
from shoal.apiserver.strategy import bad_request, invalid, split_problem
from shoal.kube.crds import check_crd, openapi_schema
from shoal.kube.validation import apply_defaults, prune, validate_custom_object
from shoal.model._base import iter_issues
from shoal.model._errors import FieldError, translate
from shoal.model._paths import Key, Path, format_path
from shoal.model.meta import KubeObject, ObjectMeta

__all__ = ["FieldValidation", "Validated", "parse_field_validation", "validate"]

FieldValidation = Literal["Strict", "Warn", "Ignore"]

_UNKNOWN_PREFIXES = ("unknown field", "field not supported")


@dataclass(slots=True)
class Validated:
    """A valid object to store, and the warnings to send with the answer."""

    body: dict[str, Any]
    warnings: list[str] = field(default_factory=list)


def parse_field_validation(value: str | None) -> FieldValidation:
    if value in (None, ""):
        return "Warn"
    if value == "Strict":
        return "Strict"
    if value == "Warn":
        return "Warn"
    if value == "Ignore":
        return "Ignore"
    raise bad_request(
        f'fieldValidation: Unsupported value: "{value}": supported values: "Ignore", "Strict", '
        '"Warn"'
    )


def _unknown(paths: list[str], mode: FieldValidation) -> list[str]:
    """Warnings for dropped unknown fields; raises under Strict."""
    if not paths:
        return []
    texts = [f'unknown field "{path}"' for path in paths]
    if mode == "Strict":
        raise bad_request("strict decoding error: " + ", ".join(texts))
    return texts if mode == "Warn" else []


def validate(
    resource: Resource,
    body: dict[str, Any],
    mode: FieldValidation,
    crd: Mapping[str, Any] | None = None,
    *,
    owned: bool = False,
) -> Validated:
    """Validate ``body`` as an object of ``resource``; raise :class:`APIError` if it is not.

    ``body`` is left as it was, unless ``owned`` says the caller gives it up (the service's own
    copy of a request): then it may be changed in place instead of copied first."""
    name = str((body.get("metadata") or {}).get("name") or "")
    if resource.model is not None:
        return _validate_model(resource, body, mode, name, owned)
    if resource.kind == "CustomResourceDefinition" and resource.group == "apiextensions.k8s.io":
        problems = [split_problem(p) for p in check_crd(body)]
        problems += _metadata_problems(body)
        if problems:
            raise invalid(resource, name, problems)
        return Validated(copy.deepcopy(body))
    if crd is None:
        raise APIError("InternalError", f"no schema is known for {resource.plural}")
    return _validate_custom(resource, body, mode, crd, name, owned)


def _metadata_problems(body: Mapping[str, Any]) -> list[tuple[str, str]]:
    metadata = body.get("metadata")
    try:
        meta = ObjectMeta.model_validate(metadata)
    except ValidationError as error:
        return [
            (format_path(("metadata", *e.path)), e.message)
            for e in translate(error, ObjectMeta, metadata)
        ]
    return [(format_path(("metadata", *p)), m) for p, m in iter_issues(meta)]


def _validate_custom(
    resource: Resource,
    body: dict[str, Any],
    mode: FieldValidation,
    crd: Mapping[str, Any],
    name: str,
    owned: bool,
) -> Validated:
    obj: dict[str, Any] = body if owned else copy_json(body)
    schema = resource.schema or {}
    warnings = _unknown(prune(obj, schema), mode)
    problems = [
        split_problem(p) for p in validate_custom_object(obj, crd, field_validation="Ignore")
    ]
    problems += [p for p in _metadata_problems(obj) if p not in problems]
    if problems:
        raise invalid(resource, name, problems)
    apply_defaults(obj, schema)
    return Validated(obj, warnings)


@functools.lru_cache(maxsize=32)
def _custom_schema(cls: type[KubeObject]) -> dict[str, Any]:
    return openapi_schema(cls)


def _is_unknown(error: FieldError) -> bool:
    return error.message.startswith(_UNKNOWN_PREFIXES)


def _drop(data: Any, path: Path) -> bool:
    node = data
    for segment in path[:-1]:
        key = segment.name if isinstance(segment, Key) else segment
        try:
            node = node[key]
        except (KeyError, IndexError, TypeError):
            return False
    if not path:
        return False
    last = path[-1]
    name = last.name if isinstance(last, Key) else last
    if isinstance(node, dict) and name in node:
        del node[name]
        return True
    return False


def _validate_model(
    resource: Resource, body: dict[str, Any], mode: FieldValidation, name: str, owned: bool
) -> Validated:
    cls = resource.model
    assert cls is not None
    data: dict[str, Any] = body if owned else copy_json(body)
    # The request came to this resource's URL: take its canonical apiVersion (the short alias
    # groups are spellings of the same kind).
    data["apiVersion"] = cls.INFO.api_version
    data.setdefault("kind", resource.kind)
    warnings: list[str] = []
    for _ in range(8):  # unknown fields nested in unknown fields surface one level at a time
        try:
            obj = cls.model_validate(data)
        except ValidationError as error:
            errors = translate(error, cls, data)
            unknown = [e for e in errors if _is_unknown(e)]
            if not unknown:
                raise invalid(
                    resource, name, [(format_path(e.path), e.message) for e in errors]
                ) from None
            warnings += _unknown([format_path(e.path) for e in unknown], mode)
            if not any(_drop(data, e.path) for e in unknown):
                raise invalid(
                    resource, name, [(format_path(e.path), e.message) for e in errors]
                ) from None
            continue
        problems = [(format_path(path), message) for path, message in iter_issues(obj)]
        if problems:
            raise invalid(resource, name, problems)
        if cls.INFO.custom:
            # shoal's own kinds are custom resources on Kubernetes: stored as sent (unknown
            # fields dropped) with their schema's defaults, as a Kubernetes API server stores
            # them, so `kubectl apply` finds what it applied (the model's shorthand forms,
            # such as the talk's `test: [/path]`, stay as written).
            apply_defaults(data, _custom_schema(cls))
            return Validated(data, warnings)
        return Validated(obj.to_dict(), warnings)
    raise invalid(resource, name, [("", "too many unknown fields nested in each other")])
