"""``shoal adapter logs``: a container's log lines as one JSON object per line, normalized.

Theory of operation
-------------------
:func:`make_parser` returns a pure function ``line -> dict`` for one input format:

- ``common``: the Common Log Format (``host ident user [time] "request" status bytes``);
- ``combined``: the same plus ``"referer" "user-agent"`` (nginx's and Apache's default);
- ``logfmt``: ``key=value key2="quoted value"`` pairs;
- ``regexp``: any regular expression with named groups, one field per group.

Every parser's fields then go through :func:`normalize`, which gives well-known fields one name
and one type whatever the source called them (``ts``/``time`` -> ``timestamp`` as RFC 3339 UTC,
``lvl``/``severity`` -> ``level`` in ``trace|debug|info|warn|error|fatal``, ``code`` ->
``status`` as an int, ``1.5ms`` -> ``duration`` in seconds, ...; the schema is in
docs/components/adapter-logs.md). A line no parser understands is never dropped: it comes out as
``{"message": LINE, "parse_error": true}``.

:class:`Follower` reads a file like ``tail -F``: from the start (or the end), then whatever is
appended; when the path is renamed away and recreated it finishes the old file and opens the new
one, and when the file shrinks (truncated in place) it starts again from the top. The decision is
the pure :func:`rotation`; the driver only stats, reads and sleeps between polls.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import io
import json
import os
import re
import stat
import sys
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, BinaryIO, Literal, TextIO

from pydantic import Field

from shoal.model._base import ShoalModel

__all__ = [
    "FORMATS",
    "Follower",
    "LogsConfig",
    "LogsSettings",
    "Rotation",
    "make_parser",
    "normalize",
    "parse_common",
    "parse_duration",
    "parse_logfmt",
    "parse_timestamp",
    "rotation",
    "run_logs",
]

Format = Literal["common", "combined", "logfmt", "regexp"]
FORMATS: tuple[Format, ...] = ("common", "combined", "logfmt", "regexp")
MAX_LINE = 256 * 1024
"""Longer lines are cut to this many bytes (and marked ``"truncated": true``)."""

Record = dict[str, Any]
Parser = Callable[[str], Record]


# --- parsers ---------------------------------------------------------------------------------

_CLF = re.compile(
    r'(?P<remote_addr>\S+) (?P<ident>\S+) (?P<user>\S+) \[(?P<time>[^\]]+)\] "(?P<request>(?:[^"\\]|\\.)*)" '
    r"(?P<status>\d{3}|-) (?P<bytes>\d+|-)"
)
_COMBINED_TAIL = re.compile(r' "(?P<referer>(?:[^"\\]|\\.)*)" "(?P<user_agent>(?:[^"\\]|\\.)*)"')


class ParseError(ValueError):
    """The line is not in the expected format."""


def parse_common(line: str, *, combined: bool = False) -> Record:
    """A Common (or, with ``combined``, Combined) Log Format line as raw string fields."""
    match = _CLF.match(line)
    if match is None:
        raise ParseError("not in the Common Log Format")
    fields = {k: _clf_unescape(v) for k, v in match.groupdict().items()}
    rest = line[match.end() :]
    if combined:
        tail = _COMBINED_TAIL.match(rest)
        if tail is None:
            raise ParseError('no "referer" "user-agent" after the Common Log Format fields')
        fields.update({k: _clf_unescape(v) for k, v in tail.groupdict().items()})
        rest = rest[tail.end() :]
    if rest.strip():
        # nginx and Apache formats often append fields (request time, upstream); keep them.
        fields["extra"] = rest.strip()
    if fields["bytes"] == "-":
        fields["bytes"] = "0"  # the format's way of writing "no body"
    return {k: v for k, v in fields.items() if v != "-"}


def _clf_unescape(value: str) -> str:
    return value.replace('\\"', '"').replace("\\\\", "\\") if "\\" in value else value


_LOGFMT_PAIR = re.compile(r'\s*([^\s=]+)(?:=("(?:[^"\\]|\\.)*"|[^\s"]*))?')


def parse_logfmt(line: str) -> Record:
    """``key=value`` pairs (values may be ``"quoted \\" with escapes"``); a bare key is ``true``.

    Raises :class:`ParseError` when the line has no pair or a quote is not closed.
    """
    fields: Record = {}
    position = 0
    text = line.rstrip()
    while position < len(text):
        match = _LOGFMT_PAIR.match(text, position)
        if match is None or match.end() == position:
            raise ParseError(f"not logfmt at column {position + 1}")
        end = match.end()
        if end < len(text) and not text[end].isspace():
            raise ParseError(f"not logfmt at column {end + 1} (an unclosed quote?)")
        key, value = match.group(1), match.group(2)
        if value is None:
            fields[key] = True
        elif value.startswith('"'):
            fields[key] = _logfmt_unquote(value)
        else:
            fields[key] = value
        position = end
    if not fields or all(v is True for v in fields.values()):
        raise ParseError("no key=value pairs")
    return fields


def _logfmt_unquote(value: str) -> str:
    try:
        unquoted = json.loads(value)
    except ValueError:
        return value[1:-1].replace('\\"', '"')
    return unquoted if isinstance(unquoted, str) else value[1:-1]


def make_parser(format: Format, regexp: str | None = None) -> Parser:
    """``line -> record``: parse and normalize; an unparsable line becomes a ``parse_error``
    record, never an exception. ``regexp`` (with named groups) is required for ``regexp``."""
    raw: Callable[[str], Record]
    if format == "regexp":
        if not regexp:
            raise ValueError(
                "--format regexp needs --regexp with named groups, like (?P<status>\\d+)"
            )
        try:
            pattern = re.compile(regexp)
        except re.error as error:
            raise ValueError(f"--regexp is not a valid regular expression: {error}") from None
        if not pattern.groupindex:
            raise ValueError("--regexp has no named groups: name them like (?P<status>\\d+)")

        def raw(line: str) -> Record:
            match = pattern.search(line)
            if match is None:
                raise ParseError("the regexp does not match")
            return {k: v for k, v in match.groupdict().items() if v is not None}

    elif format == "logfmt":
        raw = parse_logfmt
    elif format == "combined":

        def raw(line: str) -> Record:
            return parse_common(line, combined=True)

    elif format == "common":
        raw = parse_common
    else:
        raise ValueError(f"unknown format {format!r}: must be one of {', '.join(FORMATS)}")

    def parse(line: str) -> Record:
        try:
            return normalize(raw(line))
        except ParseError:
            return {"message": line, "parse_error": True}

    return parse


# --- normalization ---------------------------------------------------------------------------

_ALIASES: Mapping[str, str] = {
    "time": "timestamp",
    "ts": "timestamp",
    "t": "timestamp",
    "@timestamp": "timestamp",
    "datetime": "timestamp",
    "date": "timestamp",
    "lvl": "level",
    "severity": "level",
    "loglevel": "level",
    "log_level": "level",
    "msg": "message",
    "log": "message",
    "verb": "method",
    "http_method": "method",
    "request_method": "method",
    "uri": "path",
    "url": "path",
    "request_uri": "path",
    "code": "status",
    "status_code": "status",
    "http_status": "status",
    "size": "bytes",
    "body_bytes_sent": "bytes",
    "bytes_sent": "bytes",
    "response_size": "bytes",
    "latency": "duration",
    "elapsed": "duration",
    "took": "duration",
    "request_time": "duration",
    "response_time": "duration",
    "remote": "remote_addr",
    "remote_ip": "remote_addr",
    "client": "remote_addr",
    "client_ip": "remote_addr",
    "ip": "remote_addr",
    "ua": "user_agent",
    "http_user_agent": "user_agent",
    "agent": "user_agent",
    "referrer": "referer",
    "http_referer": "referer",
}

_LEVELS: Mapping[str, str] = {
    "trace": "trace",
    "debug": "debug",
    "dbg": "debug",
    "d": "debug",
    "info": "info",
    "information": "info",
    "informational": "info",
    "notice": "info",
    "i": "info",
    "warn": "warn",
    "warning": "warn",
    "w": "warn",
    "error": "error",
    "err": "error",
    "e": "error",
    "fatal": "fatal",
    "critical": "fatal",
    "crit": "fatal",
    "alert": "fatal",
    "emerg": "fatal",
    "emergency": "fatal",
    "panic": "fatal",
    "f": "fatal",
}
LEVELS = ("trace", "debug", "info", "warn", "error", "fatal")

SCHEMA = (
    "timestamp",
    "level",
    "message",
    "remote_addr",
    "user",
    "method",
    "path",
    "query",
    "protocol",
    "status",
    "bytes",
    "duration",
    "referer",
    "user_agent",
)
"""The normalized fields, in the order they are written (docs/components/adapter-logs.md)."""


def normalize(fields: Mapping[str, Any]) -> Record:
    """Well-known fields under one name and type; other fields kept as they are.

    A value that does not convert (``status=abc``) is kept as text under ``FIELD_raw``, so the
    normalized field always has its documented type.
    """
    # A field already under its canonical name wins; an alias of it is then kept as it is.
    out: Record = {key: value for key, value in fields.items() if key.lower() not in _ALIASES}
    for key, value in fields.items():
        name = _ALIASES.get(key.lower())
        if name is not None:
            out.setdefault(name, value) if name not in out else out.setdefault(key, value)
    request = out.pop("request", None)
    if isinstance(request, str):
        parts = request.split(" ")
        if len(parts) == 3 and parts[2].startswith("HTTP/"):
            out.setdefault("method", parts[0])
            out.setdefault("path", parts[1])
            out.setdefault("protocol", parts[2])
        else:
            out["request"] = request
    converters: dict[str, Callable[[Any], Any]] = {
        "timestamp": parse_timestamp,
        "level": _level,
        "status": _int,
        "bytes": _bytes,
        "duration": parse_duration,
        "method": _method,
    }
    for name, convert in converters.items():
        if name in out:
            converted = convert(out[name])
            if converted is None:
                out[f"{name}_raw"] = out.pop(name)
            else:
                out[name] = converted
    if "path" in out and isinstance(out["path"], str) and "?" in out["path"]:
        out["path"], _, query = out["path"].partition("?")
        out.setdefault("query", query)
    # The schema's fields first, in its order, then the rest as they came: easier to read.
    ordered = {name: out.pop(name) for name in SCHEMA if name in out}
    ordered.update(out)
    return ordered


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    text = str(value).strip()
    return int(text) if re.fullmatch(r"[+-]?\d{1,18}", text) else None


def _bytes(value: Any) -> int | None:
    return 0 if value == "-" else _int(value)


def _method(value: Any) -> str | None:
    text = str(value)
    return text.upper() if re.fullmatch(r"[A-Za-z]{1,20}", text) else None


def _level(value: Any) -> str | None:
    return _LEVELS.get(str(value).strip().lower())


_DURATION_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")


def parse_duration(value: Any) -> float | None:
    """Seconds from a number (taken as seconds) or a Go-style duration (``1h2m3.5s``, ``250ms``)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    text = str(value).strip()
    if re.fullmatch(r"\d+(\.\d*)?|\.\d+", text):
        return float(text)
    if not text or _DURATION_PART.sub("", text):
        return None
    return sum(float(n) * _DURATION_UNITS[unit] for n, unit in _DURATION_PART.findall(text))


_CLF_TIME = "%d/%b/%Y:%H:%M:%S %z"


def parse_timestamp(value: Any) -> str | None:
    """RFC 3339 in UTC (``2000-10-10T20:55:36Z``, fractions kept to the microsecond) from an RFC
    3339/ISO 8601 time, a Common Log Format time, or Unix seconds (milliseconds when it is
    that large); a time without a zone is taken as UTC."""
    moment: datetime | None = None
    if isinstance(value, int | float) and not isinstance(value, bool):
        moment = _from_epoch(float(value))
    else:
        text = str(value).strip()
        if re.fullmatch(r"\d{9,13}(\.\d+)?", text):
            moment = _from_epoch(float(text))
        else:
            for attempt in (_iso, _clf_time):
                moment = attempt(text)
                if moment is not None:
                    break
    if moment is None:
        return None
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if moment.microsecond:
        text += f".{moment.microsecond:06d}".rstrip("0")
    return text + "Z"


def _from_epoch(seconds: float) -> datetime | None:
    if seconds > 1e11:
        seconds /= 1000  # milliseconds since the epoch
    try:
        return datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, OSError, ValueError):
        return None


