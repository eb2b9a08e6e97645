"""
Patches as the Kubernetes API server applies them: JSON Patch, JSON Merge Patch and the strategic
merge patch kubectl sends. Server-side apply, which builds on the same schema walk, is in
:mod:`shoal.apiserver.applying`.

Theory of operation
===================

A PATCH request names its semantics by ``Content-Type``:

==========================================  ===============================================  ======
content type                                function                                         kinds
==========================================  ===============================================  ======
``application/json-patch+json``             :func:`json_patch` (RFC 6902)                    all
``application/merge-patch+json``            :func:`merge_patch` (RFC 7386)                   all
``application/strategic-merge-patch+json``  :func:`strategic_merge_patch`                    core
``application/apply-patch+yaml``            :func:`shoal.apiserver.applying.apply`           all
==========================================  ===============================================  ======

Every function here is pure: it takes plain JSON values (``dict``, ``list``, ``str``, ``int``,
``float``, ``bool``, ``None``), never mutates its arguments, and returns a new value or raises one
of the errors below. The server decodes the body (:func:`decode_patch`), calls
:func:`patch_object`, validates the result against the model and stores it.

**JSON Patch** applies its operations in order to a copy of the document; the first operation
that fails fails the whole patch (nothing is half-applied). Paths are JSON Pointers (RFC 6901):
``~1`` is ``/`` and ``~0`` is ``~``, and ``-`` names the end of an array (for ``add`` only).
``test`` compares JSON values the JSON way: ``1 == 1.0``, ``true != 1``, object key order does not
matter, array order does.

**JSON Merge Patch** merges objects key by key; ``null`` deletes a key; anything that is not an
object (arrays included) replaces the target wholesale.

**Strategic merge patch** is a merge patch that knows the schema. Walking the pydantic model along
the document (:func:`field_shape`), each field's strategy comes from :data:`FIELD_STRATEGIES`, a
table keyed by (model class, field alias) that mirrors the ``patchStrategy``/``patchMergeKey``
struct tags of ``k8s.io/api`` for the fields shoal's kinds have. Lists with a merge key merge item
by item (``containers`` by ``name``, ``ports`` by ``containerPort``...), lists of strings with the
merge strategy (``finalizers``) merge as sets, every other list is replaced. The directives:

* ``$patch: replace`` in a map replaces the map; as a list item it replaces the whole list with
  the other items; ``$patch: delete`` in a map makes it empty, as a list item it deletes the item
  with that merge key; ``$patch: merge`` is the default, said out loud.
* ``$retainKeys: [...]`` clears every key of the live map not in the list before merging (kubectl
  sends it for ``Deployment.spec.strategy`` and volume sources, fields tagged ``retainKeys``).
* ``$deleteFromPrimitiveList/<field>: [...]`` removes those values from a merged list of scalars.
* ``$setElementOrder/<field>: [...]`` gives the final order of a merged list: the items it names
  in its order, items only on the server kept where they were relative to their neighbours.
* ``null`` deletes a key.

Without ``$setElementOrder`` the result order follows Kubernetes' ``normalizeElementOrder``: the
items the patch mentions come in the patch's order and the server-only items are interleaved by
their live order (so an item added by a bare patch lands first, as it does on Kubernetes).
Directives inside a value the live object does not have yet are applied to an empty value rather
than stored (Kubernetes would store them verbatim and fail to decode the result).

Kubernetes serves strategic merge patch for built-in types only: shoal's own kinds
(``ReplicatedService``, ``ShardedService``, ``LoadTest``) and user CRDs answer
:class:`UnsupportedPatchError` (415), and kubectl falls back to a merge patch.

Errors
======

Every error carries the Kubernetes ``reason`` and HTTP ``code`` the server answers with::

    PatchError (PermanentError)
    ├── BadPatchError           400 BadRequest           the body is not a patch of its type:
    │                                                     fix its syntax (the message says where)
    ├── InvalidPatchError       422 Invalid              a well-formed patch that cannot apply to
    │                                                     this object (failed ``test``, missing
    │                                                     path, item without its merge key)
    ├── ApplyConflictError      409 Conflict             server-side apply would change fields
    │                                                     another manager owns: apply with
    │                                                     ``force=true`` or drop those fields
    └── UnsupportedPatchError   415 UnsupportedMediaType  this kind does not accept this patch
                                                          type: use a merge or JSON patch
"""

from __future__ import annotations

import copy
import json
import re
import types
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Annotated, Any, ClassVar, Literal, Union, cast, get_args, get_origin

import yaml
from pydantic import BaseModel

from shoal.apiserver.status import APIError, Cause
from shoal.errors import PermanentError
from shoal.model.core import (
    Container,
    DeploymentSpec,
    DeploymentStatus,
    NamespaceStatus,
    PodSpec,
    PodStatus,
    ServiceSpec,
    ServiceStatus,
)
from shoal.model.meta import KubeObject, ObjectMeta
from shoal.model.registry import UnknownKind, kind_for

