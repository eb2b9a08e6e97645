"""Reading HTTP/1.1 responses: a sans-IO parser in pure Python, and the same contract on
httptools (llhttp) when it is installed.

A parser is fed the bytes of one connection as they arrive and returns the responses completed by
them, each as ``(status, keep_alive)``; the body is skipped, not kept. Before each request the
connection says whether its answer has a body (``expect(head_only)``): a response to ``HEAD``
carries ``Content-Length`` but no body, which only the requester knows.

Framing follows RFC 9112 section 6: no body for ``HEAD``, 1xx, 204 and 304; else chunked when
``Transfer-Encoding`` ends in ``chunked``; else ``Content-Length``; else the body runs to the end
of the connection (``feed_eof`` completes it). Interim 1xx responses are skipped. Anything else
raises :class:`ResponseError`, and the connection is closed.
"""

from __future__ import annotations

from collections import deque
from typing import Protocol

__all__ = ["HttptoolsParser", "PureParser", "ResponseError", "ResponseParser", "make_parser"]

MAX_HEAD = 64 * 1024
_HEX = b"0123456789abcdefABCDEF"
_DIGITS = b"0123456789"


class ResponseError(Exception):
    """The bytes are not a valid HTTP/1.x response (the connection cannot be used further)."""


class ResponseParser(Protocol):
    def expect(self, head_only: bool) -> None:
        """A request was sent; ``head_only``: its response has no body."""
        ...

    def feed(self, data: bytes) -> list[tuple[int, bool]]: ...

    def feed_eof(self) -> list[tuple[int, bool]]:
        """The server closed the connection: a body delimited by the close is complete."""
        ...


_HEAD, _LENGTH, _CHUNK_SIZE, _CHUNK_DATA, _CHUNK_CRLF, _TRAILERS, _UNTIL_CLOSE = range(7)


