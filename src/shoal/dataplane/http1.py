"""
HTTP/1.1 for the proxy, sans-IO: bytes in, events out; heads and bodies out as bytes.

Theory of operation
-------------------
A parser owns one direction of one connection. The driver gives it the bytes it read
(``feed(data)``), tells it when the peer closed (``feed_eof()``) and gets back a list of events:

* :class:`Request` or :class:`Response`: a complete, validated head, with its body framing
  already decided (``none``, ``length``, ``chunked`` or, for responses only, ``close``);
* :class:`Data`: a piece of the body, in arrival order, never the whole body at once unless it
  arrived at once (bodies are streamed, never accumulated);
* :class:`EndOfMessage`: the body is complete;
* :class:`ProtocolError`: the bytes cannot be a valid message; ``status`` is the answer to give
  (400, 413, 431, 501, 505 for requests; 502 for a malformed upstream response). A parser that
  has reported an error reports nothing more.

**One message per cycle.** After :class:`EndOfMessage` a parser stops: bytes that follow
(pipelined requests, or the first bytes of a tunnel after an Upgrade) stay buffered until the
driver calls ``next_cycle()`` (parse the next message; it returns the events already available)
or ``take_buffer()`` (the connection became a byte tunnel: hand over the raw bytes). This is
h11's ``start_next_cycle``: responses come back in request order because the driver cannot even
see request *n + 1* before it has finished request *n*. ``buffered`` tells the driver how much is
waiting so it can stop reading a client that pipelines too far ahead.

**Two request parsers, one behaviour.** :class:`PythonRequestParser` is pure Python and always
available; :class:`shoal.dataplane.httptools_parser.HttptoolsRequestParser` wraps llhttp. Both
tokenise, then hand the request line and header list to the same :func:`analyse_request`, which
makes every semantic decision (framing, keep-alive, upgrade, limits, smuggling defences), so they
can only differ in tokenising, and the one test suite checks that they do not.
:func:`make_request_parser` picks one (``auto`` prefers httptools). Upstream responses are parsed
by :class:`ResponseParser` (pure Python: only it can be told that a response answers a ``HEAD``).

**Request-smuggling defences** (RFC 9112 §6.3, §11.2): ``Content-Length`` with
``Transfer-Encoding`` is refused (400), as is any repeated ``Content-Length`` (even with equal
values) or one that is not plain digits; a ``Transfer-Encoding`` other than exactly ``chunked``
is not implemented (501); lines must end in CRLF (a bare CR or LF anywhere is 400), obsolete
line folding is 400, header names must be tokens with no space before the colon and values may
not hold control characters; chunk sizes are bare hex digits and each chunk must end in CRLF.
A request head larger than :attr:`Limits.max_head_size` or with more than
:attr:`Limits.max_headers` fields is 431; a body larger than :attr:`Limits.max_body_size`
(declared, or counted as chunks arrive) is 413.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final, Literal, Protocol

__all__ = [
    "KNOWN_METHODS",
    "LAST_CHUNK",
    "PARSERS",
    "Data",
    "EndOfMessage",
    "Event",
    "Framing",
    "Headers",
    "Limits",
    "ProtocolError",
    "PythonRequestParser",
    "Request",
    "RequestParser",
    "Response",
    "ResponseParser",
    "analyse_request",
    "analyse_response",
    "chunk",
    "make_request_parser",
    "serialize_request_head",
    "serialize_response_head",
]

Headers = tuple[tuple[bytes, bytes], ...]
"""Header fields in arrival order: original name case, value without surrounding whitespace."""

Framing = Literal["none", "length", "chunked", "close"]
"""How a body is delimited: absent, by ``Content-Length``, chunked, or by the connection's end."""

PARSERS: Final = ("auto", "httptools", "python")
"""The request parser implementations :func:`make_request_parser` accepts."""

KNOWN_METHODS: Final = frozenset(
    b"DELETE GET HEAD POST PUT CONNECT OPTIONS TRACE COPY LOCK MKCOL MOVE PROPFIND PROPPATCH "
    b"SEARCH UNLOCK BIND REBIND UNBIND ACL REPORT MKACTIVITY CHECKOUT MERGE M-SEARCH NOTIFY "
    b"SUBSCRIBE UNSUBSCRIBE PATCH PURGE MKCALENDAR LINK UNLINK SOURCE QUERY".split()
)
"""Methods both parsers accept (llhttp's HTTP set); any other token is answered 501."""

