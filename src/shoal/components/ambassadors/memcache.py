"""
The memcached text protocol as a sans-IO core: requests parsed from a byte stream, responses
found in a byte stream.

Theory of operation
-------------------
:class:`RequestParser` takes the client's bytes in chunks of any size and returns each complete
:class:`Request` (command, keys, the exact bytes to forward, whether a reply is owed) or a
:class:`BadRequest` (the reply to send in its place). The protocol is line based, so unlike RESP a
bad line never desynchronises the stream: the parser answers it and reads on.

==========================================  ==========================================================
``get|gets <key>*``, ``gat|gats <exp> <key>*``  retrieval: ``VALUE`` blocks then ``END``; split by server
``set|add|replace|append|prepend <key> <flags> <exp> <bytes> [noreply]`` and ``cas ... <cas> [noreply]``
                                            storage, followed by a ``<bytes>`` data block and CRLF
``delete <key> [noreply]``, ``incr|decr <key> <n> [noreply]``, ``touch <key> <exp> [noreply]``
``version``, ``quit``                          answered by the ambassador itself
==========================================  ==========================================================

Errors are memcached's own: ``ERROR`` for an unknown command, ``CLIENT_ERROR bad command line
format`` for a malformed line or a key over 250 bytes, ``CLIENT_ERROR bad data chunk`` when the
data block does not end where its length says, ``SERVER_ERROR object too large for cache`` for a
block over ``max_value_bytes`` (skipped as it streams in, never buffered). Nothing is fatal except
a line longer than ``max_line_bytes`` with no end in sight, after which the connection is closed
(memcached does the same).

:func:`response_end` finds where one server response ends: a single line, or for retrievals the
``VALUE`` blocks up to ``END`` (or an error line in their place).
"""

from typing import Final, NamedTuple

__all__ = [
    "MAX_KEY_BYTES",
    "MAX_LINE_BYTES",
    "MAX_VALUE_BYTES",
    "RETRIEVAL",
    "STORAGE",
    "BadRequest",
    "Request",
    "RequestParser",
    "ResponseError",
    "response_end",
    "value_blocks",
]

MAX_KEY_BYTES: Final = 250
"""memcached's key length limit."""
MAX_VALUE_BYTES: Final = 1024 * 1024
"""Default data block limit: memcached's default item size (``-I 1m``)."""
MAX_LINE_BYTES: Final = 64 * 1024
"""Longest command line (a multi-get of a few hundred keys fits)."""

RETRIEVAL: Final = frozenset({b"get", b"gets", b"gat", b"gats"})
"""Commands answered with ``VALUE`` blocks and ``END``."""
STORAGE: Final = frozenset({b"set", b"add", b"replace", b"append", b"prepend", b"cas"})
"""Commands followed by a data block."""

_CRLF: Final = b"\r\n"
_BAD_FORMAT: Final = b"CLIENT_ERROR bad command line format\r\n"


class Request(NamedTuple):
    """One complete request.

    ``keys`` are the keys it touches (none for ``version``/``quit``); ``raw`` is the command line and
    data block exactly as received; ``reply`` is False for ``noreply`` requests; for ``gat``/``gats``
    ``exptime`` is the expiry argument that a split must repeat for each server.
    """

    command: bytes
    keys: list[bytes]
    raw: bytes
    reply: bool = True
    exptime: bytes = b""


class BadRequest(NamedTuple):
    """A request that cannot be served: ``reply`` goes in its place; ``fatal``: then close."""

    reply: bytes
    fatal: bool = False


def _valid_key(key: bytes) -> bool:
    # Keys are at most 250 bytes without control characters; split() already removed whitespace.
    return len(key) <= MAX_KEY_BYTES and not any(c < 32 or c == 127 for c in key)


def _uint(text: bytes, bits: int = 32) -> bool:
    return text.isdigit() and int(text) < (1 << bits)