def _iso(text: str) -> datetime | None:
    if not re.match(r"\d{4}-\d{2}-\d{2}", text):
        return None
    candidate = text.replace(",", ".", 1)
    candidate = re.sub(r"(\.\d{6})\d+", r"\1", candidate)  # fromisoformat takes microseconds
    try:
        return datetime.fromisoformat(candidate)
    except ValueError:
        return None


def _clf_time(text: str) -> datetime | None:
    for layout in _OTHER_TIMES:
        try:
            return datetime.strptime(text, layout)
        except ValueError:
            continue
    return None


_OTHER_TIMES = (
    _CLF_TIME,
    "%d %b %Y %H:%M:%S.%f",  # Redis' own log ("29 Nov 2026 18:56:13.594"), local time: taken as UTC
    "%d %b %Y %H:%M:%S",
)


# --- following a file ------------------------------------------------------------------------


class Rotation(enum.Enum):
    """What the follower does after reading all there is."""

    WAIT = "wait"
    """Nothing new: poll again later."""
    REOPEN = "reopen"
    """The path names another file now (renamed away and recreated): drain the old, open the new."""
    REWIND = "rewind"
    """The file is shorter than what was read (truncated in place): read again from the top."""


@dataclass(frozen=True, slots=True)
class FileStamp:
    """What identifies a file and how long it is."""

    device: int
    inode: int
    size: int

    @classmethod
    def of(cls, stat: os.stat_result) -> FileStamp:
        return cls(stat.st_dev, stat.st_ino, stat.st_size)