LAST_CHUNK: Final = b"0\r\n\r\n"
"""The end of a chunked body (no trailers)."""


@dataclass(frozen=True, slots=True)
class Limits:
    """Sizes a peer may not exceed."""

    max_head_size: int = 32 * 1024
    """Bytes in a request line plus header section (431 above); trailers count the same way."""
    max_headers: int = 100
    """Header fields in one head (431 above)."""
    max_body_size: int | None = 1024 * 1024 * 1024
    """Request body bytes (413 above); ``None`` for no limit."""
    max_chunk_line: int = 4096
    """Bytes in one chunk-size line with its extensions (400 above)."""


# --- events -------------------------------------------------------------------------------------


# Request, Response and Data are made once per message on the hot path: they are slotted but not
# frozen, because a frozen dataclass's __init__ sets each field through object.__setattr__ (about
# seven times slower for Request). Treat them as immutable all the same (use dataclasses.replace).


@dataclass(slots=True)
class Request:
    """A validated request head."""

    method: bytes
    target: bytes
    http_version: bytes
    """``b"1.1"`` or ``b"1.0"``."""
    headers: Headers
    framing: Framing
    """``none``, ``length`` or ``chunked`` (a request never runs to the connection's end)."""
    content_length: int | None
    keep_alive: bool
    """Whether the client lets the connection carry another request after this one."""
    expect_continue: bool
    """The client sent ``Expect: 100-continue`` and waits for a ``100`` before its body."""
    upgrade: bytes | None
    """The ``Upgrade`` value when the client asks to switch protocols (``Connection: upgrade``)."""


@dataclass(slots=True)
class Response:
    """A validated response head (informational 1xx heads come as responses too)."""

    status: int
    reason: bytes
    http_version: bytes
    headers: Headers
    framing: Framing
    content_length: int | None
    keep_alive: bool
    """Whether the server lets the connection carry another request."""


@dataclass(slots=True)
class Data:
    """A piece of a body."""

    data: bytes


@dataclass(frozen=True, slots=True)
class EndOfMessage:
    """The current message's body is complete (trailers, if any, are dropped)."""


@dataclass(frozen=True, slots=True)
class ProtocolError:
    """The peer broke the protocol; ``status`` is the answer to give, then close."""

    status: int
    detail: str


Event = Request | Response | Data | EndOfMessage | ProtocolError

_END: Final = EndOfMessage()


class RequestParser(Protocol):
    """The interface of both request parsers (see the module docstring)."""

    @property
    def buffered(self) -> int:
        """Bytes received and not yet delivered as events (pipelined or tunnel bytes)."""
        ...

    def feed(self, data: bytes) -> list[Event]:
        """Events completed by ``data``."""
        ...

    def feed_eof(self) -> list[Event]:
        """Events caused by the peer closing: an error if a message was cut short."""
        ...

    def next_cycle(self) -> list[Event]:
        """Start on the next message (after :class:`EndOfMessage`) with the buffered bytes."""
        ...

    def take_buffer(self) -> bytes:
        """The bytes buffered after the message, for a tunnel; the parser is done after this."""
        ...

    @property
    def at_rest(self) -> bool:
        """Between messages with nothing fed and kept: the driver may take a message whole
        (:mod:`shoal.dataplane.fastpath`) instead of feeding it."""
        ...

    def hold(self) -> None:
        """A message was taken whole while the parser was :attr:`at_rest`: act as if it had just
        ended (keep what comes until :meth:`next_cycle`)."""
        ...


# --- validation shared by both parsers ----------------------------------------------------------

_TOKEN: Final = b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_FIELD_VALUE: Final = bytes([9, *range(0x20, 0x7F), *range(0x80, 0x100)])
_TARGET: Final = bytes(range(0x21, 0x7F))
_HEX: Final = b"0123456789abcdefABCDEF"
_VERSION = re.compile(rb"HTTP/([0-9])\.([0-9])")
_OWS: Final = b" \t"


def _is_token(value: bytes) -> bool:
    return bool(value) and not value.translate(None, _TOKEN)


