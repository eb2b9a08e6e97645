"""CustomResourceDefinitions for shoal's own kinds, with structural schemas generated from the models.

On Kubernetes the pattern kinds (``ReplicatedService``, ``ShardedService``) and ``LoadTest`` stay
custom resources. :func:`crd_for` turns a kind's pydantic JSON schema into an
``apiextensions.k8s.io/v1`` CRD whose ``openAPIV3Schema`` is *structural* (the rules of the
Kubernetes documentation "Specifying a structural schema"):

* every ``$ref`` is inlined and ``$defs`` dropped;
* ``X | None`` becomes ``X``: shoal never writes ``null`` (``to_dict`` leaves unset fields out) and
  the API server prunes a ``null`` in a non-nullable field, which is what the model does with it;
* ``Quantity`` becomes ``x-kubernetes-int-or-string`` with the quantity pattern, as
  ``resource.Quantity`` is in Kubernetes' own CRDs; ``int | str`` (ports, ``maxSurge``) becomes
  ``x-kubernetes-int-or-string``; any other union becomes ``x-kubernetes-preserve-unknown-fields``;
* ``dict[str, X]`` becomes ``additionalProperties: X``; ``Any`` becomes preserve-unknown;
* ``title``, ``additionalProperties: false``, ``const`` and every keyword a CRD may not carry are
  removed or rewritten (``const`` -> one-value ``enum``, numeric ``exclusiveMinimum`` -> OpenAPI 3.0's
  boolean form); defaults are kept only where they are valid for their field;
* the root ``metadata`` is ``{type: object}`` and ``apiVersion``/``kind`` are plain strings.

The schema describes the canonical form of an object, the one ``to_dict()`` writes and
``shoal render`` emits: the talk's shorthands (``ports: [8080]``, ``test: [/a/path]``,
``apiVersion: loadtest/v1``) are normalized by shoal's loader, not by the API server.

:func:`check_structural` and :func:`check_crd` re-check the rules the API server enforces when it
admits a CRD, so a broken generator fails a test here rather than ``kubectl apply`` there.

This module is pure: it imports only the standard library and the model.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Iterator, Mapping
from typing import Any

from pydantic import TypeAdapter

from shoal.model.meta import KindInfo, KubeObject
from shoal.model.quantity import Quantity
from shoal.model.registry import ALL_KINDS

__all__ = [
    "QUANTITY_PATTERN",
    "all_crds",
    "check_crd",
    "check_structural",
    "crd_for",
    "custom_kinds",
    "openapi_schema",
]

Schema = dict[str, Any]

QUANTITY_PATTERN = (
    r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))"
    r"(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)
"""The pattern Kubernetes' generated CRDs give a ``resource.Quantity`` (controller-gen's)."""

_API_VERSION_DOC = (
    "APIVersion defines the versioned schema of this representation of an object. Servers "
    "should convert recognized schemas to the latest internal value, and may reject "
    "unrecognized values."
)
_KIND_DOC = (
    "Kind is a string value representing the REST resource this object represents. Servers "
    "may infer this from the endpoint the client submits requests to. In CamelCase."
)

# --------------------------------------------------------------------------------------------------
# Keywords

_SCALAR_TYPES = frozenset({"string", "integer", "number", "boolean"})
_TYPES = _SCALAR_TYPES | {"object", "array"}
_JUNCTORS = ("allOf", "anyOf", "oneOf", "not")

_JSON_SCHEMA_PROPS = frozenset(
    {
        "id",
        "$schema",
        "$ref",
        "description",
        "type",
        "format",
        "title",
        "default",
        "maximum",
        "exclusiveMaximum",
        "minimum",
        "exclusiveMinimum",
        "maxLength",
        "minLength",
        "pattern",
        "maxItems",
        "minItems",
        "uniqueItems",
        "multipleOf",
        "enum",
        "maxProperties",
        "minProperties",
        "required",
        "items",
        "allOf",
        "oneOf",
        "anyOf",
        "not",
        "properties",
        "additionalProperties",
        "patternProperties",
        "dependencies",
        "additionalItems",
        "definitions",
        "externalDocs",
        "example",
        "nullable",
        "x-kubernetes-preserve-unknown-fields",
        "x-kubernetes-embedded-resource",
        "x-kubernetes-int-or-string",
        "x-kubernetes-list-map-keys",
        "x-kubernetes-list-type",
        "x-kubernetes-map-type",
        "x-kubernetes-validations",
    }
)
"""Every field of ``apiextensions.k8s.io/v1`` ``JSONSchemaProps``; anything else is refused by the
API server's strict decoding of a CRD."""

