"""Load one configuration file (``--config FILE``) into a model, every problem located.

Components (``shoal adapter ...``, ``shoal sidecar ...``) take their settings as flags or as a
YAML file; the file goes through the same located loader as manifests, so a mistake is reported
as ``adapter.yaml:4:3: checks[1].url: ...`` with did-you-mean hints for unknown fields.
A configuration file is not an API object: it needs no ``apiVersion`` or ``kind`` unless the model
declares them.
"""

from __future__ import annotations

import os
from pathlib import Path as FilePath
from typing import TypeVar

from pydantic import ValidationError

from shoal.errors import InvalidObjectsError, Issue, SourceLocation
from shoal.model._base import ShoalModel, iter_issues
from shoal.model._errors import translate
from shoal.model._paths import Path, format_path, raw_segments
from shoal.model.yamlio import Document, parse_documents

__all__ = ["load_config_file", "load_config_text"]

M = TypeVar("M", bound=ShoalModel)


def load_config_file(path: str | os.PathLike[str], model: type[M]) -> M:
    """The single YAML document in ``path`` validated as ``model``.

    Raises :class:`InvalidObjectsError` naming file, line, column and field of every problem
    (an unreadable file is one problem too).
    """
    source = os.fspath(path)
    try:
        text = FilePath(source).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InvalidObjectsError([Issue(f"{source}: no such file or directory")]) from None
    except UnicodeDecodeError as error:
        raise InvalidObjectsError(
            [Issue(f"{source}: not UTF-8 text ({error.reason} at byte {error.start})")]
        ) from None
    except OSError as error:
        raise InvalidObjectsError([Issue(f"{source}: cannot read: {error.strerror}")]) from None
    return load_config_text(text, model, source)


def load_config_text(text: str, model: type[M], source: str = "<string>") -> M:
    """``text`` (one YAML document) validated as ``model``; raises on any problem."""
    documents, issues = parse_documents(text, source)
    if issues:
        raise InvalidObjectsError(issues)
    if len(documents) != 1:
        found = f"{len(documents)} documents" if documents else "an empty file"
        raise InvalidObjectsError(
            [
                Issue(
                    f"a configuration file holds exactly one YAML mapping, found {found}",
                    location=SourceLocation(source, 1, 1),
                )
            ]
        )
    document = documents[0]
    if not isinstance(document.data, dict):
        raise InvalidObjectsError(
            [Issue("a configuration file must be a mapping", location=document.location(()))]
        )
    try:
        config = model.model_validate(document.data)
    except ValidationError as error:
        raise InvalidObjectsError(
            _sorted(
                [
                    _issue(document, e.path, e.message, on_key=e.on_key, offset=e.offset)
                    for e in translate(error, model, document.data)
                ]
            )
        ) from None
    problems = [_issue(document, path, message) for path, message in iter_issues(config)]
    if problems:
        raise InvalidObjectsError(_sorted(problems))
    return config


def _issue(
    document: Document, path: Path, message: str, *, on_key: bool = False, offset: int = 0
) -> Issue:
    location = document.location(raw_segments(path), on_key=on_key, offset=offset)
    return Issue(message, format_path(path), location)


def _sorted(issues: list[Issue]) -> list[Issue]:
    return sorted(
        issues, key=lambda i: (i.location.line, i.location.column) if i.location else (0, 0)
    )