class PureParser:
    """The pure-Python parser (see the module docstring)."""

    __slots__ = ("_buffer", "_expected", "_keep", "_remaining", "_state", "_status")

    def __init__(self) -> None:
        self._buffer = b""
        self._state = _HEAD
        self._remaining = 0
        self._status = 0
        self._keep = True
        self._expected: deque[bool] = deque()

    def expect(self, head_only: bool) -> None:
        self._expected.append(head_only)

    def feed(self, data: bytes) -> list[tuple[int, bool]]:
        done: list[tuple[int, bool]] = []
        buffer = self._buffer + data if self._buffer else data
        position = 0
        while True:
            state = self._state
            if state == _HEAD:
                end = buffer.find(b"\r\n\r\n", position)
                if end < 0:
                    if len(buffer) - position > MAX_HEAD:
                        raise ResponseError("response head larger than 64 KiB")
                    break
                self._head(buffer[position:end])
                position = end + 4
                if self._state == _HEAD:  # no body (or an interim 1xx)
                    if self._status >= 200:
                        done.append((self._status, self._keep))
                    continue
            elif state == _LENGTH:
                available = len(buffer) - position
                if available < self._remaining:
                    self._remaining -= available
                    position = len(buffer)
                    break
                position += self._remaining
                self._finish(done)
            elif state == _CHUNK_SIZE:
                end = buffer.find(b"\r\n", position)
                if end < 0:
                    if len(buffer) - position > 1024:
                        raise ResponseError("chunk size line too long")
                    break
                text = buffer[position:end].split(b";", 1)[0].strip()
                if not text or len(text) > 16 or text.strip(_HEX):
                    raise ResponseError(f"invalid chunk size {text[:20]!r}")
                size = int(text, 16)
                position = end + 2
                if size == 0:
                    self._state = _TRAILERS
                else:
                    self._remaining = size
                    self._state = _CHUNK_DATA
            elif state == _CHUNK_DATA:
                available = len(buffer) - position
                if available < self._remaining:
                    self._remaining -= available
                    position = len(buffer)
                    break
                position += self._remaining
                self._state = _CHUNK_CRLF
            elif state == _CHUNK_CRLF:
                if len(buffer) - position < 2:
                    break
                if buffer[position : position + 2] != b"\r\n":
                    raise ResponseError("chunk data not followed by CRLF")
                position += 2
                self._state = _CHUNK_SIZE
            elif state == _TRAILERS:
                end = buffer.find(b"\r\n", position)
                if end < 0:
                    if len(buffer) - position > MAX_HEAD:
                        raise ResponseError("trailers larger than 64 KiB")
                    break
                line_empty = end == position
                position = end + 2
                if line_empty:
                    self._finish(done)
            else:  # _UNTIL_CLOSE: everything is body
                position = len(buffer)
                break
        self._buffer = buffer[position:] if position < len(buffer) else b""
        return done

    def feed_eof(self) -> list[tuple[int, bool]]:
        if self._state == _UNTIL_CLOSE:
            self._state = _HEAD
            return [(self._status, False)]
        return []

    def _finish(self, done: list[tuple[int, bool]]) -> None:
        done.append((self._status, self._keep))
        self._state = _HEAD

    def _head(self, head: bytes) -> None:
        lines = head.split(b"\r\n")
        parts = lines[0].split(b" ", 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1."):
            raise ResponseError(f"invalid status line {lines[0][:80]!r}")
        try:
            status = int(parts[1])
        except ValueError:
            raise ResponseError(f"invalid status code {parts[1][:10]!r}") from None
        if not 100 <= status <= 999 or len(parts[1]) != 3:
            raise ResponseError(f"invalid status code {parts[1][:10]!r}")
        keep = parts[0] == b"HTTP/1.1"
        length: int | None = None
        chunked = False
        for line in lines[1:]:
            name, colon, value = line.partition(b":")
            if not colon or not name or name != name.strip():
                raise ResponseError(f"invalid header line {line[:80]!r}")
            lower = name.lower()
            if lower == b"content-length":
                digits = value.strip()
                if not digits or digits.strip(_DIGITS) or len(digits) > 18:
                    raise ResponseError(f"invalid Content-Length {value[:20]!r}")
                parsed = int(digits)
                if length is not None and parsed != length:
                    raise ResponseError("invalid or conflicting Content-Length")
                length = parsed
            elif lower == b"transfer-encoding":
                chunked = value.strip().lower().endswith(b"chunked")
            elif lower == b"connection":
                tokens = {t.strip().lower() for t in value.split(b",")}
                if b"close" in tokens:
                    keep = False
                elif b"keep-alive" in tokens:
                    keep = True
        self._status = status
        self._keep = keep
        if status < 200:
            if status == 101:
                raise ResponseError("unexpected 101 Switching Protocols")
            self._state = _HEAD  # interim: the final response follows
            return
        head_only = self._expected.popleft() if self._expected else False
        if head_only or status in (204, 304):
            self._state = _HEAD
        elif chunked:
            self._state = _CHUNK_SIZE
        elif length is not None:
            self._remaining = length
            self._state = _LENGTH if length else _HEAD
        else:
            self._keep = False
            self._state = _UNTIL_CLOSE


class HttptoolsParser:
    """The same contract on httptools (llhttp). Not used when a plan sends HEAD requests: llhttp's
    response parser cannot be told that a response has no body."""

    __slots__ = ("_done", "_parser")

    def __init__(self) -> None:
        import httptools

        self._done: list[tuple[int, bool]] = []
        self._parser = httptools.HttpResponseParser(self)

    def expect(self, head_only: bool) -> None:
        if head_only:
            raise ResponseError("httptools cannot parse responses to HEAD; use the pure parser")

    def on_message_complete(self) -> None:
        parser = self._parser
        status = parser.get_status_code()
        if status >= 200:
            self._done.append((status, parser.should_keep_alive()))

    def feed(self, data: bytes) -> list[tuple[int, bool]]:
        import httptools

        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as error:
            raise ResponseError(str(error)) from None
        done, self._done = self._done, []
        return done

    def feed_eof(self) -> list[tuple[int, bool]]:
        # llhttp completes a close-delimited body when told of the end of the stream; httptools
        # offers no call for it, so such a response counts as an error (reset) instead.
        return []


def make_parser(kind: str) -> ResponseParser:
    """``pure`` or ``httptools``."""
    return HttptoolsParser() if kind == "httptools" else PureParser()


def httptools_available() -> bool:
    try:
        import httptools  # noqa: F401
    except ImportError:
        return False
    return True
