"""Load objects from YAML files, directories and standard input, reporting every problem at once.

Each problem names its file, line, column and field path, the way a compiler would::

    web.yaml:7:5: spec.replicas: must be >= 0, got -1
    web.yaml:9:7: spec.templat: unknown field "templat"; did you mean "template"?
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path as FilePath
from typing import Any, TextIO

from pydantic import ValidationError

from shoal.errors import InvalidObjectsError, Issue
from shoal.model._base import iter_issues
from shoal.model._errors import translate
from shoal.model._paths import Path, format_path, raw_segments
from shoal.model.meta import KubeObject
from shoal.model.registry import UnknownKind, kind_for
from shoal.model.yamlio import Document, parse_documents

__all__ = ["MANIFEST_SUFFIXES", "check_object", "load_manifests", "load_text", "object_from_dict"]

MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")
STDIN = "-"


def load_manifests(
    paths: Iterable[str | os.PathLike[str]], *, stdin: TextIO | None = None
) -> list[KubeObject]:
    """Every object in ``paths`` (files, directories searched recursively, or ``-`` for stdin).

    Raises :class:`InvalidObjectsError` listing every problem in every file when any is found.
    """
    objects: list[KubeObject] = []
    issues: list[Issue] = []
    for path in paths:
        for source, text in _read(os.fspath(path), stdin, issues):
            found, problems = _load(text, source)
            objects.extend(found)
            issues.extend(problems)
    if issues:
        raise InvalidObjectsError(issues)
    return objects


def load_text(text: str, source: str = "<string>") -> list[KubeObject]:
    """Every object in a YAML text; raises :class:`InvalidObjectsError` on any problem."""
    objects, issues = _load(text, source)
    if issues:
        raise InvalidObjectsError(issues)
    return objects


def object_from_dict(data: Any) -> KubeObject:
    """One object from its parsed form (an API request body, say); raises on any problem."""
    document = Document(data=data, source="<object>", index=0)
    obj, issues = _object(document, data, ())
    if issues or obj is None:
        raise InvalidObjectsError([Issue(i.message, i.path) for i in issues])
    return obj


def check_object(obj: KubeObject) -> list[Issue]:
    """The cross-field problems of an object built in Python (types were checked on creation)."""
    return [Issue(message, format_path(path)) for path, message in iter_issues(obj)]


def _read(path: str, stdin: TextIO | None, issues: list[Issue]) -> Iterable[tuple[str, str]]:
    if path == STDIN:
        stream = stdin if stdin is not None else _stdin()
        yield "<stdin>", stream.read()
        return
    file = FilePath(path)
    if file.is_dir():
        found = sorted(p for p in file.rglob("*") if p.suffix in MANIFEST_SUFFIXES and p.is_file())
        if not found:
            issues.append(
                Issue(f"{path}: no {', '.join(MANIFEST_SUFFIXES)} files in this directory")
            )
        for child in found:
            yield from _read(str(child), stdin, issues)
        return
    try:
        yield path, file.read_text(encoding="utf-8")
    except FileNotFoundError:
        issues.append(Issue(f"{path}: no such file or directory"))
    except UnicodeDecodeError as error:
        issues.append(Issue(f"{path}: not UTF-8 text ({error.reason} at byte {error.start})"))
    except OSError as error:
        issues.append(Issue(f"{path}: cannot read: {error.strerror}"))


def _stdin() -> TextIO:
    import sys

    return sys.stdin


def _load(text: str, source: str) -> tuple[list[KubeObject], list[Issue]]:
    documents, issues = parse_documents(text, source)
    objects: list[KubeObject] = []
    for document in documents:
        data = document.data
        if isinstance(data, dict) and data.get("kind") == "List" and data.get("apiVersion") == "v1":
            items = data.get("items")
            if not isinstance(items, list):
                issues.append(
                    Issue(
                        "Required value: a List needs `items`",
                        "items",
                        document.location(("items",)),
                    )
                )
                continue
            for index, item in enumerate(items):
                obj, problems = _object(document, item, ("items", index))
                issues.extend(problems)
                if obj is not None:
                    objects.append(obj)
            continue
        obj, problems = _object(document, data, ())
        issues.extend(problems)
        if obj is not None:
            objects.append(obj)
    return objects, issues


def _object(document: Document, data: Any, base: Path) -> tuple[KubeObject | None, list[Issue]]:
    def issue(path: Path, message: str, *, on_key: bool = False, offset: int = 0) -> Issue:
        full = base + path
        location = document.location(raw_segments(full), on_key=on_key, offset=offset)
        return Issue(message, format_path(full), location)

    if not isinstance(data, dict):
        what = "a list" if isinstance(data, list) else f"{type(data).__name__} {data!r}"
        return None, [
            issue((), f"a document must be a mapping with apiVersion and kind, got {what}")
        ]
    missing = [key for key in ("apiVersion", "kind") if not isinstance(data.get(key), str)]
    if missing:
        return None, [
            issue((key,), "Required value: every object needs `apiVersion` and `kind` (strings)")
            for key in missing
        ]
    try:
        cls = kind_for(data["apiVersion"], data["kind"])
    except UnknownKind as error:
        field = "apiVersion" if "served at" in str(error) else "kind"
        return None, [issue((field,), str(error))]
    try:
        obj = cls.model_validate(data)
    except ValidationError as error:
        return None, _in_file_order(
            [
                issue(e.path, e.message, on_key=e.on_key, offset=e.offset)
                for e in translate(error, cls, data)
            ]
        )
    problems = [issue(path, message) for path, message in iter_issues(obj)]
    return (obj if not problems else None), _in_file_order(problems)


def _in_file_order(issues: list[Issue]) -> list[Issue]:
    return sorted(
        issues, key=lambda i: (i.location.line, i.location.column) if i.location else (0, 0)
    )


def format_issues(issues: Sequence[Issue]) -> str:
    """One line per issue, as the CLI prints them."""
    return "\n".join(str(issue) for issue in issues)
