"""
Server-side apply and field ownership: ``metadata.managedFields`` as Kubernetes keeps it.

Theory of operation
===================

Every field of an object may have *owners*, the field managers that last said what its value
should be. Ownership is stored in ``metadata.managedFields``, one entry per manager and
operation: ``manager``, ``operation`` (``Apply`` for server-side apply, ``Update`` for every
other write), ``apiVersion``, ``time``, ``fieldsType: FieldsV1``, ``fieldsV1`` and, for writes
through a subresource, ``subresource``.

**Field paths.** A field is named by a path of elements, written the FieldsV1 way: ``f:name`` for
a field of an object, ``k:{"name":"app"}`` for the item of a map-list with those key values
(keys sorted, compact JSON), ``v:"x"`` for an item of a set-list. ``fieldsV1`` nests the paths
as objects with ``{}`` at the leaves; ``"."`` marks a path that is owned itself *and* has owned
children (a list item and its fields)::

    {"f:spec": {"f:replicas": {},
                "f:template": {"f:spec": {"f:containers": {
                    'k:{"name":"app"}': {".": {}, "f:image": {}, "f:name": {}}}}}}}

What a path means depends on the schema (:mod:`shoal.apiserver.patching` walks the model with
:data:`~shoal.apiserver.patching.FIELD_STRATEGIES`): an object field is traversed; a ``map``
list is traversed item by item (the item is owned, then its fields); a ``set`` list owns each
value; an ``atomic`` list or struct, a scalar and an empty object are leaves. Custom resources
type only ``metadata``: below it, lists are atomic, as for a CRD without list markers.
``apiVersion``, ``kind`` and the metadata the server sets (``name``, ``namespace``, ``uid``,
``resourceVersion``, ``generation``, ``creationTimestamp``, ``managedFields``) are never owned.

**Apply** (:func:`apply`) takes the manager's *applied configuration*, the fields it cares about:

1. the configuration is merged into the live object: objects key by key, map-lists item by item
   (by their keys), set-lists as a union, anything else replaced; the merged list order is
   structured-merge-diff's (live-only items stay where they were, applied items in applied order);
2. every applied field whose value would change and which another manager owns is a *conflict*.
   Without ``force`` the apply fails with :class:`~shoal.apiserver.patching.ApplyConflictError`
   (409) listing each field and its owner; with ``force`` the other managers lose those fields.
   Applying the value a field already has is no conflict: the managers then *share* the field;
3. the manager's Apply entry becomes exactly the set of applied fields;
4. fields the manager applied last time but not this time are *removed*, unless some manager
   still owns them or something inside them. Key fields stay as long as their item does, and an
   object or list emptied by the removal goes too unless someone owns it.

An object with no ``managedFields`` at all gets a ``before-first-apply`` Update entry owning
everything on its first apply, so the first applier sees conflicts on values it changes, as on
Kubernetes. ``null`` in an applied configuration is the same as leaving the field out.

**Update** (:func:`record_update`), for every other write (create, PUT, JSON/merge/strategic
patch): the writer takes every field it added or changed, away from whoever owned it (updates
always force), fields that no longer exist leave every set, and the writer's ``Update`` entry
(one per manager, API version and subresource) grows by what it changed. A request that sends
``managedFields`` replaces them (``[{}]`` clears them), as on Kubernetes; one that leaves them
out keeps the stored ones.

**Subresources.** Writes through ``/status`` (``subresource="status"``) take only ``status``;
writes to the main resource of a kind with a status subresource ignore ``status``. The entry
records the subresource; ``time`` is ``now`` only when the entry's fields or the object changed,
so re-applying the same configuration changes nothing at all.

Not supported: unions (``x-kubernetes-unions``), per-version conversion of field sets (shoal
serves one version per kind), ``x-kubernetes-map-type: atomic`` on custom resources, and the
client-side-apply upgrade path (``kubectl.kubernetes.io/last-applied-configuration`` is an
ordinary annotation here). The ``resourceVersion`` precondition of an apply, and the 404 of a
status apply to a missing object, are the HTTP handler's.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Any, Final, cast

from shoal.apiserver.patching import (
    DEFAULT_STRATEGY,
    ApplyConflictError,
    BadPatchError,
    FieldConflict,
    FieldStrategy,
    InvalidPatchError,
    Shape,
    field_shape,
    item_shape,
    json_equal,
    kind_class,
    root_shape,
)
from shoal.apiserver.records import copy_json, dumps
from shoal.apiserver.status import Cause
from shoal.model.meta import KubeObject

__all__ = [
    "BEFORE_FIRST_APPLY",
    "ApplyResult",
    "FieldPath",
    "ManagedEntry",
    "apply",
    "field_path_text",
    "fields_from_v1",
    "fields_to_v1",
    "managed_entries",
    "record_update",
]

Obj = dict[str, Any]
FieldPath = tuple[str, ...]
"""A field path in FieldsV1 elements: ``("f:spec", "f:containers", 'k:{"name":"app"}')``."""

BEFORE_FIRST_APPLY: Final = "before-first-apply"
"""The manager that owns every field of an object with no ``managedFields`` at its first apply."""

_UNOWNED: Final[frozenset[FieldPath]] = frozenset(
    {
        ("f:apiVersion",),
        ("f:kind",),
        ("f:metadata", "f:name"),
        ("f:metadata", "f:namespace"),
        ("f:metadata", "f:uid"),
        ("f:metadata", "f:resourceVersion"),
        ("f:metadata", "f:generation"),
        ("f:metadata", "f:creationTimestamp"),
        ("f:metadata", "f:selfLink"),
        ("f:metadata", "f:managedFields"),
    }
)
"""Fields no manager owns (Kubernetes' ``stripMeta``)."""

_SERVER_METADATA: Final = (
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "selfLink",
)
"""Metadata an applied configuration cannot set: the live values are kept."""


class _Node:
    """Marks a member path that is not a leaf (a list item, or a map for Update sets)."""

    def __repr__(self) -> str:
        return "NODE"


_NODE: Final = _Node()


# --------------------------------------------------------------------------------------------------
# Managed fields entries and FieldsV1


@dataclass(frozen=True, slots=True)
class ManagedEntry:
    """One entry of ``metadata.managedFields``: a manager, how it wrote, and what it owns."""

    manager: str
    operation: str
    """``Apply`` or ``Update``."""
    api_version: str | None
    time: str | None
    fields: frozenset[FieldPath]
    subresource: str | None = None

    def identity(self) -> tuple[str, str, str | None, str | None]:
        """Entries with the same identity are one entry (Kubernetes' manager identifier: Apply
        entries ignore the API version, Update entries keep one entry per version)."""
        version = self.api_version if self.operation == "Update" else None
        return (self.manager, self.operation, self.subresource, version)

    def to_dict(self) -> Obj:
        out: Obj = {}
        if self.api_version is not None:
            out["apiVersion"] = self.api_version
        out["fieldsType"] = "FieldsV1"
        out["fieldsV1"] = fields_to_v1(self.fields)
        out["manager"] = self.manager
        out["operation"] = self.operation
        if self.subresource:
            out["subresource"] = self.subresource
        if self.time is not None:
            out["time"] = self.time
        return out


_V1_CACHE: dict[frozenset[FieldPath], Obj] = {}
_V1_CACHE_SIZE = 256


def fields_to_v1(fields: Iterable[FieldPath]) -> Obj:
    """The FieldsV1 object of a set of paths (``"."`` marks an owned path with owned children).

    The caller owns the result. Writes of one kind by one client mostly own the same sets (every
    create of a ConfigMap with the same keys does), so the trees of recent sets are kept and
    copied out, which costs a third of rendering one."""
    key = fields if type(fields) is frozenset else frozenset(fields)
    cached = _V1_CACHE.get(key)
    if cached is None:
        cached = _render_v1(key)
        if len(_V1_CACHE) >= _V1_CACHE_SIZE:
            _V1_CACHE.clear()  # a bound, not an LRU: the sets in use are few
        _V1_CACHE[key] = cached
    return cast(Obj, copy_json(cached))


def _render_v1(members: frozenset[FieldPath]) -> Obj:
    tree: Obj = {}
    for path in members:  # render() sorts each node's keys; the paths need no order here
        node = tree
        for element in path:
            node = node.setdefault(element, {})

    def render(node: Obj, prefix: FieldPath) -> Obj:
        out: Obj = {}
        if node and prefix in members:
            out["."] = {}
        for element in sorted(node):
            out[element] = render(node[element], (*prefix, element))
        return out

    return render(tree, ())


_PARSED_V1: dict[str, frozenset[FieldPath]] = {}


def fields_from_v1(fields_v1: Any, *, where: str = "fieldsV1") -> frozenset[FieldPath]:
    """The set of paths of a FieldsV1 object; :class:`BadPatchError` if it is malformed.

    Every update parses the stored entries again, mostly the same few trees: the sets of recent
    well-formed trees are kept by their JSON text (a set is immutable, so it is shared)."""
    try:
        text = dumps(fields_v1)
    except (TypeError, ValueError):
        return _parse_v1(fields_v1, where)  # not JSON: the parse says what is wrong
    parsed = _PARSED_V1.get(text)
    if parsed is None:
        parsed = _parse_v1(fields_v1, where)
        if len(_PARSED_V1) >= _V1_CACHE_SIZE:
            _PARSED_V1.clear()
        _PARSED_V1[text] = parsed
    return parsed


def _parse_v1(fields_v1: Any, where: str) -> frozenset[FieldPath]:
    out: set[FieldPath] = set()

    def walk(node: Any, prefix: FieldPath) -> None:
        if not isinstance(node, dict):
            raise BadPatchError(f"{where}: {_v1_text(prefix)} must be an object, got {node!r}")
        for element, child in node.items():
            if element == ".":
                if not prefix or child != {}:
                    raise BadPatchError(f"{where}: '.' must be {{}} inside a field, at {prefix}")
                out.add(prefix)
                continue
            if not isinstance(element, str) or element[:2] not in ("f:", "k:", "v:", "i:"):
                raise BadPatchError(
                    f"{where}: {element!r} is not a FieldsV1 element (f:, k:, v:, i: or '.')"
                )
            if element.startswith(("k:", "v:")):
                try:
                    decoded = json.loads(element[2:])
                except ValueError:
                    raise BadPatchError(f"{where}: {element!r} does not hold JSON") from None
                if element.startswith("k:") and not isinstance(decoded, dict):
                    raise BadPatchError(f"{where}: {element!r} must hold a JSON object of keys")
            path = (*prefix, element)
            if child == {}:
                out.add(path)
            else:
                walk(child, path)

    walk(fields_v1, ())
    return frozenset(out)


def _v1_text(path: FieldPath) -> str:
    return "/".join(path) or "the root"


def managed_entries(obj: Mapping[str, Any]) -> list[ManagedEntry]:
    """The ``managedFields`` of ``obj`` as entries (empty when it has none)."""
    metadata = obj.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise BadPatchError("metadata must be an object")
    raw = metadata.get("managedFields") or []
    if not isinstance(raw, list):
        raise BadPatchError("metadata.managedFields must be a list")
    entries = []
    for index, item in enumerate(raw):
        where = f"metadata.managedFields[{index}]"
        if not isinstance(item, dict):
            raise BadPatchError(f"{where} must be an object")
        fields_type = item.get("fieldsType", "FieldsV1")
        if fields_type != "FieldsV1":
            raise BadPatchError(f"{where}.fieldsType: must be 'FieldsV1', got {fields_type!r}")
        manager, operation = item.get("manager"), item.get("operation")
        if not isinstance(manager, str) or operation not in ("Apply", "Update"):
            raise BadPatchError(f"{where}: needs a manager and an operation (Apply or Update)")
        entries.append(
            ManagedEntry(
                manager=manager,
                operation=operation,
                api_version=item.get("apiVersion"),
                time=item.get("time"),
                fields=fields_from_v1(item.get("fieldsV1") or {}, where=f"{where}.fieldsV1"),
                subresource=item.get("subresource") or None,
            )
        )
    return entries


# --------------------------------------------------------------------------------------------------
# Paths of an object


def _compact(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _key_values(item: Any, strategy: FieldStrategy, path: FieldPath) -> Obj:
    if not isinstance(item, dict):
        raise InvalidPatchError(
            f"{field_path_text(path)}: the items of this list must be objects keyed by "
            f"{', '.join(strategy.keys)}, got {_compact(item)}",
            causes=[Cause("FieldValueInvalid", "must be an object", field_path_text(path))],
        )
    keys: Obj = {}
    for name in strategy.keys:
        value = item.get(name)
        if value is None:
            value = strategy.key_default(name)
        if value is None:
            message = f'element {_compact(item)} omits key field "{name}"'
            raise InvalidPatchError(
                f"{field_path_text(path)}: {message}",
                causes=[Cause("FieldValueRequired", message, field_path_text(path))],
            )
        keys[name] = value
    return keys


def _item_element(item: Any, strategy: FieldStrategy, path: FieldPath) -> str:
    if strategy.list_type == "set":
        return "v:" + _compact(item)
    return "k:" + _compact(_key_values(item, strategy, path))


def field_path_text(path: FieldPath) -> str:
    """A path as Kubernetes prints it: ``.spec.containers[name="app"].image``."""
    out = []
    for element in path:
        kind, body = element[:2], element[2:]
        if kind == "f:":
            out.append("." + body)
        elif kind == "k:":
            keys = json.loads(body)
            out.append("[" + ",".join(f"{k}={_compact(v)}" for k, v in keys.items()) + "]")
        elif kind == "v:":
            out.append(f"[={body}]")
        else:
            out.append(f"[{body}]")
    return "".join(out)


def _members(
    obj: Mapping[str, Any], shape: Shape, *, maps: bool, strict: bool
) -> dict[FieldPath, Any]:
    """Every owned-able path of ``obj`` and its value (``_NODE`` for a list item, and for a map
    when ``maps``: Update sets own the maps they create). ``strict`` refuses duplicate keys."""
    out: dict[FieldPath, Any] = {}
    _walk_fields(obj, shape, (), out, maps, strict)
    return out


# The walks run for every write (twice for an update): the flags are positional.


def _walk_fields(
    obj: Mapping[str, Any],
    shape: Shape,
    path: FieldPath,
    out: dict[FieldPath, Any],
    maps: bool,
    strict: bool,
) -> None:
    for key, value in obj.items():
        if value is None:
            continue
        strategy, child = field_shape(shape, key)
        _walk_value(value, strategy, child, (*path, f"f:{key}"), out, maps, strict)


def _walk_value(
    value: Any,
    strategy: FieldStrategy,
    shape: Shape,
    path: FieldPath,
    out: dict[FieldPath, Any],
    maps: bool,
    strict: bool,
) -> None:
    if isinstance(value, dict) and value and not strategy.atomic:
        if maps and shape.kind == "map":
            out[path] = _NODE
        _walk_fields(value, shape, path, out, maps, strict)
    elif isinstance(value, list) and value and strategy.list_type != "atomic":
        items = item_shape(shape)
        for item in value:
            item_path = (*path, _item_element(item, strategy, path))
            if item_path in out:
                if strict:
                    message = f"duplicate entries for key {field_path_text(item_path[-1:])}"
                    raise InvalidPatchError(
                        f"{field_path_text(path)}: {message}",
                        causes=[Cause("FieldValueDuplicate", message, field_path_text(path))],
                    )
                continue
            if strategy.list_type == "set":
                out[item_path] = item
            else:
                out[item_path] = _NODE
                _walk_fields(item, items, item_path, out, maps, strict)
    else:
        out[path] = value


def _identical(a: Any, b: Any) -> bool:
    """Equal JSON values of the same types throughout (``1`` is not ``1.0`` nor ``true``)."""
    if type(a) is not type(b) or a != b:  # != first: unequal values are the common case
        return False
    if type(a) is dict:
        return all(_identical(value, b[key]) for key, value in a.items())
    if type(a) is list:
        return all(_identical(x, y) for x, y in zip(a, b, strict=True))
    return True


def _same(a: Any, b: Any) -> bool:
    if a is _NODE or b is _NODE:
        return a is b
    if type(a) is str and type(b) is str:  # most values; json_equal would say the same
        return a == b
    return json_equal(a, b)


def _in_scope(subresource: str | None, status_subresource: bool) -> Callable[[FieldPath], bool]:
    """Which paths a write may touch: ``/status`` only status, the main resource all but status
    (for kinds with the subresource)."""
    if subresource == "status":
        return lambda path: path[:1] == ("f:status",)
    if status_subresource:
        return lambda path: path[:1] != ("f:status",)
    return lambda path: True


def _ownable(path: FieldPath) -> bool:
    return path[:1] not in _UNOWNED and path[:2] not in _UNOWNED


# --------------------------------------------------------------------------------------------------
# Merging an applied configuration


def _strip_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_strip_nulls(v) for v in value]
    return value


def _merge(live: Any, config: Any, strategy: FieldStrategy, shape: Shape, path: FieldPath) -> Any:
    """``config`` merged into ``live`` (a copy the caller owns)."""
    if isinstance(live, dict) and isinstance(config, dict) and not strategy.atomic:
        for key, value in config.items():
            field_strategy, child = field_shape(shape, key)
            if key in live:
                live[key] = _merge(live[key], value, field_strategy, child, (*path, f"f:{key}"))
            else:
                live[key] = value
        return live
    if isinstance(live, list) and isinstance(config, list) and strategy.list_type != "atomic":
        return _merge_list(live, config, strategy, shape, path)
    return config


def _merge_list(
    live: list[Any], config: list[Any], strategy: FieldStrategy, shape: Shape, path: FieldPath
) -> list[Any]:
    """structured-merge-diff's list merge: walk both lists; live-only items stay in place, applied
    items come in applied order, a shared item where the applied list puts it."""
    items = item_shape(shape)

    def index(values: list[Any], *, strict: bool) -> tuple[list[str], dict[str, Any]]:
        order: list[str] = []
        found: dict[str, Any] = {}
        for value in values:
            element = _item_element(value, strategy, path)
            if element in found:
                if strict:
                    message = f"duplicate entries for key {field_path_text((element,))}"
                    raise InvalidPatchError(
                        f"{field_path_text(path)}: {message}",
                        causes=[Cause("FieldValueDuplicate", message, field_path_text(path))],
                    )
                continue
            found[element] = value
            order.append(element)
        return order, found

    live_order, live_items = index(live, strict=False)
    config_order, config_items = index(config, strict=True)
    shared = iter([e for e in config_order if e in live_items])
    next_shared = next(shared, None)
    emitted: set[str] = set()
    out: list[Any] = []

    def take(element: str) -> None:
        nonlocal next_shared
        mine, theirs = live_items.get(element), config_items.get(element)
        if mine is None:
            out.append(theirs)
        elif theirs is None or strategy.list_type == "set":
            out.append(mine if theirs is None else theirs)
        else:
            out.append(_merge(mine, theirs, DEFAULT_STRATEGY, items, (*path, element)))
        emitted.add(element)
        if element == next_shared:
            next_shared = next(shared, None)

    li = ri = 0
    while li < len(live_order) or ri < len(config_order):
        if li < len(live_order) and live_order[li] in emitted:
            li += 1
            continue
        if li < len(live_order) and ri < len(config_order):
            element = live_order[li]
            if element == config_order[ri]:
                take(element)
                li += 1
                ri += 1
                continue
            if element in config_items and next_shared is not None and next_shared != element:
                li += 1  # a shared item the applied list wants later
                continue
        if li < len(live_order) and live_order[li] not in config_items:
            take(live_order[li])
            li += 1
            continue
        if ri < len(config_order):
            take(config_order[ri])
            ri += 1
            continue
        li += 1  # a shared item already taken from the applied list
    return out


# --------------------------------------------------------------------------------------------------
# Finding and removing fields


def _locate(obj: Any, path: FieldPath, shape: Shape) -> tuple[Any, Any] | None:
    """The container holding ``path`` and the key or index of it there, if it exists."""
    value: Any = obj
    strategy = DEFAULT_STRATEGY
    holder: tuple[Any, Any] | None = None
    for element in path:
        kind, body = element[:2], element[2:]
        if kind == "f:":
            if not isinstance(value, dict) or body not in value:
                return None
            holder = (value, body)
            strategy, shape = field_shape(shape, body)
            value = value[body]
            continue
        if not isinstance(value, list):
            return None
        wanted = json.loads(body)
        for position, item in enumerate(value):
            if kind == "v:":
                matches = json_equal(item, wanted)
            elif kind == "k:" and isinstance(item, dict):
                matches = all(
                    json_equal(
                        item.get(k) if item.get(k) is not None else strategy.key_default(k), v
                    )
                    for k, v in wanted.items()
                )
            else:
                matches = kind == "i:" and position == wanted
            if matches:
                holder = (value, position)
                value = item
                break
        else:
            return None
        strategy, shape = DEFAULT_STRATEGY, item_shape(shape)
    return holder


def _prefixes(paths: Iterable[FieldPath]) -> set[FieldPath]:
    out: set[FieldPath] = set()
    for path in paths:
        for end in range(1, len(path) + 1):
            out.add(path[:end])
    return out


def _is_key_field(path: FieldPath) -> bool:
    if len(path) < 2 or not path[-2].startswith("k:") or not path[-1].startswith("f:"):
        return False
    return path[-1][2:] in json.loads(path[-2][2:])


def _prune(obj: Obj, doomed: Iterable[FieldPath], owned: set[FieldPath], shape: Shape) -> None:
    """Remove the ``doomed`` paths nobody owns (nor anything below), then the containers their
    removal emptied, unless owned; top-level fields (``spec``) always stay."""
    kept = _prefixes(owned)
    for path in sorted(doomed, key=len):
        if path in kept or _is_key_field(path):
            continue
        where = _locate(obj, path, shape)
        if where is None:
            continue
        container, locator = where
        del container[locator]
        parent = path[:-1]
        while len(parent) > 1 and parent not in kept:
            where = _locate(obj, parent, shape)
            if where is None:
                break
            container, locator = where
            if container[locator] not in ({}, []):
                break
            del container[locator]
            parent = parent[:-1]


# --------------------------------------------------------------------------------------------------
# Apply


@dataclass(frozen=True, slots=True)
class ApplyResult:
    """What an apply produced."""

    object: Obj
    """The merged object, with ``metadata.managedFields`` updated (server-set metadata such as
    ``uid`` is the live object's; the caller sets it on create)."""
    created: bool
    """Whether there was no live object."""
    changed: bool
    """Whether anything besides ``managedFields`` changed (a no-op apply need not be stored)."""
    forced: tuple[FieldConflict, ...] = ()
    """The conflicts ``force`` overrode: the fields taken from other managers."""


def _effective_config(applied: Obj, subresource: str | None, status_subresource: bool) -> Obj:
    config: Obj = _strip_nulls(applied)
    metadata = config.get("metadata")
    if isinstance(metadata, dict):
        for name in _SERVER_METADATA:
            metadata.pop(name, None)
    if subresource == "status":
        identity = {k: v for k, v in (metadata or {}).items() if k in ("name", "namespace")}
        kept: Obj = {k: config[k] for k in ("apiVersion", "kind", "status") if k in config}
        return {**kept, "metadata": identity}
    if status_subresource:
        config.pop("status", None)
    return config


def _check_applied(live: Mapping[str, Any] | None, applied: Any, manager: str) -> None:
    if not manager:
        message = "is required for apply patch"
        raise InvalidPatchError(
            f'PatchOptions.meta.k8s.io "" is invalid: fieldManager: Required value: {message}',
            causes=[Cause("FieldValueRequired", f"Required value: {message}", "fieldManager")],
        )
    if not isinstance(applied, dict):
        raise BadPatchError(
            "an applied configuration must be an object with apiVersion, kind and metadata.name"
        )
    for key in ("apiVersion", "kind"):
        if not isinstance(applied.get(key), str) or not applied[key]:
            raise BadPatchError(f"the applied configuration must set {key}")
    metadata = applied.get("metadata")
    if not isinstance(metadata, dict) or not isinstance(metadata.get("name"), str):
        raise BadPatchError("the applied configuration must set metadata.name")
    if metadata.get("managedFields") is not None:
        raise BadPatchError(
            "metadata.managedFields must be nil in an applied configuration: leave it out"
        )
    if live is None:
        return
    if applied["kind"] != live.get("kind"):
        raise BadPatchError(
            f"the applied configuration is a {applied['kind']}, the object is a {live.get('kind')}"
        )
    live_name = (live.get("metadata") or {}).get("name")
    if metadata["name"] != live_name:
        raise BadPatchError(
            f"the applied configuration names {metadata['name']!r}, the object is {live_name!r}"
        )


def _without_managed_fields(obj: Mapping[str, Any]) -> Obj:
    out = dict(obj)
    if isinstance(out.get("metadata"), dict):
        out["metadata"] = {k: v for k, v in out["metadata"].items() if k != "managedFields"}
    return out


def _write_entries(obj: Obj, entries: Iterable[ManagedEntry]) -> None:
    kept = [entry.to_dict() for entry in entries if entry.fields]
    metadata = obj.setdefault("metadata", {})
    if kept:
        metadata["managedFields"] = kept
    else:
        metadata.pop("managedFields", None)


def _resolve_kind(
    obj: Mapping[str, Any], kind: type[KubeObject] | None, status_subresource: bool | None
) -> tuple[Shape, bool, str | None]:
    """The shape, whether status is a subresource, and the canonical ``apiVersion``."""
    if kind is None:
        kind = kind_class(obj)
    if status_subresource is None:
        status_subresource = kind.INFO.status_subresource if kind is not None else False
    given = obj.get("apiVersion")
    api_version = given if isinstance(given, str) else None
    if kind is not None and (api_version is None or kind.INFO.accepts_api_version(api_version)):
        api_version = kind.INFO.api_version  # the talk's loadtest/v1 is recorded canonically
    return root_shape(kind), status_subresource, api_version


def apply(
    live: Mapping[str, Any] | None,
    applied: Any,
    manager: str,
    *,
    force: bool,
    now: str,
    subresource: str | None = None,
    kind: type[KubeObject] | None = None,
    status_subresource: bool | None = None,
) -> ApplyResult:
    """Server-side apply of ``applied`` (the decoded ``application/apply-patch+yaml`` body) by
    field manager ``manager`` to ``live`` (``None`` creates).

    ``now`` is the RFC 3339 time recorded in the manager's entry. ``kind`` (default: found from
    ``apiVersion``/``kind``) gives the merge strategies; ``status_subresource`` (default: the
    kind's) says whether main-resource writes leave ``status`` alone. Raises
    :class:`~shoal.apiserver.patching.ApplyConflictError` (409) on conflicts without ``force``,
    :class:`~shoal.apiserver.patching.BadPatchError` (400) for a configuration without
    ``apiVersion``, ``kind`` or ``metadata.name`` or naming another object, and
    :class:`~shoal.apiserver.patching.InvalidPatchError` (422) for list items without their keys
    or with duplicate keys, and for an empty ``manager``. Neither argument is modified.
    """
    _check_applied(live, applied, manager)
    shape, status_sub, api_version = _resolve_kind(applied, kind, status_subresource)
    in_scope = _in_scope(subresource, status_sub)
    config = _effective_config(applied, subresource, status_sub)
    applied_set = frozenset(
        p for p in _members(config, shape, maps=False, strict=True) if _ownable(p) and in_scope(p)
    )

    base = _without_managed_fields(copy.deepcopy(dict(live))) if live is not None else {}
    entries = managed_entries(live) if live is not None else []
    if live is not None and not entries:
        everything = _members(base, shape, maps=True, strict=False)
        entries = [
            ManagedEntry(
                manager=BEFORE_FIRST_APPLY,
                operation="Update",
                api_version=live.get("apiVersion"),
                time=now,
                fields=frozenset(p for p in everything if _ownable(p)),
            )
        ]
    live_values = _members(base, shape, maps=False, strict=False)
    merged = _merge(base, copy.deepcopy(config), DEFAULT_STRATEGY, shape, ())
    merged_values = _members(merged, shape, maps=False, strict=False)
    changed_paths = {
        p
        for p in applied_set
        if p in live_values and not _same(live_values[p], merged_values.get(p, _NODE))
    }

    conflicts = [
        FieldConflict(
            field=field_path_text(path),
            manager=entry.manager,
            operation=entry.operation,
            api_version=entry.api_version,
            subresource=entry.subresource,
        )
        for entry in entries
        if entry.manager != manager
        for path in sorted(entry.fields & changed_paths)
    ]
    if conflicts and not force:
        raise ApplyConflictError(conflicts)

    mine_id = (manager, "Apply", subresource, None)
    previous = next((e for e in entries if e.identity() == mine_id), None)
    others = [
        replace(e, fields=e.fields - changed_paths) if e.manager != manager else e
        for e in entries
        if e.identity() != mine_id
    ]
    owned = set(applied_set).union(*(e.fields for e in others))
    if previous is not None:
        _prune(merged, previous.fields - applied_set, owned, shape)

    existing = set(_members(merged, shape, maps=True, strict=False))
    others = [replace(e, fields=e.fields & existing) for e in others]
    live_plain = _without_managed_fields(live) if live is not None else None
    changed = live_plain is None or not json_equal(live_plain, merged)
    same_fields = previous is not None and previous.fields == applied_set
    mine = ManagedEntry(
        manager=manager,
        operation="Apply",
        api_version=api_version,
        time=previous.time if previous is not None and same_fields and not changed else now,
        fields=applied_set,
        subresource=subresource,
    )
    ordered: list[ManagedEntry] = []
    placed = False
    for entry in entries:
        if entry.identity() == mine_id:
            ordered.append(mine)
            placed = True
        else:
            ordered.extend(o for o in others if o.identity() == entry.identity())
    if not placed:
        ordered.append(mine)
    _write_entries(merged, _dedupe(ordered))
    return ApplyResult(
        object=merged,
        created=live is None,
        changed=changed,
        forced=tuple(conflicts) if force else (),
    )


def _dedupe(entries: Iterable[ManagedEntry]) -> Iterator[ManagedEntry]:
    seen: set[tuple[str, str, str | None, str | None]] = set()
    for entry in entries:
        if entry.identity() not in seen:
            seen.add(entry.identity())
            yield entry


# --------------------------------------------------------------------------------------------------
# Update


def record_update(
    old: Mapping[str, Any] | None,
    new: Mapping[str, Any],
    manager: str,
    now: str,
    *,
    subresource: str | None = None,
    kind: type[KubeObject] | None = None,
    status_subresource: bool | None = None,
    owned: bool = False,
) -> Obj:
    """``new`` with ``metadata.managedFields`` updated for an ordinary write by ``manager``
    (create when ``old`` is ``None``, PUT, or a JSON/merge/strategic patch).

    ``manager`` takes every field it added or changed from its other owners (an update always
    forces); fields no longer present leave every entry. If ``new`` carries ``managedFields``
    they replace the stored ones first (``[{}]`` clears them); if it leaves them out, ``old``'s
    are kept. Neither argument is modified, unless ``owned`` says the caller gives up ``new``:
    then it is the result (its metadata changed in place), which spares a copy.
    """
    result: Obj = cast(Obj, new) if owned and type(new) is dict else copy_json(dict(new))
    shape, status_sub, api_version = _resolve_kind(result, kind, status_subresource)
    in_scope = _in_scope(subresource, status_sub)
    metadata = result.setdefault("metadata", {})
    if not isinstance(metadata, dict):
        raise BadPatchError("metadata must be an object")
    given = metadata.pop("managedFields", None)
    if given is None:
        entries = managed_entries(old) if old is not None else []
    elif given == [{}]:
        entries = []
    else:
        entries = managed_entries({"metadata": {"managedFields": given}})

    unchanged: set[str] = set()
    before: dict[FieldPath, Any] = {}
    if old:
        # A top-level field identical in old and new (same values, same types throughout) has
        # the same paths with the same values on both sides: none of them is taken, so only
        # the other fields of old are walked.
        changed = {}
        for key, value in _without_managed_fields(old).items():
            if key in result and _identical(value, result[key]):
                unchanged.add(f"f:{key}")
            else:
                changed[key] = value
        before = _members(changed, shape, maps=True, strict=False)
    after = _members(result, shape, maps=True, strict=False)
    taken = frozenset(
        p
        for p, value in after.items()
        if p[0] not in unchanged
        and (p not in before or not _same(before[p], value))
        and _ownable(p)
        and in_scope(p)
    )
    existing = set(after)
    mine_id = (manager, "Update", subresource, api_version)
    out: list[ManagedEntry] = []
    placed = False
    for entry in entries:
        if entry.identity() == mine_id:
            fields = (entry.fields | taken) & existing
            time = now if fields != entry.fields else entry.time
            out.append(replace(entry, fields=fields, time=time))
            placed = True
        else:
            out.append(replace(entry, fields=(entry.fields - taken) & existing))
    if not placed and taken:
        out.append(
            ManagedEntry(
                manager=manager,
                operation="Update",
                api_version=api_version,
                time=now,
                fields=taken,
                subresource=subresource,
            )
        )
    kept = list(_dedupe(out))
    stored = (old.get("metadata") or {}).get("managedFields") if old is not None else None
    if given is None and kept == entries and all(e.fields for e in kept) and stored:
        # Nobody's fields changed (a controller rewriting the values it owns, the common
        # steady state): the stored entries stand as they are, without rebuilding them.
        metadata["managedFields"] = copy_json(stored)
    else:
        _write_entries(result, kept)
    return result
