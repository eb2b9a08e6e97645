"""
The request parser on llhttp (httptools), with the same events as the pure-Python one.

Theory of operation
-------------------
llhttp tokenises and enforces the grammar (CRLF line ends, no obsolete folding, token header
names, chunk syntax, duplicate ``Content-Length``); its callbacks collect the request line and the
header fields, and at the end of the head :func:`shoal.dataplane.http1.analyse_request` makes
every semantic decision, exactly as for :class:`~shoal.dataplane.http1.PythonRequestParser`.
An error found in a callback is recorded before the callback raises to stop llhttp, so the
recorded :class:`~shoal.dataplane.http1.ProtocolError` (with its status) wins over llhttp's
generic one.

llhttp parses everything it is fed, pipelined requests included, so the events of later
requests wait in a queue: :meth:`feed` and :meth:`next_cycle` hand out one message per cycle,
as the interface requires. After an Upgrade request llhttp stops; the bytes after the head are
kept raw, for a tunnel (:meth:`take_buffer`) or, if the upstream refuses the upgrade, for a fresh
llhttp parser (:meth:`next_cycle`).
"""

from __future__ import annotations

from collections import deque
from typing import Final

import httptools

from shoal.dataplane.http1 import (
    Data,
    EndOfMessage,
    Event,
    Limits,
    ProtocolError,
    Request,
    analyse_request,
)

__all__ = ["HttptoolsRequestParser"]

_END: Final = EndOfMessage()
_EVENT_OVERHEAD: Final = 64
"""Bytes counted per queued event when telling the driver how much is buffered."""


class _Stop(Exception):
    """Raised in a callback to stop llhttp after recording the error."""


class HttptoolsRequestParser:
    """Request parser on llhttp; see the module docstring and :class:`~shoal.dataplane.http1.RequestParser`."""

    __slots__ = (
        "_began",
        "_body_size",
        "_cycle_done",
        "_eof",
        "_error",
        "_fields",
        "_head_fed",
        "_head_size",
        "_in_head",
        "_in_message",
        "_limits",
        "_parser",
        "_queue",
        "_tunnel",
        "_upgraded",
        "_url",
    )

    def __init__(self, limits: Limits | None = None) -> None:
        self._limits = limits or Limits()
        self._parser = httptools.HttpRequestParser(self)
        self._queue: deque[Event] = deque()
        self._cycle_done = False
        self._error = False
        self._eof = False
        self._url = b""
        self._fields: list[tuple[bytes, bytes]] = []
        self._head_size = 0
        self._head_fed = 0
        self._began = False
        self._in_head = True
        self._in_message = False
        self._body_size = 0
        self._tunnel = b""
        self._upgraded = False

    @property
    def buffered(self) -> int:
        queued = 0
        for event in self._queue:
            queued += len(event.data) if type(event) is Data else _EVENT_OVERHEAD
        return queued + len(self._tunnel)

    @property
    def at_rest(self) -> bool:
        return not (
            self._in_message
            or self._queue
            or self._tunnel
            or self._error
            or self._upgraded
            or self._cycle_done
            or self._eof
        )

    def hold(self) -> None:
        if self.at_rest:
            self._cycle_done = True

    # --- llhttp callbacks ---

    def on_message_begin(self) -> None:
        self._in_message = True
        self._in_head = True
        self._url = b""
        self._fields = []
        self._head_size = 0
        self._head_fed = 0
        self._began = True
        self._body_size = 0

    def on_url(self, url: bytes) -> None:
        self._url += url
        self._head_size += len(url)
        self._check_head_size()

    def on_header(self, name: bytes, value: bytes) -> None:
        self._fields.append((name, value))
        self._head_size += len(name) + len(value) + 4
        if len(self._fields) > self._limits.max_headers:
            self._stop(ProtocolError(431, "too many header fields"))
        self._check_head_size()

    def on_headers_complete(self) -> None:
        self._in_head = False
        parser = self._parser
        event = analyse_request(
            parser.get_method(),
            self._url,
            parser.get_http_version().encode("ascii"),
            self._fields,
            self._limits,
        )
        if isinstance(event, ProtocolError):
            self._stop(event)
        assert isinstance(event, Request)
        self._queue.append(event)

    def on_body(self, body: bytes) -> None:
        self._body_size += len(body)
        maximum = self._limits.max_body_size
        if maximum is not None and self._body_size > maximum:
            self._stop(ProtocolError(413, "request body too large"))
        self._queue.append(Data(body))

    def on_message_complete(self) -> None:
        self._in_message = False
        self._in_head = True
        self._queue.append(_END)

    # --- the interface ---

    def feed(self, data: bytes) -> list[Event]:
        if self._error:
            return []
        if self._upgraded:
            self._tunnel += data
            return []
        self._parse(data)
        return self._drain()

    def feed_eof(self) -> list[Event]:
        self._eof = True
        if self._in_message and not self._error and not self._upgraded:
            self._record(ProtocolError(400, "connection closed in the middle of a message"))
        return self._drain()

    def next_cycle(self) -> list[Event]:
        if not self._cycle_done:
            return []
        self._cycle_done = False
        if self._upgraded:
            # The upstream refused the upgrade: the bytes after the head are HTTP again.
            data, self._tunnel, self._upgraded = self._tunnel, b"", False
            self._parser = httptools.HttpRequestParser(self)
            self._in_message = False
            if data:
                self._parse(data)
            if self._eof and self._in_message and not self._error:
                self._record(ProtocolError(400, "connection closed in the middle of a message"))
        return self._drain()

    def take_buffer(self) -> bytes:
        data, self._tunnel = self._tunnel, b""
        self._queue.clear()
        self._error = True  # nothing more to parse: the connection is a tunnel now
        return data

    # --- internals ---

    def _parse(self, data: bytes) -> None:
        self._began = False
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade as upgrade:
            self._upgraded = True
            self._tunnel = data[upgrade.args[0] :]
        except httptools.HttpParserInvalidMethodError:
            if not self._error:
                self._record(ProtocolError(501, "method not implemented"))
        except httptools.HttpParserError as error:
            if not self._error:
                self._record(ProtocolError(400, f"malformed request: {error}"))
        else:
            if self._in_message and self._in_head:
                # A head still incomplete: llhttp holds the field it is reading, so count the
                # bytes fed (all of them when the head began in an earlier feed).
                self._head_fed = self._head_size if self._began else self._head_fed + len(data)
                self._check_head_size(raise_=False)

    def _check_head_size(self, *, raise_: bool = True) -> None:
        size = max(self._head_size, self._head_fed)
        if size > self._limits.max_head_size and not self._error:
            error = ProtocolError(431, "request header section too large")
            if raise_:
                self._stop(error)
            self._record(error)

    def _record(self, error: ProtocolError) -> None:
        self._error = True
        self._queue.append(error)

    def _stop(self, error: ProtocolError) -> None:
        self._record(error)
        raise _Stop(error.detail)

    def _drain(self) -> list[Event]:
        if self._cycle_done:
            return []
        queue = self._queue
        out: list[Event] = []
        while queue:
            event = queue.popleft()
            out.append(event)
            if type(event) is EndOfMessage:
                self._cycle_done = True
                break
            if type(event) is ProtocolError:
                queue.clear()
                break
        return out