__all__ = [
    "APPLY_PATCH",
    "DEFAULT_STRATEGY",
    "FIELD_STRATEGIES",
    "JSON_PATCH",
    "MERGE_PATCH",
    "PATCH_TYPES",
    "STRATEGIC_MERGE_PATCH",
    "ApplyConflictError",
    "BadPatchError",
    "FieldConflict",
    "FieldStrategy",
    "InvalidPatchError",
    "PatchError",
    "Shape",
    "UnsupportedPatchError",
    "decode_patch",
    "field_shape",
    "interleave",
    "item_shape",
    "json_equal",
    "json_patch",
    "kind_class",
    "merge_diff",
    "merge_patch",
    "parse_pointer",
    "patch_object",
    "patch_types_for",
    "root_shape",
    "strategic_merge_patch",
]

JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"
PATCH_TYPES: tuple[str, ...] = (JSON_PATCH, MERGE_PATCH, STRATEGIC_MERGE_PATCH, APPLY_PATCH)
"""Every PATCH content type, in the order Kubernetes lists them."""

_CUSTOM_PATCH_TYPES: tuple[str, ...] = (JSON_PATCH, MERGE_PATCH, APPLY_PATCH)

Obj = dict[str, Any]


# --------------------------------------------------------------------------------------------------
# Errors