def rotation(opened: FileStamp, at_path: FileStamp | None, position: int) -> Rotation:
    """The follower's decision at the end of the data, from the open file's identity, the file
    now at the path (None: there is none, e.g. between a rename and the re-creation) and the
    read position."""
    if at_path is not None and (at_path.device, at_path.inode) != (opened.device, opened.inode):
        return Rotation.REOPEN
    if at_path is not None and at_path.size < position:
        return Rotation.REWIND
    return Rotation.WAIT


class Follower:
    """Lines of a file as they are written, across rotation, like ``tail -F``.

    :meth:`lines` yields complete lines (without the newline). A last line with no newline is
    held back until it is completed, or yielded when the file is rotated away or at the end when
    not following.
    """

    def __init__(
        self, path: str, *, follow: bool = True, from_end: bool = False, poll: float = 0.25
    ) -> None:
        self.path = path
        self.follow = follow
        self.from_end = from_end
        self.poll = poll
        self.opened = asyncio.Event()
        """Set once the file is open (and, with ``from_end``, positioned at its end)."""

    async def lines(self, stop: asyncio.Event | None = None) -> AsyncIterator[str]:
        """Every line until the file ends (not following) or ``stop`` is set (following).

        Raises FileNotFoundError when not following and the file is not there; following, a
        missing file is waited for.
        """
        stop = stop or asyncio.Event()
        existed = self._stamp() is not None
        handle = await self._open(stop)
        if handle is None:
            return
        if self.from_end and existed:
            # Like tail -F: skip what is there at start; a file that appears later is new, all of it.
            handle.seek(0, os.SEEK_END)
        self.opened.set()
        pending = b""
        try:
            while True:
                chunk = handle.read(65536)
                if chunk:
                    pending += chunk
                    *complete, pending = pending.split(b"\n")
                    for raw in complete:
                        yield _decode(raw)
                    while len(pending) > MAX_LINE:  # an endless line: hand it on in pieces
                        yield _decode(pending[:MAX_LINE])
                        pending = pending[MAX_LINE:]
                    continue
                if not self.follow:
                    break
                decision = rotation(
                    FileStamp.of(os.fstat(handle.fileno())), self._stamp(), handle.tell()
                )
                if decision is Rotation.REOPEN:
                    # The writer may have added to the old file since our last read: drain it.
                    rest = pending + handle.read()
                    pending = b""
                    for raw in rest.split(b"\n"):
                        if raw:
                            yield _decode(raw)
                    handle.close()
                    reopened = await self._open(stop)
                    if reopened is None:
                        return
                    handle = reopened
                    continue
                if decision is Rotation.REWIND:
                    if pending:
                        yield _decode(pending)
                        pending = b""
                    handle.seek(0)
                    continue
                if await _stopped(stop, self.poll):
                    break
            if pending:
                yield _decode(pending)
        finally:
            handle.close()

    def _stamp(self) -> FileStamp | None:
        try:
            return FileStamp.of(os.stat(self.path))
        except FileNotFoundError:
            return None

    async def _open(self, stop: asyncio.Event) -> BinaryIO | None:
        while True:
            try:
                # A local file: opening it does not wait on anything. lines() closes it.
                return open(self.path, "rb")  # noqa: ASYNC230
            except FileNotFoundError:
                if not self.follow:
                    raise
            if await _stopped(stop, self.poll):
                return None


