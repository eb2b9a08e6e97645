"""RESP2 core: request parsing as transcripts and properties, reply scanning, encoders."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shoal.components.ambassadors import _resp, resp
from shoal.components.ambassadors.resp import BadRequest, Command, RequestParser

SCANNERS = pytest.mark.parametrize(
    "scan",
    [resp.scan_commands, _resp.scan_commands],
    ids=["python", "compiled"],
)
"""Parser tests run over both fast paths: the pure one and the compiled one (never skipped)."""


def feed_all(parser: RequestParser, chunks: list[bytes]) -> list[Command | BadRequest]:
    out: list[Command | BadRequest] = []
    for chunk in chunks:
        out.extend(parser.feed(chunk))
    return out


@SCANNERS
def test_multibulk_commands_keep_their_bytes(scan: resp.ScanCommands) -> None:
    raw = b"*2\r\n$3\r\nGET\r\n$3\r\nfoo\r\n*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n"
    events = RequestParser(scan=scan).feed(raw)
    assert events == [
        ([b"GET", b"foo"], raw[:22]),
        ([b"SET", b"k", b""], raw[22:]),
    ]


@SCANNERS
def test_inline_commands_are_reencoded(scan: resp.ScanCommands) -> None:
    events = RequestParser(scan=scan).feed(b"PING\r\nget  foo\n\r\n")
    assert events == [
        ([b"PING"], b"*1\r\n$4\r\nPING\r\n"),
        ([b"get", b"foo"], b"*2\r\n$3\r\nget\r\n$3\r\nfoo\r\n"),
    ]


@SCANNERS
def test_empty_arrays_are_ignored_as_redis_does(scan: resp.ScanCommands) -> None:
    assert RequestParser(scan=scan).feed(b"*0\r\n*-1\r\n*1\r\n$4\r\nPING\r\n") == [
        ([b"PING"], b"*1\r\n$4\r\nPING\r\n")
    ]


@SCANNERS
def test_incomplete_input_waits(scan: resp.ScanCommands) -> None:
    parser = RequestParser(scan=scan)
    assert parser.feed(b"*2\r\n$3\r\nGET\r\n$3\r\nfo") == []
    assert parser.buffered > 0
    assert parser.feed(b"o\r\n") == [([b"GET", b"foo"], b"*2\r\n$3\r\nGET\r\n$3\r\nfoo\r\n")]
    assert parser.buffered == 0


@SCANNERS
def test_malformed_framing_is_a_fatal_protocol_error(scan: resp.ScanCommands) -> None:
    for bad, message in [
        (b"*x\r\n", b"invalid multibulk length"),
        (b"*1\r\n+GET\r\n", b"expected '$', got '+'"),
        (b"*1\r\n$abc\r\n", b"invalid bulk length"),
        (b"*1\r\n$3\r\nGETX\r\n", b"bulk argument not followed by CRLF"),
    ]:
        parser = RequestParser(scan=scan)
        events = parser.feed(bad)
        assert events == [BadRequest(b"-ERR Protocol error: " + message + b"\r\n", fatal=True)]
        assert parser.feed(b"*1\r\n$4\r\nPING\r\n") == []  # the stream is not followed any more


@SCANNERS
def test_header_line_without_end_is_fatal(scan: resp.ScanCommands) -> None:
    parser = RequestParser(max_inline_bytes=16, scan=scan)
    events = parser.feed(b"*1\r\n$" + b"1" * 40)
    assert events
    assert isinstance(events[-1], BadRequest)
    assert events[-1].fatal


@SCANNERS
def test_oversized_argument_is_skipped_and_the_connection_keeps_working(
    scan: resp.ScanCommands,
) -> None:
    parser = RequestParser(max_bulk_bytes=10, scan=scan)
    big = b"x" * 25
    stream = (
        b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$25\r\n" + big + b"\r\n"
        b"*3\r\n$3\r\nSET\r\n$30\r\n" + b"y" * 30 + b"\r\n$2\r\nab\r\n"
        b"*1\r\n$4\r\nPING\r\n"
    )
    # Byte by byte: the skipping state must survive any chunking.
    events = feed_all(parser, [stream[i : i + 1] for i in range(len(stream))])
    assert len(events) == 3
    assert isinstance(events[0], BadRequest)
    assert not events[0].fatal
    assert events[0].reply.startswith(b"-ERR argument 2 of 'SET' is 25 bytes")
    assert isinstance(events[1], BadRequest)
    assert b"argument 1 of 'SET' is 30 bytes" in events[1].reply
    assert events[2] == ([b"PING"], b"*1\r\n$4\r\nPING\r\n")
    assert parser.buffered == 0


args_strategy = st.lists(st.binary(max_size=40), min_size=1, max_size=6)


@SCANNERS
@given(st.lists(args_strategy, min_size=1, max_size=8), st.data())
def test_any_chunking_gives_the_same_commands(
    scan: resp.ScanCommands, commands: list[list[bytes]], data: st.DataObject
) -> None:
    stream = b"".join(resp.encode_command(args) for args in commands)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=12)))
    chunks = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
    events = feed_all(RequestParser(scan=scan), chunks)
    assert events == [(args, resp.encode_command(args)) for args in commands]


reply_strategy = st.recursive(
    st.one_of(
        st.binary(max_size=20).map(resp.encode_bulk),
        st.just(resp.encode_bulk(None)),
        st.integers(-(2**63), 2**63 - 1).map(resp.encode_int),
        st.text("abcXYZ 09", max_size=10).map(lambda t: b"+" + t.encode() + b"\r\n"),
        st.text("abc ERR", max_size=10).map(resp.encode_error),
    ),
    lambda children: st.lists(children, max_size=4).map(resp.encode_array),
    max_leaves=12,
)


@given(st.lists(reply_strategy, min_size=1, max_size=6), st.integers(0, 200))
def test_reply_end_finds_each_reply_and_waits_for_partial_ones(
    replies: list[bytes], cut: int
) -> None:
    stream = b"".join(replies)
    pos = 0
    for reply in replies:
        assert resp.reply_end(stream, pos) == pos + len(reply)
        pos += len(reply)
    # A strict prefix of the first reply is never taken for a reply.
    first = replies[0]
    prefix = first[: min(cut, len(first) - 1)]
    assert resp.reply_end(prefix, 0) == -1


@given(reply_strategy)
def test_decode_round_trips_the_encoders(reply: bytes) -> None:
    value = resp.decode(reply)

    def encode(v: resp.RespValue) -> bytes:
        if isinstance(v, resp.ReplyError):
            return resp.encode_error(str(v))
        if isinstance(v, list):
            return resp.encode_array([encode(i) for i in v])
        if isinstance(v, int):
            return resp.encode_int(v)
        if v is None:
            return resp.encode_bulk(None)
        return resp.encode_bulk(v) if reply_kind(reply) != b"+" else b"+" + v + b"\r\n"

    def reply_kind(r: bytes) -> bytes:
        return r[:1]

    if reply[:1] in (b"$", b":", b"-", b"+"):
        assert encode(value) == reply


def test_array_items_splits_nested_arrays() -> None:
    inner = resp.encode_array([resp.encode_int(1), resp.encode_bulk(b"x")])
    raw = resp.encode_array([resp.encode_bulk(b"a"), inner, resp.encode_bulk(None)])
    assert resp.array_items(raw) == [resp.encode_bulk(b"a"), inner, b"$-1\r\n"]
    assert resp.array_items(b"-ERR no\r\n") is None


def test_errors_cannot_break_the_line() -> None:
    assert resp.encode_error("a\r\nb") == b"-a  b\r\n"


def _take_nothing(
    buf: bytes, pos: int, out: list[Command | BadRequest], max_args: int, max_bulk: int
) -> int:
    """A fast path that takes nothing: every read goes through the careful path."""
    return pos


def _slow_path_events(chunks: list[bytes]) -> list[Command | BadRequest]:
    return feed_all(RequestParser(max_bulk_bytes=50, max_args=8, scan=_take_nothing), chunks)


stream_part = st.one_of(
    st.lists(st.binary(max_size=60), min_size=1, max_size=10).map(resp.encode_command),
    st.sampled_from(
        [
            b"*0\r\n",
            b"*-1\r\n",
            b"*x\r\n",
            b"*1\r\n$-1\r\n",
            b"*2\r\n$1\r\nab\r\n",
            b"*1\r\n+OK\r\n",
            b"PING\r\n",
            b"*1\r\n$99999999999\r\n",
            b"\r\n",
        ]
    ),
    st.binary(max_size=8),
)


@SCANNERS
@given(st.lists(stream_part, min_size=1, max_size=8), st.data())
def test_the_split_fast_path_agrees_with_the_careful_path(
    scan: resp.ScanCommands, parts: list[bytes], data: st.DataObject
) -> None:
    stream = b"".join(parts)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=6)))
    chunks = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
    fast = feed_all(RequestParser(max_bulk_bytes=50, max_args=8, scan=scan), chunks)
    assert fast == _slow_path_events(chunks)


def _scan_all(scan: resp.ScanCommands, buf: bytes) -> tuple[int, list[Command | BadRequest]]:
    out: list[Command | BadRequest] = []
    return scan(buf, 0, out, 8, 50), out


@given(st.lists(stream_part, min_size=1, max_size=8), st.integers(0, 400))
def test_both_scanners_take_what_the_careful_path_gives(parts: list[bytes], cut: int) -> None:
    """Arbitrary (malformed, cut short) input: each scanner takes a prefix of the careful
    path's commands, and stops right after the last one it took."""
    stream = b"".join(parts)[:cut]
    careful = [e for e in _slow_path_events([stream]) if type(e) is tuple]
    for scan in (resp.scan_commands, _resp.scan_commands):
        stop, taken = _scan_all(scan, stream)
        assert taken == careful[: len(taken)]
        assert stop == sum(len(event[1]) for event in taken if not isinstance(event, BadRequest))