def _int(text: bytes) -> bool:
    body = text[1:] if text[:1] == b"-" else text
    return body.isdigit()


class RequestParser:
    """Client bytes in, :class:`Request` and :class:`BadRequest` out; see the module docstring."""

    __slots__ = ("_buf", "_dead", "_skip", "_skip_line", "max_line_bytes", "max_value_bytes")

    def __init__(
        self, *, max_value_bytes: int = MAX_VALUE_BYTES, max_line_bytes: int = MAX_LINE_BYTES
    ) -> None:
        self.max_value_bytes = max_value_bytes
        self.max_line_bytes = max_line_bytes
        self._buf = b""
        self._dead = False
        self._skip = 0
        """Bytes of an oversized data block still to be thrown away."""
        self._skip_line = False
        """After a bad data chunk: throw away the rest of the line it is on."""

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes) -> list[Request | BadRequest]:
        """The requests completed by ``data`` (possibly none), in order."""
        if self._dead:
            return []
        buf = self._buf + data if self._buf else data
        out: list[Request | BadRequest] = []
        pos, end = 0, len(buf)
        while pos < end:
            if self._skip:
                take = min(self._skip, end - pos)
                self._skip -= take
                pos += take
                continue
            if self._skip_line:
                nl = buf.find(b"\n", pos)
                if nl < 0:
                    pos = end
                    break
                self._skip_line = False
                pos = nl + 1
                continue
            eol = buf.find(b"\n", pos, pos + self.max_line_bytes + 1)
            if eol < 0:
                if end - pos > self.max_line_bytes:
                    out.append(BadRequest(b"CLIENT_ERROR line too long\r\n", fatal=True))
                    self._dead = True
                    self._buf = b""
                    return out
                break
            nxt = self._request(buf, pos, eol, out)
            if nxt < 0:
                break
            pos = nxt
        self._buf = buf[pos:] if pos < end else b""
        return out

    def _request(self, buf: bytes, pos: int, eol: int, out: list[Request | BadRequest]) -> int:
        """Parse the line ``buf[pos:eol]``; the position after the request, or -1 to wait."""
        line_end = eol + 1
        words = buf[pos:eol].split()
        if not words:
            out.append(BadRequest(b"ERROR\r\n"))
            return line_end
        command = words[0]
        if command in RETRIEVAL:
            gat = command in (b"gat", b"gats")
            keys = words[2:] if gat else words[1:]
            if not keys or (gat and not _int(words[1])) or not all(map(_valid_key, keys)):
                out.append(BadRequest(_BAD_FORMAT))
                return line_end
            out.append(Request(command, keys, buf[pos:line_end], True, words[1] if gat else b""))
            return line_end
        if command in STORAGE:
            return self._storage(buf, pos, eol, words, out)
        noreply = words[-1] == b"noreply"
        args = words[1:-1] if noreply else words[1:]
        if command == b"delete":
            # "delete <key> 0" is an old form memcached still accepts.
            if not (len(args) == 1 or (len(args) == 2 and args[1] == b"0")) or not _valid_key(
                args[0]
            ):
                out.append(BadRequest(_BAD_FORMAT))
                return line_end
        elif command in (b"incr", b"decr"):
            if len(args) != 2 or not _valid_key(args[0]) or not _uint(args[1], 64):
                out.append(
                    BadRequest(
                        b"CLIENT_ERROR invalid numeric delta argument\r\n"
                        if len(args) == 2
                        else _BAD_FORMAT
                    )
                )
                return line_end
        elif command == b"touch":
            if len(args) != 2 or not _valid_key(args[0]) or not _int(args[1]):
                out.append(BadRequest(_BAD_FORMAT))
                return line_end
        elif command in (b"version", b"quit"):
            if len(words) != 1:
                out.append(BadRequest(b"ERROR\r\n"))
                return line_end
            out.append(Request(command, [], buf[pos:line_end]))
            return line_end
        else:
            out.append(BadRequest(_unsupported(command)))
            return line_end
        out.append(Request(command, [args[0]], buf[pos:line_end], not noreply))
        return line_end

    def _storage(
        self, buf: bytes, pos: int, eol: int, words: list[bytes], out: list[Request | BadRequest]
    ) -> int:
        command = words[0]
        fields = 6 if command == b"cas" else 5
        noreply = len(words) == fields + 1 and words[-1] == b"noreply"
        size_ok = len(words) > 4 and words[4].isdigit()
        if (
            len(words) != fields + noreply
            or not _valid_key(words[1])
            or not _uint(words[2])
            or not _int(words[3])
            or not size_ok
            or (command == b"cas" and not _uint(words[5], 64))
        ):
            out.append(BadRequest(_BAD_FORMAT))
            # With a readable length the data block can still be skipped, so it is not taken for
            # a command (memcached swallows it the same way).
            if size_ok and int(words[4]) <= self.max_value_bytes:
                self._skip = int(words[4]) + 2
            return eol + 1
        size = int(words[4])
        if size > self.max_value_bytes:
            out.append(BadRequest(b"SERVER_ERROR object too large for cache\r\n"))
            self._skip = size + 2
            return eol + 1
        stop = eol + 1 + size
        if stop + 2 > len(buf):
            return -1
        if buf[stop : stop + 2] != _CRLF:
            out.append(BadRequest(b"CLIENT_ERROR bad data chunk\r\n"))
            # Resynchronise after the next line end, as memcached does.
            self._skip_line = True
            return stop
        out.append(Request(command, [words[1]], buf[pos : stop + 2], not noreply))
        return stop + 2