def _is_field_value(value: bytes) -> bool:
    return not value.translate(None, _FIELD_VALUE)


_BAD_NAMES: Final = re.compile(rb"[^!#$%&'*+\-.^_`|~0-9A-Za-z:]|::").search
"""Finds a non-token byte or an empty name in ``b":" + b":".join(names) + b":"``."""
_BAD_VALUES: Final = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]").search
"""Finds a byte no field value may hold in ``b"\t".join(values)`` (tab is allowed)."""


def _invalid_fields(headers: list[tuple[bytes, bytes]]) -> str | None:
    """``name`` or ``value`` if some field has an invalid one (one regexp pass each, not per field)."""
    if _BAD_NAMES(b":" + b":".join([name for name, _ in headers]) + b":"):
        return "name"
    if _BAD_VALUES(b"\t".join([value for _, value in headers])):
        return "value"
    return None


_REQUEST_FIELDS: Final = frozenset(
    {b"content-length", b"transfer-encoding", b"connection", b"host", b"expect", b"upgrade"}
)
_RESPONSE_FIELDS: Final = frozenset({b"content-length", b"transfer-encoding", b"connection"})


def _split_tokens(value: bytes) -> list[bytes]:
    return [part.strip(_OWS).lower() for part in value.split(b",")]


def analyse_request(
    method: bytes,
    target: bytes,
    version: bytes,
    raw_headers: Iterable[tuple[bytes, bytes]],
    limits: Limits,
) -> Request | ProtocolError:
    """Validate a tokenised request head and decide its framing (see the module docstring).

    ``version`` is the digits, ``b"1.1"``; header values may still carry surrounding whitespace.
    """
    if not _is_token(method):
        return ProtocolError(400, "invalid method")
    if not target or target.translate(None, _TARGET):
        return ProtocolError(400, "invalid request target")
    if version not in (b"1.1", b"1.0"):
        if len(version) == 3 and version[0:1].isdigit() and version[2:3].isdigit():
            return ProtocolError(505, "HTTP version not supported")
        return ProtocolError(400, "invalid HTTP version")
    headers: list[tuple[bytes, bytes]] = []
    content_length: int | None = None
    codings: list[bytes] | None = None
    connection: list[bytes] = []
    hosts = 0
    expect: bytes | None = None
    upgrade: bytes | None = None
    append = headers.append
    for name, raw_value in raw_headers:
        value = raw_value.strip(_OWS)
        append((name, value))
        lower = name.lower()
        if lower not in _REQUEST_FIELDS:
            continue
        if lower == b"content-length":
            if content_length is not None:
                return ProtocolError(400, "repeated Content-Length")
            if not value.isdigit() or len(value) > 18:
                return ProtocolError(400, "invalid Content-Length")
            content_length = int(value)
        elif lower == b"transfer-encoding":
            codings = (codings or []) + _split_tokens(value)
        elif lower == b"connection":
            connection.extend(_split_tokens(value))
        elif lower == b"host":
            hosts += 1
        elif lower == b"expect":
            expect = value.lower()
        elif lower == b"upgrade":
            upgrade = value
    # Names and values are checked together after the loop (two regexp searches in all); an
    # error found inside the loop (Content-Length) is a 400 as well.
    invalid = _invalid_fields(headers) if headers else None
    if invalid is not None:
        return ProtocolError(400, f"invalid header {invalid}")
    if len(headers) > limits.max_headers:
        return ProtocolError(431, "too many header fields")
    if hosts > 1 or (hosts == 0 and version == b"1.1"):
        return ProtocolError(400, "a request needs exactly one Host")
    if method not in KNOWN_METHODS:
        return ProtocolError(501, "method not implemented")
    if method == b"CONNECT":
        return ProtocolError(501, "CONNECT is not supported by a reverse proxy")
    framing: Framing = "none"
    if codings is not None:
        if content_length is not None:
            return ProtocolError(400, "Content-Length with Transfer-Encoding")
        if version == b"1.0":
            return ProtocolError(400, "Transfer-Encoding in an HTTP/1.0 request")
        if b"" in codings or codings.count(b"chunked") > 1:
            return ProtocolError(400, "invalid Transfer-Encoding")
        if codings != [b"chunked"]:
            return ProtocolError(501, "only Transfer-Encoding: chunked is implemented")
        framing = "chunked"
    elif content_length is not None:
        if limits.max_body_size is not None and content_length > limits.max_body_size:
            return ProtocolError(413, "request body too large")
        framing = "length" if content_length else "none"
    expect_continue = False
    if expect is not None:
        if expect != b"100-continue":
            return ProtocolError(417, "unsupported expectation")
        expect_continue = version == b"1.1"
    if version == b"1.1":
        keep_alive = b"close" not in connection
    else:
        keep_alive = b"keep-alive" in connection and b"close" not in connection
    if upgrade is None or b"upgrade" not in connection or version != b"1.1":
        upgrade = None
    return Request(
        method,
        target,
        version,
        tuple(headers),
        framing,
        content_length,
        keep_alive,
        expect_continue,
        upgrade,
    )


