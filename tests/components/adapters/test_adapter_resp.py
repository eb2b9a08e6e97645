"""The adapters' RESP reply parser, fed whole, split and byte by byte (no sockets)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shoal.components.adapters.resp import (
    ProtocolViolation,
    RedisReplyError,
    ReplyParser,
    encode_command,
)


def test_commands_are_arrays_of_bulk_strings() -> None:
    assert encode_command("INFO", "ALL") == b"*2\r\n$4\r\nINFO\r\n$3\r\nALL\r\n"
    assert encode_command("SET", b"k", "v\r\n") == b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$3\r\nv\r\n\r\n"


@pytest.mark.parametrize(
    ("wire", "reply"),
    [
        (b"+PONG\r\n", "PONG"),
        (
            b"-NOAUTH Authentication required.\r\n",
            RedisReplyError("NOAUTH Authentication required."),
        ),
        (b":42\r\n", 42),
        (b"$5\r\nhe\r\nl\r\n", "he\r\nl"),
        (b"$-1\r\n", None),
        (b"*2\r\n$1\r\na\r\n:1\r\n", ["a", 1]),
        (b"*-1\r\n", None),
        (b"$0\r\n\r\n", ""),
    ],
)
def test_replies(wire: bytes, reply: Any) -> None:
    parser = ReplyParser()
    for byte in wire[:-1]:
        parser.feed(bytes([byte]))
        assert parser.next_reply() == (False, None)
    parser.feed(wire[-1:])
    assert parser.next_reply() == (True, reply)
    assert parser.next_reply() == (False, None)


@pytest.mark.parametrize(
    "wire",
    [
        b"?what\r\n",
        b"$abc\r\n",
        b"$5\r\nhelloXX",
        b"*-7\r\n",
        b"$-2\r\n",
        b"\r\n",
        b"+" + b"x" * 70000,
    ],
)
def test_bytes_that_are_not_resp_are_refused(wire: bytes) -> None:
    parser = ReplyParser()
    parser.feed(wire)
    with pytest.raises(ProtocolViolation):
        parser.next_reply()


REPLY = st.recursive(
    # Simple strings are UTF-8 on the wire: no lone surrogates (they cannot be encoded).
    st.text(alphabet=st.characters(blacklist_characters="\r\n", codec="utf-8"), max_size=10).map(
        lambda s: ("simple", s)
    )
    | st.integers(-(2**63), 2**63 - 1).map(lambda i: ("int", i))
    | st.binary(max_size=20).map(lambda b: ("bulk", b)),
    lambda children: st.lists(children, max_size=4).map(lambda items: ("array", items)),
    max_leaves=10,
)


def _wire(reply: tuple[str, Any]) -> bytes:
    kind, value = reply
    if kind == "simple":
        return b"+" + str(value).encode() + b"\r\n"
    if kind == "int":
        return b":%d\r\n" % int(value)
    if kind == "bulk":
        return b"$%d\r\n%s\r\n" % (len(value), bytes(value))
    return b"*%d\r\n" % len(value) + b"".join(_wire(item) for item in value)


def _expected(reply: tuple[str, Any]) -> Any:
    kind, value = reply
    if kind == "bulk":
        return value.decode("utf-8", "replace")
    if kind == "array":
        return [_expected(item) for item in value]
    return value


@given(st.lists(REPLY, min_size=1, max_size=4), st.data())
def test_any_split_of_any_replies_parses_the_same(
    replies: list[tuple[str, Any]], data: st.DataObject
) -> None:
    wire = b"".join(_wire(r) for r in replies)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(wire)), max_size=6)))
    parser = ReplyParser()
    got = []
    for start, end in zip([0, *cuts], [*cuts, len(wire)], strict=True):
        parser.feed(wire[start:end])
        while True:
            done, reply = parser.next_reply()
            if not done:
                break
            got.append(reply)
    assert got == [_expected(r) for r in replies]
