"""Properties of JSON Patch and JSON Merge Patch over arbitrary JSON documents."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from shoal.apiserver.patching import (
    InvalidPatchError,
    PatchError,
    json_equal,
    json_patch,
    merge_diff,
    merge_patch,
    parse_pointer,
    strategic_merge_patch,
)

_keys = st.text(alphabet="ab/~0 1", max_size=3)
_scalars = st.none() | st.booleans() | st.integers(-5, 5) | st.floats(-2, 2) | st.text(max_size=3)
_json = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_keys, inner, max_size=4),
    max_leaves=15,
)
_no_null_json = st.recursive(
    st.booleans() | st.integers(-5, 5) | st.text(max_size=3),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_keys, inner, max_size=4),
    max_leaves=15,
)


def _escape(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


def _draw_location(data: st.DataObject, document: Any) -> tuple[str, Any]:
    """A pointer to an existing value of ``document`` (drawn by walking into it) and that value."""
    pointer, value = "", document
    while isinstance(value, dict | list) and value and data.draw(st.booleans()):
        if isinstance(value, dict):
            key = data.draw(st.sampled_from(sorted(value)))
            pointer, value = f"{pointer}/{_escape(key)}", value[key]
        else:
            index = data.draw(st.integers(0, len(value) - 1))
            pointer, value = f"{pointer}/{index}", value[index]
    return pointer, value


@given(source=_json, target=_no_null_json)
def test_merge_patch_of_the_diff_reproduces_the_target(source: Any, target: Any) -> None:
    """``merge_patch(source, merge_diff(source, target)) == target`` for any target a merge
    patch can express (no null object members), and neither input is modified."""
    before = copy.deepcopy((source, target))
    diff = merge_diff(source, target)
    assert json_equal(merge_patch(source, diff), target)
    assert (source, target) == before


@given(document=_json, patch=_json)
def test_merge_patch_is_idempotent(document: Any, patch: Any) -> None:
    """Applying a merge patch twice is applying it once (RFC 7386 has no relative operations)."""
    once = merge_patch(document, patch)
    assert json_equal(merge_patch(once, patch), once)


@given(document=_json, data=st.data())
def test_json_patch_test_never_mutates(document: Any, data: st.DataObject) -> None:
    """``test`` with the value at a path succeeds and returns the document unchanged; with any
    other value it fails; either way the input is untouched."""
    before = copy.deepcopy(document)
    pointer, value = _draw_location(data, document)
    assert json_equal(
        json_patch(document, [{"op": "test", "path": pointer, "value": value}]), before
    )
    other = data.draw(_json.filter(lambda v: not json_equal(v, value)))
    with pytest.raises(InvalidPatchError, match="test failed"):
        json_patch(document, [{"op": "test", "path": pointer, "value": other}])
    assert document == before


@given(document=st.dictionaries(_keys, _json, max_size=4), key=_keys, value=_json)
def test_add_then_remove_round_trips(document: dict[str, Any], key: str, value: Any) -> None:
    """Adding a new member and removing it again gives the original document back."""
    assume(key not in document)
    pointer = "/" + _escape(key)
    assert parse_pointer(pointer) == (key,)
    added = json_patch(document, [{"op": "add", "path": pointer, "value": value}])
    assert json_equal(added[key], value)
    assert json_patch(added, [{"op": "remove", "path": pointer}]) == document


@given(document=_json, data=st.data())
def test_copy_then_test_agrees(document: Any, data: st.DataObject) -> None:
    """A value copied into a fresh member tests equal to its source."""
    pointer, value = _draw_location(data, document)
    wrapper = {"doc": document}
    result = json_patch(
        wrapper,
        [
            {"op": "copy", "from": "/doc" + pointer, "path": "/copy"},
            {"op": "test", "path": "/copy", "value": value},
        ],
    )
    assert json_equal(result["copy"], value)


_directive_keys = st.sampled_from(
    [
        "spec",
        "template",
        "containers",
        "name",
        "image",
        "env",
        "ports",
        "containerPort",
        "metadata",
        "finalizers",
        "strategy",
        "$patch",
        "$retainKeys",
        "$setElementOrder/containers",
        "$deleteFromPrimitiveList/finalizers",
    ]
)
_directive_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-2, 2)
    | st.sampled_from(["a", "replace", "delete", "merge"])
)
_patch_like = st.recursive(
    _directive_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_directive_keys, inner, max_size=4),
    max_leaves=20,
)
_LIVE = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "web", "finalizers": ["a"]},
    "spec": {
        "template": {"spec": {"containers": [{"name": "a", "image": "x", "env": [{"name": "A"}]}]}}
    },
}


@given(patch=_patch_like)
def test_any_patch_is_applied_or_refused_with_a_patch_error(patch: Any) -> None:
    """Whatever the body, every patch type either returns a result or raises a
    :class:`PatchError` (which the server answers with its status code): never anything else."""
    codes = []
    for function in (strategic_merge_patch, json_patch, merge_patch):
        try:
            function(_LIVE, patch)
        except PatchError as error:
            codes.append(error.code)
    assert set(codes) <= {400, 415, 422}
