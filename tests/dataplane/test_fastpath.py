"""The fast path against the general one: whenever it takes a message, the bytes are the same.

:mod:`shoal.dataplane.fastpath` may refuse anything (the general path then runs), but what it
accepts must be accepted by both request parsers with the same request, and what it writes must
be what :func:`~shoal.dataplane.proxy.upstream_request` and
:func:`~shoal.dataplane.proxy.client_response` write. Heads are generated from pieces chosen to
hit its edges: odd methods and targets, HTTP/1.0, bare LF, spaces around names and values,
control characters, repeated and conflicting framing fields, hop-by-hop fields, bodies too short
or too long.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shoal.dataplane import fastpath as reference
from shoal.dataplane.fastpath import forwarding_tail
from shoal.dataplane.http1 import (
    Data,
    EndOfMessage,
    Event,
    Limits,
    Request,
    Response,
    ResponseParser,
    make_request_parser,
)
from shoal.dataplane.proxy import ForwardingSettings, client_response, upstream_request

from .implementations import IMPLEMENTATIONS, fastpath

LIMITS = Limits()

PEER = "10.1.2.3"

METHODS = [b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"PATCH", b"OPTIONS", b"CONNECT",
           b"BREW", b"get", b"TRACE"]  # fmt: skip
TARGETS = [b"/", b"/a/b?c=d&e=%20", b"/users/42/x", b"*", b"http://h/x", b"/a b", b"/#f",
           b"/\x7f", b"/\xc3\xa9", b"//x", b"/'()*+,;=:@!$"]  # fmt: skip
VERSIONS = [b"HTTP/1.1", b"HTTP/1.0", b"HTTP/2.0", b"HTTP/1.1 ", b"http/1.1"]
NAMES = [b"Host", b"host", b"HOST", b"Content-Length", b"content-length", b"Connection",
         b"Keep-Alive", b"TE", b"Trailer", b"Transfer-Encoding", b"Upgrade", b"Expect",
         b"Proxy-Authorization", b"X-Forwarded-For", b"X-Forwarded-Proto", b"User-Agent",
         b"Accept", b"Cookie", b"X-Thing", b"Hostx", b"Bad Name", b"Bad:", b"", b"Close",
         b"Via", b"Content-Type", b"Server", b"Date"]  # fmt: skip
VALUES = [b"app", b"0", b"5", b"12", b"+5", b"5, 5", b"close", b"keep-alive", b"Keep-Alive",
          b"upgrade", b"chunked", b"100-continue", b"a b", b" a", b"a ", b"a\tb", b"",
          b"\x01", b"\xff", b"x" * 40, b"timeout=5", b"close, x-thing"]  # fmt: skip
SEPARATORS = [b": ", b":", b" : ", b":  ", b":\t"]
ENDS = [b"\r\n", b"\r\n", b"\r\n", b"\n"]


PLAIN_NAMES = [b"User-Agent", b"Accept", b"X-Thing", b"Content-Type", b"Server", b"Date"]
PLAIN_VALUES = [b"app", b"a b", b"*/*", b"text/plain; charset=utf-8", b"x" * 40]


@st.composite
def fields(draw: st.DrawFn) -> bytes:
    """Field lines: mostly plain ones (so the fast path has something to take), some odd."""
    plain = st.tuples(
        st.sampled_from(PLAIN_NAMES),
        st.just(b": "),
        st.sampled_from(PLAIN_VALUES),
        st.just(b"\r\n"),
    )
    odd = st.tuples(
        st.sampled_from(NAMES),
        st.sampled_from(SEPARATORS),
        st.sampled_from(VALUES),
        st.sampled_from(ENDS),
    )
    lines = draw(st.lists(st.one_of(plain, plain, odd), max_size=5))
    return b"".join(name + sep + value + end for name, sep, value, end in lines)


@st.composite
def requests(draw: st.DrawFn) -> bytes:
    common = draw(st.booleans())
    method = draw(st.sampled_from(METHODS[:3] if common else METHODS))
    target = draw(st.sampled_from(TARGETS[:3] if common else TARGETS))
    version = b"HTTP/1.1" if common else draw(st.sampled_from(VERSIONS))
    head = method + b" " + target + b" " + version + b"\r\n" + draw(fields())
    if common or draw(st.booleans()):
        head += b"Host: app\r\n"
    body = draw(st.sampled_from([b"", b"hello", b"12345", b"x" * 12]))
    if draw(st.booleans()):
        length = len(body) if common else draw(st.integers(0, 14))
        head += b"Content-Length: %d\r\n" % length
    head += draw(fields()) + b"\r\n"
    return head + body


def general_request(kind: str, data: bytes) -> list[Event]:
    parser = make_request_parser(kind, LIMITS)
    return parser.feed(data)


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@settings(max_examples=400, deadline=None)
@given(requests())
def test_scan_request_agrees_with_both_parsers(implementation: str, data: bytes) -> None:
    scan_request = fastpath(implementation).scan_request
    scanned = scan_request(data, LIMITS)
    if scanned is None:
        return
    request, end = scanned
    body = data[end:]
    for kind in ("python", "httptools"):
        events = general_request(kind, data)
        expected: list[Event] = [request]
        if body:
            expected.append(Data(body))
        expected.append(EndOfMessage())
        assert events == expected, kind
    for forwarding in (ForwardingSettings(), ForwardingSettings(scheme=b"https")):
        head, framer = upstream_request(request, PEER, forwarding)
        tail = forwarding_tail(PEER, forwarding.scheme, forwarding.x_forwarded_for)
        assert data[: end - 2] + tail + body == head + framer.data(body) + framer.end()


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_scan_request_takes_the_common_requests(implementation: str) -> None:
    scan_request = fastpath(implementation).scan_request
    get = b"GET /users/42 HTTP/1.1\r\nHost: app\r\nUser-Agent: wrk\r\n\r\n"
    scanned = scan_request(get, LIMITS)
    assert scanned is not None
    assert scanned[0].target == b"/users/42"
    assert scanned[1] == len(get)
    post = b"POST /x HTTP/1.1\r\ncontent-length: 5\r\nHost: app\r\n\r\nhello"
    scanned = scan_request(post, LIMITS)
    assert scanned is not None
    assert scanned[0].content_length == 5
    assert scanned[0].framing == "length"


@pytest.mark.parametrize(
    "raw",
    [
        b"GET / HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",  # pipelined
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhel",  # body in later reads
        b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",  # the general path decides
        b"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx",
        b"GET / HTTP/1.0\r\nHost: a\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 1.2.3.4\r\n\r\n",
    ],
)
@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_scan_request_leaves_the_rest_to_the_general_path(implementation: str, raw: bytes) -> None:
    scan_request = fastpath(implementation).scan_request
    assert scan_request(raw, LIMITS) is None


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_scan_request_respects_the_limits(implementation: str) -> None:
    scan_request = fastpath(implementation).scan_request
    many = b"GET / HTTP/1.1\r\nHost: a\r\n" + b"X-A: b\r\n" * 20 + b"\r\n"
    assert scan_request(many, LIMITS) is not None
    assert scan_request(many, Limits(max_headers=10)) is None
    assert scan_request(many, Limits(max_head_size=100)) is None
    post = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello"
    assert scan_request(post, Limits(max_body_size=4)) is None


@st.composite
def responses(draw: st.DrawFn) -> bytes:
    common = draw(st.booleans())
    statuses = [b"200", b"201", b"404", b"204", b"304", b"503", b"100", b"101", b"99", b"2000"]
    version = b"HTTP/1.1" if common else draw(st.sampled_from([b"HTTP/1.1", b"HTTP/1.0"]))
    status = draw(st.sampled_from(statuses[:3] if common else statuses))
    reason = draw(st.sampled_from([b" OK", b" ", b"", b" Not Found", b"  Odd reason"]))
    head = version + b" " + status + reason + b"\r\n" + draw(fields())
    body = draw(st.sampled_from([b"", b"hello", b"123456789012", b"x" * 20]))
    if common or draw(st.booleans()):
        length = len(body) + draw(st.sampled_from([0, 0, 3])) if common else len(body)
        head += b"Content-Length: %d\r\n" % draw(st.sampled_from([length, 0, 7]))
    if draw(st.booleans()):
        head += b"Connection: %s\r\n" % draw(st.sampled_from([b"keep-alive", b"close", b"x"]))
    head += draw(fields()) + b"\r\n"
    return head + body


def general_response(
    data: bytes, keep_alive: bool
) -> tuple[int, bytes, bool, bool, Response] | None:
    """What the general path sends for the first read ``data``: (status, bytes, ended, upstream
    keep-alive, response), or None when it is not a plain final response."""
    parser = ResponseParser()
    parser.expect(b"GET")
    events = parser.feed(data)
    if not events or not isinstance(events[0], Response):
        return None
    response = events[0]
    request = Request(b"GET", b"/", b"1.1", ((b"Host", b"a"),), "none", None, True, False, None)
    head, framer, _ = client_response(response, request, keep_alive, ForwardingSettings())
    out = head
    ended = False
    for event in events[1:]:
        if isinstance(event, Data):
            out += framer.data(event.data)
        elif isinstance(event, EndOfMessage):
            out += framer.end()
            ended = True
        else:
            return None
    return response.status, out, ended, response.keep_alive, response


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@settings(max_examples=400, deadline=None)
@given(responses(), st.booleans())
def test_scan_response_agrees_with_the_general_path(
    implementation: str, data: bytes, keep_alive: bool
) -> None:
    scan_response = fastpath(implementation).scan_response
    scanned = scan_response(data, keep_alive)
    if scanned is None:
        return
    status, out, rest, upstream_keep = scanned
    general = general_response(data, keep_alive)
    assert general is not None
    g_status, g_out, g_ended, g_keep, response = general
    assert (status, out, upstream_keep) == (g_status, g_out, g_keep)
    assert response.framing in ("length", "none")
    assert g_ended == (rest == 0)
    body = len(data) - data.index(b"\r\n\r\n") - 4
    assert rest == (response.content_length or 0) - body


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_scan_response_rewrites_nginx_answers(implementation: str) -> None:
    scan_response = fastpath(implementation).scan_response
    raw = (
        b"HTTP/1.1 200 OK\r\nServer: nginx\r\nContent-Length: 5\r\nConnection: keep-alive\r\n"
        b"Keep-Alive: timeout=5\r\n\r\nhello"
    )
    assert scan_response(raw, True) == (
        200,
        b"HTTP/1.1 200 OK\r\nServer: nginx\r\nContent-Length: 5\r\n\r\nhello",
        0,
        True,
    )
    status, out, rest, keep = scan_response(raw[:-2], False) or (0, b"", 0, True)
    assert (status, rest, keep) == (200, 2, True)
    assert out.endswith(b"Connection: close\r\n\r\nhel")


@pytest.mark.parametrize(
    "raw",
    [
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"HTTP/1.1 200 OK\r\n\r\nuntil close",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\ntoo long",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok",
        b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 100 Continue\r\n\r\n",
        b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok",
        b"HTTP/1.1 200 OK\r\nConnection: x-thing\r\nX-Thing: 1\r\nContent-Length: 0\r\n\r\n",
    ],
)
@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_scan_response_leaves_the_rest_to_the_general_path(implementation: str, raw: bytes) -> None:
    scan_response = fastpath(implementation).scan_response
    assert scan_response(raw, True) is None


MUTATIONS = [b"\r", b"\n", b" ", b":", b"\x00", b"\x7f", b"\xff", b"A", b"0", b"/", b"\t"]


@st.composite
def mutated(draw: st.DrawFn, heads: st.SearchStrategy[bytes]) -> bytes:
    """A generated head with a few bytes replaced, inserted or cut (every branch of the scanners)."""
    data = bytearray(draw(heads))
    for _ in range(draw(st.integers(0, 3))):
        if not data:
            break
        at = draw(st.integers(0, len(data) - 1))
        action = draw(st.sampled_from(["replace", "insert", "cut"]))
        byte = draw(st.sampled_from(MUTATIONS))
        if action == "replace":
            data[at : at + 1] = byte
        elif action == "insert":
            data[at:at] = byte
        else:
            del data[at : at + draw(st.integers(1, 4))]
    return bytes(data)


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@settings(max_examples=600, deadline=None)
@given(
    mutated(requests()), st.sampled_from([LIMITS, Limits(max_headers=3), Limits(max_body_size=4)])
)
def test_scan_request_is_the_reference_exactly(
    implementation: str, data: bytes, limits: Limits
) -> None:
    """Every implementation gives what fastpath.py gives: the same None, request and offset."""
    assert fastpath(implementation).scan_request(data, limits) == reference.scan_request(
        data, limits
    )


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@settings(max_examples=600, deadline=None)
@given(mutated(responses()), st.booleans())
def test_scan_response_is_the_reference_exactly(
    implementation: str, data: bytes, keep_alive: bool
) -> None:
    """Every implementation gives what fastpath.py gives: the same None, status and bytes."""
    expected = reference.scan_response(data, keep_alive)
    assert fastpath(implementation).scan_response(data, keep_alive) == expected


EDGE_REQUESTS = [
    b"GET / HTTP/1.1\r\nHost: a\r\nClose: x\r\n\r\n",  # "close" is special in responses only
    b"GET / HTTP/1.1\r\nHost: a\r\nProxy-: x\r\n\r\n",
    b"GET / HTTP/1.1\r\nhost: a\r\ncontent-length: 0\r\n\r\n",
    b"OPTIONS /x HTTP/1.1\r\nHost: a\r\nContent-Length: 000000000000000001\r\n\r\nx",
    b"DELETE /x HTTP/1.1\r\nHost: a\r\nContent-Length: 0000000000000000001\r\n\r\nx",
    b"PATCH /x HTTP/1.1\r\nHost: a\r\nX-A: b: c\r\nte: x\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\n\r",
    b"GET / HTTP/1.1\r\nHost: a \r\n\r\n",
]
EDGE_RESPONSES = [
    b"HTTP/1.1 200 OK\r\nKeep-Alive: timeout=5\r\nContent-Length: 2\r\nConnection: Close\r\n\r\nok",
    b"HTTP/1.1 200 OK\r\nKeep-Alive: a\r\nConnection: close\r\nKeep-Alive: b\r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nHost: x\r\nExpect: y\r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.1 200 \r\nContent-Length: 1\r\n\r\n",
    b"HTTP/1.1 499 Odd\r\nContent-Length: 3\r\nClose: 1\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nProxy-Thing: 1\r\n\r\n",
]


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_edge_heads_give_the_reference_exactly(implementation: str) -> None:
    module = fastpath(implementation)
    for raw in EDGE_REQUESTS:
        assert module.scan_request(raw, LIMITS) == reference.scan_request(raw, LIMITS), raw
    for raw in EDGE_RESPONSES:
        for keep in (True, False):
            assert module.scan_response(raw, keep) == reference.scan_response(raw, keep), raw
