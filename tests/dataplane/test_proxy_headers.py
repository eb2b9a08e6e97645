"""The pure proxy rules: what changes between the client's messages and the upstream's."""

from __future__ import annotations

import pytest

from shoal.dataplane.http1 import Request, Response
from shoal.dataplane.proxy import (
    BodyFramer,
    ForwardingSettings,
    client_response,
    error_response,
    strip_hop_by_hop,
    upstream_request,
)


def request(**extra: object) -> Request:
    fields: dict[str, object] = {
        "method": b"GET",
        "target": b"/x",
        "http_version": b"1.1",
        "headers": ((b"Host", b"app"),),
        "framing": "none",
        "content_length": None,
        "keep_alive": True,
        "expect_continue": False,
        "upgrade": None,
    }
    fields.update(extra)
    return Request(**fields)  # type: ignore[arg-type]


def response(status: int = 200, framing: str = "length", **extra: object) -> Response:
    fields: dict[str, object] = {
        "status": status,
        "reason": b"OK",
        "http_version": b"1.1",
        "headers": ((b"Content-Length", b"2"),),
        "framing": framing,
        "content_length": 2,
        "keep_alive": True,
    }
    fields.update(extra)
    return Response(**fields)  # type: ignore[arg-type]


def test_hop_by_hop_fields_and_those_named_in_connection_are_removed() -> None:
    """Connection, Keep-Alive, Proxy-*, TE, Trailer, Transfer-Encoding, Upgrade and named ones go."""
    headers = (
        (b"Connection", b"close, X-Private"),
        (b"X-Private", b"1"),
        (b"Keep-Alive", b"timeout=5"),
        (b"Proxy-Authorization", b"x"),
        (b"Proxy-Connection", b"keep-alive"),
        (b"TE", b"trailers"),
        (b"Trailer", b"X-T"),
        (b"Transfer-Encoding", b"chunked"),
        (b"Upgrade", b"h2c"),
        (b"Accept", b"*/*"),
    )
    assert strip_hop_by_hop(headers) == [(b"Accept", b"*/*")]


def test_upstream_request_head_adds_forwarding_fields() -> None:
    """X-Forwarded-For is appended to earlier values, -Proto replaced, Via appended."""
    head, framer = upstream_request(
        request(
            headers=(
                (b"Host", b"app"),
                (b"X-Forwarded-For", b"1.2.3.4"),
                (b"X-Forwarded-Proto", b"https"),
                (b"Via", b"1.1 edge"),
            )
        ),
        "10.0.0.9",
        ForwardingSettings(scheme=b"http", via=b"shoal"),
    )
    assert head == (
        b"GET /x HTTP/1.1\r\nHost: app\r\nVia: 1.1 edge, 1.1 shoal\r\n"
        b"X-Forwarded-For: 1.2.3.4, 10.0.0.9\r\nX-Forwarded-Proto: http\r\n\r\n"
    )
    assert framer.framing == "none"


def test_upstream_request_framing_and_upgrade() -> None:
    """A chunked body stays chunked upstream; an upgrade keeps Connection: upgrade and Upgrade."""
    head, framer = upstream_request(
        request(
            method=b"POST",
            headers=((b"Host", b"a"), (b"Transfer-Encoding", b"chunked")),
            framing="chunked",
        ),
        "127.0.0.1",
        ForwardingSettings(x_forwarded_for=False),
    )
    assert head == b"POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
    assert framer.data(b"abc") == b"3\r\nabc\r\n"
    assert framer.end() == b"0\r\n\r\n"
    head, _ = upstream_request(
        request(
            headers=((b"Host", b"a"), (b"Connection", b"Upgrade"), (b"Upgrade", b"websocket")),
            upgrade=b"websocket",
        ),
        "127.0.0.1",
        ForwardingSettings(x_forwarded_for=False),
    )
    assert (
        head == b"GET /x HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n"
    )


@pytest.mark.parametrize(
    ("client_version", "framing", "expected_framing", "keep", "marker"),
    [
        (b"1.1", "length", "length", True, b"Content-Length: 2\r\n"),
        (b"1.1", "chunked", "chunked", True, b"Transfer-Encoding: chunked\r\n"),
        (b"1.1", "close", "chunked", True, b"Transfer-Encoding: chunked\r\n"),
        (b"1.0", "chunked", "close", False, b"Connection: close\r\n"),
        (b"1.0", "length", "length", True, b"Connection: keep-alive\r\n"),
    ],
)
def test_client_response_reframes_per_hop(
    client_version: bytes, framing: str, expected_framing: str, keep: bool, marker: bytes
) -> None:
    """Chunked and close-delimited bodies are chunked for HTTP/1.1 clients, closed for 1.0."""
    upstream_headers = (
        ((b"Content-Length", b"2"),)
        if framing == "length"
        else ((b"Transfer-Encoding", b"chunked"),)
    )
    head, framer, keep_alive = client_response(
        response(framing=framing, headers=upstream_headers),
        request(http_version=client_version, keep_alive=True),
        keep_alive=True,
    )
    assert framer.framing == expected_framing
    assert keep_alive is keep
    assert marker in head
    assert head.count(b"Transfer-Encoding") <= 1


def test_no_body_statuses_and_draining() -> None:
    """204 loses its Content-Length; a draining proxy says Connection: close."""
    head, framer, keep = client_response(
        response(status=204, framing="none"), request(), keep_alive=False
    )
    assert head == b"HTTP/1.1 204 OK\r\nConnection: close\r\n\r\n"
    assert framer.data(b"ignored") == b""
    assert not keep


def test_body_framer_passes_length_bodies_through() -> None:
    """A length-delimited body is forwarded byte for byte with nothing at the end."""
    framer = BodyFramer("length")
    assert framer.data(b"abc") == b"abc"
    assert framer.end() == b""


def test_error_response_is_small_and_complete() -> None:
    """Errors the proxy answers itself carry a short text body and close the connection."""
    raw = error_response(502, "upstream refused")
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 502 Bad Gateway\r\n")
    assert b"Content-Length: %d" % len(body) in head
    assert b"Connection: close" in head
    assert body == b"502 Bad Gateway\nupstream refused\n"
