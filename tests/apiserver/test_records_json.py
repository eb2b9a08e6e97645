"""The store's JSON text: the same behaviour through orjson and through the json module.

``records.dumps``/``records.loads`` use orjson when it is installed and fall back to the json
module for everything orjson refuses or renders its own way; every test runs over both paths.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from enum import StrEnum
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shoal.apiserver import records

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@pytest.fixture(params=["orjson", "json"])
def implementation(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "json":
        monkeypatch.setattr(records, "orjson", None)
    else:
        assert records.__dict__["orjson"] is not None, "orjson must be installed"
    return str(request.param)


@given(value=json_values)
def test_dumps_and_loads_round_trip_on_both_paths(value: Any) -> None:
    fast = records.__dict__["orjson"]
    assert fast is not None, "orjson is a runtime dependency: it must be installed"
    texts = []
    for module in (fast, None):
        setattr(records, "orjson", module)  # noqa: B010 (not exported: mypy would refuse)
        try:
            text = records.dumps(value)
            assert records.loads(text) == value
        finally:
            setattr(records, "orjson", fast)  # noqa: B010
        assert json.loads(text) == value
        texts.append(text)
    assert texts[1] == json.dumps(value, separators=(",", ":"), ensure_ascii=False)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_nan_and_infinities_are_refused(implementation: str, bad: float) -> None:
    with pytest.raises(ValueError, match="JSON"):
        records.dumps({"metadata": {"name": "a"}, "x": [1, bad]})


class Colour(StrEnum):
    RED = "red"


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ({"big": 2**70}, '{"big":1180591620717411303424}'),
        ({1: "a"}, '{"1":"a"}'),
        ({"c": Colour.RED}, '{"c":"red"}'),
        ({"s": "é\u2028\x01"}, '{"s":"é\u2028\\u0001"}'),
        ({"n": None, "t": True}, '{"n":null,"t":true}'),
    ],
)
def test_dumps_renders_as_the_json_module(implementation: str, value: Any, text: str) -> None:
    assert records.dumps(value) == text


def test_dumps_refuses_what_json_refuses(implementation: str) -> None:
    with pytest.raises(TypeError):
        records.dumps({"when": dt.datetime(2026, 1, 1, tzinfo=dt.UTC)})


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ('{"a":1,"a":2}', {"a": 2}),
        ('{"big":1180591620717411303424}', {"big": 2**70}),
        ('"\\ud800"', "\ud800"),
        ("[1.5e300, -0.0]", [1.5e300, -0.0]),
    ],
)
def test_loads_reads_as_the_json_module(implementation: str, text: str, value: Any) -> None:
    assert records.loads(text) == value


def reject(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


@pytest.mark.parametrize("text", ['{"a": NaN}', "[Infinity]", "{", "", "[" * 2000])
def test_loads_refuses_as_the_json_module(implementation: str, text: str) -> None:
    with pytest.raises((ValueError, RecursionError)):
        records.loads(text, parse_constant=reject)


def test_encode_puts_the_head_first_either_way(implementation: str) -> None:
    text = records.encode({"data": {"k": "v"}, "metadata": {"name": "a"}, "kind": "ConfigMap"})
    assert text == '{"kind":"ConfigMap","metadata":{"name":"a"},"data":{"k":"v"}}'