def _unsupported(command: bytes) -> bytes:
    known = {
        b"stats": "statistics are per server",
        b"flush_all": "it would have to reach every server",
        b"verbosity": "it is a per-server setting",
        b"cache_memlimit": "it is a per-server setting",
        b"shutdown": "it is a per-server command",
        b"slabs": "it is a per-server command",
        b"lru_crawler": "it is a per-server command",
        b"watch": "it is a per-server command",
    }
    why = known.get(command)
    if why is None:
        return b"ERROR\r\n"
    return b"SERVER_ERROR '%b' is not supported by the ambassador: %b\r\n" % (
        command,
        why.encode(),
    )


class ResponseError(Exception):
    """A server's bytes are not a memcached response: the connection to it must be dropped."""


def response_end(buf: bytes, pos: int, retrieval: bool) -> int:
    """Where the response starting at ``pos`` ends, or -1 when it is not all there yet.

    ``retrieval``: the request was a ``get``-like command, so the response is ``VALUE`` blocks up
    to ``END`` (or one error line).
    """
    if not retrieval:
        eol = buf.find(_CRLF, pos)
        return -1 if eol < 0 else eol + 2
    end = len(buf)
    while True:
        eol = buf.find(_CRLF, pos)
        if eol < 0:
            return -1
        if buf.startswith(b"VALUE ", pos):
            words = buf[pos:eol].split()
            if len(words) < 4 or not words[3].isdigit():
                raise ResponseError(f"bad VALUE line {buf[pos:eol]!r}")
            pos = eol + 2 + int(words[3]) + 2
            if pos > end:
                return -1
            continue
        return eol + 2  # END, or an error line instead of the values


def value_blocks(raw: bytes) -> dict[bytes, list[bytes]] | None:
    """The ``VALUE`` blocks of a retrieval response by key, or None if it is an error line."""
    blocks: dict[bytes, list[bytes]] = {}
    pos = 0
    while True:
        eol = raw.find(_CRLF, pos)
        if eol < 0:
            raise ResponseError("truncated response")
        if not raw.startswith(b"VALUE ", pos):
            return blocks if raw[pos:eol] == b"END" else None
        words = raw[pos:eol].split()
        stop = eol + 2 + int(words[3]) + 2
        blocks.setdefault(words[1], []).append(raw[pos:stop])
        pos = stop
