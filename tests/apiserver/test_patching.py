"""JSON Patch (RFC 6902) and JSON Merge Patch (RFC 7386), the RFCs' own examples first; content
types and the errors each patch type answers with."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from shoal.apiserver.patching import (
    APPLY_PATCH,
    JSON_PATCH,
    MERGE_PATCH,
    STRATEGIC_MERGE_PATCH,
    BadPatchError,
    InvalidPatchError,
    PatchError,
    UnsupportedPatchError,
    decode_patch,
    json_equal,
    json_patch,
    merge_diff,
    merge_patch,
    parse_pointer,
    patch_object,
    patch_types_for,
)
from shoal.model.core import Deployment
from shoal.model.loadtest import LoadTest

# --------------------------------------------------------------------------------------------------
# RFC 6902 Appendix A: (section, document, patch, result or None when the patch must fail)

RFC6902_EXAMPLES: list[tuple[str, Any, list[dict[str, Any]], Any]] = [
    (
        "A.1 adding an object member",
        {"foo": "bar"},
        [{"op": "add", "path": "/baz", "value": "qux"}],
        {"baz": "qux", "foo": "bar"},
    ),
    (
        "A.2 adding an array element",
        {"foo": ["bar", "baz"]},
        [{"op": "add", "path": "/foo/1", "value": "qux"}],
        {"foo": ["bar", "qux", "baz"]},
    ),
    (
        "A.3 removing an object member",
        {"baz": "qux", "foo": "bar"},
        [{"op": "remove", "path": "/baz"}],
        {"foo": "bar"},
    ),
    (
        "A.4 removing an array element",
        {"foo": ["bar", "qux", "baz"]},
        [{"op": "remove", "path": "/foo/1"}],
        {"foo": ["bar", "baz"]},
    ),
    (
        "A.5 replacing a value",
        {"baz": "qux", "foo": "bar"},
        [{"op": "replace", "path": "/baz", "value": "boo"}],
        {"baz": "boo", "foo": "bar"},
    ),
    (
        "A.6 moving a value",
        {"foo": {"bar": "baz", "waldo": "fred"}, "qux": {"corge": "grault"}},
        [{"op": "move", "from": "/foo/waldo", "path": "/qux/thud"}],
        {"foo": {"bar": "baz"}, "qux": {"corge": "grault", "thud": "fred"}},
    ),
    (
        "A.7 moving an array element",
        {"foo": ["all", "grass", "cows", "eat"]},
        [{"op": "move", "from": "/foo/1", "path": "/foo/3"}],
        {"foo": ["all", "cows", "eat", "grass"]},
    ),
    (
        "A.8 testing a value: success",
        {"baz": "qux", "foo": ["a", 2, "c"]},
        [
            {"op": "test", "path": "/baz", "value": "qux"},
            {"op": "test", "path": "/foo/1", "value": 2},
        ],
        {"baz": "qux", "foo": ["a", 2, "c"]},
    ),
    (
        "A.9 testing a value: error",
        {"baz": "qux"},
        [{"op": "test", "path": "/baz", "value": "bar"}],
        None,
    ),
    (
        "A.10 adding a nested member object",
        {"foo": "bar"},
        [{"op": "add", "path": "/child", "value": {"grandchild": {}}}],
        {"foo": "bar", "child": {"grandchild": {}}},
    ),
    (
        "A.11 ignoring unrecognized elements",
        {"foo": "bar"},
        [{"op": "add", "path": "/baz", "value": "qux", "xyz": 123}],
        {"foo": "bar", "baz": "qux"},
    ),
    (
        "A.12 adding to a nonexistent target",
        {"foo": "bar"},
        [{"op": "add", "path": "/baz/bat", "value": "qux"}],
        None,
    ),
    (
        "A.14 ~ escape ordering",
        {"/": 9, "~1": 10},
        [{"op": "test", "path": "/~01", "value": 10}],
        {"/": 9, "~1": 10},
    ),
    (
        "A.15 comparing strings and numbers",
        {"/": 9, "~1": 10},
        [{"op": "test", "path": "/~01", "value": "10"}],
        None,
    ),
    (
        "A.16 adding an array value",
        {"foo": ["bar"]},
        [{"op": "add", "path": "/foo/-", "value": ["abc", "def"]}],
        {"foo": ["bar", ["abc", "def"]]},
    ),
]


@pytest.mark.parametrize(
    ("document", "patch", "expected"),
    [example[1:] for example in RFC6902_EXAMPLES],
    ids=[example[0] for example in RFC6902_EXAMPLES],
)
def test_rfc6902_appendix_a(document: Any, patch: list[dict[str, Any]], expected: Any) -> None:
    """Every example of RFC 6902 Appendix A gives the RFC's result (or fails where it says so),
    and the input document is never modified."""
    before = copy.deepcopy(document)
    if expected is None:
        with pytest.raises(InvalidPatchError):
            json_patch(document, patch)
    else:
        assert json_patch(document, patch) == expected
    assert document == before


def test_rfc6902_a13_duplicate_op_member_still_fails() -> None:
    """A.13: an operation with two "op" members is invalid. JSON parsers keep the last member,
    so the body decodes as a "remove" of a missing member and is still refused."""
    body = b'[{"op": "add", "path": "/baz", "value": "qux", "op": "remove"}]'
    operations = decode_patch(JSON_PATCH, body)
    with pytest.raises(InvalidPatchError, match="does not exist"):
        json_patch({"foo": "bar"}, operations)


class TestJSONPatch:
    def test_operations_apply_in_order_all_or_nothing(self) -> None:
        """A failing operation fails the whole patch: earlier operations leave no trace."""
        document = {"a": 1}
        with pytest.raises(InvalidPatchError, match=r"operation 1 \(remove /missing\)"):
            json_patch(
                document,
                [{"op": "add", "path": "/b", "value": 2}, {"op": "remove", "path": "/missing"}],
            )
        assert document == {"a": 1}

    def test_copy_is_deep(self) -> None:
        """A copied value is independent of its source."""
        result = json_patch(
            {"a": {"x": [1]}},
            [
                {"op": "copy", "from": "/a", "path": "/b"},
                {"op": "add", "path": "/b/x/-", "value": 2},
            ],
        )
        assert result == {"a": {"x": [1]}, "b": {"x": [1, 2]}}

    def test_whole_document_add_and_replace(self) -> None:
        """The empty pointer names the whole document."""
        assert json_patch({"a": 1}, [{"op": "replace", "path": "", "value": [1]}]) == [1]
        assert json_patch({"a": 1}, [{"op": "add", "path": "", "value": {"b": 2}}]) == {"b": 2}

    @pytest.mark.parametrize(
        ("operation", "message"),
        [
            ({"op": "move", "from": "/a", "path": "/a/b"}, "into its own child"),
            ({"op": "add", "path": "/list/3", "value": 0}, "out of bounds"),
            ({"op": "add", "path": "/list/01", "value": 0}, "not an array index"),
            ({"op": "remove", "path": "/list/-"}, "names no element"),
            ({"op": "remove", "path": ""}, "cannot be removed"),
            ({"op": "replace", "path": "/nope", "value": 1}, "does not exist"),
            ({"op": "frobnicate", "path": "/a"}, "unknown operation"),
            ({"op": "add", "path": "/b"}, "no 'value' member"),
            ({"op": "copy", "path": "/b"}, "no 'from' member"),
            ({"op": "test", "path": "a", "value": 1}, "must be empty"),
            ({"op": "test", "path": "/a~2", "value": 1}, "'~' must be followed"),
        ],
    )
    def test_invalid_operations_say_why(self, operation: dict[str, Any], message: str) -> None:
        """Each kind of failing operation is a 422 whose message names the problem."""
        with pytest.raises(InvalidPatchError, match=message) as caught:
            json_patch({"a": {"b": 1}, "list": [1, 2]}, [operation])
        assert (caught.value.reason, caught.value.code) == ("Invalid", 422)

    def test_not_a_list_is_a_bad_request(self) -> None:
        """A body that is not an array of operations is a 400."""
        with pytest.raises(BadPatchError) as caught:
            json_patch({}, {"op": "add", "path": "/a", "value": 1})
        assert caught.value.code == 400
        with pytest.raises(BadPatchError, match="operation 0 must be an object"):
            json_patch({}, ["add"])

    def test_value_null_is_a_value(self) -> None:
        """``"value": null`` adds a null; it is not a missing member."""
        assert json_patch({}, [{"op": "add", "path": "/a", "value": None}]) == {"a": None}

    def test_pointer_unescaping(self) -> None:
        """``~1`` is ``/`` and ``~0`` is ``~``, decoded in that order (RFC 6901)."""
        assert parse_pointer("/a~1b/~0c/~01") == ("a/b", "~c", "~1")
        assert parse_pointer("") == ()
        assert parse_pointer("/") == ("",)

    def test_json_equality(self) -> None:
        """Numbers compare by value, booleans are not numbers, object order does not matter."""
        assert json_equal(1, 1.0)
        assert not json_equal(True, 1)
        assert not json_equal(0, False)
        assert json_equal({"a": [1, {"b": None}]}, {"a": [1.0, {"b": None}]})
        assert not json_equal([1, 2], [2, 1])
        assert not json_equal("1", 1)


# --------------------------------------------------------------------------------------------------
# RFC 7386 Appendix A: (original, patch, result)

RFC7386_EXAMPLES: list[tuple[Any, Any, Any]] = [
    ({"a": "b"}, {"a": "c"}, {"a": "c"}),
    ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
    ({"a": "b"}, {"a": None}, {}),
    ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
    ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
    ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
    ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
    ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
    (["a", "b"], ["c", "d"], ["c", "d"]),
    ({"a": "b"}, ["c"], ["c"]),
    ({"a": "foo"}, None, None),
    ({"a": "foo"}, "bar", "bar"),
    ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
    ([1, 2], {"a": "b", "c": None}, {"a": "b"}),
    ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
]


@pytest.mark.parametrize(("original", "patch", "expected"), RFC7386_EXAMPLES)
def test_rfc7386_appendix_a(original: Any, patch: Any, expected: Any) -> None:
    """Every test case of RFC 7386 Appendix A; the original is never modified."""
    before = copy.deepcopy(original)
    assert merge_patch(original, patch) == expected
    assert original == before


def test_merge_diff_examples() -> None:
    """The diff deletes with null, recurses into objects and replaces lists whole."""
    source = {"a": 1, "b": {"c": 1, "d": 2}, "l": [1, 2], "gone": True}
    target = {"a": 1, "b": {"c": 3, "d": 2}, "l": [2], "new": {"x": 1}}
    diff = merge_diff(source, target)
    assert diff == {"gone": None, "b": {"c": 3}, "l": [2], "new": {"x": 1}}
    assert merge_patch(source, diff) == target


# --------------------------------------------------------------------------------------------------
# Content types and dispatch

DEPLOYMENT: dict[str, Any] = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "web", "namespace": "default"},
    "spec": {
        "replicas": 1,
        "selector": {"matchLabels": {"app": "web"}},
        "template": {
            "metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "app", "image": "nginx:1.27"}]},
        },
    },
}

LOADTEST: dict[str, Any] = {
    "apiVersion": "loadtest.shoal.dev/v1",
    "kind": "LoadTest",
    "metadata": {"name": "lt", "namespace": "default"},
    "spec": {"service": "web", "tests": [{"name": "t", "test": [{"path": "/"}]}]},
}


class TestContentTypes:
    def test_each_patch_type_dispatches(self) -> None:
        """The three body-only patch types all reach the same result for a simple change."""
        json_ops = [{"op": "replace", "path": "/spec/replicas", "value": 3}]
        merge = {"spec": {"replicas": 3}}
        for content_type, document in [
            (JSON_PATCH, json_ops),
            (MERGE_PATCH + "; charset=utf-8", merge),
            (STRATEGIC_MERGE_PATCH, merge),
        ]:
            result = patch_object(DEPLOYMENT, content_type, document)
            assert result["spec"]["replicas"] == 3
            assert Deployment.model_validate(result).spec.replicas == 3
        assert DEPLOYMENT["spec"]["replicas"] == 1

    def test_custom_kinds_refuse_strategic_merge_patch_with_415(self) -> None:
        """Like Kubernetes for custom resources: 415 listing the accepted types."""
        with pytest.raises(UnsupportedPatchError) as caught:
            patch_object(LOADTEST, STRATEGIC_MERGE_PATCH, {"spec": {"service": "x"}})
        error = caught.value
        assert (error.reason, error.code) == ("UnsupportedMediaType", 415)
        assert str(error) == (
            "the body of the request was in an unknown format - accepted media types include: "
            "application/json-patch+json, application/merge-patch+json, "
            "application/apply-patch+yaml"
        )
        assert patch_types_for(LoadTest) == (JSON_PATCH, MERGE_PATCH, APPLY_PATCH)
        assert STRATEGIC_MERGE_PATCH in patch_types_for(Deployment)
        assert patch_object(LOADTEST, MERGE_PATCH, {"spec": {"service": "x"}})["spec"][
            "service"
        ] == ("x")

    def test_unknown_kinds_refuse_strategic_merge_patch(self) -> None:
        """A kind the model does not know (a user CRD) has no patch strategies either."""
        widget = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}
        with pytest.raises(UnsupportedPatchError):
            patch_object(widget, STRATEGIC_MERGE_PATCH, {"spec": {}})

    def test_decode(self) -> None:
        """JSON bodies for patches, YAML for apply; garbage is a 400, other types a 415."""
        assert decode_patch(MERGE_PATCH, b'{"a": 1}') == {"a": 1}
        assert decode_patch(APPLY_PATCH, "kind: Pod\nmetadata: {name: p}\n") == {
            "kind": "Pod",
            "metadata": {"name": "p"},
        }
        with pytest.raises(BadPatchError, match="not valid JSON"):
            decode_patch(JSON_PATCH, b"[{")
        with pytest.raises(BadPatchError, match="not valid YAML"):
            decode_patch(APPLY_PATCH, b"a: [")
        with pytest.raises(UnsupportedPatchError):
            decode_patch("application/json", b"{}")

    def test_results_must_be_objects(self) -> None:
        """A patch that turns the object into something else is refused, not stored."""
        with pytest.raises(InvalidPatchError, match="must be a JSON object"):
            patch_object(DEPLOYMENT, JSON_PATCH, [{"op": "replace", "path": "", "value": []}])
        with pytest.raises(BadPatchError, match="must be a JSON object"):
            patch_object(DEPLOYMENT, MERGE_PATCH, ["x"])
        with pytest.raises(ValueError, match="field manager"):
            patch_object(DEPLOYMENT, APPLY_PATCH, {})
        with pytest.raises(UnsupportedPatchError):
            patch_object(DEPLOYMENT, "text/plain", {})

    def test_errors_become_status_objects(self) -> None:
        """Each error turns into the Status the server sends, reason and code included."""
        error: PatchError = InvalidPatchError("bad")
        status = error.to_api_error().to_status()
        assert (status["reason"], status["code"], status["message"]) == ("Invalid", 422, "bad")
        assert json.loads(json.dumps(status))["kind"] == "Status"