_FORBIDDEN = {
    "$ref": "$ref is not supported",
    "id": "id is not supported",
    "definitions": "definitions is not supported",
    "dependencies": "dependencies is not supported",
    "patternProperties": "patternProperties is not supported",
    "additionalItems": "additionalItems is not supported",
}
"""Fields of ``JSONSchemaProps`` that a CRD's schema may not use (the API server's messages)."""

_OUTPUT_ORDER = (
    "description",
    "type",
    "format",
    "enum",
    "default",
    "minimum",
    "exclusiveMinimum",
    "maximum",
    "exclusiveMaximum",
    "multipleOf",
    "minLength",
    "maxLength",
    "pattern",
    "minItems",
    "maxItems",
    "minProperties",
    "maxProperties",
    "x-kubernetes-int-or-string",
    "anyOf",
    "x-kubernetes-preserve-unknown-fields",
    "x-kubernetes-list-type",
    "items",
    "properties",
    "required",
    "additionalProperties",
)
"""The keywords a generated schema may carry, in the order they are written."""

_FORMATS = frozenset(
    {
        "date-time",
        "date",
        "uuid",
        "email",
        "ipv4",
        "ipv6",
        "byte",
        "int32",
        "int64",
        "float",
        "double",
    }
)
"""Formats that mean the same to pydantic and to the API server. Others (pydantic's ISO 8601
``duration``, ``uri``, ``path``...) are dropped rather than checked differently by each side."""

_NUMERIC_KEYWORDS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf")
_STRING_KEYWORDS = ("pattern", "minLength", "maxLength")


def _quantity_signature() -> Schema:
    schema: Schema = TypeAdapter(Quantity).json_schema()
    return {k: v for k, v in schema.items() if k not in ("description", "title")}


_QUANTITY = _quantity_signature()
"""Quantity's own JSON schema (less its words): how a Quantity field is recognized."""


# --------------------------------------------------------------------------------------------------
# Kinds and CRDs


def custom_kinds() -> list[type[KubeObject]]:
    """The kinds that are CustomResourceDefinitions on Kubernetes, in registry (apply) order."""
    return [cls for cls in ALL_KINDS if cls.INFO.custom]


def all_crds() -> list[Schema]:
    """One CRD per custom kind, in the order of :func:`custom_kinds`."""
    return [crd_for(cls) for cls in custom_kinds()]


def crd_for(cls: type[KubeObject]) -> Schema:
    """The ``apiextensions.k8s.io/v1`` CustomResourceDefinition of a kind, as a plain dict."""
    info: KindInfo = cls.INFO
    names: Schema = {
        "plural": info.plural,
        "singular": info.singular,
        "kind": info.kind,
        "listKind": info.list_kind,
    }
    if info.short_names:
        names["shortNames"] = list(info.short_names)
    if info.categories:
        names["categories"] = list(info.categories)
    version: Schema = {
        "name": info.version,
        "served": True,
        "storage": True,
        "schema": {"openAPIV3Schema": openapi_schema(cls)},
    }
    if info.status_subresource:
        version["subresources"] = {"status": {}}
    columns = []
    for column in info.printer_columns:
        entry: Schema = {"name": column.name, "type": column.type, "jsonPath": column.json_path}
        if column.description:
            entry["description"] = column.description
        if column.priority:
            entry["priority"] = column.priority
        columns.append(entry)
    if columns:
        version["additionalPrinterColumns"] = columns
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{info.plural}.{info.group}"},
        "spec": {
            "group": info.group,
            "names": names,
            "scope": "Namespaced" if info.namespaced else "Cluster",
            "versions": [version],
        },
    }


def openapi_schema(cls: type[KubeObject]) -> Schema:
    """The structural ``openAPIV3Schema`` of a kind, converted from its pydantic JSON schema."""
    raw: Schema = cls.model_json_schema(by_alias=True)
    root = _Converter(raw.get("$defs", {})).convert(raw)
    properties: Schema = root.setdefault("properties", {})
    properties["apiVersion"] = {"description": _API_VERSION_DOC, "type": "string"}
    properties["kind"] = {"description": _KIND_DOC, "type": "string"}
    properties["metadata"] = {"type": "object"}
    required = [
        name for name in root.get("required", ()) if name not in ("apiVersion", "kind", "metadata")
    ]
    if required:
        root["required"] = required
    else:
        root.pop("required", None)
    # Kubernetes' conventional order: apiVersion, kind, metadata, spec, status.
    first = ("apiVersion", "kind", "metadata", "spec", "status")
    root["properties"] = {
        **{name: properties[name] for name in first if name in properties},
        **{name: value for name, value in properties.items() if name not in first},
    }
    return root


# --------------------------------------------------------------------------------------------------
# Conversion from pydantic's JSON schema (draft 2020-12) to a structural OpenAPI 3.0 schema


