"""Offline validation of rendered manifests: built-in kinds with kubernetes-validate, custom
objects against the generated CRDs' schemas, the way the API server treats them.

An API server receiving a custom object (1) checks ``apiVersion``, ``kind`` and the name, (2) drops
fields its schema does not declare (pruning; ``kubectl``'s default strict field validation reports
them instead), (3) drops ``null`` from fields that are not ``nullable`` and have no default,
(4) fills in defaults and (5) validates the result against the schema. :func:`validate_custom_object`
does the same, with ``jsonschema``'s Draft 4 validator: OpenAPI 3.0's schema object is a Draft 4
dialect (boolean ``exclusiveMinimum``, ``integer`` excludes ``1.0``) once ``nullable`` and the
``x-kubernetes-*`` extensions are given their meaning.

Needs the ``k8s`` extra (``jsonschema``, ``kubernetes-validate``); :mod:`shoal.kube.crds` does not.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from typing import Any, Literal

import jsonschema

from shoal.model import _syntax

__all__ = [
    "FieldValidation",
    "apply_defaults",
    "draft4_schema",
    "newest_kubernetes_version",
    "prune",
    "validate_builtin",
    "validate_custom_object",
]

FieldValidation = Literal["Strict", "Warn", "Ignore"]
"""The API server's ``fieldValidation`` modes: unknown fields are an error, a warning, or
silently dropped. ``kubectl`` uses ``Strict`` by default."""

Schema = dict[str, Any]


def newest_kubernetes_version() -> str:
    """The newest Kubernetes minor version whose schemas kubernetes-validate ships (``"1.37"``).

    Needs the ``k8s`` extra (kubernetes-validate bundles the schemas; it is not a runtime need)."""
    # Imported here: an offline-checking tool (the k8s extra), not needed to serve.
    import kubernetes_validate

    version: str = kubernetes_validate.latest_version()
    return ".".join(version.split(".")[:2])


def validate_builtin(obj: Mapping[str, Any], version: str, *, strict: bool = True) -> list[str]:
    """Problems kubernetes-validate finds in a built-in object for a Kubernetes version.

    Empty when it validates. Raises ``kubernetes_validate.SchemaNotFoundError`` for a kind it has
    no schema for (a custom resource: use :func:`validate_custom_object`). Needs the ``k8s``
    extra."""
    # Imported here: an offline-checking tool (the k8s extra), not needed to serve.
    import kubernetes_validate

    try:
        kubernetes_validate.validate(dict(obj), version, strict)
    except kubernetes_validate.ValidationError as error:
        return [f"{_format_path(error.absolute_path)}: {error.message}"]
    return []


def validate_custom_object(
    obj: Mapping[str, Any],
    crd: Mapping[str, Any],
    *,
    field_validation: FieldValidation = "Strict",
) -> list[str]:
    """Why the API server would refuse ``obj`` as an instance of ``crd`` (empty if it accepts it).

    Messages are ``field.path: message``. Unknown fields are reported as
    ``field.path: unknown field`` under ``Strict`` and dropped silently otherwise (``Warn`` would
    warn, not refuse)."""
    spec = crd["spec"]
    names = spec["names"]
    problems: list[str] = []
    served = {f"{spec['group']}/{v['name']}": v for v in spec["versions"] if v.get("served")}
    api_version = obj.get("apiVersion")
    version = served.get(api_version) if isinstance(api_version, str) else None
    if version is None:
        expected = " or ".join(repr(v) for v in served)
        problems.append(f"apiVersion: Invalid value: {api_version!r}: must be {expected}")
    if obj.get("kind") != names["kind"]:
        problems.append(f"kind: Invalid value: {obj.get('kind')!r}: must be {names['kind']!r}")
    problems.extend(_check_metadata(obj.get("metadata")))
    if version is None:
        return problems
    schema: Schema = version["schema"]["openAPIV3Schema"]
    body = copy.deepcopy(dict(obj))
    unknown = prune(body, schema)
    if field_validation == "Strict":
        problems.extend(f"{path}: unknown field" for path in unknown)
    _drop_nulls(body, schema)
    apply_defaults(body, schema)
    validator = jsonschema.Draft4Validator(
        draft4_schema(schema), format_checker=jsonschema.Draft4Validator.FORMAT_CHECKER
    )
    errors = sorted(validator.iter_errors(body), key=lambda e: [str(p) for p in e.absolute_path])
    problems.extend(f"{_format_path(e.absolute_path)}: {e.message}" for e in errors)
    return problems


def _check_metadata(metadata: object) -> list[str]:
    if not isinstance(metadata, Mapping):
        return ["metadata: Required value: must be an object"]
    name, generate_name = metadata.get("name"), metadata.get("generateName")
    if name is None and generate_name is None:
        return ["metadata.name: Required value: name or generateName is required"]
    problems: list[str] = []
    if name is not None:
        if not isinstance(name, str):
            return [f"metadata.name: Invalid value: {name!r}: must be a string"]
        problems.extend(
            f"metadata.name: Invalid value: {name!r}: {m}" for m in _syntax.dns1123_subdomain(name)
        )
    namespace = metadata.get("namespace")
    if isinstance(namespace, str):
        problems.extend(
            f"metadata.namespace: Invalid value: {namespace!r}: {m}"
            for m in _syntax.dns1123_label(namespace)
        )
    return problems


# --------------------------------------------------------------------------------------------------
# What the API server does to a custom object before validating it


def prune(obj: dict[str, Any], schema: Mapping[str, Any]) -> list[str]:
    """Drop, in place, every field the structural ``schema`` does not declare; return their paths.

    As the API server does: ``apiVersion``, ``kind`` and ``metadata`` at the root are kept (the
    server validates metadata itself), ``x-kubernetes-preserve-unknown-fields`` keeps a subtree's
    unknown fields (declared ones below it are still pruned)."""
    dropped: list[str] = []
    _prune(obj, schema, (), dropped, root=True)
    return dropped


def _prune(
    value: object,
    schema: Mapping[str, Any],
    path: tuple[str | int, ...],
    dropped: list[str],
    *,
    root: bool = False,
) -> None:
    if isinstance(value, dict):
        properties: Mapping[str, Any] = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        preserve = schema.get("x-kubernetes-preserve-unknown-fields") is True
        for key in list(value):
            if root and key in ("apiVersion", "kind", "metadata"):
                continue
            if key in properties:
                _prune(value[key], properties[key], (*path, key), dropped)
            elif isinstance(extra, Mapping):
                _prune(value[key], extra, (*path, key), dropped)
            elif not preserve and extra is not True:
                dropped.append(_format_path((*path, key)))
                del value[key]
    elif isinstance(value, list) and isinstance(schema.get("items"), Mapping):
        for index, item in enumerate(value):
            _prune(item, schema["items"], (*path, index), dropped)


def _sub_schema(schema: Mapping[str, Any], key: str) -> Mapping[str, Any] | None:
    properties = schema.get("properties", {})
    if key in properties:
        sub: Mapping[str, Any] = properties[key]
        return sub
    extra = schema.get("additionalProperties")
    return extra if isinstance(extra, Mapping) else None


def _drop_nulls(value: object, schema: Mapping[str, Any] | None) -> None:
    # defaulting.PruneNonNullableNullsWithoutDefaults
    if isinstance(value, dict):
        for key in list(value):
            sub = _sub_schema(schema, key) if schema is not None else None
            if (
                value[key] is None
                and sub is not None
                and not sub.get("nullable")
                and "default" not in sub
            ):
                del value[key]
            else:
                _drop_nulls(value[key], sub)
    elif isinstance(value, list):
        items = schema.get("items") if schema is not None else None
        for item in value:
            _drop_nulls(item, items if isinstance(items, Mapping) else None)


def apply_defaults(value: object, schema: Mapping[str, Any]) -> None:
    """Fill in, in place, the ``default`` of every absent (or non-nullable ``null``) field."""
    if isinstance(value, dict):
        for key, sub in schema.get("properties", {}).items():
            if "default" in sub and (
                key not in value or (value[key] is None and not sub.get("nullable"))
            ):
                value[key] = copy.deepcopy(sub["default"])
        for key, item in value.items():
            sub_schema = _sub_schema(schema, key)
            if sub_schema is not None:
                apply_defaults(item, sub_schema)
    elif isinstance(value, list) and isinstance(schema.get("items"), Mapping):
        for item in value:
            apply_defaults(item, schema["items"])


def draft4_schema(schema: Mapping[str, Any]) -> Schema:
    """An OpenAPI 3.0 (CRD) schema as a JSON Schema Draft 4 one with the same meaning.

    ``nullable: true`` admits ``null``; ``x-kubernetes-int-or-string`` admits integers and strings
    (whether or not the ``anyOf`` spelling is there); ``x-kubernetes-preserve-unknown-fields``
    needs nothing (Draft 4 allows unknown properties; pruning has dropped the others); the other
    ``x-kubernetes-*`` keys are dropped."""
    out: Schema = {}
    for key, value in schema.items():
        if key.startswith("x-kubernetes-") or key == "nullable":
            continue
        if key == "properties":
            out[key] = {name: draft4_schema(sub) for name, sub in value.items()}
        elif key in ("items", "additionalProperties", "not") and isinstance(value, Mapping):
            out[key] = draft4_schema(value)
        elif key in ("allOf", "anyOf", "oneOf"):
            out[key] = [draft4_schema(sub) for sub in value]
        else:
            out[key] = copy.deepcopy(value)
    if schema.get("x-kubernetes-int-or-string") and "anyOf" not in schema:
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if schema.get("nullable"):
        out = {"anyOf": [out, {"type": "null"}]}
    return out


def _format_path(path: Iterable[str | int]) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "<root>"