def analyse_response(
    status: int,
    reason: bytes,
    version: bytes,
    raw_headers: Iterable[tuple[bytes, bytes]],
    request_method: bytes,
) -> Response | ProtocolError:
    """Validate a tokenised response head and decide its framing (RFC 9112 §6.3).

    Errors are 502: the upstream broke the protocol and the client is owed a Bad Gateway.
    """
    if version not in (b"1.1", b"1.0"):
        return ProtocolError(502, "upstream HTTP version not supported")
    headers: list[tuple[bytes, bytes]] = []
    content_length: int | None = None
    codings: list[bytes] | None = None
    connection: list[bytes] = []
    append = headers.append
    for name, raw_value in raw_headers:
        value = raw_value.strip(_OWS)
        append((name, value))
        lower = name.lower()
        if lower not in _RESPONSE_FIELDS:
            continue
        if lower == b"content-length":
            if not value.isdigit() or len(value) > 18:
                return ProtocolError(502, "invalid upstream Content-Length")
            if content_length is not None and int(value) != content_length:
                return ProtocolError(502, "conflicting upstream Content-Length")
            content_length = int(value)
        elif lower == b"transfer-encoding":
            codings = (codings or []) + _split_tokens(value)
        elif lower == b"connection":
            connection.extend(_split_tokens(value))
    if headers and _invalid_fields(headers) is not None:
        return ProtocolError(502, "invalid upstream header")
    framing: Framing
    if request_method == b"HEAD" or status < 200 or status in (204, 304):
        framing = "none"
    elif codings is not None:
        if content_length is not None:
            return ProtocolError(502, "upstream sent Content-Length with Transfer-Encoding")
        framing = "chunked" if codings[-1] == b"chunked" else "close"
    elif content_length is not None:
        framing = "length" if content_length else "none"
    else:
        framing = "close"
    if version == b"1.1":
        keep_alive = b"close" not in connection
    else:
        keep_alive = b"keep-alive" in connection and b"close" not in connection
    if framing == "close":
        keep_alive = False
    return Response(status, reason, version, tuple(headers), framing, content_length, keep_alive)


# --- the pure-Python tokeniser and body reader --------------------------------------------------

_HEAD: Final = 0
_LENGTH: Final = 1
_CHUNK_SIZE: Final = 2
_CHUNK_DATA: Final = 3
_CHUNK_END: Final = 4
_TRAILERS: Final = 5
_UNTIL_CLOSE: Final = 6
_DONE: Final = 7
_ERROR: Final = 8