class _Converter:
    def __init__(self, defs: Mapping[str, Schema]) -> None:
        self._defs = defs

    def convert(self, node: Schema, expanding: tuple[str, ...] = ()) -> Schema:
        node = dict(node)
        # Inline references; the referring node's own words (description, default) win.
        ref = node.pop("$ref", None)
        if ref is None and len(node.get("allOf", ())) == 1 and "$ref" in node["allOf"][0]:
            ref = node.pop("allOf")[0]["$ref"]
        if ref is not None:
            name = ref.rsplit("/", 1)[-1]
            if name in expanding:
                # A recursive type cannot be inlined; keep its shape open below this point.
                return _finish(
                    {
                        "description": node.get("description"),
                        "type": "object",
                        "x-kubernetes-preserve-unknown-fields": True,
                    },
                    node,
                )
            return self.convert({**self._defs[name], **node}, (*expanding, name))
        if isinstance(node.get("type"), list):
            node["anyOf"] = [{"type": t} for t in node.pop("type")]
        if "anyOf" in node or "oneOf" in node:
            return self._union(node, expanding)
        if "const" in node:
            node["enum"] = [node.pop("const")]
            if "type" not in node:
                node["type"] = _json_type(node["enum"][0])
        kind = node.get("type")
        if kind is None and ("properties" in node or "additionalProperties" in node):
            kind = node["type"] = "object"
        if kind == "object":
            return _finish(self._object(node, expanding), node)
        if kind == "array":
            return _finish(self._array(node, expanding), node)
        if kind in _SCALAR_TYPES:
            return _finish(_scalar(node), node)
        # Any: no constraint at all.
        return _finish({"x-kubernetes-preserve-unknown-fields": True}, node)

    def _union(self, node: Schema, expanding: tuple[str, ...]) -> Schema:
        raw_branches = [*node.pop("anyOf", ()), *node.pop("oneOf", ())]
        declared_int_or_string = _is_quantity({**node, "anyOf": raw_branches})
        branches = [b for b in raw_branches if b.get("type") != "null"]
        if not branches:
            return _finish({"x-kubernetes-preserve-unknown-fields": True}, node)
        if len(branches) == 1:
            return self.convert({**branches[0], **node}, expanding)
        converted = [self.convert(branch, expanding) for branch in branches]
        types = {branch.get("type") for branch in converted}
        if types == {"integer", "string"} and len(converted) == 2:
            out: Schema = {
                "x-kubernetes-int-or-string": True,
                "anyOf": [{"type": "integer"}, {"type": "string"}],
            }
            # Keywords that apply to one JSON type only keep their meaning outside the anyOf.
            for branch in converted:
                keywords = _NUMERIC_KEYWORDS if branch["type"] == "integer" else _STRING_KEYWORDS
                out.update({k: branch[k] for k in keywords if k in branch})
            if declared_int_or_string:
                out["pattern"] = QUANTITY_PATTERN
            return _finish(out, node)
        if types == {"integer", "number"}:
            return _finish({"type": "number"}, node)
        if len(types) == 1 and types <= _SCALAR_TYPES:
            (only,) = types
            merged: Schema = {"type": only}
            if all("enum" in branch for branch in converted):
                merged["enum"] = [v for branch in converted for v in branch["enum"]]
            return _finish(merged, node)
        if types == {"object"}:
            return _finish({"type": "object", "x-kubernetes-preserve-unknown-fields": True}, node)
        if types == {"array"}:
            items = {"x-kubernetes-preserve-unknown-fields": True}
            return _finish({"type": "array", "items": items}, node)
        return _finish({"x-kubernetes-preserve-unknown-fields": True}, node)

    def _object(self, node: Schema, expanding: tuple[str, ...]) -> Schema:
        out: Schema = {"type": "object"}
        properties = node.get("properties")
        extra = node.get("additionalProperties")
        if properties:
            out["properties"] = {
                name: self.convert(value, expanding) for name, value in properties.items()
            }
            required = [name for name in node.get("required", ()) if name in properties]
            if required:
                out["required"] = required
            if extra is True or extra == {}:
                out["x-kubernetes-preserve-unknown-fields"] = True
            elif isinstance(extra, dict):
                # Both named fields and a typed rest: not expressible; keep the named ones.
                out["x-kubernetes-preserve-unknown-fields"] = True
        elif extra is True or extra == {}:
            out["x-kubernetes-preserve-unknown-fields"] = True
        elif isinstance(extra, dict):
            out["additionalProperties"] = self.convert(extra, expanding)
        for key in ("minProperties", "maxProperties"):
            if key in node:
                out[key] = node[key]
        return out

    def _array(self, node: Schema, expanding: tuple[str, ...]) -> Schema:
        out: Schema = {"type": "array"}
        prefix = node.get("prefixItems")
        items = node.get("items")
        if prefix:
            converted = [self.convert(item, expanding) for item in prefix]
            same = all(item == converted[0] for item in converted)
            out["items"] = converted[0] if same else {"x-kubernetes-preserve-unknown-fields": True}
            if items is None or items is False:
                out["maxItems"] = len(prefix)
            out["minItems"] = len(prefix)
        elif isinstance(items, dict) and items:
            out["items"] = self.convert(items, expanding)
        else:
            out["items"] = {"x-kubernetes-preserve-unknown-fields": True}
        for key in ("minItems", "maxItems"):
            if key in node:
                out[key] = node[key]
        if node.get("uniqueItems") and out["items"].get("type") in _SCALAR_TYPES:
            # uniqueItems is forbidden in CRDs; a set-typed list makes the API server keep the
            # items unique instead.
            out["x-kubernetes-list-type"] = "set"
        return out


