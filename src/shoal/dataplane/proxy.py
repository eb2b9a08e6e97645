"""
What a reverse proxy changes between the client's messages and the upstream's: pure functions.

Theory of operation
-------------------
The driver (:mod:`shoal.dataplane.driver`) parses a client's :class:`~shoal.dataplane.http1.Request`,
asks :func:`upstream_request` for the head to send upstream and a :class:`BodyFramer` for the
body, then parses the upstream's :class:`~shoal.dataplane.http1.Response` and asks
:func:`client_response` for the head to send back, a framer and whether the client connection
may stay open. Nothing here does I/O, so each rule is tested by comparing bytes.

**Hop-by-hop fields** (RFC 9110 §7.6.1) belong to one connection and are never forwarded:
``Connection``, ``Keep-Alive``, ``Proxy-*``, ``TE``, ``Trailer``, ``Transfer-Encoding``,
``Upgrade`` and every field that ``Connection`` names. For an upgrade, ``Connection: upgrade`` and
``Upgrade`` are written again on both sides, since the tunnel spans the hop.

**Forwarding fields.** ``X-Forwarded-For`` gets the client's address appended (earlier proxies'
addresses are kept), ``X-Forwarded-Proto`` is set to the scheme the client used, and ``Via`` is
appended when configured.

**Framing.** Bodies are re-framed per hop, never buffered. Upstream requests are HTTP/1.1 and
keep their ``Content-Length`` or are sent chunked. A response with a length keeps it; a chunked or
close-delimited response goes to an HTTP/1.1 client chunked, and to an HTTP/1.0 client
close-delimited (the connection then closes after it). Responses to ``HEAD`` and 1xx, 204 and
304 responses have no body; their ``Content-Length`` is passed on as information (except for 1xx
and 204, which may not carry one).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from http import HTTPStatus
from typing import Final

from shoal.dataplane.http1 import (
    LAST_CHUNK,
    Framing,
    Headers,
    Request,
    Response,
    chunk,
    serialize_request_head,
    serialize_response_head,
)

__all__ = [
    "HOP_BY_HOP",
    "BodyFramer",
    "ForwardingSettings",
    "client_response",
    "connection_tokens",
    "error_response",
    "strip_hop_by_hop",
    "upstream_request",
]

HOP_BY_HOP: Final = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    }
)
"""Hop-by-hop field names (lower case); every ``proxy-*`` field is hop-by-hop too."""


@dataclass(frozen=True, slots=True)
class ForwardingSettings:
    """What the proxy adds to the requests it forwards."""

    scheme: bytes = b"http"
    """The value of ``X-Forwarded-Proto`` (the scheme clients used to reach the proxy)."""
    x_forwarded_for: bool = True
    """Append the client address to ``X-Forwarded-For`` and set ``X-Forwarded-Proto``."""
    via: bytes | None = None
    """A ``Via`` entry to append (``b"1.1 shoal"``), or ``None`` for none."""


_USUAL_OPTIONS: Final = HOP_BY_HOP
"""Connection options that name fields removed anyway."""


def connection_tokens(headers: Headers) -> frozenset[bytes]:
    """The lower-cased options of every ``Connection`` field."""
    tokens: set[bytes] = set()
    for name, value in headers:
        if name.lower() == b"connection":
            tokens.update(part.strip(b" \t").lower() for part in value.split(b","))
    return frozenset(tokens)


def strip_hop_by_hop(headers: Headers, also: Collection[bytes] = ()) -> list[tuple[bytes, bytes]]:
    """``headers`` without hop-by-hop fields, fields named in ``Connection``, or ``also``."""
    # One pass; the fields that Connection names are removed in a second one, only when it names
    # more than the usual options.
    kept: list[tuple[bytes, bytes]] = []
    lowers: list[bytes] = []
    named: set[bytes] | None = None
    for name, value in headers:
        lower = name.lower()
        if lower in HOP_BY_HOP or lower.startswith(b"proxy-") or lower in also:
            if lower == b"connection":
                tokens = {part.strip(b" \t").lower() for part in value.split(b",")}
                tokens -= _USUAL_OPTIONS
                if tokens:
                    named = tokens if named is None else named | tokens
            continue
        kept.append((name, value))
        lowers.append(lower)
    if named:
        kept = [field for field, lower in zip(kept, lowers, strict=True) if lower not in named]
    return kept


class BodyFramer:
    """Writes a body for one hop: passed through, chunked, or dropped (no body allowed)."""

    __slots__ = ("framing",)

    def __init__(self, framing: Framing) -> None:
        self.framing = framing

    def data(self, data: bytes) -> bytes:
        """The bytes to send for a piece of body."""
        framing = self.framing
        if framing == "chunked":
            return chunk(data)
        if framing == "none":
            return b""
        return data

    def end(self) -> bytes:
        """The bytes that end the body."""
        return LAST_CHUNK if self.framing == "chunked" else b""


_FORWARDED_ALSO: Final = frozenset({b"x-forwarded-proto"})


def upstream_request(
    request: Request, client_address: str, settings: ForwardingSettings
) -> tuple[bytes, BodyFramer]:
    """The head to send upstream for ``request`` and the framer of its body."""
    also = _FORWARDED_ALSO if settings.x_forwarded_for else frozenset()
    headers = strip_hop_by_hop(request.headers, also)
    if settings.x_forwarded_for:
        forwarded = [v for n, v in headers if n.lower() == b"x-forwarded-for"]
        if forwarded:
            headers = [(n, v) for n, v in headers if n.lower() != b"x-forwarded-for"]
        forwarded.append(client_address.encode("ascii"))
        headers.append((b"X-Forwarded-For", b", ".join(forwarded)))
        headers.append((b"X-Forwarded-Proto", settings.scheme))
    if settings.via is not None:
        _append_via(headers, b"1.0 " if request.http_version == b"1.0" else b"1.1 ", settings)
    framing = request.framing
    if framing == "chunked":
        headers.append((b"Transfer-Encoding", b"chunked"))
    if request.upgrade is not None:
        headers.append((b"Connection", b"upgrade"))
        headers.append((b"Upgrade", request.upgrade))
    head = serialize_request_head(request.method, request.target, headers)
    return head, BodyFramer(framing)


def _append_via(
    headers: list[tuple[bytes, bytes]], protocol: bytes, settings: ForwardingSettings
) -> None:
    assert settings.via is not None
    entry = settings.via if settings.via[:1].isdigit() else protocol + settings.via
    for index, (name, value) in enumerate(headers):
        if name.lower() == b"via":
            headers[index] = (name, value + b", " + entry)
            return
    headers.append((b"Via", entry))


def client_response(
    response: Response,
    request: Request,
    keep_alive: bool,
    settings: ForwardingSettings | None = None,
) -> tuple[bytes, BodyFramer, bool]:
    """The head to send the client, the framer of the body, and whether to keep the connection.

    ``keep_alive`` is the proxy's own wish (false while draining); the client's is in
    ``request.keep_alive``.
    """
    status = response.status
    keep = keep_alive and request.keep_alive
    headers = strip_hop_by_hop(response.headers)
    framing = response.framing
    if status < 200 or status == 204:
        headers = [(n, v) for n, v in headers if n.lower() != b"content-length"]
    if framing == "chunked" or framing == "close":
        if request.http_version == b"1.1":
            framing = "chunked"
            headers.append((b"Transfer-Encoding", b"chunked"))
        else:
            framing = "close"
            keep = False
    if settings is not None and settings.via is not None:
        protocol = b"1.0 " if response.http_version == b"1.0" else b"1.1 "
        _append_via(headers, protocol, settings)
    if status == 101:
        headers.append((b"Connection", b"upgrade"))
        if request.upgrade is not None:
            for name, value in response.headers:
                if name.lower() == b"upgrade":
                    headers.append((b"Upgrade", value))
    elif status >= 200:
        if not keep:
            headers.append((b"Connection", b"close"))
        elif request.http_version == b"1.0":
            headers.append((b"Connection", b"keep-alive"))
    head = serialize_response_head(status, response.reason, headers)
    return head, BodyFramer(framing), keep


def error_response(status: int, detail: str = "", *, keep_alive: bool = False) -> bytes:
    """A complete small plain-text response for an error the proxy answers itself."""
    phrase = HTTPStatus(status).phrase.encode("ascii")
    body = b"%d %s\n" % (status, phrase)
    if detail:
        body += detail.encode("utf-8", "replace") + b"\n"
    headers = [
        (b"Content-Type", b"text/plain; charset=utf-8"),
        (b"Content-Length", b"%d" % len(body)),
        (b"Connection", b"keep-alive" if keep_alive else b"close"),
    ]
    return serialize_response_head(status, phrase, headers) + body