@given(st.lists(args_strategy, min_size=1, max_size=8))
def test_the_compiled_scanner_takes_every_whole_command(commands: list[list[bytes]]) -> None:
    """Arguments holding CRLF too (where the pure split path hands over to the careful path)."""
    stream = b"".join(resp.encode_command(args) for args in commands)
    out: list[Command | BadRequest] = []
    assert _resp.scan_commands(stream, 0, out, 8, 50) == len(stream)
    assert out == [(args, resp.encode_command(args)) for args in commands]


def _split_all(
    split: Callable[[bytes, int, int, list[bytes]], int], buf: bytes, limit: int
) -> tuple[str, int, list[bytes]]:
    out: list[bytes] = []
    try:
        return "ok", split(buf, 0, limit, out), out
    except resp.ReplyError:
        return "error", -1, out


reply_part = st.one_of(
    reply_strategy,
    st.sampled_from(
        [
            b"$-1\r\n",
            b"$-0\r\n\r\n",
            b"*-1\r\n",
            b"$+2\r\nab\r\n",
            b"$ 1\r\nx\r\n",
            b"$x\r\n",
            b"*x\r\n",
            b"?\r\n",
            b"$1_0\r\n",
            b"*99999999999999999999\r\n",
        ]
    ),
    st.binary(max_size=8),
)


@given(st.lists(reply_part, min_size=1, max_size=8), st.integers(0, 300), st.integers(0, 10))
def test_both_reply_splitters_agree(parts: list[bytes], cut: int, limit: int) -> None:
    """Arbitrary (malformed, cut short) server bytes: the compiled splitter gives the pure one's
    replies, stop and errors exactly."""
    stream = b"".join(parts)[:cut]
    pure = _split_all(resp.split_replies, stream, limit)
    assert _split_all(_resp.split_replies, stream, limit) == pure
    if pure[0] == "ok":
        for reply in pure[2]:
            assert resp.reply_end(reply) == len(reply)


@given(st.lists(reply_strategy, min_size=1, max_size=6), st.integers(0, 6))
def test_reply_splitters_take_whole_replies(replies: list[bytes], limit: int) -> None:
    stream = b"".join(replies)
    for split in (resp.split_replies, _resp.split_replies):
        out: list[bytes] = []
        stop = split(stream, 0, limit, out)
        assert out == replies[:limit]
        assert stop == sum(len(r) for r in replies[:limit])
        out = []
        assert split(stream[:-1], 0, len(replies), out) == sum(len(r) for r in replies[:-1])
        assert out == replies[:-1]