def _scalar(node: Schema) -> Schema:
    out: Schema = {"type": node["type"]}
    if "enum" in node:
        out["enum"] = list(node["enum"])
    if node.get("format") in _FORMATS:
        out["format"] = node["format"]
    keywords = _STRING_KEYWORDS if node["type"] == "string" else ()
    if node["type"] in ("integer", "number"):
        keywords = ("minimum", "maximum", "multipleOf")
        # JSON Schema's numeric exclusive bounds are OpenAPI 3.0's boolean flags.
        for bound, flag in (("minimum", "exclusiveMinimum"), ("maximum", "exclusiveMaximum")):
            value = node.get(flag)
            if isinstance(value, bool):
                if value:
                    out[flag] = True
            elif isinstance(value, int | float) and (
                bound not in node
                or (value >= node[bound] if bound == "minimum" else value <= node[bound])
            ):
                out[bound] = value
                out[flag] = True
    for key in keywords:
        if key in node and key not in out:
            out[key] = node[key]
    return out


def _is_quantity(node: Schema) -> bool:
    return all(node.get(key) == value for key, value in _QUANTITY.items())


def _finish(out: Schema, source: Schema) -> Schema:
    """Add the words (description) and a valid default to a converted node, in a stable order."""
    description = source.get("description")
    if isinstance(description, str) and description.strip():
        out["description"] = _clean_description(description)
    if "default" in source and source["default"] is not None and _fits(source["default"], out):
        out["default"] = source["default"]
    ordered = {key: out[key] for key in _OUTPUT_ORDER if key in out}
    ordered.update({key: value for key, value in out.items() if key not in ordered})
    return ordered


def _clean_description(text: str) -> str:
    # Docstrings are reStructuredText; CRD descriptions are read as plain text or Markdown.
    return inspect.cleandoc(text).replace("``", "`")


def _json_type(value: object) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "array"
    return "string"


def _fits(value: object, schema: Schema) -> bool:
    """Whether ``value`` is valid for a converted ``schema`` and unchanged by pruning.

    Used to keep only the defaults the API server accepts (it refuses a CRD whose default does
    not validate, or would be pruned)."""
    if value is None:
        return False
    if schema.get("x-kubernetes-int-or-string"):
        if isinstance(value, bool) or not isinstance(value, int | str):
            return False
        if isinstance(value, str) and "pattern" in schema:
            return re.search(schema["pattern"], value) is not None
        return True
    kind = schema.get("type")
    if kind is None:
        return bool(schema.get("x-kubernetes-preserve-unknown-fields"))
    actual = _json_type(value)
    if not (actual == kind or (kind == "number" and actual == "integer")):
        return False
    if "enum" in schema and value not in schema["enum"]:
        return False
    if isinstance(value, int | float) and not isinstance(value, bool):
        if "minimum" in schema and (
            value < schema["minimum"]
            or (schema.get("exclusiveMinimum") and value == schema["minimum"])
        ):
            return False
        if "maximum" in schema and (
            value > schema["maximum"]
            or (schema.get("exclusiveMaximum") and value == schema["maximum"])
        ):
            return False
    if isinstance(value, str):
        if len(value) < schema.get("minLength", 0) or len(value) > schema.get(
            "maxLength", len(value)
        ):
            return False
        if "pattern" in schema and re.search(schema["pattern"], value) is None:
            return False
    if isinstance(value, list):
        if len(value) < schema.get("minItems", 0) or len(value) > schema.get(
            "maxItems", len(value)
        ):
            return False
        return all(_fits(item, schema["items"]) for item in value)
    if isinstance(value, dict):
        properties: Schema = schema.get("properties", {})
        if any(name not in value for name in schema.get("required", ())):
            return False
        for key, item in value.items():
            if key in properties:
                if not _fits(item, properties[key]):
                    return False
            elif "additionalProperties" in schema:
                if not _fits(item, schema["additionalProperties"]):
                    return False
            elif not schema.get("x-kubernetes-preserve-unknown-fields"):
                return False
    return True


