"""The split ambassador's pure decisions: binomial shares, sticky hashing, cookies, mirroring."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shoal.components.split.core import (
    MirrorPolicy,
    Splitter,
    cookie_value,
    header_value,
    sticky_key,
)
from shoal.dataplane.http1 import Request


def within_binomial(hits: int, n: int, p: float, sigmas: float = 5.0) -> bool:
    """``hits`` of ``n`` is within ``sigmas`` standard deviations of a Binomial(n, p)."""
    return abs(hits - n * p) <= sigmas * math.sqrt(n * p * (1 - p))


def make_request(
    headers: list[tuple[bytes, bytes]] | None = None, framing: str = "none"
) -> Request:
    return Request(
        method=b"GET" if framing == "none" else b"POST",
        target=b"/",
        http_version=b"1.1",
        headers=tuple(headers or ()),
        framing=framing,  # type: ignore[arg-type]
        content_length=None if framing == "none" else 3,
        keep_alive=True,
        expect_continue=False,
        upgrade=None,
    )


@pytest.mark.parametrize("weight", [1, 10, 33.3, 50, 90])
def test_random_share_is_binomial(weight: float) -> None:
    for seed in range(3):
        splitter = Splitter(weight, random.Random(seed))
        n = 20000
        hits = sum(splitter.choose() == "canary" for _ in range(n))
        assert within_binomial(hits, n, weight / 100), (seed, hits)


def test_edges_need_no_draw() -> None:
    rng = random.Random(1)
    assert {Splitter(0, rng).choose(b"k") for _ in range(100)} == {"primary"}
    assert {Splitter(100, rng).choose() for _ in range(100)} == {"canary"}
    for bad in (-1, 100.5):
        with pytest.raises(ValueError, match="between 0 and 100"):
            Splitter(bad)


def test_sticky_keys_split_by_weight_and_grow_monotonically() -> None:
    keys = [f"user-{i}".encode() for i in range(20000)]
    ten = Splitter(10, random.Random(0))
    twenty = Splitter(20, random.Random(99))  # the draw never matters for keyed requests
    on_ten = {k for k in keys if ten.choose(k) == "canary"}
    on_twenty = {k for k in keys if twenty.choose(k) == "canary"}
    assert within_binomial(len(on_ten), len(keys), 0.10)
    assert within_binomial(len(on_twenty), len(keys), 0.20)
    # Raising the weight moves keys to the canary and (nearly) none back.
    assert len(on_ten - on_twenty) <= 0.01 * len(on_ten)


@given(st.binary(min_size=1, max_size=64), st.floats(0.01, 99.99))
def test_sticky_is_a_function_of_the_key(key: bytes, weight: float) -> None:
    first = Splitter(weight, random.Random(1))
    second = Splitter(weight, random.Random(2))
    assert {first.choose(key) for _ in range(3)} == {second.choose(key)}


def test_cookie_and_header_values() -> None:
    headers = [
        (b"Cookie", b"a=1; session=abc; b=2"),
        (b"X-User", b"alice"),
        (b"cookie", b'other="q"'),
    ]
    assert cookie_value(headers, b"session") == b"abc"
    assert cookie_value(headers, b"other") == b"q"
    assert cookie_value(headers, b"sess") is None
    assert header_value(headers, b"x-user") == b"alice"
    request = make_request(headers)
    assert sticky_key(request, b"X-User", b"session") == b"alice"  # the header first
    assert sticky_key(request, b"X-Missing", b"session") == b"abc"
    assert sticky_key(request, None, None) is None


@given(st.binary(max_size=100))
def test_cookie_parser_never_crashes(value: bytes) -> None:
    found = cookie_value([(b"Cookie", value)], b"s")
    assert found is None or b";" not in found


def test_mirror_policy() -> None:
    policy = MirrorPolicy(25, random.Random(5))
    n = 8000
    hits = sum(policy.wants(make_request()) for _ in range(n))
    assert within_binomial(hits, n, 0.25)
    assert not MirrorPolicy(100, random.Random(0)).wants(make_request(framing="length"))
    assert MirrorPolicy(100, random.Random(0)).wants(make_request())
    assert not MirrorPolicy(0, random.Random(0)).wants(make_request())
    with pytest.raises(ValueError, match="mirror percent"):
        MirrorPolicy(101, random.Random(0))
