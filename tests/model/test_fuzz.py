"""Whatever the input, loading ends in objects or in located issues: never a crash."""

from __future__ import annotations

from typing import Any

import yaml
from hypothesis import given
from hypothesis import strategies as st

from shoal.errors import InvalidObjectsError, Issue
from shoal.model import ALL_KINDS, load_text

SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**40), 2**40),
    st.floats(allow_nan=False),
    st.text(max_size=12),
)
KEYS = st.sampled_from(
    [
        "name",
        "spec",
        "replicas",
        "containers",
        "image",
        "ports",
        "template",
        "metadata",
        "labels",
        "shards",
        "shardRegexp",
        "tests",
        "test",
        "path",
        "selector",
        "matchLabels",
        "requestPerSecond",
        "service",
        "x",
    ]
)
JSONISH = st.recursive(
    SCALARS,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(KEYS, children, max_size=5),
    max_leaves=25,
)


def _issues(text: str) -> list[Issue]:
    """The issues loading ``text`` reports (none when it loads); anything else propagates."""
    try:
        load_text(text, "fuzz.yaml")
    except InvalidObjectsError as error:
        return list(error.issues)
    return []


def _load(document: Any) -> None:
    for issue in _issues(yaml.safe_dump(document)):
        assert issue.location is not None
        assert issue.location.file == "fuzz.yaml"
        assert issue.location.line >= 1
        assert issue.location.column >= 1
        assert issue.message


@given(
    kind=st.sampled_from(ALL_KINDS),
    metadata=JSONISH,
    spec=JSONISH,
)
def test_any_spec_of_any_kind_loads_or_reports(kind: Any, metadata: Any, spec: Any) -> None:
    _load(
        {
            "apiVersion": kind.INFO.api_version,
            "kind": kind.INFO.kind,
            "metadata": metadata,
            "spec": spec,
        }
    )


@given(st.text(max_size=200))
def test_any_text_loads_or_reports(text: str) -> None:
    assert all(issue.message and issue.location for issue in _issues(text))