# --------------------------------------------------------------------------------------------------
# Checks: the structural-schema rules and the CRD rules the API server enforces


def check_structural(schema: Mapping[str, Any], *, root: str = "openAPIV3Schema") -> list[str]:
    """Every way ``schema`` breaks the structural-schema rules, as ``path: message`` lines.

    Checks: a non-empty ``type`` at the root (``object``), for every property, ``items`` and
    ``additionalProperties`` (unless ``x-kubernetes-int-or-string`` or
    ``x-kubernetes-preserve-unknown-fields``); ``items`` for every array; no ``description``,
    ``type``, ``default``, ``title``, ``additionalProperties``, ``nullable`` or ``x-kubernetes-*``
    inside ``allOf``/``anyOf``/``oneOf``/``not`` (but the int-or-string ``anyOf``), and every
    field or array they mention also specified outside them; the root ``metadata`` constraining
    at most ``name`` and ``generateName``; no forbidden keyword (``$ref``, ``definitions``,
    ``dependencies``, ``id``, ``patternProperties``, ``additionalItems``, ``uniqueItems: true``,
    ``additionalProperties: false``, ``additionalProperties`` with ``properties``, ``type: null``,
    array ``items``) nor any keyword that is not a ``JSONSchemaProps`` field (``const``,
    ``$defs``, ``readOnly``, ``deprecated``, ``discriminator``, ``xml``...). Empty when fine.
    """
    return list(_check_node(schema, root, "root"))


def _check_node(node: object, path: str, level: str) -> Iterator[str]:
    if not isinstance(node, Mapping):
        yield f"{path}: must be a schema object, got {type(node).__name__}"
        return
    yield from _check_keywords(node, path)
    kind = node.get("type")
    int_or_string = node.get("x-kubernetes-int-or-string") is True
    preserve = node.get("x-kubernetes-preserve-unknown-fields") is True
    embedded = node.get("x-kubernetes-embedded-resource") is True
    if kind is not None and kind != "null" and kind not in _TYPES:
        yield f"{path}.type: Unsupported value: {kind!r}: supported values: {', '.join(sorted(_TYPES))}"
    if not kind and not int_or_string and not preserve:
        where = {
            "root": "at the root",
            "items": "for specified array items",
            "field": "for specified object fields",
        }[level]
        yield f"{path}.type: Required value: must not be empty {where}"
    if level == "root" and kind and kind != "object":
        yield f"{path}.type: Invalid value: {kind!r}: must be object at the root"
    if int_or_string and preserve:
        yield f"{path}.x-kubernetes-preserve-unknown-fields: Invalid value: true: must be false if x-kubernetes-int-or-string is true"
    if int_or_string and embedded:
        yield f"{path}.x-kubernetes-embedded-resource: Invalid value: true: must be false if x-kubernetes-int-or-string is true"
    if embedded and kind != "object":
        yield f"{path}.type: Required value: must be object if x-kubernetes-embedded-resource is true"
    if node.get("x-kubernetes-preserve-unknown-fields") is False:
        yield f"{path}.x-kubernetes-preserve-unknown-fields: Invalid value: false: must be true or undefined"
    if kind == "array" and "items" not in node:
        yield f"{path}.items: Required value: must be specified"
    if "items" in node:
        items = node["items"]
        if isinstance(items, list):
            yield f"{path}.items: Forbidden: items must be a schema object and not an array"
        else:
            yield from _check_node(items, f"{path}.items", "items")
    properties = node.get("properties", {})
    if isinstance(properties, Mapping):
        for name, value in properties.items():
            yield from _check_node(value, f"{path}.properties[{name}]", "field")
    extra = node.get("additionalProperties")
    if extra is not None:
        if level == "root":
            yield f"{path}.additionalProperties: Forbidden: must not be used at the root"
        if extra is False:
            yield f"{path}.additionalProperties: Forbidden: additionalProperties cannot be set to false"
        elif properties and extra is not True:
            yield f"{path}.additionalProperties: Forbidden: additionalProperties and properties are mutual exclusive"
        if isinstance(extra, Mapping):
            yield from _check_node(extra, f"{path}.additionalProperties", "field")
    yield from _check_junctors(node, path)
    checks_metadata = level == "root" or embedded
    for name in ("apiVersion", "kind"):
        sub = properties.get(name) if isinstance(properties, Mapping) else None
        if checks_metadata and isinstance(sub, Mapping) and sub.get("type") != "string":
            yield f"{path}.properties[{name}].type: Invalid value: {sub.get('type')!r}: must be string"
    metadata = properties.get("metadata") if isinstance(properties, Mapping) else None
    if isinstance(metadata, Mapping) and checks_metadata:
        meta_path = f"{path}.properties[metadata]"
        if metadata.get("type") != "object":
            yield f"{meta_path}.type: Invalid value: {metadata.get('type')!r}: must be object"
        if level == "root":
            allowed = {"name", "generateName"}
            extra_meta = {k for k in metadata if k not in ("type", "properties")}
            extra_props = set(metadata.get("properties", {})) - allowed
            if extra_meta or extra_props:
                yield (
                    f"{meta_path}: Forbidden: must not specify anything other than name and "
                    "generateName, but metadata is implicitly specified"
                )


