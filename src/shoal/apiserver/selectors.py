"""Label and field selectors, as lists and watches take them in their query strings.

Label selectors (``labelSelector``), in Kubernetes' grammar: a comma-separated list of
requirements, all of which must hold::

    app=web            app==web           tier!=cache
    env in (prod,qa)   env notin (dev)    canary             !canary

Field selectors (``fieldSelector``) on ``metadata.name`` and ``metadata.namespace`` with ``=``,
``==`` and ``!=`` (what the API server supports for custom resources). Parsing is pure; a bad
selector raises :class:`SelectorError`, which the server answers with 400 BadRequest.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

__all__ = [
    "FieldSelector",
    "LabelSelector",
    "SelectorError",
    "parse_field_selector",
    "parse_label_selector",
]

_KEY = re.compile(
    r"([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?"
)
_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")
_SET = re.compile(r"^\s*(?P<key>[^\s!=(),]+)\s+(?P<op>in|notin)\s*\((?P<values>[^()]*)\)\s*$")

Operator = Literal["=", "!=", "in", "notin", "exists", "!"]


class SelectorError(ValueError):
    """A selector that does not parse; the message says where."""


@dataclass(frozen=True, slots=True)
class Requirement:
    key: str
    operator: Operator
    values: frozenset[str] = frozenset()

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        if self.operator == "exists":
            return present
        if self.operator == "!":
            return not present
        if self.operator in ("=", "in"):
            return present and labels[self.key] in self.values
        # != and notin also select objects without the label, as in Kubernetes.
        return not present or labels[self.key] not in self.values


@dataclass(frozen=True, slots=True)
class LabelSelector:
    """A parsed ``labelSelector``; the empty selector selects everything."""

    requirements: tuple[Requirement, ...] = ()

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        found = labels or {}
        return all(requirement.matches(found) for requirement in self.requirements)


def _split(text: str) -> list[str]:
    """Split on commas outside parentheses."""
    parts: list[str] = []
    current: list[str] = []
    depth = 0
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth < 0:
                raise SelectorError(f"unbalanced ')' in selector {text!r}")
        if char == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    if depth:
        raise SelectorError(f"unbalanced '(' in selector {text!r}")
    parts.append("".join(current))
    return parts


def _check_key(key: str, text: str) -> str:
    if not _KEY.fullmatch(key) or len(key.rpartition("/")[2]) > 63:
        raise SelectorError(f"invalid label key {key!r} in selector {text!r}")
    return key


def _check_value(value: str, text: str) -> str:
    if not _VALUE.fullmatch(value) or len(value) > 63:
        raise SelectorError(f"invalid label value {value!r} in selector {text!r}")
    return value


def parse_label_selector(text: str | None) -> LabelSelector:
    """Parse a ``labelSelector`` query parameter (None or blank: select everything)."""
    if text is None or not text.strip():
        return LabelSelector()
    requirements = []
    for raw in _split(text):
        part = raw.strip()
        if not part:
            raise SelectorError(f"empty requirement in selector {text!r}")
        set_match = _SET.match(part)
        if set_match:
            values = [v.strip() for v in set_match["values"].split(",")]
            if values == [""]:
                raise SelectorError(f"{set_match['op']} needs at least one value in {text!r}")
            requirement = Requirement(
                _check_key(set_match["key"], text),
                "in" if set_match["op"] == "in" else "notin",
                frozenset(_check_value(v, text) for v in values),
            )
        elif part.startswith("!"):
            requirement = Requirement(_check_key(part[1:].strip(), text), "!")
        else:
            equality = re.fullmatch(r"\s*([^\s!=]+)\s*(==|=|!=)\s*(\S*)\s*", part)
            if equality:
                key, operator, value = equality.groups()
                requirement = Requirement(
                    _check_key(key, text),
                    "!=" if operator == "!=" else "=",
                    frozenset({_check_value(value, text)}),
                )
            elif re.fullmatch(r"[^\s!=(),]+", part):
                requirement = Requirement(_check_key(part, text), "exists")
            else:
                raise SelectorError(f"unable to parse requirement {part!r} in selector {text!r}")
        requirements.append(requirement)
    return LabelSelector(tuple(requirements))


FIELDS = (
    "metadata.name",
    "metadata.namespace",
    # Events (what `kubectl describe` asks for)
    "involvedObject.kind",
    "involvedObject.namespace",
    "involvedObject.name",
    "involvedObject.uid",
    "involvedObject.apiVersion",
    "involvedObject.resourceVersion",
    "involvedObject.fieldPath",
    "reason",
    "reportingComponent",
    "source",
    "type",
    # Pods
    "spec.nodeName",
    "spec.restartPolicy",
    "spec.serviceAccountName",
    "status.phase",
    "status.podIP",
)
"""The fields a ``fieldSelector`` may name, as Kubernetes allows them for the core kinds."""

_ALIASES = {"source": "source.component"}


@dataclass(frozen=True, slots=True)
class FieldSelector:
    """A parsed ``fieldSelector``: ``(field, equal?, value)`` terms that must all hold."""

    terms: tuple[tuple[str, bool, str], ...] = ()

    def matches(self, obj: Mapping[str, Any]) -> bool:
        for field, equal, value in self.terms:
            if (_field_value(obj, field) == value) != equal:
                return False
        return True

    def value_of(self, field: str) -> str | None:
        """The value a term requires the field to equal, if there is one (to narrow a list)."""
        for name, equal, value in self.terms:
            if name == field and equal:
                return value
        return None


def _field_value(obj: Mapping[str, Any], field: str) -> str:
    current: Any = obj
    for part in _ALIASES.get(field, field).split("."):
        current = current.get(part) if isinstance(current, Mapping) else None
    return "" if current is None else str(current)


def parse_field_selector(text: str | None) -> FieldSelector:
    """Parse a ``fieldSelector`` on the fields of :data:`FIELDS`."""
    if text is None or not text.strip():
        return FieldSelector()
    terms = []
    for raw in text.split(","):
        match = re.fullmatch(r"\s*([A-Za-z0-9_.]+)\s*(==|=|!=)\s*(.*?)\s*", raw)
        if match is None:
            raise SelectorError(f"invalid field selector term {raw!r}")
        field, operator, value = match.groups()
        if field not in FIELDS:
            raise SelectorError(
                f'field label not supported: "{field}" (supported: {", ".join(FIELDS)})'
            )
        terms.append((field, operator != "!=", value))
    return FieldSelector(tuple(terms))