class _PythonParser:
    """The body reader shared by the pure-Python request and response parsers."""

    __slots__ = (
        "_body_size",
        "_buf",
        "_eof",
        "_limits",
        "_remaining",
        "_scan",
        "_state",
        "_trailer_size",
    )

    def __init__(self, limits: Limits) -> None:
        self._limits = limits
        self._buf = bytearray()
        self._state = _HEAD
        self._scan = 0
        self._remaining = 0
        self._body_size = 0
        self._trailer_size = 0
        self._eof = False

    @property
    def buffered(self) -> int:
        return len(self._buf)

    @property
    def at_rest(self) -> bool:
        return self._state == _HEAD and not self._buf and not self._eof

    def hold(self) -> None:
        if self._state == _HEAD and not self._buf:
            self._state = _DONE

    def feed(self, data: bytes) -> list[Event]:
        state = self._state
        if state in (_DONE, _ERROR):
            if state == _DONE:
                self._buf += data
            return []
        out: list[Event] = []
        if not self._buf and state == _HEAD and not data.startswith(b"\r\n"):
            # Fast path: a whole head at the start of the read is parsed from the socket's bytes,
            # without copying them into the buffer first; the rest is the body fast path's.
            end = data.find(b"\r\n\r\n")
            if end < 0 or end > self._limits.max_head_size:
                self._buf += data
                self._run(out)
                return out
            self._head(data[:end], out)
            state = self._state
            data = data[end + 4 :]
            if state == _ERROR:
                return out
            if state == _HEAD or not data:  # a 1xx came first, or the read was all head
                if data:
                    self._buf += data
                    self._run(out)
                return out
        if not self._buf and state in (_LENGTH, _UNTIL_CLOSE):
            # Fast path: a body read straight from the socket's bytes, no copy.
            if state == _UNTIL_CLOSE:
                if data:
                    out.append(Data(data))
                return out
            size = len(data)
            if size <= self._remaining:
                if size:
                    out.append(Data(data))
                self._remaining -= size
                if not self._remaining:
                    self._state = _DONE
                    out.append(_END)
                return out
        self._buf += data
        self._run(out)
        return out

    def feed_eof(self) -> list[Event]:
        self._eof = True
        return self._eof_events()

    def _eof_events(self) -> list[Event]:
        state = self._state
        if state == _UNTIL_CLOSE:
            out: list[Event] = []
            if self._buf:
                out.append(Data(bytes(self._buf)))
                self._buf.clear()
            self._state = _DONE
            out.append(_END)
            return out
        if state == _HEAD and not self._buf.strip(b"\r\n"):
            return []
        if state in (_DONE, _ERROR):
            return []
        return [self._fail(self._eof_status, "connection closed in the middle of a message")]

    _eof_status = 400

    def next_cycle(self) -> list[Event]:
        if self._state != _DONE:
            return []
        self._state = _HEAD
        self._scan = 0
        out: list[Event] = []
        if self._buf:
            self._run(out)
        if self._eof:
            out += self._eof_events()
        return out

    def take_buffer(self) -> bytes:
        data = bytes(self._buf)
        self._buf.clear()
        self._state = _ERROR
        return data

    def _fail(self, status: int, detail: str) -> ProtocolError:
        self._state = _ERROR
        self._buf.clear()
        return ProtocolError(status, detail)

    def _head(self, head: bytes, out: list[Event]) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _start_body(self, framing: Framing, content_length: int | None, out: list[Event]) -> None:
        self._body_size = 0
        if framing == "length":
            assert content_length is not None
            self._remaining = content_length
            self._state = _LENGTH
        elif framing == "chunked":
            self._state = _CHUNK_SIZE
        elif framing == "close":
            self._state = _UNTIL_CLOSE
        else:
            self._state = _DONE
            out.append(_END)

    def _run(self, out: list[Event]) -> None:
        buf = self._buf
        pos = 0
        limits = self._limits
        while True:
            state = self._state
            if state == _HEAD:
                while buf.startswith(b"\r\n", pos):
                    pos += 2  # RFC 9112 §2.2: ignore empty lines before a request line
                end = buf.find(b"\r\n\r\n", max(pos, self._scan))
                if end < 0:
                    if len(buf) - pos > limits.max_head_size:
                        out.append(self._fail(431, "request header section too large"))
                        return
                    if buf.count(b"\n", pos) != buf.count(b"\r\n", pos):
                        out.append(self._fail(400, "line ending without CR"))
                        return
                    self._scan = max(pos, len(buf) - 3)
                    break
                if end - pos > limits.max_head_size:
                    out.append(self._fail(431, "request header section too large"))
                    return
                head = bytes(buf[pos:end])
                pos = end + 4
                self._scan = 0
                self._head(head, out)
                if self._state == _ERROR:
                    return
            elif state == _LENGTH:
                available = len(buf) - pos
                if not available:
                    break
                size = min(available, self._remaining)
                out.append(Data(bytes(buf[pos : pos + size])))
                pos += size
                self._remaining -= size
                if not self._remaining:
                    self._state = _DONE
                    out.append(_END)
            elif state == _CHUNK_SIZE:
                end = buf.find(b"\r\n", pos)
                if end < 0:
                    if len(buf) - pos > limits.max_chunk_line:
                        out.append(self._fail(400, "chunk size line too long"))
                        return
                    break
                line = bytes(buf[pos:end])
                pos = end + 2
                size_text, _, extension = line.partition(b";")
                if (
                    not size_text
                    or len(size_text) > 15
                    or size_text.translate(None, _HEX)
                    or not _is_field_value(extension)
                    or len(line) > limits.max_chunk_line
                ):
                    out.append(self._fail(400, "invalid chunk size line"))
                    return
                size = int(size_text, 16)
                self._body_size += size
                maximum = self._max_body()
                if maximum is not None and self._body_size > maximum:
                    out.append(self._fail(413, "request body too large"))
                    return
                if size:
                    self._remaining = size
                    self._state = _CHUNK_DATA
                else:
                    self._trailer_size = 0
                    self._state = _TRAILERS
            elif state == _CHUNK_DATA:
                available = len(buf) - pos
                if not available:
                    break
                size = min(available, self._remaining)
                out.append(Data(bytes(buf[pos : pos + size])))
                pos += size
                self._remaining -= size
                if not self._remaining:
                    self._state = _CHUNK_END
            elif state == _CHUNK_END:
                if len(buf) - pos < 2:
                    break
                if buf[pos : pos + 2] != b"\r\n":
                    out.append(self._fail(400, "chunk data not followed by CRLF"))
                    return
                pos += 2
                self._state = _CHUNK_SIZE
            elif state == _TRAILERS:
                end = buf.find(b"\r\n", pos)
                if end < 0:
                    if len(buf) - pos + self._trailer_size > limits.max_head_size:
                        out.append(self._fail(431, "trailer section too large"))
                        return
                    break
                line = bytes(buf[pos:end])
                pos = end + 2
                if not line:
                    self._state = _DONE
                    out.append(_END)
                    continue
                self._trailer_size += len(line) + 2
                name, colon, value = line.partition(b":")
                if (
                    not colon
                    or not _is_token(name)
                    or not _is_field_value(value)
                    or self._trailer_size > limits.max_head_size
                ):
                    out.append(self._fail(400, "invalid trailer field"))
                    return
            elif state == _UNTIL_CLOSE:
                if len(buf) > pos:
                    out.append(Data(bytes(buf[pos:])))
                    pos = len(buf)
                break
            else:  # _DONE: keep the rest for the next cycle or a tunnel
                break
        if pos:
            del buf[:pos]
            if self._scan:
                self._scan = max(0, self._scan - pos)

    def _max_body(self) -> int | None:
        return self._limits.max_body_size


