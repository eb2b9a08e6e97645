"""
RESP2, the Redis protocol, as a sans-IO core: requests parsed from a byte stream, replies found
in a byte stream, and the few replies the ambassador writes itself.

Theory of operation
-------------------
:class:`RequestParser` takes the client's bytes in chunks of any size (``feed``) and returns what
became complete: a :class:`Command` (its arguments and the exact bytes it arrived as, so a command
routed to one server is forwarded without being re-encoded) or a :class:`BadRequest` (an error
reply to send in its place). Commands come as multibulk arrays (``*2\\r\\n$3\\r\\nGET\\r\\n...``, what
every client library sends) or inline (``GET key\\r\\n``, what telnet and ``redis-cli`` in a pipe
send); inline commands are re-encoded as multibulk.

Bad input is answered the way Redis answers it:

* an argument longer than ``max_bulk_bytes`` is *skipped* as it streams in (its length is known, so
  it is never buffered) and the command gets ``-ERR ... too large``; the connection keeps working;
* broken framing (``*x``, a missing ``$``, a bad length) leaves no way to tell where the next
  command starts, so the parser answers ``-ERR Protocol error: ...`` with ``fatal=True`` and stops;
  the driver writes the error and closes that connection, as Redis does. Other clients are
  unaffected: each connection has its own parser.

:func:`reply_end` finds where one complete reply ends in the servers' bytes without decoding it
(replies are forwarded as raw bytes); :func:`array_items` and :func:`decode` take replies apart
only where a split command's parts must be merged.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final, NamedTuple

__all__ = [
    "MAX_ARGS",
    "MAX_BULK_BYTES",
    "MAX_INLINE_BYTES",
    "BadRequest",
    "Command",
    "ReplyError",
    "RequestParser",
    "array_items",
    "decode",
    "encode_array",
    "encode_bulk",
    "encode_command",
    "encode_error",
    "encode_int",
    "reply_end",
    "scan_commands",
    "split_replies",
]

MAX_BULK_BYTES: Final = 64 * 1024 * 1024
"""Default limit on one argument (Redis allows 512 MiB; an ambassador buffers what it forwards)."""
MAX_ARGS: Final = 1024 * 1024
"""Default limit on arguments per command (Redis' own multibulk limit)."""
MAX_INLINE_BYTES: Final = 64 * 1024
"""Longest inline command or header line (Redis' ``PROTO_INLINE_MAX_SIZE``)."""

_CRLF: Final = b"\r\n"
_SPLIT_LIMIT: Final = 64 * 1024
"""Reads up to this size try the split fast path (a split is O(read), so not for big values)."""
_DEAD: Final = -2
"""A parse step's result after a fatal error (-1 means: wait for more bytes)."""


Command = tuple[list[bytes], bytes]
"""One complete request: its arguments (the name first) and its bytes as received.

A plain tuple, not a dataclass or NamedTuple: one is built per pipelined command and a plain
tuple costs a twentieth of either. :class:`BadRequest` (a NamedTuple, so a tuple *subclass*) is
told apart by ``type(event) is tuple``."""


class BadRequest(NamedTuple):
    """A request that cannot be served: ``reply`` is the error to send in its place.

    ``fatal`` means the stream cannot be followed any more: send ``reply``, then close.
    """

    reply: bytes
    fatal: bool = False


def encode_error(message: str) -> bytes:
    """``-message\\r\\n``; line breaks in ``message`` would end the reply early and become spaces."""
    return b"-" + message.replace("\r", " ").replace("\n", " ").encode() + _CRLF


def encode_int(value: int) -> bytes:
    return b":%d\r\n" % value


def encode_bulk(value: bytes | None) -> bytes:
    if value is None:
        return b"$-1\r\n"
    return b"$%d\r\n%b\r\n" % (len(value), value)


def encode_array(raw_items: list[bytes]) -> bytes:
    """An array of already encoded replies."""
    return b"*%d\r\n%b" % (len(raw_items), b"".join(raw_items))


def encode_command(args: list[bytes]) -> bytes:
    """A command as the multibulk array servers expect."""
    parts = [b"*%d\r\n" % len(args)]
    parts.extend(b"$%d\r\n%b\r\n" % (len(arg), arg) for arg in args)
    return b"".join(parts)


ScanCommands = Callable[[bytes, int, list["Command | BadRequest"], int, int], int]
"""The signature of :func:`scan_commands` (and of its compiled twin in ``_resp``)."""


def scan_commands(
    buf: bytes, pos: int, out: list[Command | BadRequest], max_args: int, max_bulk: int
) -> int:
    """The fast path for a read of ordinary pipelined commands: append each whole command from
    ``pos`` to ``out``; return where it stopped.

    The contract (the compiled ``_resp.scan_commands`` keeps it too): every command taken is
    exactly what :class:`RequestParser`'s careful path would make of it, and it stops, taking
    nothing more, at anything else (an incomplete command, an empty array, a limit exceeded,
    bad framing), where the careful path takes over with all its checks and errors. Where it
    stops may differ between implementations, never what it takes.

    Here: one ``split`` on CRLF (in C) instead of a ``find`` per line, so it also stops at an
    argument holding CRLF, and it leaves reads over 64 KiB to the careful path (a split is
    O(read)).
    """
    if len(buf) - pos > _SPLIT_LIMIT:
        return pos
    tokens = (buf[pos:] if pos else buf).split(b"\r\n")
    last = len(tokens) - 1  # tokens[last] follows the final CRLF: not a complete line
    index = 0
    try:
        while index < last:
            head = tokens[index]
            if not head or head[0] != 42:
                break
            count = int(head[1:])
            if count <= 0 or count > max_args or index + 2 * count >= last:
                break
            at = pos + len(head) + 2
            args: list[bytes] = []
            for arg in range(index + 1, index + 1 + 2 * count, 2):
                size_line, value = tokens[arg], tokens[arg + 1]
                size = len(value)
                if (
                    not size_line
                    or size_line[0] != 36
                    or int(size_line[1:]) != size
                    or size > max_bulk
                ):
                    return pos
                args.append(value)
                at += len(size_line) + size + 4
            out.append((args, buf[pos:at]))
            pos = at
            index += 1 + 2 * count
    except ValueError:  # a length that is not a number: the careful path reports it
        pass
    return pos


class RequestParser:
    """Client bytes in, :class:`Command` and :class:`BadRequest` out; see the module docstring."""

    __slots__ = (
        "_buf",
        "_dead",
        "_discard_args",
        "_discard_body",
        "_discard_reply",
        "clean",
        "max_args",
        "max_bulk_bytes",
        "max_inline_bytes",
        "scan",
    )

    def __init__(
        self,
        *,
        max_bulk_bytes: int = MAX_BULK_BYTES,
        max_args: int = MAX_ARGS,
        max_inline_bytes: int = MAX_INLINE_BYTES,
        scan: ScanCommands | None = None,
    ) -> None:
        self.max_bulk_bytes = max_bulk_bytes
        self.scan: ScanCommands = scan or scan_commands
        """The fast path (:func:`scan_commands`, or the compiled one of the same contract)."""
        self.max_args = max_args
        self.max_inline_bytes = max_inline_bytes
        self._buf = b""
        self._dead = False
        # While skipping an oversized command: bytes left of the current argument (with its
        # CRLF), arguments left after it, and the error to answer once it is all gone.
        self._discard_body = 0
        self._discard_args = 0
        self._discard_reply = b""
        self.clean = True
        """Nothing buffered, nothing being skipped, not dead: the next read starts afresh
        (the driver then runs :attr:`scan` on it itself, before :meth:`feed`)."""

    @property
    def buffered(self) -> int:
        """Bytes received but not yet part of a complete command."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[Command | BadRequest]:
        """The requests completed by ``data`` (possibly none), in order."""
        if self._dead:
            return []
        buf = self._buf + data if self._buf else data
        out: list[Command | BadRequest] = []
        end = len(buf)
        pos = 0
        if not self._discard_reply and buf[:1] == b"*":
            pos = self.scan(buf, 0, out, self.max_args, self.max_bulk_bytes)
        while pos < end:
            if self._discard_reply:
                pos = self._discard(buf, pos, out)
                if self._discard_reply:
                    break
                continue
            # b"*": a multibulk command; anything else is an inline command.
            nxt = self._multibulk(buf, pos, out) if buf[pos] == 42 else self._inline(buf, pos, out)
            if nxt == _DEAD:
                self._buf = b""
                self.clean = False
                return out
            if nxt < 0:  # incomplete: wait for more
                break
            pos = nxt
        self._buf = buf[pos:] if pos < end else b""
        self.clean = not self._buf and not self._discard_reply
        return out

    def _fatal(self, out: list[Command | BadRequest], message: str) -> int:
        out.append(BadRequest(encode_error(f"ERR Protocol error: {message}"), fatal=True))
        self._dead = True
        return _DEAD

    def _line(self, buf: bytes, pos: int, out: list[Command | BadRequest], what: str) -> int:
        """End of the header line at ``pos`` (-1: incomplete; _DEAD: too long, fatal sent)."""
        eol = buf.find(_CRLF, pos, pos + self.max_inline_bytes + 2)
        if eol < 0 and len(buf) - pos > self.max_inline_bytes:
            return self._fatal(out, f"too big {what}")
        return eol

    def _multibulk(self, buf: bytes, pos: int, out: list[Command | BadRequest]) -> int:
        # The hot path: one call per pipelined command, so header lines are found inline and
        # _line (which tells "incomplete" from "too long") runs only when a line has no end yet.
        limit = self.max_inline_bytes + 2
        eol = buf.find(b"\r\n", pos, pos + limit)
        if eol < 0:
            return self._line(buf, pos, out, "mbulk count string")
        try:
            count = int(buf[pos + 1 : eol])
        except ValueError:
            return self._fatal(out, "invalid multibulk length")
        if count > self.max_args:
            return self._fatal(out, "invalid multibulk length")
        at = eol + 2
        if count <= 0:  # Redis ignores empty and null arrays
            return at
        args: list[bytes] = []
        end = len(buf)
        max_bulk = self.max_bulk_bytes
        for index in range(count):
            if at >= end:
                return -1
            if buf[at] != 36:  # b"$"
                return self._fatal(out, f"expected '$', got '{chr(buf[at])}'")
            eol = buf.find(b"\r\n", at, at + limit)
            if eol < 0:
                return self._line(buf, at, out, "bulk count string")
            try:
                size = int(buf[at + 1 : eol])
            except ValueError:
                return self._fatal(out, "invalid bulk length")
            if size < 0:
                return self._fatal(out, "invalid bulk length")
            if size > max_bulk:
                # Skip the rest of this command as it streams in, then answer in its place.
                name = args[0].decode("latin-1").upper() if args else "?"
                self._discard_body = size + 2
                self._discard_args = count - index - 1
                self._discard_reply = encode_error(
                    f"ERR argument {index} of '{name}' is {size} bytes: over the ambassador's "
                    f"limit of {max_bulk} bytes"
                )
                return eol + 2
            start = eol + 2
            stop = start + size
            if stop + 2 > end:
                return -1
            if buf[stop] != 13 or buf[stop + 1] != 10:  # CRLF
                return self._fatal(out, "bulk argument not followed by CRLF")
            args.append(buf[start:stop])
            at = stop + 2
        out.append((args, buf[pos:at]))
        return at

    def _discard(self, buf: bytes, pos: int, out: list[Command | BadRequest]) -> int:
        end = len(buf)
        while True:
            if self._discard_body:
                take = min(self._discard_body, end - pos)
                self._discard_body -= take
                pos += take
                if self._discard_body:
                    return pos
            if not self._discard_args:
                out.append(BadRequest(self._discard_reply))
                self._discard_reply = b""
                return pos
            if pos >= end:
                return pos
            if buf[pos] != 36:
                self._discard_reply = b""
                self._fatal(out, f"expected '$', got '{chr(buf[pos])}'")
                return end
            eol = self._line(buf, pos, out, "bulk count string")
            if eol == _DEAD:
                self._discard_reply = b""
                return end
            if eol < 0:
                return pos
            try:
                size = int(buf[pos + 1 : eol])
            except ValueError:
                size = -1
            if size < 0:
                self._discard_reply = b""
                self._fatal(out, "invalid bulk length")
                return end
            self._discard_args -= 1
            self._discard_body = size + 2
            pos = eol + 2

    def _inline(self, buf: bytes, pos: int, out: list[Command | BadRequest]) -> int:
        eol = buf.find(b"\n", pos, pos + self.max_inline_bytes + 1)
        if eol < 0:
            if len(buf) - pos > self.max_inline_bytes:
                return self._fatal(out, "too big inline request")
            return -1
        line = buf[pos:eol]
        if line.endswith(b"\r"):
            line = line[:-1]
        args = line.split()
        if args:
            out.append((args, encode_command(args)))
        return eol + 1


class ReplyError(Exception):
    """A server's bytes are not RESP2: the connection to it must be dropped."""


def reply_end(buf: bytes, pos: int = 0) -> int:
    """Where the reply starting at ``pos`` ends, or -1 when ``buf`` does not hold all of it yet.

    Nested arrays are walked with a counter of replies still owed, not recursion.
    """
    owed = 1
    end = len(buf)
    while owed:
        if pos >= end:
            return -1
        kind = buf[pos]
        eol = buf.find(_CRLF, pos)
        if eol < 0:
            return -1
        owed -= 1
        if kind == 36:  # $ bulk
            try:
                size = int(buf[pos + 1 : eol])
            except ValueError:
                raise ReplyError(f"bad bulk length {buf[pos:eol]!r}") from None
            pos = eol + 2 if size < 0 else eol + size + 4
            if pos > end:
                return -1
        elif kind in (43, 45, 58):  # + - :
            pos = eol + 2
        elif kind == 42:  # * array
            try:
                count = int(buf[pos + 1 : eol])
            except ValueError:
                raise ReplyError(f"bad array length {buf[pos:eol]!r}") from None
            if count > 0:
                owed += count
            pos = eol + 2
        else:
            raise ReplyError(f"not a RESP2 reply: {buf[pos : pos + 16]!r}")
    return pos


def split_replies(buf: bytes, pos: int, limit: int, out: list[bytes]) -> int:
    """Append up to ``limit`` whole replies from ``pos`` to ``out``; return where it stopped.

    The server side's hot path (the compiled ``_resp.split_replies`` has the same contract):
    bulk, simple and integer replies are framed inline, arrays (and anything odd) go through
    :func:`reply_end`. Raises :class:`ReplyError` for bytes that are not RESP2.
    """
    size = len(buf)
    while limit > 0 and pos < size:
        kind = buf[pos]
        if kind == 36:  # $
            eol = buf.find(_CRLF, pos)
            if eol < 0:
                break
            try:
                length = int(buf[pos + 1 : eol])
            except ValueError:
                raise ReplyError(f"bad bulk length {buf[pos:eol]!r}") from None
            end = eol + 2 if length < 0 else eol + length + 4
            if end > size:
                break
        elif kind == 43 or kind == 58 or kind == 45:  # + : -
            eol = buf.find(_CRLF, pos)
            if eol < 0:
                break
            end = eol + 2
        else:
            end = reply_end(buf, pos)
            if end < 0:
                break
        out.append(buf[pos:end])
        pos = end
        limit -= 1
    return pos


def array_items(raw: bytes) -> list[bytes] | None:
    """The encoded items of an array reply, or None when ``raw`` is not an array (an error, say)."""
    if not raw.startswith(b"*"):
        return None
    eol = raw.find(_CRLF)
    count = int(raw[1:eol])
    items: list[bytes] = []
    pos = eol + 2
    for _ in range(max(count, 0)):
        stop = reply_end(raw, pos)
        if stop < 0:
            raise ReplyError("truncated array")
        items.append(raw[pos:stop])
        pos = stop
    return items


RespValue = bytes | int | None | list["RespValue"] | ReplyError
"""A decoded reply: simple strings and bulks as bytes, errors as :class:`ReplyError` values."""


def decode(raw: bytes) -> RespValue:
    """One complete reply as Python values (tests and merges; forwarding never decodes)."""
    value, stop = _decode(raw, 0)
    if stop != len(raw):
        raise ReplyError(f"{len(raw) - stop} bytes after the reply")
    return value


def _decode(raw: bytes, pos: int) -> tuple[RespValue, int]:
    eol = raw.find(_CRLF, pos)
    if eol < 0:
        raise ReplyError("truncated reply")
    kind, body = raw[pos], raw[pos + 1 : eol]
    if kind == 43:
        return body, eol + 2
    if kind == 45:
        return ReplyError(body.decode("utf-8", "replace")), eol + 2
    if kind == 58:
        return int(body), eol + 2
    if kind == 36:
        size = int(body)
        if size < 0:
            return None, eol + 2
        return raw[eol + 2 : eol + 2 + size], eol + size + 4
    if kind == 42:
        count = int(body)
        if count < 0:
            return None, eol + 2
        items: list[RespValue] = []
        pos = eol + 2
        for _ in range(count):
            item, pos = _decode(raw, pos)
            items.append(item)
        return items, pos
    raise ReplyError(f"not a RESP2 reply: {raw[pos : pos + 16]!r}")
