"""JSON patch (RFC 6902) and JSON merge patch (RFC 7386), for PATCH until ``patching.py`` lands.

Small and strict: a patch that does not apply raises :class:`PatchError` (the server answers
422 for a failed ``test`` or a missing path, 400 for a malformed patch, as Kubernetes does).
"""

from __future__ import annotations

import copy
from typing import Any

__all__ = ["PatchError", "apply_json_patch", "apply_merge_patch"]


class PatchError(ValueError):
    """The patch does not apply; ``malformed`` is true when the patch itself is not valid."""

    def __init__(self, message: str, *, malformed: bool = False) -> None:
        super().__init__(message)
        self.malformed = malformed


def apply_merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: objects merge key by key, ``null`` deletes, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = apply_merge_patch(result.get(key), value)
    return result


def _pointer(path: Any) -> list[str]:
    if not isinstance(path, str) or (path and not path.startswith("/")):
        raise PatchError(f"invalid JSON pointer {path!r}", malformed=True)
    if path == "":
        return []
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _index(container: list[Any], token: str, *, adding: bool) -> int:
    if adding and token == "-":  # noqa: S105 (a JSON pointer token, not a secret)
        return len(container)
    if not token.isdigit() or (len(token) > 1 and token.startswith("0")):
        raise PatchError(f"invalid array index {token!r}")
    index = int(token)
    if index > len(container) or (not adding and index == len(container)):
        raise PatchError(f"array index {index} out of range")
    return index


def _parent(document: Any, tokens: list[str]) -> Any:
    node = document
    for token in tokens[:-1]:
        if isinstance(node, dict):
            if token not in node:
                raise PatchError(f"path segment {token!r} not found")
            node = node[token]
        elif isinstance(node, list):
            node = node[_index(node, token, adding=False)]
        else:
            raise PatchError(f"cannot descend into a scalar at {token!r}")
    return node


def _get(document: Any, tokens: list[str]) -> Any:
    if not tokens:
        return document
    parent = _parent(document, tokens)
    last = tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise PatchError(f"path {'/' + '/'.join(tokens)!r} not found")
        return parent[last]
    if isinstance(parent, list):
        return parent[_index(parent, last, adding=False)]
    raise PatchError("cannot read a field of a scalar")


def _remove(document: Any, tokens: list[str]) -> Any:
    if not tokens:
        raise PatchError("cannot remove the whole document")
    parent = _parent(document, tokens)
    last = tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise PatchError(f"path {'/' + '/'.join(tokens)!r} not found")
        return parent.pop(last)
    if isinstance(parent, list):
        return parent.pop(_index(parent, last, adding=False))
    raise PatchError("cannot remove a field of a scalar")


def _add(document: Any, tokens: list[str], value: Any) -> Any:
    if not tokens:
        return value
    parent = _parent(document, tokens)
    last = tokens[-1]
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list):
        parent.insert(_index(parent, last, adding=True), value)
    else:
        raise PatchError("cannot add a field to a scalar")
    return document


def apply_json_patch(target: Any, patch: Any) -> Any:
    """RFC 6902: apply the operations in order to a copy of ``target``."""
    if not isinstance(patch, list):
        raise PatchError("a JSON patch must be a list of operations", malformed=True)
    document = copy.deepcopy(target)
    for operation in patch:
        if not isinstance(operation, dict) or not isinstance(operation.get("op"), str):
            raise PatchError("each operation must be an object with an 'op'", malformed=True)
        op = operation["op"]
        tokens = _pointer(operation.get("path"))
        if op in ("add", "replace", "test") and "value" not in operation:
            raise PatchError(f"operation {op!r} needs a 'value'", malformed=True)
        if op == "add":
            document = _add(document, tokens, copy.deepcopy(operation["value"]))
        elif op == "remove":
            _remove(document, tokens)
        elif op == "replace":
            _get(document, tokens)
            if not tokens:
                document = copy.deepcopy(operation["value"])
            else:
                _remove(document, tokens)
                document = _add(document, tokens, copy.deepcopy(operation["value"]))
        elif op in ("move", "copy"):
            source = _pointer(operation.get("from"))
            value = _get(document, source)
            if op == "move":
                if tokens[: len(source)] == source and len(tokens) > len(source):
                    raise PatchError("cannot move a value into itself")
                _remove(document, source)
            document = _add(document, tokens, copy.deepcopy(value))
        elif op == "test":
            if _get(document, tokens) != operation["value"]:
                raise PatchError(f"test failed at {operation.get('path')!r}")
        else:
            raise PatchError(f"unknown operation {op!r}", malformed=True)
    return document