def _check_keywords(node: Mapping[str, Any], path: str) -> Iterator[str]:
    for key in node:
        if key in _FORBIDDEN:
            yield f"{path}.{key}: Forbidden: {_FORBIDDEN[key]}"
        elif key not in _JSON_SCHEMA_PROPS:
            yield f"{path}.{key}: Forbidden: not a field of JSONSchemaProps (a CRD's schema cannot carry it)"
    if node.get("uniqueItems") is True:
        yield f"{path}.uniqueItems: Forbidden: uniqueItems cannot be set to true since the runtime complexity becomes quadratic"
    if node.get("type") == "null":
        yield f"{path}.type: Forbidden: type cannot be set to null, use nullable as an alternative"
    for flag in ("exclusiveMinimum", "exclusiveMaximum"):
        if flag in node and not isinstance(node[flag], bool):
            yield f"{path}.{flag}: Invalid value: {node[flag]!r}: must be a boolean in OpenAPI v3.0"
    pattern = node.get("pattern")
    if isinstance(pattern, str):
        try:
            re.compile(pattern)
        except re.error as error:
            yield f"{path}.pattern: Invalid value: {pattern!r}: must be a valid regular expression, but isn't: {error}"
        if re.search(r"\(\?<?[=!]|\\[1-9]", pattern):
            yield f"{path}.pattern: Invalid value: {pattern!r}: lookarounds and backreferences are not RE2 syntax"


def _is_int_or_string_any_of(branches: object) -> bool:
    return branches == [{"type": "integer"}, {"type": "string"}]


def _check_junctors(node: Mapping[str, Any], path: str) -> Iterator[str]:
    skip_any_of = _is_int_or_string_any_of(node.get("anyOf"))
    all_of = node.get("allOf")
    skip_first_all_of = (
        isinstance(all_of, list)
        and bool(all_of)
        and isinstance(all_of[0], Mapping)
        and _is_int_or_string_any_of(all_of[0].get("anyOf"))
    )
    for junctor in _JUNCTORS:
        value = node.get(junctor)
        if value is None:
            continue
        branches = [value] if junctor == "not" else value
        if not isinstance(branches, list):
            yield f"{path}.{junctor}: must be a list of schemas"
            continue
        for index, branch in enumerate(branches):
            if junctor == "anyOf" and skip_any_of:
                continue
            where = f"{path}.{junctor}" if junctor == "not" else f"{path}.{junctor}[{index}]"
            skip_inner_any_of = junctor == "allOf" and index == 0 and skip_first_all_of
            yield from _check_nested(branch, where, skip_inner_any_of)
            yield from _check_complete(branch, node, where, path)


_NESTED_FORBIDDEN = (
    ("type", "must be empty to be structural"),
    ("default", "must be undefined to be structural"),
    ("title", "must be empty to be structural"),
    ("description", "must be empty to be structural"),
    ("additionalProperties", "must be undefined to be structural"),
    ("externalDocs", "must be undefined to be structural"),
    ("x-kubernetes-list-map-keys", "must be empty to be structural"),
    ("x-kubernetes-list-type", "must be undefined to be structural"),
    ("x-kubernetes-map-type", "must be undefined to be structural"),
    ("x-kubernetes-validations", "must be empty to be structural"),
)
_NESTED_FLAGS = (
    "nullable",
    "x-kubernetes-preserve-unknown-fields",
    "x-kubernetes-embedded-resource",
    "x-kubernetes-int-or-string",
)