def _decode(raw: bytes) -> str:
    return raw.removesuffix(b"\r").decode("utf-8", "replace")


async def _stopped(stop: asyncio.Event, seconds: float) -> bool:
    """Wait up to ``seconds``; True if ``stop`` was set meanwhile."""
    try:
        async with asyncio.timeout(seconds):
            await stop.wait()
    except TimeoutError:
        return False
    return True


# --- settings and the driver -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LogsSettings:
    """Everything ``shoal adapter logs`` needs."""

    input: str = "-"
    """The log file to read, or ``-`` for standard input."""
    output: str = "-"
    """Where the JSON lines go: a file (appended to) or ``-`` for standard output."""
    format: Format = "combined"
    """common, combined, logfmt or regexp."""
    regexp: str | None = None
    """With ``regexp``: the expression, with named groups."""
    follow: bool = False
    """Keep reading as the file grows, across rotation (``tail -F``)."""
    from_end: bool = False
    """With ``follow``: start at the end of the file, not the beginning."""
    poll: float = 0.25
    """Seconds between checks of a followed file for new data and rotation."""


class LogsConfig(ShoalModel):
    """The ``--config`` file of ``shoal adapter logs``."""

    input: str = "-"
    """The log file, or - for standard input."""
    output: str = "-"
    """The JSON lines' destination, or - for standard output."""
    format: Format = "combined"
    """common, combined, logfmt or regexp."""
    regexp: str | None = None
    """The expression for the regexp format (named groups)."""
    follow: bool = False
    """Follow the file across rotation."""
    from_end: bool = False
    """Start at the end of a followed file."""
    poll_seconds: float = Field(default=0.25, gt=0)
    """Seconds between checks of a followed file."""

    def settings(self) -> LogsSettings:
        return LogsSettings(
            input=self.input,
            output=self.output,
            format=self.format,
            regexp=self.regexp,
            follow=self.follow,
            from_end=self.from_end,
            poll=self.poll_seconds,
        )