def _split_head(head: bytes) -> tuple[bytes, list[tuple[bytes, bytes]]] | ProtocolError:
    """The start line and the header fields of a head with CRLF line ends (strict)."""
    lines = head.split(b"\r\n")
    fields: list[tuple[bytes, bytes]] = []
    for line in lines[1:]:
        if line[:1] in (b" ", b"\t"):
            return ProtocolError(400, "obsolete line folding")
        name, colon, value = line.partition(b":")
        if not colon:
            return ProtocolError(400, "header line without a colon")
        fields.append((name, value))
    return lines[0], fields


class PythonRequestParser(_PythonParser):
    """The pure-Python request parser (see the module docstring)."""

    __slots__ = ()

    def _head(self, head: bytes, out: list[Event]) -> None:
        split = _split_head(head)
        if isinstance(split, ProtocolError):
            out.append(self._fail(split.status, split.detail))
            return
        start, fields = split
        if len(fields) > self._limits.max_headers:
            out.append(self._fail(431, "too many header fields"))
            return
        # Like llhttp, runs of spaces separate the three parts (RFC 9112 §3 allows it).
        parts = [part for part in start.split(b" ") if part]
        if len(parts) != 3 or start[:1] == b" " or start[-1:] == b" ":
            out.append(self._fail(400, "invalid request line"))
            return
        method, target, version_text = parts
        version = _VERSION.fullmatch(version_text)
        if version is None:
            out.append(self._fail(400, "invalid HTTP version"))
            return
        event = analyse_request(
            method, target, version[1] + b"." + version[2], fields, self._limits
        )
        if isinstance(event, ProtocolError):
            out.append(self._fail(event.status, event.detail))
            return
        out.append(event)
        self._start_body(event.framing, event.content_length, out)