def _check_nested(branch: object, path: str, skip_any_of: bool = False) -> Iterator[str]:
    """Rule 3: value validations only, inside a junctor."""
    if not isinstance(branch, Mapping):
        yield f"{path}: must be a schema object, got {type(branch).__name__}"
        return
    yield from _check_keywords(branch, path)
    for key, message in _NESTED_FORBIDDEN:
        if key in branch:
            yield f"{path}.{key}: Forbidden: {message}"
    for key in _NESTED_FLAGS:
        if branch.get(key):
            yield f"{path}.{key}: Forbidden: must be false to be structural"
    properties = branch.get("properties", {})
    if isinstance(properties, Mapping):
        if "metadata" in properties:
            yield f"{path}.properties[metadata]: Forbidden: must not be specified in a nested context"
        for name, value in properties.items():
            yield from _check_nested(value, f"{path}.properties[{name}]")
    if isinstance(branch.get("items"), Mapping):
        yield from _check_nested(branch["items"], f"{path}.items")
    for junctor in _JUNCTORS:
        value = branch.get(junctor)
        if value is None or (junctor == "anyOf" and skip_any_of):
            continue
        inner = [value] if junctor == "not" else value
        for index, sub in enumerate(inner if isinstance(inner, list) else []):
            where = f"{path}.{junctor}" if junctor == "not" else f"{path}.{junctor}[{index}]"
            yield from _check_nested(sub, where)


def _check_complete(
    branch: object, outside: Mapping[str, Any], path: str, outside_path: str
) -> Iterator[str]:
    """Rule 2: whatever a junctor mentions (properties, items) is also specified outside it."""
    if not isinstance(branch, Mapping):
        return
    properties = branch.get("properties", {})
    known = outside.get("properties", {})
    extra = outside.get("additionalProperties")
    if isinstance(properties, Mapping) and isinstance(known, Mapping):
        for name, value in properties.items():
            if name in known:
                yield from _check_complete(
                    value,
                    known[name],
                    f"{path}.properties[{name}]",
                    f"{outside_path}.properties[{name}]",
                )
            elif isinstance(extra, Mapping):
                yield from _check_complete(
                    value,
                    extra,
                    f"{path}.properties[{name}]",
                    f"{outside_path}.additionalProperties",
                )
            else:
                yield f"{path}.properties[{name}]: Required value: must be specified outside the junctor too ({outside_path}.properties[{name}])"
    items = branch.get("items")
    if isinstance(items, Mapping):
        outside_items = outside.get("items")
        if isinstance(outside_items, Mapping):
            yield from _check_complete(
                items, outside_items, f"{path}.items", f"{outside_path}.items"
            )
        else:
            yield f"{path}.items: Required value: must be specified outside the junctor too ({outside_path}.items)"
    for junctor in _JUNCTORS:
        value = branch.get(junctor)
        inner = [value] if junctor == "not" else value
        for index, sub in enumerate(inner if isinstance(inner, list) else []):
            where = f"{path}.{junctor}" if junctor == "not" else f"{path}.{junctor}[{index}]"
            yield from _check_complete(sub, outside, where, outside_path)


_DNS1123_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_DNS1035_LABEL = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
_KIND_NAME = re.compile(r"[A-Z][A-Za-z0-9]*")
_VERSION_NAME = re.compile(r"v[0-9]+((alpha|beta)[0-9]+)?")
_COLUMN_TYPES = frozenset({"integer", "number", "string", "boolean", "date"})