def dumps(record: Record) -> str:
    """One record as one line of JSON (UTF-8 kept readable; never a newline inside)."""
    return json.dumps(record, ensure_ascii=False, separators=(",", ":"), default=str)


async def run_logs(
    settings: LogsSettings,
    *,
    stdin: TextIO | None = None,
    stdout: TextIO | None = None,
    stop: asyncio.Event | None = None,
) -> int:
    """Convert until the input ends (or, following, until ``stop``); the number of lines.

    Raises ValueError for a bad format or regexp, FileNotFoundError for a missing input file
    (not following).
    """
    parse = make_parser(settings.format, settings.regexp)
    count = 0
    # Following, or from a pipe, each line is flushed at once: the reader may be waiting on it.
    eager = settings.follow or settings.input == "-"
    with contextlib.ExitStack() as stack:
        sink: TextIO
        if settings.output == "-":
            sink = stdout if stdout is not None else sys.stdout
        else:
            # A local file, opened for appending: opening it does not wait on anything.
            sink = stack.enter_context(open(settings.output, "a", encoding="utf-8"))  # noqa: ASYNC230
        async for line in _source(settings, stdin, stop):
            sink.write(dumps(parse(line)) + "\n")
            count += 1
            if eager:
                sink.flush()
        sink.flush()
    return count


async def _source(
    settings: LogsSettings, stdin: TextIO | None, stop: asyncio.Event | None
) -> AsyncIterator[str]:
    if settings.input != "-":
        follower = Follower(
            settings.input, follow=settings.follow, from_end=settings.from_end, poll=settings.poll
        )
        async for line in follower.lines(stop):
            yield line
        return
    stream = stdin if stdin is not None else sys.stdin
    stop = stop or asyncio.Event()
    try:
        descriptor = stream.fileno()
        waits = not stat.S_ISREG(os.fstat(descriptor).st_mode)
    except (OSError, ValueError, io.UnsupportedOperation):
        waits = False  # an in-memory stream: reading never waits
    if not waits:
        # A regular file (``< app.log``) or a buffer: reading it does not wait on a writer.
        for line in stream:
            if stop.is_set():
                return
            yield line.removesuffix("\n").removesuffix("\r")
        return
    # A pipe or a terminal: read without blocking the loop, so SIGTERM is seen while it is idle.
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(loop=loop)
    transport, _ = await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader, loop=loop),
        os.fdopen(descriptor, "rb", closefd=False),
    )
    pending = b""
    try:
        while not stop.is_set():
            try:
                async with asyncio.timeout(settings.poll):
                    chunk = await reader.read(65536)
            except TimeoutError:
                continue  # nothing yet: look at ``stop`` again
            if not chunk:
                if pending:
                    yield _decode(pending)
                return
            pending += chunk
            *complete, pending = pending.split(b"\n")
            for raw in complete:
                yield _decode(raw)
            while len(pending) > MAX_LINE:  # an endless line: hand it on in pieces
                yield _decode(pending[:MAX_LINE])
                pending = pending[MAX_LINE:]
    finally:
        transport.close()
