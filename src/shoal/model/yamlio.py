"""YAML in and out, keeping the position of every key and value.

PyYAML's composer gives nodes with marks; building the Python values ourselves from those nodes
lets every later error point at a line and column, lets us refuse duplicate keys (which PyYAML
silently resolves to the last one), and keeps timestamps as strings, as Kubernetes reads them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

from shoal.errors import Issue, SourceLocation

__all__ = ["Document", "dump_yaml", "parse_documents"]

RawPath = tuple[str | int, ...]


@dataclass(slots=True)
class Document:
    """One YAML document, its value and where each part of it is."""

    data: Any
    source: str
    index: int
    """Position among the documents of its source, from 0."""
    value_marks: dict[RawPath, tuple[int, int]] = field(default_factory=dict)
    key_marks: dict[RawPath, tuple[int, int]] = field(default_factory=dict)
    plain_scalars: set[RawPath] = field(default_factory=set)
    """Paths whose value was written as a one-line plain or simply quoted scalar."""
    quoted_scalars: set[RawPath] = field(default_factory=set)

    def location(self, path: RawPath, *, on_key: bool = False, offset: int = 0) -> SourceLocation:
        """The best position for ``path``: the key or value itself, or its nearest parent."""
        marks = self.key_marks if on_key else self.value_marks
        if path in marks:
            line, column = marks[path]
            if offset and not on_key:
                if path in self.plain_scalars:
                    column += offset
                elif path in self.quoted_scalars:
                    column += offset + 1
            return SourceLocation(self.source, line, column)
        if on_key and path in self.value_marks:
            line, column = self.value_marks[path]
            return SourceLocation(self.source, line, column)
        for end in range(len(path) - 1, -1, -1):
            prefix = path[:end]
            if prefix in self.value_marks:
                line, column = self.value_marks[prefix]
                return SourceLocation(self.source, line, column)
        return SourceLocation(self.source, 1, 1)


class _ScalarConstructor(yaml.constructor.SafeConstructor):
    """Scalars as Kubernetes' YAML reader gives them: timestamps stay strings."""


_ScalarConstructor.add_constructor(  # type: ignore[type-var] # the stubs' TypeVar is too narrow
    "tag:yaml.org,2002:timestamp", yaml.constructor.SafeConstructor.construct_yaml_str
)


def parse_documents(text: str, source: str) -> tuple[list[Document], list[Issue]]:
    """Every document of ``text`` with its positions, and every problem found on the way.

    A syntax error ends the parse (what follows it cannot be read reliably); documents before it
    are still returned. Empty documents are skipped.
    """
    documents: list[Document] = []
    issues: list[Issue] = []
    try:
        loader = yaml.SafeLoader(text)
    except yaml.reader.ReaderError as error:
        issues.append(_reader_issue(error, text, source))
        return documents, issues
    try:
        index = 0
        while loader.check_node():
            node = loader.get_node()
            if node is None:
                continue
            document = Document(data=None, source=source, index=index)
            index += 1
            builder = _Builder(document, issues)
            document.data = builder.build(node, ())
            if document.data is not None:
                documents.append(document)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        location = SourceLocation(source, mark.line + 1, mark.column + 1) if mark else None
        problem = error.problem or "invalid YAML"
        context = f" ({error.context})" if error.context else ""
        issues.append(Issue(f"YAML syntax error: {problem}{context}", location=location))
    except yaml.reader.ReaderError as error:
        issues.append(_reader_issue(error, text, source))
    except yaml.YAMLError as error:
        issues.append(Issue(f"YAML error: {error}", location=SourceLocation(source, 1, 1)))
    finally:
        loader.dispose()
    return documents, issues


def _reader_issue(error: yaml.reader.ReaderError, text: str, source: str) -> Issue:
    """A character YAML does not allow (a control character, say), at its line and column."""
    before = text[: error.position]
    line = before.count("\n") + 1
    column = error.position - (before.rfind("\n") + 1) + 1
    character = (
        f"U+{error.character:04X}" if isinstance(error.character, int) else repr(error.character)
    )
    return Issue(
        f"YAML error: character {character} is not allowed ({error.reason})",
        location=SourceLocation(source, line, column),
    )


class _Builder:
    def __init__(self, document: Document, issues: list[Issue]) -> None:
        self.document = document
        self.issues = issues
        self.constructor = _ScalarConstructor()
        self.active: set[int] = set()

    def _mark(self, node: yaml.Node) -> tuple[int, int]:
        return node.start_mark.line + 1, node.start_mark.column + 1

    def _issue(self, node: yaml.Node, message: str) -> None:
        line, column = self._mark(node)
        self.issues.append(
            Issue(message, location=SourceLocation(self.document.source, line, column))
        )

    def build(self, node: yaml.Node, path: RawPath) -> Any:
        self.document.value_marks[path] = self._mark(node)
        if isinstance(node, yaml.ScalarNode):
            if node.start_mark.line == node.end_mark.line:
                if node.style is None:
                    self.document.plain_scalars.add(path)
                elif node.style in ("'", '"') and "\\" not in node.value and "'" not in node.value:
                    self.document.quoted_scalars.add(path)
            return self.constructor.construct_object(node, deep=True)
        if id(node) in self.active:
            self._issue(node, "a YAML alias refers to a node that contains it (a cycle)")
            return None
        self.active.add(id(node))
        try:
            if isinstance(node, yaml.SequenceNode):
                return [self.build(child, (*path, i)) for i, child in enumerate(node.value)]
            if isinstance(node, yaml.MappingNode):
                return self._mapping(node, path)
        finally:
            self.active.discard(id(node))
        self._issue(node, f"unsupported YAML node {type(node).__name__}")  # pragma: no cover
        return None

    def _mapping(self, node: yaml.MappingNode, path: RawPath) -> dict[Any, Any]:
        try:
            self.constructor.flatten_mapping(node)  # resolves '<<' merge keys
        except yaml.constructor.ConstructorError as error:
            self._issue(node, f"invalid merge key: {error.problem}")
        out: dict[Any, Any] = {}
        first_seen: dict[Any, tuple[int, int]] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                self._issue(key_node, "a mapping key must be a scalar (a string or a number)")
                continue
            key = self.constructor.construct_object(key_node)
            if isinstance(key, bool | float) or key is None:
                key = key_node.value  # Kubernetes reads keys as strings: `on:` stays "on"
            if key in first_seen:
                line, column = first_seen[key]
                self._issue(
                    key_node,
                    f'duplicate key "{key}" (first defined at line {line}, column {column})',
                )
                continue
            first_seen[key] = self._mark(key_node)
            self.document.key_marks[(*path, key)] = self._mark(key_node)
            out[key] = self.build(value_node, (*path, key))
        return out


class _Dumper(yaml.SafeDumper):
    """Block style, keys in the order given, multi-line strings as literal blocks."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    if "\n" in value:
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|")
    return dumper.represent_scalar("tag:yaml.org,2002:str", value)


_Dumper.add_representer(str, _represent_str)


def dump_yaml(documents: Sequence[Any]) -> str:
    """Documents as multi-document YAML (``---`` between documents)."""
    return "---\n".join(_dump_one(document) for document in documents)


def _dump_one(document: Any) -> str:
    text: str = yaml.dump(
        document,
        Dumper=_Dumper,
        sort_keys=False,
        default_flow_style=False,
        allow_unicode=True,
        width=100,
    )
    return text