def check_crd(crd: Mapping[str, Any]) -> list[str]:
    """Every way ``crd`` breaks the rules the API server checks on a CustomResourceDefinition.

    Checks: the apiVersion/kind; ``spec.group`` a lowercase DNS subdomain with a dot;
    ``metadata.name`` is ``<plural>.<group>``; ``names`` (plural and singular lowercase DNS-1035
    labels, kind and listKind CamelCase and different, shortNames lowercase); ``scope``; at
    least one version, unique names such as ``v1``/``v1beta2``, exactly one ``storage: true``;
    each version's schema (see :func:`check_structural`), ``subresources`` and printer columns
    (type, unique names, a ``jsonPath`` whose simple part names fields of the schema).
    """
    problems: list[str] = []
    if crd.get("apiVersion") != "apiextensions.k8s.io/v1":
        problems.append(
            f"apiVersion: must be 'apiextensions.k8s.io/v1', got {crd.get('apiVersion')!r}"
        )
    if crd.get("kind") != "CustomResourceDefinition":
        problems.append(f"kind: must be 'CustomResourceDefinition', got {crd.get('kind')!r}")
    spec = crd.get("spec", {})
    group = spec.get("group", "")
    names = spec.get("names", {})
    plural = names.get("plural", "")
    if not group:
        problems.append("spec.group: Required value")
    elif "." not in group:
        problems.append(
            f"spec.group: Invalid value: {group!r}: should be a domain with at least one dot"
        )
    elif not _DNS1123_SUBDOMAIN.fullmatch(group) or len(group) > 253:
        problems.append(
            f"spec.group: Invalid value: {group!r}: must be a lowercase RFC 1123 subdomain"
        )
    name = crd.get("metadata", {}).get("name")
    if name != f"{plural}.{group}":
        problems.append(
            f'metadata.name: Invalid value: {name!r}: must be spec.names.plural+"."+spec.group '
            f"({plural}.{group!s})"
        )
    for field in ("plural", "singular"):
        value = names.get(field)
        if not value:
            problems.append(f"spec.names.{field}: Required value")
        elif not _DNS1035_LABEL.fullmatch(value) or len(value) > 63:
            problems.append(
                f"spec.names.{field}: Invalid value: {value!r}: must be a lowercase DNS-1035 label"
            )
    kind, list_kind = names.get("kind"), names.get("listKind")
    for field, value in (("kind", kind), ("listKind", list_kind)):
        if not value:
            problems.append(f"spec.names.{field}: Required value")
        elif not _KIND_NAME.fullmatch(value):
            problems.append(
                f"spec.names.{field}: Invalid value: {value!r}: must be CamelCase starting with a capital"
            )
    if kind and kind == list_kind:
        problems.append("spec.names.listKind: Invalid value: kind and listKind must be different")
    for index, short in enumerate(names.get("shortNames", ())):
        if not _DNS1035_LABEL.fullmatch(short):
            problems.append(
                f"spec.names.shortNames[{index}]: Invalid value: {short!r}: must be a lowercase DNS-1035 label"
            )
    for index, category in enumerate(names.get("categories", ())):
        if not _DNS1035_LABEL.fullmatch(category):
            problems.append(
                f"spec.names.categories[{index}]: Invalid value: {category!r}: must be a lowercase DNS-1035 label"
            )
    if spec.get("scope") not in ("Namespaced", "Cluster"):
        problems.append(
            f"spec.scope: Unsupported value: {spec.get('scope')!r}: supported values: 'Cluster', 'Namespaced'"
        )
    versions = spec.get("versions", [])
    if not versions:
        problems.append("spec.versions: Required value: must have at least one version")
    storage = [v.get("name") for v in versions if v.get("storage") is True]
    if len(storage) != 1:
        problems.append(
            f"spec.versions: Invalid value: must have exactly one version marked as storage version, got {len(storage)}"
        )
    seen: set[str] = set()
    for index, version in enumerate(versions):
        problems.extend(_check_version(version, f"spec.versions[{index}]", seen))
    return problems


def _check_version(version: Mapping[str, Any], path: str, seen: set[str]) -> Iterator[str]:
    name = version.get("name", "")
    if not _VERSION_NAME.fullmatch(name):
        yield f"{path}.name: Invalid value: {name!r}: must be v<N>, v<N>alpha<M> or v<N>beta<M>"
    if name in seen:
        yield f"{path}.name: Duplicate value: {name!r}"
    seen.add(name)
    if not isinstance(version.get("served"), bool) or not isinstance(version.get("storage"), bool):
        yield f"{path}: served and storage must be booleans"
    schema = version.get("schema", {}).get("openAPIV3Schema")
    if schema is None:
        yield f"{path}.schema.openAPIV3Schema: Required value: schemas are required"
        return
    yield from check_structural(schema, root=f"{path}.schema.openAPIV3Schema")
    subresources = version.get("subresources", {})
    for key in subresources:
        if key not in ("status", "scale"):
            yield f"{path}.subresources.{key}: Unsupported value: supported values: 'scale', 'status'"
    if "status" in subresources and subresources["status"] != {}:
        yield f"{path}.subresources.status: must be an empty object"
    if "status" in subresources and "status" not in schema.get("properties", {}):
        yield f"{path}.subresources.status: the schema has no status field to serve"
    columns: set[str] = set()
    for index, column in enumerate(version.get("additionalPrinterColumns", ())):
        where = f"{path}.additionalPrinterColumns[{index}]"
        column_name = column.get("name")
        if not column_name:
            yield f"{where}.name: Required value"
        elif column_name in columns:
            yield f"{where}.name: Duplicate value: {column_name!r}"
        columns.add(column_name)
        if column.get("type") not in _COLUMN_TYPES:
            yield f"{where}.type: Unsupported value: {column.get('type')!r}"
        json_path = column.get("jsonPath", "")
        if not json_path.startswith("."):
            yield f"{where}.jsonPath: Invalid value: {json_path!r}: must be a simple JSON path starting with '.'"
        elif (missing := _missing_field(schema, json_path)) is not None:
            yield f"{where}.jsonPath: Invalid value: {json_path!r}: the schema has no field {missing!r}"


def _missing_field(schema: Mapping[str, Any], json_path: str) -> str | None:
    """The first field of a column's path the schema does not declare (None if all are, or the
    schema stops declaring fields: ``metadata``, preserve-unknown)."""
    simple = re.split(r"[\[?(@]", json_path, maxsplit=1)[0]
    node: Mapping[str, Any] = schema
    for part in [p for p in simple.split(".") if p]:
        properties = node.get("properties")
        if not properties:
            return None
        if part not in properties:
            return part
        node = properties[part]
    return None
