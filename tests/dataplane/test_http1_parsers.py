"""Transcripts of the sans-IO HTTP/1.1 core: given these bytes, expect these events.

Every request test runs against both request parsers (pure Python and httptools): one suite,
two implementations, as uvicorn tests its h11 and httptools protocols.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shoal.dataplane.http1 import (
    LAST_CHUNK,
    Data,
    EndOfMessage,
    Event,
    Limits,
    ProtocolError,
    PythonRequestParser,
    Request,
    RequestParser,
    Response,
    ResponseParser,
    chunk,
    make_request_parser,
    serialize_request_head,
    serialize_response_head,
)

PARSER_KINDS = ["python", "httptools"]
END = EndOfMessage()


@pytest.fixture(params=PARSER_KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def parser_for(kind: str, **limits: int) -> RequestParser:
    return make_request_parser(kind, Limits(**limits))


def merged(events: list[Event]) -> list[Event]:
    """Consecutive Data events joined, so transcripts do not depend on how bytes were split."""
    out: list[Event] = []
    for event in events:
        if isinstance(event, Data) and out and isinstance(out[-1], Data):
            out[-1] = Data(out[-1].data + event.data)
        else:
            out.append(event)
    return out


def feed_all(parser: RequestParser, data: bytes, step: int | None = None) -> list[Event]:
    if step is None:
        return parser.feed(data)
    events: list[Event] = []
    for i in range(0, len(data), step):
        events += parser.feed(data[i : i + step])
    return events


def get(target: bytes = b"/", **extra: object) -> Request:
    fields: dict[str, object] = {
        "method": b"GET",
        "target": target,
        "http_version": b"1.1",
        "headers": ((b"Host", b"example"),),
        "framing": "none",
        "content_length": None,
        "keep_alive": True,
        "expect_continue": False,
        "upgrade": None,
    }
    fields.update(extra)
    return Request(**fields)  # type: ignore[arg-type]


def test_make_request_parser_picks_implementations() -> None:
    """``auto`` prefers httptools when installed; ``python`` is always the pure parser."""
    assert type(make_request_parser("auto")).__name__ == "HttptoolsRequestParser"
    assert isinstance(make_request_parser("python"), PythonRequestParser)
    with pytest.raises(ValueError, match="unknown parser"):
        make_request_parser("h2")


@pytest.mark.parametrize("step", [None, 1, 7])
def test_simple_get(kind: str, step: int | None) -> None:
    """A GET without a body is a head and an end of message, however the bytes are split."""
    parser = parser_for(kind)
    events = feed_all(parser, b"GET /a?b=c HTTP/1.1\r\nHost:  example \r\n\r\n", step)
    assert events == [get(b"/a?b=c"), END]


@pytest.mark.parametrize("step", [None, 1, 5])
def test_content_length_body_is_streamed(kind: str, step: int | None) -> None:
    """A Content-Length body comes as Data pieces then the end; nothing is left over."""
    parser = parser_for(kind)
    raw = b"POST /u HTTP/1.1\r\nHost: example\r\nContent-Length: 11\r\n\r\nhello world"
    events = feed_all(parser, raw, step)
    assert isinstance(events[0], Request)
    assert events[0].framing == "length"
    assert events[0].content_length == 11
    assert merged(events[1:]) == [Data(b"hello world"), END]
    if step == 1:
        assert len([e for e in events if isinstance(e, Data)]) == 11
    assert parser.buffered == 0


@pytest.mark.parametrize("step", [None, 1, 3])
def test_chunked_body_with_extensions_and_trailers(kind: str, step: int | None) -> None:
    """Chunk extensions are ignored, trailers dropped, the data arrives in order."""
    parser = parser_for(kind)
    raw = (
        b"POST / HTTP/1.1\r\nHost: example\r\nTransfer-Encoding: Chunked\r\n\r\n"
        b"5;name=value\r\nhello\r\n1\r\n \r\nA\r\n0123456789\r\n0\r\nX-Trailer: 1\r\n\r\n"
    )
    events = feed_all(parser, raw, step)
    head = events[0]
    assert isinstance(head, Request)
    assert head.framing == "chunked"
    assert merged(events[1:]) == [Data(b"hello 0123456789"), END]


def test_pipelined_requests_come_one_cycle_at_a_time(kind: str) -> None:
    """The second request waits in the parser until next_cycle: responses stay in order."""
    parser = parser_for(kind)
    events = parser.feed(
        b"GET /1 HTTP/1.1\r\nHost: example\r\n\r\n"
        b"POST /2 HTTP/1.1\r\nHost: example\r\nContent-Length: 2\r\n\r\nhi"
        b"GET /3 HTTP/1.1\r\nHost: example\r\n\r\n"
    )
    assert events == [get(b"/1"), END]
    assert parser.buffered > 0
    assert parser.feed(b"") == []
    second = parser.next_cycle()
    assert [type(e) for e in second] == [Request, Data, EndOfMessage]
    assert isinstance(second[0], Request)
    assert second[0].target == b"/2"
    assert parser.next_cycle() == [get(b"/3"), END]
    assert parser.next_cycle() == []
    assert parser.buffered == 0


def test_next_cycle_before_the_end_does_nothing(kind: str) -> None:
    """next_cycle is only meaningful after an end of message."""
    parser = parser_for(kind)
    assert [
        type(e) for e in parser.feed(b"POST / HTTP/1.1\r\nHost: e\r\nContent-Length: 4\r\n\r\nab")
    ] == [Request, Data]
    assert parser.next_cycle() == []
    assert merged(parser.feed(b"cd")) == [Data(b"cd"), END]


def test_a_bad_request_after_a_good_one_is_reported_in_its_own_cycle(kind: str) -> None:
    """A pipelined good request is still delivered whole before the bad one's error."""
    parser = parser_for(kind)
    events = parser.feed(
        b"GET /ok HTTP/1.1\r\nHost: example\r\n\r\nGET /bad HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"
    )
    assert events == [get(b"/ok"), END]
    [error] = parser.next_cycle()
    assert isinstance(error, ProtocolError)
    assert error.status == 400
    assert parser.feed(b"GET / HTTP/1.1\r\nHost: example\r\n\r\n") == []


