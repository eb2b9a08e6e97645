"""Response parsing transcripts, whole or split anywhere, on both parsers."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shoal.loadgen._engine import NativeParser
from shoal.loadgen.http import PureParser, ResponseError, ResponseParser, make_parser

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
CHUNKED = (
    b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"5;ext=1\r\nhello\r\n0\r\nX-Trailer: 1\r\n\r\n"
)
CLOSE = b"HTTP/1.1 503 Busy\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
OLD = b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\nx"
OLD_KEEP = b"HTTP/1.0 204 No Content\r\nConnection: keep-alive\r\n\r\n"
INTERIM = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
STREAM = OK + CHUNKED + INTERIM + CLOSE
EXPECTED = [(200, True), (201, True), (200, True), (503, False)]

PARSERS = ["pure", "httptools", "native"]
"""``native``: the compiled engine's parser (shoal.loadgen._engine), built wherever ``cc`` is."""
SANS_IO = ["pure", "native"]
"""The parsers that read HEAD responses and bodies delimited by the close."""


def parser_of(kind: str) -> ResponseParser:
    return NativeParser() if kind == "native" else make_parser(kind)


def feed_all(parser: ResponseParser, pieces: list[bytes], count: int) -> list[tuple[int, bool]]:
    for _ in range(count):
        parser.expect(False)
    done: list[tuple[int, bool]] = []
    for piece in pieces:
        done.extend(parser.feed(piece))
    return done


@pytest.mark.parametrize("kind", PARSERS)
def test_transcript(kind: str) -> None:
    assert feed_all(parser_of(kind), [STREAM], 4) == EXPECTED
    assert feed_all(parser_of(kind), [OLD], 1) == [(200, False)]
    assert feed_all(parser_of(kind), [OLD_KEEP], 1) == [(204, True)]


@pytest.mark.parametrize("kind", PARSERS)
def test_byte_by_byte(kind: str) -> None:
    pieces = [STREAM[i : i + 1] for i in range(len(STREAM))]
    assert feed_all(parser_of(kind), pieces, 4) == EXPECTED


@pytest.mark.parametrize("kind", SANS_IO)
@given(cuts=st.lists(st.integers(min_value=0, max_value=len(STREAM)), max_size=12))
def test_any_split_gives_the_same_responses(kind: str, cuts: list[int]) -> None:
    points = sorted(set(cuts))
    pieces = [STREAM[a:b] for a, b in zip([0, *points], [*points, len(STREAM)], strict=True)]
    assert feed_all(parser_of(kind), pieces, 4) == EXPECTED


@given(st.binary(max_size=200))
def test_the_native_parser_agrees_with_the_pure_one_on_any_bytes(data: bytes) -> None:
    results: list[list[tuple[int, bool]] | str] = []
    parsers: list[ResponseParser] = [PureParser(), NativeParser()]
    for parser in parsers:
        parser.expect(False)
        parser.expect(False)
        try:
            results.append(parser.feed(b"HTTP/1.1 200 OK\r\n" + data))
        except ResponseError:
            results.append("refused")
    assert results[0] == results[1]


@pytest.mark.parametrize("kind", SANS_IO)
def test_head_responses_have_no_body(kind: str) -> None:
    parser = parser_of(kind)
    parser.expect(True)
    parser.expect(False)
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"
    assert parser.feed(head + OK) == [(200, True), (200, True)]


@pytest.mark.parametrize("kind", SANS_IO)
def test_body_until_close(kind: str) -> None:
    parser = parser_of(kind)
    parser.expect(False)
    assert parser.feed(b"HTTP/1.1 200 OK\r\n\r\nsome body") == []
    assert parser.feed(b" more") == []
    assert parser.feed_eof() == [(200, False)]


@pytest.mark.parametrize(
    "data",
    [
        b"HTTP/2 200 OK\r\n\r\n",
        b"HTTP/1.1 2000 OK\r\n\r\n",
        b"HTTP/1.1 abc OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 1_0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0x5\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nabc",
        b"HTTP/1.1 101 Switching Protocols\r\n\r\n",
    ],
)
@pytest.mark.parametrize("kind", SANS_IO)
def test_malformed_responses_are_refused(kind: str, data: bytes) -> None:
    parser = parser_of(kind)
    parser.expect(False)
    with pytest.raises(ResponseError):
        parser.feed(data)


@pytest.mark.parametrize("kind", SANS_IO)
def test_a_huge_head_is_refused(kind: str) -> None:
    parser = parser_of(kind)
    parser.expect(False)
    with pytest.raises(ResponseError):
        parser.feed(b"HTTP/1.1 200 OK\r\n" + b"X: y\r\n" * 20_000)
