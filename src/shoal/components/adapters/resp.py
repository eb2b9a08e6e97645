"""Just enough of Redis' protocol (RESP2) for an adapter: send a command, read one reply.

:func:`encode_command` writes a command as an array of bulk strings; :class:`ReplyParser` is a
sans-IO parser fed bytes as they arrive, returning a reply once one is complete (so the same code
is tested byte by byte without a socket). :func:`redis_command` is the thin asyncio driver:
connect, optionally ``AUTH``, send, read, close, all under one deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

from shoal.errors import RetryableError

__all__ = [
    "MAX_REPLY",
    "ProtocolViolation",
    "RedisReplyError",
    "ReplyParser",
    "encode_command",
    "redis_command",
]

MAX_REPLY = 64 * 1024 * 1024
"""Largest bulk reply accepted (INFO is a few kB); a larger length is a protocol violation."""

Reply = str | int | None | list["Reply"]


class ProtocolViolation(RetryableError):
    """The server's bytes are not RESP: wrong address (not a Redis server?) or a broken link."""


@dataclass(frozen=True, slots=True)
class RedisReplyError:
    """An error reply (``-ERR ...``): a reply, not an exception, since the link is still fine."""

    message: str


def encode_command(*args: str | bytes) -> bytes:
    """``SET k v`` as ``*3\\r\\n$3\\r\\nSET\\r\\n...``."""
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg.encode() if isinstance(arg, str) else arg
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


class ReplyParser:
    """Feed bytes with :meth:`feed`; :meth:`next_reply` returns a reply when one is complete.

    Simple strings and bulk strings are decoded as UTF-8 (with replacement); integers as int;
    null bulk and null array as None; an error reply as :class:`RedisReplyError`.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> None:
        self._buffer += data

    def next_reply(self) -> tuple[bool, Reply | RedisReplyError]:
        """``(True, reply)`` when a whole reply is buffered (and consumed), else ``(False, None)``."""
        result = self._parse(0)
        if result is None:
            return False, None
        reply, end = result
        del self._buffer[:end]
        return True, reply

    def _line(self, start: int) -> tuple[bytes, int] | None:
        end = self._buffer.find(b"\r\n", start)
        if end < 0:
            if len(self._buffer) - start > 64 * 1024:
                raise ProtocolViolation("a RESP header line longer than 64 KiB")
            return None
        return bytes(self._buffer[start:end]), end + 2

    def _parse(self, start: int) -> tuple[Reply | RedisReplyError, int] | None:
        found = self._line(start)
        if found is None:
            return None
        line, after = found
        if not line:
            raise ProtocolViolation("an empty RESP line")
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest.decode("utf-8", "replace"), after
        if kind == b"-":
            return RedisReplyError(rest.decode("utf-8", "replace")), after
        if kind == b":":
            return _integer(rest), after
        if kind == b"$":
            length = _integer(rest)
            if length == -1:
                return None, after
            if not 0 <= length <= MAX_REPLY:
                raise ProtocolViolation(f"a bulk length of {length} is out of range")
            if len(self._buffer) < after + length + 2:
                return None
            if self._buffer[after + length : after + length + 2] != b"\r\n":
                raise ProtocolViolation("a bulk string not followed by CRLF")
            return bytes(self._buffer[after : after + length]).decode("utf-8", "replace"), (
                after + length + 2
            )
        if kind == b"*":
            count = _integer(rest)
            if count == -1:
                return None, after
            if not 0 <= count <= 1024 * 1024:
                raise ProtocolViolation(f"an array length of {count} is out of range")
            items: list[Reply] = []
            position = after
            for _ in range(count):
                parsed = self._parse(position)
                if parsed is None:
                    return None
                item, position = parsed
                items.append(item.message if isinstance(item, RedisReplyError) else item)
            return items, position
        raise ProtocolViolation(f"unknown RESP type byte {kind!r}")


def _integer(text: bytes) -> int:
    try:
        return int(text)
    except ValueError:
        raise ProtocolViolation(f"not a RESP integer: {text[:40]!r}") from None


async def redis_command(
    host: str,
    port: int,
    *args: str,
    password: str | None = None,
    username: str | None = None,
) -> Reply | RedisReplyError:
    """Run one command on a fresh connection and return its reply.

    Raises :class:`OSError` (refused, reset) or :class:`ProtocolViolation`; an error reply to
    ``AUTH`` is returned as that :class:`RedisReplyError`. Callers bound it with
    ``asyncio.timeout``.
    """
    reader, writer = await asyncio.open_connection(host, port)
    try:
        parser = ReplyParser()
        if password is not None:
            auth = ("AUTH", username, password) if username else ("AUTH", password)
            writer.write(encode_command(*auth))
            reply = await _read_reply(reader, parser)
            if isinstance(reply, RedisReplyError):
                return reply
        writer.write(encode_command(*args))
        return await _read_reply(reader, parser)
    finally:
        writer.close()
        # The peer may reset the link while we close it: nothing is left to clean up then.
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def _read_reply(reader: asyncio.StreamReader, parser: ReplyParser) -> Reply | RedisReplyError:
    while True:
        done, reply = parser.next_reply()
        if done:
            return reply
        data = await reader.read(65536)
        if not data:
            raise ProtocolViolation("the server closed the connection before replying")
        parser.feed(data)