@pytest.mark.parametrize(
    ("raw", "keep_alive"),
    [
        (b"GET / HTTP/1.1\r\nHost: e\r\n\r\n", True),
        (b"GET / HTTP/1.1\r\nHost: e\r\nConnection: close\r\n\r\n", False),
        (b"GET / HTTP/1.1\r\nHost: e\r\nConnection: Keep-Alive, Close\r\n\r\n", False),
        (b"GET / HTTP/1.0\r\n\r\n", False),
        (b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", True),
    ],
)
def test_keep_alive_defaults(kind: str, raw: bytes, keep_alive: bool) -> None:
    """HTTP/1.1 keeps the connection unless told to close; HTTP/1.0 only when asked to."""
    head = parser_for(kind).feed(raw)[0]
    assert isinstance(head, Request)
    assert head.keep_alive is keep_alive


def test_expect_100_continue(kind: str) -> None:
    """The flag is set so the driver can let the 100 through; the body still follows."""
    parser = parser_for(kind)
    events = parser.feed(
        b"PUT /f HTTP/1.1\r\nHost: e\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n"
    )
    assert len(events) == 1
    head = events[0]
    assert isinstance(head, Request)
    assert head.expect_continue
    assert merged(parser.feed(b"abc")) == [Data(b"abc"), END]


def test_upgrade_request_then_tunnel_bytes(kind: str) -> None:
    """After an Upgrade request the following bytes are kept raw for the tunnel."""
    parser = parser_for(kind)
    events = parser.feed(
        b"GET /ws HTTP/1.1\r\nHost: e\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n\x81\x02hi"
    )
    head = events[0]
    assert isinstance(head, Request)
    assert head.upgrade == b"websocket"
    assert events[1:] == [END]
    assert parser.feed(b"more") == []
    assert parser.take_buffer() == b"\x81\x02himore"


def test_refused_upgrade_goes_on_as_http(kind: str) -> None:
    """If the upstream does not switch protocols, the next bytes are parsed as a request."""
    parser = parser_for(kind)
    parser.feed(
        b"GET /ws HTTP/1.1\r\nHost: e\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n"
        b"GET /next HTTP/1.1\r\nHost: e\r\n"
    )
    assert parser.next_cycle() == []
    assert parser.feed(b"\r\n") == [get(b"/next", headers=((b"Host", b"e"),)), END]


def test_upgrade_needs_connection_upgrade(kind: str) -> None:
    """An Upgrade field without ``Connection: upgrade`` is not an upgrade request."""
    head = parser_for(kind).feed(b"GET / HTTP/1.1\r\nHost: e\r\nUpgrade: websocket\r\n\r\n")[0]
    assert isinstance(head, Request)
    assert head.upgrade is None


def test_runs_of_spaces_separate_the_request_line(kind: str) -> None:
    """Both parsers accept several spaces between method, target and version (as llhttp does)."""
    assert parser_for(kind).feed(b"GET   /x  HTTP/1.1\r\nHost: example\r\n\r\n") == [
        get(b"/x"),
        END,
    ]


def test_leading_empty_lines_are_ignored(kind: str) -> None:
    """RFC 9112 §2.2: a server ignores empty lines before a request line."""
    assert parser_for(kind).feed(b"\r\n\r\nGET / HTTP/1.1\r\nHost: example\r\n\r\n") == [
        get(),
        END,
    ]


def test_eof_between_requests_is_clean_and_inside_one_is_an_error(kind: str) -> None:
    """A peer closing between messages is not an error; cutting one short is 400."""
    parser = parser_for(kind)
    assert parser.feed(b"GET / HTTP/1.1\r\nHost: example\r\n\r\n") == [get(), END]
    assert parser.feed_eof() == []
    assert parser.next_cycle() == []
    cut = parser_for(kind)
    assert len(cut.feed(b"POST / HTTP/1.1\r\nHost: e\r\nContent-Length: 5\r\n\r\nab")) == 2
    [error] = cut.feed_eof()
    assert isinstance(error, ProtocolError)
    assert error.status == 400


SMUGGLING_AND_MALFORMED = [
    # Request smuggling: ambiguous framing.
    (b"POST / HTTP/1.1\r\nHost: e\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nHost: e\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nHost: e\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc", 400),
    (b"POST / HTTP/1.1\r\nHost: e\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabc", 400),
    (b"POST / HTTP/1.1\r\nHost: e\r\nContent-Length: 3, 3\r\n\r\nabc", 400),
    (b"POST / HTTP/1.1\r\nHost: e\r\nContent-Length: +3\r\n\r\nabc", 400),
    (b"POST / HTTP/1.1\r\nHost: e\r\nContent-Length: -1\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nHost: e\r\nContent-Length: 0x3\r\n\r\nabc", 400),
    (b"POST / HTTP/1.1\r\nHost: e\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501),
    (b"POST / HTTP/1.1\r\nHost: e\r\nTransfer-Encoding: identity\r\n\r\n", 501),
    (b"POST / HTTP/1.1\r\nHost: e\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", 400),
    (b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    # Line endings and folding.
    (b"GET / HTTP/1.1\nHost: e\n\n", 400),
    (b"GET / HTTP/1.1\r\nHost: e\nX: y\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: e\r\nX: a\rb\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: e\r\nX: a\r\n b\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: e\r\nX: a\r\n\tb\r\n\r\n", 400),
    # Field syntax.
    (b"GET / HTTP/1.1\r\nHost : e\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: e\r\nX@Y: 1\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: e\r\n: empty\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: e\r\nNo colon here\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: e\r\nX: a\x00b\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: e\r\nX: a\x7fb\r\n\r\n", 400),
    # Request line.
    (b"GET / HTTP/1.1 \r\nHost: e\r\n\r\n", 400),
    (b"GET /a b HTTP/1.1\r\nHost: e\r\n\r\n", 400),
    (b"GET / HTTX/1.1\r\nHost: e\r\n\r\n", 400),
    (b"GET / HTTP/2.0\r\nHost: e\r\n\r\n", 505),
    (b"BREW / HTTP/1.1\r\nHost: e\r\n\r\n", 501),
    (b"CONNECT example:443 HTTP/1.1\r\nHost: example:443\r\n\r\n", 501),
    # Host.
    (b"GET / HTTP/1.1\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
    # Expectations.
    (b"GET / HTTP/1.1\r\nHost: e\r\nExpect: tea\r\n\r\n", 417),
    # Chunk syntax.
    (
        b"POST / HTTP/1.1\r\nHost: e\r\nTransfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n",
        400,
    ),
    (b"POST / HTTP/1.1\r\nHost: e\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nHost: e\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nHost: e\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400),
    (b"POST / HTTP/1.1\r\nHost: e\r\nTransfer-Encoding: chunked\r\n\r\n-1\r\n", 400),
]


@pytest.mark.parametrize(("raw", "status"), SMUGGLING_AND_MALFORMED)
def test_malformed_and_smuggling_requests_are_refused(kind: str, raw: bytes, status: int) -> None:
    """Each request is refused with its status, nothing is delivered after the error."""
    parser = parser_for(kind)
    events = parser.feed(raw)
    assert events, raw
    error = events[-1]
    assert isinstance(error, ProtocolError), events
    assert error.status == status, (raw, error)
    assert not any(isinstance(e, EndOfMessage) for e in events)
    assert parser.feed(b"GET / HTTP/1.1\r\nHost: e\r\n\r\n") == []
    assert parser.next_cycle() == []


def test_head_size_limit_is_431(kind: str) -> None:
    """A head larger than the limit is 431, whether it arrives at once or trickles in."""
    big = b"GET / HTTP/1.1\r\nHost: e\r\nX-Big: " + b"a" * 5000 + b"\r\n\r\n"
    [error] = parser_for(kind, max_head_size=4096).feed(big)
    assert error == ProtocolError(431, error.detail)  # type: ignore[union-attr]
    trickle = parser_for(kind, max_head_size=4096)
    events: list[Event] = []
    for i in range(0, len(big) - 4, 100):
        events += trickle.feed(big[i : i + 100])
        if events:
            break
    assert [e.status for e in events if isinstance(e, ProtocolError)] == [431]


def test_header_count_limit_is_431(kind: str) -> None:
    """More fields than allowed is 431."""
    raw = (
        b"GET / HTTP/1.1\r\nHost: e\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(20)) + b"\r\n"
    )
    [error] = parser_for(kind, max_headers=10).feed(raw)
    assert isinstance(error, ProtocolError)
    assert error.status == 431
    assert len(parser_for(kind, max_headers=30).feed(raw)) == 2


def test_body_size_limit_is_413(kind: str) -> None:
    """A declared length over the limit is 413 at once; a chunked body is 413 once it passes it."""
    [error] = parser_for(kind, max_body_size=10).feed(
        b"POST / HTTP/1.1\r\nHost: e\r\nContent-Length: 11\r\n\r\n"
    )
    assert isinstance(error, ProtocolError)
    assert error.status == 413
    parser = parser_for(kind, max_body_size=10)
    events = parser.feed(b"POST / HTTP/1.1\r\nHost: e\r\nTransfer-Encoding: chunked\r\n\r\n")
    events += parser.feed(b"8\r\n12345678\r\n")
    assert merged(events[1:]) == [Data(b"12345678")]
    events = parser.feed(b"8\r\n12345678\r\n0\r\n\r\n")
    assert [e.status for e in events if isinstance(e, ProtocolError)] == [413]
    assert not any(isinstance(e, EndOfMessage) for e in events)
    within = parser_for(kind, max_body_size=10).feed(
        b"POST / HTTP/1.1\r\nHost: e\r\nContent-Length: 10\r\n\r\n0123456789"
    )
    assert within[-1] == END


# --- fuzzing --------------------------------------------------------------------------------

FRAGMENTS = [
    b"GET",
    b"POST",
    b"BREW",
    b" ",
    b"/",
    b"/a?b",
    b"HTTP/1.1",
    b"HTTP/1.0",
    b"HTTP/9.9",
    b"\r\n",
    b"\r",
    b"\n",
    b"\t",
    b":",
    b"Host: e",
    b"Content-Length: ",
    b"Transfer-Encoding: chunked",
    b"Transfer-Encoding: gzip",
    b"Connection: close",
    b"Connection: upgrade",
    b"Upgrade: websocket",
    b"Expect: 100-continue",
    b"0",
    b"5",
    b"ff",
    b"hello",
    b";ext",
    b"\x00",
    b"\x7f",
    b"\xff",
    b",",
]
ALLOWED_STATUSES = {400, 413, 417, 431, 501, 505}


def check_well_formed(events: list[Event]) -> None:
    """Heads, bodies and ends alternate correctly; an error is final and a 4xx/5xx decision."""
    in_message = False
    for index, event in enumerate(events):
        if isinstance(event, ProtocolError):
            assert event.status in ALLOWED_STATUSES
            assert index == len(events) - 1
        elif isinstance(event, Request):
            assert not in_message
            in_message = True
        elif isinstance(event, Data):
            assert in_message
        else:
            assert isinstance(event, EndOfMessage)
            assert in_message
            in_message = False


def run_cycles(parser: RequestParser, pieces: list[bytes]) -> list[Event]:
    events: list[Event] = []
    for piece in pieces:
        events += parser.feed(piece)
        if events and isinstance(events[-1], EndOfMessage):
            events += parser.next_cycle()
    events += parser.feed_eof()
    for _ in range(50):
        more = parser.next_cycle()
        if not more:
            break
        events += more
    return events


@given(
    kind=st.sampled_from(PARSER_KINDS),
    pieces=st.lists(
        st.lists(st.sampled_from(FRAGMENTS), max_size=12).map(b"".join) | st.binary(max_size=40),
        max_size=12,
    ),
)
def test_fuzz_never_crashes_and_always_decides(kind: str, pieces: list[bytes]) -> None:
    """Arbitrary bytes, however split: only events come out, and errors are 4xx/5xx decisions."""
    events = run_cycles(parser_for(kind, max_head_size=512, max_body_size=64), pieces)
    check_well_formed(events)


header_names = st.sampled_from([b"Accept", b"X-Id", b"Cookie", b"User-Agent", b"x-a-b"])
header_values = st.binary(max_size=20).map(
    lambda b: bytes(c for c in b if 0x21 <= c < 0x7F) or b"v"
)


@st.composite
def valid_requests(draw: st.DrawFn) -> tuple[bytes, Request, bytes]:
    method = draw(st.sampled_from([b"GET", b"POST", b"PUT", b"DELETE", b"PATCH"]))
    target = b"/" + draw(st.sampled_from([b"", b"a", b"users/42/x", b"q?x=1&y=%20"]))
    fields = [
        (b"Host", b"example"),
        *draw(st.lists(st.tuples(header_names, header_values), max_size=5)),
    ]
    body = draw(st.binary(max_size=300))
    framing = draw(st.sampled_from(["length", "chunked"]))
    if framing == "chunked":
        fields.append((b"Transfer-Encoding", b"chunked"))
        cut = draw(st.integers(0, len(body)))
        encoded = chunk(body[:cut]) + chunk(body[cut:]) + LAST_CHUNK
    else:
        fields.append((b"Content-Length", b"%d" % len(body)))
        encoded = body
    raw = serialize_request_head(method, target, fields) + encoded
    expected = Request(
        method,
        target,
        b"1.1",
        tuple(fields),
        "chunked" if framing == "chunked" else ("length" if body else "none"),
        None if framing == "chunked" else len(body),
        True,
        False,
        None,
    )
    return raw, expected, body


@given(
    kind=st.sampled_from(PARSER_KINDS),
    requests=st.lists(valid_requests(), min_size=1, max_size=3),
    step=st.integers(1, 64),
)
def test_fuzz_valid_pipelines_parse_exactly(
    kind: str, requests: list[tuple[bytes, Request, bytes]], step: int
) -> None:
    """Valid pipelined requests, split anywhere, give exactly their heads and bodies."""
    stream = b"".join(raw for raw, _, _ in requests)
    parser = parser_for(kind)
    events = run_cycles(parser, [stream[i : i + step] for i in range(0, len(stream), step)])
    expected: list[Event] = []
    for _, head, body in requests:
        expected.append(head)
        if body:
            expected.append(Data(body))
        expected.append(END)
    assert merged(events) == expected


# --- the response parser ----------------------------------------------------------------------


def response_events(method: bytes, *chunks: bytes, eof: bool = False) -> list[Event]:
    parser = ResponseParser()
    parser.expect(method)
    events: list[Event] = []
    for piece in chunks:
        events += parser.feed(piece)
    if eof:
        events += parser.feed_eof()
    return merged(events)


def test_response_with_length() -> None:
    """A Content-Length response ends after that many bytes and keeps the connection."""
    events = response_events(b"GET", b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    head = events[0]
    assert isinstance(head, Response)
    assert (head.status, head.reason, head.framing, head.keep_alive) == (200, b"OK", "length", True)
    assert events[1:] == [Data(b"ok"), END]


def test_response_chunked_and_until_close() -> None:
    """Chunked responses are decoded; a response without length runs to the connection's end."""
    events = response_events(
        b"GET", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
    )
    assert events[1:] == [Data(b"abc"), END]
    events = response_events(b"GET", b"HTTP/1.0 200 OK\r\n\r\npart one", b" two", eof=True)
    head = events[0]
    assert isinstance(head, Response)
    assert head.framing == "close"
    assert not head.keep_alive
    assert events[1:] == [Data(b"part one two"), END]


@pytest.mark.parametrize(("method", "status"), [(b"HEAD", 200), (b"GET", 204), (b"GET", 304)])
def test_responses_without_body(method: bytes, status: int) -> None:
    """HEAD answers and 204/304 have no body, whatever Content-Length says."""
    events = response_events(method, b"HTTP/1.1 %d X\r\nContent-Length: 10\r\n\r\n" % status)
    assert isinstance(events[0], Response)
    assert events[0].framing == "none"
    assert events[1:] == [END]


def test_informational_then_final_and_switching_protocols() -> None:
    """A 100 Continue is delivered and the final response follows; after 101 the rest is raw."""
    events = response_events(
        b"PUT", b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n"
    )
    assert [(e.status if isinstance(e, Response) else e) for e in events] == [100, 201, END]
    parser = ResponseParser()
    events = parser.feed(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n\x81\x00")
    assert [e.status for e in events if isinstance(e, Response)] == [101]
    assert parser.take_buffer() == b"\x81\x00"


@pytest.mark.parametrize(
    "raw",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n",
        b"HTTP/1.1 2000 OK\r\n\r\n",
        b"HTTP/2 200 OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n",
    ],
)
def test_malformed_responses_are_502(raw: bytes) -> None:
    """An upstream that breaks the protocol earns the client a 502."""
    [error] = response_events(b"GET", raw)
    assert isinstance(error, ProtocolError)
    assert error.status == 502


def test_response_cut_short_is_502() -> None:
    """A length-delimited response cut by the upstream closing is an error, not an end."""
    events = response_events(b"GET", b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab", eof=True)
    assert isinstance(events[-1], ProtocolError)
    assert events[-1].status == 502
    assert response_events(b"GET", eof=True) == [
        ProtocolError(502, "upstream closed the connection without a response")
    ]


def test_serialization() -> None:
    """Heads are written in HTTP/1.1 form; chunks are hex-length framed; empty chunks vanish."""
    assert serialize_request_head(b"GET", b"/x", [(b"Host", b"h")]) == (
        b"GET /x HTTP/1.1\r\nHost: h\r\n\r\n"
    )
    assert serialize_response_head(404, b"Not Found", []) == b"HTTP/1.1 404 Not Found\r\n\r\n"
    assert chunk(b"x" * 26) == b"1a\r\n" + b"x" * 26 + b"\r\n"
    assert chunk(b"") == b""


_RESPONSE_STREAMS = [
    (b"GET", b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"),
    (b"GET", b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 204 No Content\r\n\r\n"),
    (b"GET", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"),
    (b"GET", b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx"),
    (b"GET", b"HTTP/1.0 200 OK\r\n\r\nuntil the end"),
    (b"HEAD", b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n"),
    (b"GET", b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\ntunnel bytes"),
    (b"GET", b"HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n"),
    (b"GET", b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nxy"),
    (b"GET", b"\r\nHTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx"),
]


@pytest.mark.parametrize(("method", "stream"), _RESPONSE_STREAMS)
@given(cut=st.integers(min_value=0, max_value=200))
def test_response_parsed_alike_whole_or_split(method: bytes, stream: bytes, cut: int) -> None:
    """The fast path (a whole head at the start of a read, parsed from the read's bytes) gives the
    same events, the same leftover bytes and the same state as feeding the bytes one by one."""

    def run(pieces: list[bytes]) -> tuple[list[Event], int, bytes]:
        parser = ResponseParser()
        parser.expect(method)
        events: list[Event] = []
        for piece in pieces:
            events += parser.feed(piece)
        events += parser.feed_eof()
        buffered = parser.buffered
        return merged(events), buffered, parser.take_buffer()

    whole = run([stream])
    assert run([stream[:cut], stream[cut:]]) == whole
    assert run([stream[i : i + 1] for i in range(len(stream))]) == whole