class PatchError(PermanentError):
    """A patch was refused; ``reason`` and ``code`` are what the API server answers."""

    reason: ClassVar[str] = "BadRequest"
    """The Kubernetes ``Status.reason``."""
    code: ClassVar[int] = 400
    """The HTTP status code."""

    def __init__(self, message: str, *, causes: Iterable[Cause] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.causes: tuple[Cause, ...] = tuple(causes)

    def to_api_error(self) -> APIError:
        """The ``Status`` error the server answers with."""
        return APIError(self.reason, self.message, causes=list(self.causes))


class BadPatchError(PatchError):
    """The body is not a valid patch of its content type (syntax, directive, shape)."""

    reason = "BadRequest"
    code = 400


class InvalidPatchError(PatchError):
    """The patch is well formed but cannot be applied to this object."""

    reason = "Invalid"
    code = 422


class UnsupportedPatchError(PatchError):
    """The kind does not accept this patch content type (or the content type is unknown)."""

    reason = "UnsupportedMediaType"
    code = 415

    def __init__(self, accepted: Sequence[str], *, content_type: str | None = None) -> None:
        # Kubernetes' wording, so kubectl recognises it and falls back to a merge patch.
        message = (
            "the body of the request was in an unknown format - accepted media types include: "
            + ", ".join(accepted)
        )
        super().__init__(message)
        self.accepted = tuple(accepted)
        self.content_type = content_type


@dataclass(frozen=True, slots=True)
class FieldConflict:
    """One field server-side apply would change although another manager owns it."""

    field: str
    """The field path as Kubernetes prints it: ``.spec.containers[name="app"].image``."""
    manager: str
    operation: str
    """``Apply`` or ``Update``: how the owner last set the field."""
    api_version: str | None = None
    subresource: str | None = None

    @property
    def owner(self) -> str:
        """``conflict with "kubectl" using apps/v1``, as Kubernetes words the owner."""
        text = f"conflict with {json.dumps(self.manager)}"
        if self.operation == "Update" and self.api_version:
            text += f" using {self.api_version}"
        if self.subresource:
            text += f" with subresource {json.dumps(self.subresource)}"
        return text


class ApplyConflictError(PatchError):
    """Server-side apply would change fields other managers own.

    Either apply again with ``force=true`` (ownership moves to you; controllers should always
    force), or remove the listed fields from your configuration and leave them to their owners.
    ``conflicts`` lists every field and its owner; ``causes`` carries them as Kubernetes does
    (``FieldManagerConflict``).
    """

    reason = "Conflict"
    code = 409

    def __init__(self, conflicts: Iterable[FieldConflict]) -> None:
        self.conflicts: tuple[FieldConflict, ...] = tuple(conflicts)
        count = len(self.conflicts)
        groups: dict[str, list[str]] = {}
        for conflict in self.conflicts:
            groups.setdefault(conflict.owner, []).append(conflict.field)
        if count == 1:
            only = self.conflicts[0]
            detail = f"{only.owner}: {only.field}"
        else:
            parts = []
            for owner, fields in groups.items():
                owner_text = owner.replace("conflict with", "conflicts with", 1)
                parts.append(owner_text + ":\n" + "\n".join(f"- {f}" for f in fields))
            detail = "\n".join(parts)
        plural = "conflict" if count == 1 else "conflicts"
        super().__init__(
            f"Apply failed with {count} {plural}: {detail}",
            causes=[Cause("FieldManagerConflict", c.owner, c.field) for c in self.conflicts],
        )


# --------------------------------------------------------------------------------------------------
# JSON values


def json_equal(a: Any, b: Any) -> bool:
    """Equality of JSON values: ``1 == 1.0`` but ``true != 1``; objects ignore key order."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    if isinstance(a, dict):
        return (
            isinstance(b, dict)
            and a.keys() == b.keys()
            and all(json_equal(value, b[key]) for key, value in a.items())
        )
    if isinstance(a, list):
        return (
            isinstance(b, list)
            and len(a) == len(b)
            and all(json_equal(x, y) for x, y in zip(a, b, strict=True))
        )
    return type(a) is type(b) and bool(a == b)


def _canon(value: Any) -> str:
    """A hashable text equal for JSON-equal values (``1`` and ``1.0`` alike)."""

    def normal(v: Any) -> Any:
        if isinstance(v, float) and v.is_integer():
            return int(v)
        if isinstance(v, dict):
            return {k: normal(x) for k, x in v.items()}
        if isinstance(v, list):
            return [normal(x) for x in v]
        return v

    return json.dumps(normal(value), sort_keys=True, separators=(",", ":"))


def _show(value: Any) -> str:
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= 80 else text[:77] + "..."


# --------------------------------------------------------------------------------------------------
# JSON Pointer and JSON Patch (RFC 6901, RFC 6902)

_BAD_ESCAPE = re.compile(r"~(?![01])")
_ARRAY_INDEX = re.compile(r"0|[1-9][0-9]*")


def parse_pointer(pointer: str) -> tuple[str, ...]:
    """The reference tokens of a JSON Pointer, unescaped (``/a~1b/~0c`` is ``("a/b", "~c")``)."""
    if pointer == "":
        return ()
    if not pointer.startswith("/"):
        raise InvalidPatchError(
            f"JSON pointer {pointer!r} must be empty (the whole document) or start with '/'"
        )
    tokens = pointer[1:].split("/")
    for token in tokens:
        if _BAD_ESCAPE.search(token):
            raise InvalidPatchError(
                f"JSON pointer {pointer!r}: '~' must be followed by '0' (for '~') or '1' (for '/')"
            )
    return tuple(token.replace("~1", "/").replace("~0", "~") for token in tokens)


def _pointer(tokens: Sequence[str]) -> str:
    return "".join("/" + t.replace("~", "~0").replace("/", "~1") for t in tokens)


def _index(part: str, length: int, *, end_ok: bool, where: str) -> int:
    if part == "-":
        if end_ok:
            return length
        raise InvalidPatchError(f"{where}: '-' (the end of the array) names no element")
    if not _ARRAY_INDEX.fullmatch(part):
        raise InvalidPatchError(f"{where}: {part!r} is not an array index (0, 1, ... or '-')")
    index = int(part)
    limit = length if end_ok else length - 1
    if index > limit:
        raise InvalidPatchError(f"{where}: index {index} is out of bounds (length {length})")
    return index


def _resolve(document: Any, tokens: Sequence[str], where: str) -> Any:
    value = document
    for depth, token in enumerate(tokens):
        here = _pointer(tokens[: depth + 1])
        if isinstance(value, dict):
            if token not in value:
                raise InvalidPatchError(f"{where}: {here} does not exist")
            value = value[token]
        elif isinstance(value, list):
            value = value[_index(token, len(value), end_ok=False, where=f"{where}: {here}")]
        else:
            raise InvalidPatchError(f"{where}: {here} does not exist (its parent is a scalar)")
    return value


def _add(document: Any, tokens: Sequence[str], value: Any, where: str) -> Any:
    if not tokens:
        return value
    parent = _resolve(document, tokens[:-1], where)
    last = tokens[-1]
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list):
        parent.insert(_index(last, len(parent), end_ok=True, where=where), value)
    else:
        raise InvalidPatchError(f"{where}: the parent of {_pointer(tokens)} is not a container")
    return document


def _remove(document: Any, tokens: Sequence[str], where: str) -> Any:
    """Remove the value at ``tokens`` and return it."""
    if not tokens:
        raise InvalidPatchError(f"{where}: the whole document cannot be removed")
    parent = _resolve(document, tokens[:-1], where)
    last = tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise InvalidPatchError(f"{where}: {_pointer(tokens)} does not exist")
        return parent.pop(last)
    if isinstance(parent, list):
        return parent.pop(_index(last, len(parent), end_ok=False, where=where))
    raise InvalidPatchError(f"{where}: {_pointer(tokens)} does not exist (its parent is a scalar)")


def _member(operation: Mapping[str, Any], name: str, where: str) -> Any:
    if name not in operation:
        raise InvalidPatchError(f"{where}: the operation has no {name!r} member")
    return operation[name]


def _pointer_member(operation: Mapping[str, Any], name: str, where: str) -> tuple[str, ...]:
    pointer = _member(operation, name, where)
    if not isinstance(pointer, str):
        raise InvalidPatchError(f"{where}: {name!r} must be a string (a JSON pointer)")
    return parse_pointer(pointer)


def _apply_operation(document: Any, operation: Any, number: int) -> Any:
    if not isinstance(operation, dict):
        raise BadPatchError(
            f"JSON patch operation {number} must be an object, got {_show(operation)}"
        )
    op = operation.get("op")
    where = f"operation {number} ({op} {operation.get('path')})"
    path = _pointer_member(operation, "path", where)
    if op == "add":
        return _add(document, path, copy.deepcopy(_member(operation, "value", where)), where)
    if op == "remove":
        _remove(document, path, where)
        return document
    if op == "replace":
        value = copy.deepcopy(_member(operation, "value", where))
        if not path:
            return value
        _remove(document, path, where)
        return _add(document, path, value, where)
    if op == "move":
        source = _pointer_member(operation, "from", where)
        if source == path:
            _resolve(document, source, where)
            return document
        if path[: len(source)] == source:
            raise InvalidPatchError(
                f"{where}: {_pointer(source)} cannot be moved into its own child {_pointer(path)}"
            )
        return _add(document, path, _remove(document, source, where), where)
    if op == "copy":
        source = _pointer_member(operation, "from", where)
        value = copy.deepcopy(_resolve(document, source, where))
        return _add(document, path, value, where)
    if op == "test":
        expected = _member(operation, "value", where)
        actual = _resolve(document, path, where)
        if not json_equal(actual, expected):
            raise InvalidPatchError(
                f"{where}: test failed: the value is {_show(actual)}, not {_show(expected)}"
            )
        return document
    raise InvalidPatchError(
        f"{where}: unknown operation {op!r}: use add, remove, replace, move, copy or test"
    )


def json_patch(document: Any, operations: Any) -> Any:
    """``document`` with the RFC 6902 ``operations`` applied, all or nothing.

    Raises :class:`BadPatchError` when ``operations`` is not a list of objects, and
    :class:`InvalidPatchError` for the first operation that cannot apply (named by its index).
    Members an operation does not use are ignored, as RFC 6902 asks.
    """
    if not isinstance(operations, list):
        raise BadPatchError(
            f"a JSON patch must be an array of operations ({JSON_PATCH}), got {_show(operations)}"
        )
    result = copy.deepcopy(document)
    for number, operation in enumerate(operations):
        result = _apply_operation(result, operation, number)
    return result


# --------------------------------------------------------------------------------------------------
# JSON Merge Patch (RFC 7386)


def _merge_into(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = target if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = _merge_into(result.get(key), value)
    return result


def merge_patch(target: Any, patch: Any) -> Any:
    """``target`` with the RFC 7386 merge ``patch`` applied (``null`` deletes a key)."""
    return _merge_into(copy.deepcopy(target), patch)


def merge_diff(source: Any, target: Any) -> Any:
    """A merge patch that turns ``source`` into ``target``: ``merge_patch(source, diff) == target``.

    A merge patch cannot store a ``null`` value in an object (``null`` means delete), so this holds
    for targets without ``null`` object members.
    """
    if not isinstance(source, dict) or not isinstance(target, dict):
        return copy.deepcopy(target)
    diff: Obj = {key: None for key in source if key not in target}
    for key, value in target.items():
        if key not in source:
            diff[key] = copy.deepcopy(value)
        elif not json_equal(source[key], value):
            diff[key] = merge_diff(source[key], value)
    return diff


# --------------------------------------------------------------------------------------------------
# The schema: field strategies and shapes


@dataclass(frozen=True, slots=True)
class FieldStrategy:
    """How one field merges: Kubernetes' ``patchStrategy``/``patchMergeKey`` struct tags (strategic
    merge patch) and ``listType``/``listMapKeys``/``structType`` markers (server-side apply)."""

    merge_key: str | None = None
    """Strategic merge patch: list items merge by this key (``patchMergeKey``)."""
    list_type: Literal["atomic", "set", "map"] = "atomic"
    """Server-side apply: ``atomic`` lists are replaced, ``set`` lists hold unique scalars owned
    one by one, ``map`` lists hold items owned by their keys."""
    map_keys: tuple[str, ...] = ()
    """Server-side apply: the keys of a ``map`` list (``x-kubernetes-list-map-keys``)."""
    key_defaults: tuple[tuple[str, Any], ...] = ()
    """Values of key fields an item may leave out (``protocol`` defaults to ``TCP``)."""
    retain_keys: bool = False
    """``patchStrategy:"retainKeys"``: kubectl sends ``$retainKeys`` for this map."""
    atomic: bool = False
    """``structType=atomic``/``mapType=atomic``: server-side apply owns the value as a whole."""
    item: type[BaseModel] | None = None
    """The item model of a list the model does not declare (``initContainers``)."""

    @property
    def merges(self) -> bool:
        """Whether strategic merge patch merges this list (``patchStrategy:"merge"``)."""
        return self.merge_key is not None or self.list_type == "set"

    @property
    def keys(self) -> tuple[str, ...]:
        """The key fields of a ``map`` list for server-side apply."""
        return self.map_keys or ((self.merge_key,) if self.merge_key else ())

    def key_default(self, name: str) -> Any:
        return dict(self.key_defaults).get(name)


DEFAULT_STRATEGY = FieldStrategy()
"""Every field the table does not name: maps merge key by key, lists are replaced."""


def _keyed(
    key: str,
    *more: str,
    defaults: tuple[tuple[str, Any], ...] = (),
    retain_keys: bool = False,
    item: type[BaseModel] | None = None,
) -> FieldStrategy:
    return FieldStrategy(
        merge_key=key,
        list_type="map",
        map_keys=(key, *more),
        key_defaults=defaults,
        retain_keys=retain_keys,
        item=item,
    )


_TCP = (("protocol", "TCP"),)

FIELD_STRATEGIES: Mapping[tuple[type[BaseModel], str], FieldStrategy] = {
    (ObjectMeta, "ownerReferences"): _keyed("uid"),
    (ObjectMeta, "finalizers"): FieldStrategy(list_type="set"),
    (PodSpec, "containers"): _keyed("name"),
    (PodSpec, "initContainers"): _keyed("name", item=Container),
    (PodSpec, "volumes"): _keyed("name", retain_keys=True),
    (Container, "ports"): _keyed("containerPort", "protocol", defaults=_TCP),
    (Container, "env"): _keyed("name"),
    (Container, "volumeMounts"): _keyed("mountPath"),
    (PodStatus, "conditions"): _keyed("type"),
    (PodStatus, "podIPs"): _keyed("ip"),
    (PodStatus, "hostIPs"): _keyed("ip"),
    (DeploymentSpec, "selector"): FieldStrategy(atomic=True),
    (DeploymentSpec, "strategy"): FieldStrategy(retain_keys=True),
    (DeploymentStatus, "conditions"): _keyed("type"),
    (ServiceSpec, "selector"): FieldStrategy(atomic=True),
    (ServiceSpec, "ports"): _keyed("port", "protocol", defaults=_TCP),
    (ServiceStatus, "conditions"): _keyed("type"),
    (NamespaceStatus, "conditions"): _keyed("type"),
}
"""The merge strategy of every field that does not merge the default way, keyed by (model class,
field alias). Mirrors ``k8s.io/api`` (core/v1, apps/v1, meta/v1) for the fields shoal's kinds have;
ports key by number and protocol for server-side apply, by number alone for strategic merge."""


@dataclass(frozen=True, slots=True)
class Shape:
    """What the schema says about a JSON value: a ``struct`` (a model), a ``map`` (``dict[str, X]``),
    a ``list``, a ``scalar``, ``any`` (nothing known) or the ``root`` of a custom resource (only its
    ``metadata`` is typed, as Kubernetes types a CRD without list markers)."""

    kind: Literal["struct", "map", "list", "scalar", "any", "root"]
    model: type[BaseModel] | None = None
    item: Shape | None = None
    """The shape of list items and map values."""


ANY = Shape("any")
_SCALAR = Shape("scalar")


@cache
def _shape_of(annotation: Any) -> Shape:
    origin = get_origin(annotation)
    if origin is Annotated:
        return _shape_of(get_args(annotation)[0])
    if origin is Union or origin is types.UnionType:
        arms = [_shape_of(arm) for arm in get_args(annotation) if arm is not type(None)]
        structured = [arm for arm in arms if arm.kind != "scalar"]
        if not structured:
            return _SCALAR
        return structured[0] if len(arms) == 1 else ANY
    if origin in (list, tuple, Sequence):
        args = get_args(annotation)
        return Shape("list", item=_shape_of(args[0]) if args else ANY)
    if origin in (dict, Mapping):
        args = get_args(annotation)
        return Shape("map", item=_shape_of(args[1]) if len(args) == 2 else ANY)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return Shape("struct", model=annotation)
    if annotation is Any:
        return ANY
    return _SCALAR


@cache
def _fields(model: type[BaseModel]) -> dict[str, Shape]:
    return {
        (field.alias or name): _shape_of(cast(Hashable, field.annotation))
        for name, field in model.model_fields.items()
    }


def field_shape(shape: Shape, name: str) -> tuple[FieldStrategy, Shape]:
    """The strategy and shape of field ``name`` of a value of ``shape``."""
    if shape.kind == "struct" and shape.model is not None:
        strategy = FIELD_STRATEGIES.get((shape.model, name), DEFAULT_STRATEGY)
        child = _fields(shape.model).get(name)
        if child is None:
            item = Shape("struct", model=strategy.item) if strategy.item else ANY
            child = Shape("list", item=item) if strategy.list_type != "atomic" else item
        return strategy, child
    if shape.kind == "root":
        return DEFAULT_STRATEGY, (Shape("struct", model=ObjectMeta) if name == "metadata" else ANY)
    if shape.kind == "map" and shape.item is not None:
        return DEFAULT_STRATEGY, shape.item
    return DEFAULT_STRATEGY, ANY


def item_shape(shape: Shape) -> Shape:
    """The shape of the items of a list of ``shape``."""
    return shape.item if shape.kind == "list" and shape.item is not None else ANY


def root_shape(kind: type[KubeObject] | None) -> Shape:
    """The shape of a whole object: its model for a built-in kind, ``root`` for a custom one."""
    if kind is None or kind.INFO.custom:
        return Shape("root")
    return Shape("struct", model=kind)


def kind_class(obj: Mapping[str, Any]) -> type[KubeObject] | None:
    """The model class of an object by its ``apiVersion`` and ``kind`` (``None`` if unknown)."""
    api_version, kind = obj.get("apiVersion"), obj.get("kind")
    if not isinstance(api_version, str) or not isinstance(kind, str):
        return None
    try:
        return kind_for(api_version, kind)
    except UnknownKind:
        return None


def patch_types_for(kind: type[KubeObject] | None) -> tuple[str, ...]:
    """The PATCH content types a kind accepts (no strategic merge patch for custom kinds)."""
    if kind is None or kind.INFO.custom:
        return _CUSTOM_PATCH_TYPES
    return PATCH_TYPES


# --------------------------------------------------------------------------------------------------
# Order of merged lists


def interleave(
    server_only: Sequence[Any], patched: Sequence[Any], server_rank: Callable[[Any], int | None]
) -> list[Any]:
    """Merge two ordered lists, keeping the order inside each (Kubernetes' ``mergeSortedSlice``).

    ``server_rank`` is an item's position in the live list (``None`` if it is new). A server-only
    item goes first only when both it and the next patched item are live and it was live earlier;
    so server-only items keep their place relative to live neighbours and new items come first.
    """
    out: list[Any] = []
    i = j = 0
    while i < len(server_only) or j < len(patched):
        if j >= len(patched):
            out.append(server_only[i])
            i += 1
        elif i >= len(server_only):
            out.append(patched[j])
            j += 1
        else:
            left, right = server_rank(server_only[i]), server_rank(patched[j])
            if left is not None and right is not None and left < right:
                out.append(server_only[i])
                i += 1
            else:
                out.append(patched[j])
                j += 1
    return out


def _ranks(items: Sequence[Any], ident: Callable[[Any], str]) -> dict[str, int]:
    ranks: dict[str, int] = {}
    for position, item in enumerate(items):
        ranks.setdefault(ident(item), position)
    return ranks


def _normalize_order(
    merged: Sequence[Any],
    patch_order: Sequence[Any],
    server_order: Sequence[Any],
    ident: Callable[[Any], str],
) -> list[Any]:
    """Kubernetes' ``normalizeElementOrder``: items named in ``patch_order`` in that order, the
    others in ``server_order``, interleaved by :func:`interleave`."""
    patch_rank = _ranks(patch_order, ident)
    server_rank = _ranks(server_order, ident)
    patched = [item for item in merged if ident(item) in patch_rank]
    server_only = [item for item in merged if ident(item) not in patch_rank]
    patched.sort(key=lambda item: patch_rank[ident(item)])
    last = len(server_order)
    server_only.sort(key=lambda item: server_rank.get(ident(item), last))
    return interleave(server_only, patched, lambda item: server_rank.get(ident(item)))


# --------------------------------------------------------------------------------------------------
# Strategic merge patch

_DIRECTIVE = "$patch"
_RETAIN_KEYS = "$retainKeys"
_SET_ORDER = "$setElementOrder/"
_DELETE_FROM = "$deleteFromPrimitiveList/"


def _at(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _key_ident(key: str | None) -> Callable[[Any], str]:
    if key is None:
        return _canon
    return lambda item: _canon(item.get(key)) if isinstance(item, dict) else _canon(item)


def _smp_fresh(value: Any, strategy: FieldStrategy, shape: Shape, path: str) -> Any:
    """A patch value for a key the live object lacks: directives applied to an empty value."""
    if isinstance(value, dict):
        return _smp_map({}, value, shape, path)
    if isinstance(value, list) and strategy.merges:
        return _smp_list([], value, strategy, shape, path)
    return value


def _smp_map(original: Obj, patch: Obj, shape: Shape, path: str) -> Obj:
    """Merge ``patch`` into ``original`` (both owned by the caller, mutated freely)."""
    directive = patch.pop(_DIRECTIVE, None)
    if directive == "replace":
        return _smp_map({}, patch, shape, path)
    if directive == "delete":
        return {}
    if directive not in (None, "merge"):
        raise BadPatchError(
            f"{path or 'the patch'}: unknown $patch directive {directive!r}: "
            "use replace, delete or merge"
        )
    _retain_keys(original, patch, path)
    orders = {k[len(_SET_ORDER) :]: patch.pop(k) for k in list(patch) if k.startswith(_SET_ORDER)}
    deletes = {
        k[len(_DELETE_FROM) :]: patch.pop(k) for k in list(patch) if k.startswith(_DELETE_FROM)
    }
    for name, order in orders.items():
        _set_element_order(original, patch, name, order, shape, path)
    for key, value in patch.items():
        where = _at(path, key)
        if key.startswith("$"):
            raise BadPatchError(
                f"{where}: unknown directive {key!r}: use $patch, $retainKeys, "
                "$setElementOrder/<field> or $deleteFromPrimitiveList/<field>"
            )
        strategy, child = field_shape(shape, key)
        if value is None:
            original.pop(key, None)
        elif key not in original:
            original[key] = _smp_fresh(value, strategy, child, where)
        elif isinstance(original[key], dict) and isinstance(value, dict):
            original[key] = _smp_map(original[key], value, child, where)
        elif isinstance(original[key], list) and isinstance(value, list):
            original[key] = _smp_list(original[key], value, strategy, child, where)
        else:
            original[key] = _smp_fresh(value, strategy, child, where)
    for name, values in deletes.items():
        where = _at(path, name)
        if not isinstance(values, list):
            raise BadPatchError(f"{where}: $deleteFromPrimitiveList/{name} must be a list")
        current = original.get(name)
        if isinstance(current, list):
            doomed = {_canon(v) for v in values}
            original[name] = [item for item in current if _canon(item) not in doomed]
    return original


def _retain_keys(original: Obj, patch: Obj, path: str) -> None:
    if _RETAIN_KEYS not in patch:
        return
    retained = patch.pop(_RETAIN_KEYS)
    where = path or "the patch"
    if not isinstance(retained, list) or not all(isinstance(k, str) for k in retained):
        raise BadPatchError(f"{where}: $retainKeys must be a list of field names")
    for key, value in patch.items():
        if value is None or key.startswith((_SET_ORDER, _DELETE_FROM)):
            continue
        if key not in retained:
            raise BadPatchError(
                f"{where}: the patch sets {key!r}, which $retainKeys {retained} does not list"
            )
    for key in list(original):
        if key not in retained:
            del original[key]


def _set_element_order(
    original: Obj, patch: Obj, name: str, order: Any, shape: Shape, path: str
) -> None:
    where = _at(path, name)
    if not isinstance(order, list):
        raise BadPatchError(f"{where}: $setElementOrder/{name} must be a list")
    strategy, child = field_shape(shape, name)
    if not strategy.merges:
        return  # the list is replaced: its order is the patch's own
    key = strategy.merge_key
    if key is not None and not all(isinstance(i, dict) and key in i for i in order):
        raise BadPatchError(
            f"{where}: every item of $setElementOrder/{name} must be an object with {key!r}"
        )
    ident = _key_ident(key)
    patch_list = patch.get(name)
    if isinstance(patch_list, list):
        _check_order(patch_list, order, ident, where)
    current = original.get(name)
    live: list[Any] = current if isinstance(current, list) else []
    if isinstance(patch_list, list):
        merged = _smp_list(live, patch.pop(name), strategy, child, where)
    elif isinstance(current, list):
        merged = live
    else:
        return
    original[name] = _normalize_order(merged, order, list(live), ident)


def _check_order(
    patch_list: list[Any], order: list[Any], ident: Callable[[Any], str], where: str
) -> None:
    """The patch list's items must appear in ``$setElementOrder`` in the same relative order."""
    plain = [i for i in patch_list if not (isinstance(i, dict) and _DIRECTIVE in i)]
    position = 0
    for item in order:
        if position < len(plain) and ident(plain[position]) == ident(item):
            position += 1
    if position < len(plain):
        raise BadPatchError(
            f"{where}: the items of the patch list are not in the order of $setElementOrder: "
            f"{_show(plain[position])} is missing from it or out of order"
        )


def _smp_list(
    original: list[Any], patch: list[Any], strategy: FieldStrategy, shape: Shape, path: str
) -> list[Any]:
    if not strategy.merges:
        return patch
    if any(isinstance(item, list) for item in (*original, *patch)):
        raise InvalidPatchError(f"{path}: lists of lists are not supported")
    key = strategy.merge_key
    if key is None:
        if any(isinstance(item, dict) for item in patch):
            raise InvalidPatchError(f"{path}: this list holds scalars, the patch has objects")
        merged: list[Any] = []
        seen: set[str] = set()
        for item in (*original, *patch):
            if _canon(item) not in seen:
                seen.add(_canon(item))
                merged.append(item)
        return _normalize_order(merged, patch, original, _canon)
    items = item_shape(shape)
    for item in (*original, *patch):
        if not isinstance(item, dict):
            raise InvalidPatchError(
                f"{path}: items of this list are objects merged by {key!r}, got {_show(item)}"
            )
    plain: list[Obj] = []
    replace = False
    live = list(original)
    for item in patch:
        directive = item.get(_DIRECTIVE)
        if directive is None:
            plain.append(item)
        elif directive == "delete":
            if key not in item:
                raise InvalidPatchError(
                    f"{path}: a $patch: delete item must name the item by {key!r}: {_show(item)}"
                )
            live = [x for x in live if not json_equal(x.get(key), item[key])]
        elif directive == "replace":
            replace = True
        elif directive == "merge":
            plain.append({k: v for k, v in item.items() if k != _DIRECTIVE})
        else:
            raise BadPatchError(
                f"{path}: unknown $patch directive {directive!r}: use replace, delete or merge"
            )
    if replace:
        return [_smp_map({}, item, items, path) for item in plain]
    server_order = list(live)
    for item in plain:
        if key not in item:
            raise InvalidPatchError(
                f"{path}: the item {_show(item)} has no merge key {key!r}; "
                f"name the item by its {key!r}"
            )
        where = f"{path}[{key}={_show(item[key])}]"
        for position, existing in enumerate(live):
            if json_equal(existing.get(key), item[key]):
                live[position] = _smp_map(existing, item, items, where)
                break
        else:
            live.append(_smp_map({}, item, items, where))
    return _normalize_order(live, plain, server_order, _key_ident(key))


def strategic_merge_patch(
    original: Mapping[str, Any], patch: Any, kind: type[KubeObject] | None = None
) -> Obj:
    """``original`` with a strategic merge ``patch`` applied, by the merge strategies of ``kind``
    (found from ``original``'s ``apiVersion`` and ``kind`` when not given).

    Raises :class:`UnsupportedPatchError` for custom and unknown kinds (as Kubernetes does),
    :class:`BadPatchError` for a malformed patch or directive, :class:`InvalidPatchError` for a
    patch that does not fit the object (an item without its merge key, lists of lists).
    """
    if kind is None:
        kind = kind_class(original)
    if kind is None or kind.INFO.custom:
        raise UnsupportedPatchError(_CUSTOM_PATCH_TYPES, content_type=STRATEGIC_MERGE_PATCH)
    if not isinstance(patch, dict):
        raise BadPatchError(f"a strategic merge patch must be a JSON object, got {_show(patch)}")
    if patch.get(_DIRECTIVE) == "delete":
        raise BadPatchError("$patch: delete at the top would delete the object: send a DELETE")
    return _smp_map(copy.deepcopy(dict(original)), copy.deepcopy(patch), root_shape(kind), "")


# --------------------------------------------------------------------------------------------------
# Content types


def _media_type(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


def decode_patch(content_type: str, body: bytes | str) -> Any:
    """The patch document of a request body: JSON for the patch types, YAML (or JSON) for apply.

    Raises :class:`UnsupportedPatchError` for a content type that is no patch type and
    :class:`BadPatchError` for a body that does not parse.
    """
    media = _media_type(content_type)
    if media not in PATCH_TYPES:
        raise UnsupportedPatchError(PATCH_TYPES, content_type=content_type)
    text = body.decode("utf-8", errors="replace") if isinstance(body, bytes) else body
    try:
        if media == APPLY_PATCH:
            return yaml.safe_load(text)
        return json.loads(text)
    except (ValueError, yaml.YAMLError) as error:
        kind = "YAML" if media == APPLY_PATCH else "JSON"
        raise BadPatchError(f"the {media} body is not valid {kind}: {error}") from None


def patch_object(
    original: Mapping[str, Any],
    content_type: str,
    document: Any,
    *,
    kind: type[KubeObject] | None = None,
) -> Obj:
    """``original`` patched by a JSON, merge or strategic merge patch ``document``.

    ``kind`` defaults to the class of ``original``. The result must be an object; the caller
    validates it against the model. Server-side apply (``application/apply-patch+yaml``) needs a
    field manager and goes through :func:`shoal.apiserver.applying.apply` instead.
    """
    media = _media_type(content_type)
    if kind is None:
        kind = kind_class(original)
    if media == STRATEGIC_MERGE_PATCH:
        return strategic_merge_patch(original, document, kind)
    if media == JSON_PATCH:
        result = json_patch(dict(original), document)
    elif media == MERGE_PATCH:
        if not isinstance(document, dict):
            raise BadPatchError(
                f"a merge patch of an object must be a JSON object, got {_show(document)}"
            )
        result = merge_patch(dict(original), document)
    elif media == APPLY_PATCH:
        raise ValueError("server-side apply needs a field manager: call applying.apply()")
    else:
        raise UnsupportedPatchError(patch_types_for(kind), content_type=content_type)
    if not isinstance(result, dict):
        raise InvalidPatchError(f"the patched object must be a JSON object, got {_show(result)}")
    return result