class ResponseParser(_PythonParser):
    """Parses an upstream's responses; :meth:`expect` names the method each one answers.

    Informational responses (1xx) are delivered and parsing goes on to the final response, except
    ``101 Switching Protocols``, after which the parser stops (``take_buffer`` has the tunnel's
    first bytes). A malformed response is a :class:`ProtocolError` with status 502.
    """

    __slots__ = ("_method",)

    _eof_status = 502

    def __init__(self, limits: Limits | None = None) -> None:
        super().__init__(
            limits or Limits(max_head_size=64 * 1024, max_headers=200, max_body_size=None)
        )
        self._method = b"GET"

    def expect(self, method: bytes) -> None:
        """The next response answers a request with ``method``."""
        self._method = method

    def continue_body(self, remaining: int) -> None:
        """A response head with ``Content-Length`` was taken whole (with part of its body) while
        the parser was at rest: read the ``remaining`` body bytes as its body."""
        self._body_size = 0
        self._remaining = remaining
        self._state = _LENGTH

    def _eof_events(self) -> list[Event]:
        if self._state == _HEAD and not self._buf:
            return [self._fail(502, "upstream closed the connection without a response")]
        return super()._eof_events()

    def _head(self, head: bytes, out: list[Event]) -> None:
        split = _split_head(head)
        if isinstance(split, ProtocolError):
            out.append(self._fail(502, "malformed upstream response: " + split.detail))
            return
        start, fields = split
        version_text, _, rest = start.partition(b" ")
        status_text, _, reason = rest.partition(b" ")
        version = _VERSION.fullmatch(version_text)
        if version is None or len(status_text) != 3 or not status_text.isdigit():
            out.append(self._fail(502, "malformed upstream status line"))
            return
        status = int(status_text)
        if status < 100:
            out.append(self._fail(502, "malformed upstream status"))
            return
        event = analyse_response(
            status, reason, version[1] + b"." + version[2], fields, self._method
        )
        if isinstance(event, ProtocolError):
            out.append(self._fail(event.status, event.detail))
            return
        out.append(event)
        if status == 101:
            self._state = _DONE  # a tunnel follows: no end of message, nothing more to parse
        elif status < 200:
            self._state = _HEAD  # the final response follows
        else:
            self._start_body(event.framing, event.content_length, out)

    def _max_body(self) -> int | None:
        return None


def make_request_parser(kind: str = "auto", limits: Limits | None = None) -> RequestParser:
    """A request parser: ``httptools`` (llhttp), ``python``, or ``auto`` (httptools if installed)."""
    limits = limits or Limits()
    if kind not in PARSERS:
        raise ValueError(f"unknown parser {kind!r}: must be one of {list(PARSERS)}")
    if kind != "python":
        try:
            from shoal.dataplane.httptools_parser import HttptoolsRequestParser
        except ImportError:
            if kind == "httptools":
                raise
        else:
            return HttptoolsRequestParser(limits)
    return PythonRequestParser(limits)


# --- serialisation ------------------------------------------------------------------------------


def serialize_request_head(
    method: bytes, target: bytes, headers: Iterable[tuple[bytes, bytes]]
) -> bytes:
    """An HTTP/1.1 request head."""
    lines = [b"%s %s HTTP/1.1" % (method, target)]
    lines += [name + b": " + value for name, value in headers]
    lines += (b"", b"")
    return b"\r\n".join(lines)


def serialize_response_head(
    status: int, reason: bytes, headers: Iterable[tuple[bytes, bytes]]
) -> bytes:
    """An HTTP/1.1 response head."""
    lines = [b"HTTP/1.1 %d %s" % (status, reason)]
    lines += [name + b": " + value for name, value in headers]
    lines += (b"", b"")
    return b"\r\n".join(lines)


def chunk(data: bytes) -> bytes:
    """``data`` as one chunk of a chunked body (empty data gives nothing: it would end the body)."""
    if not data:
        return b""
    return b"%x\r\n%s\r\n" % (len(data), data)
