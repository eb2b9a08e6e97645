"""``shoal adapter health``: the app's dependencies checked, served as ``/healthz`` 200 or 503.

Theory of operation
-------------------
A readiness probe should be cheap and should say whether the app can do its work: that is, whether
what it depends on (its Redis, its database, an HTTP service) answers. The adapter checks each
dependency on its own schedule and keeps the results; a probe only reads them.

- :func:`parse_check` turns ``[NAME=]URL`` into a :class:`CheckSpec` (pure): ``redis://`` (PING
  answered PONG), ``http://``/``https://`` (a GET answered below 400, redirects not followed),
  ``tcp://`` (a connection opens), ``sql:sqlite:///PATH?query=SELECT 1`` (the query runs on the
  file, opened read-only).
- :class:`HealthBoard` (pure) schedules the checks and judges them with the data plane's
  :class:`~shoal.dataplane.health.ActiveHealth` (``interval``, ``rise``, ``fall``) keyed by check
  name, keeps each one's last result and latency, and writes the report: 200 when every check
  is healthy, else 503. A check that has not finished yet is ``pending`` (503: not ready yet);
  one whose last result is older than ``stale_after`` is ``stale`` (503: the checker itself is
  stuck).
- :class:`HealthChecker` is the driver: it starts the checks the board says are due (each under
  its own timeout, all in one TaskGroup), records what they found, and sleeps until the next is
  due. :func:`health_app` serves ``/healthz`` from the board and ``/livez`` (always 200: the
  adapter process itself is alive).

Not here: PostgreSQL or MySQL queries (no driver ships with shoal; a ``tcp://`` check of the
port is the fallback), Redis over TLS.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import parse_qs, unquote, urlsplit

import aiohttp
from aiohttp import web
from pydantic import Field

from shoal.components.adapters._serving import serve_until_stopped
from shoal.components.adapters.resp import ProtocolViolation, RedisReplyError, redis_command
from shoal.dataplane.health import ActiveCheckSettings, ActiveHealth, CheckResult, HealthState
from shoal.model._base import Check, ShoalModel

__all__ = [
    "CheckOutcome",
    "CheckSpec",
    "HealthBoard",
    "HealthChecker",
    "HealthConfig",
    "HealthSettings",
    "health_app",
    "parse_check",
    "run_check",
    "serve_health",
]

Kind = Literal["redis", "http", "tcp", "sql"]


@dataclass(frozen=True, slots=True)
class CheckSpec:
    """One dependency to check. ``target`` is what reports show: never a password."""

    name: str
    kind: Kind
    target: str
    host: str = ""
    port: int = 0
    url: str = field(default="", repr=False)
    """http: the URL to GET (it may hold a password, so it is never shown)."""
    path: str = ""
    """sql: the database file."""
    query: str = ""
    """sql: the query to run."""
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    timeout: float = 1.0
    """Seconds the check may take; longer is a failure."""


_NAMED = re.compile(r"([A-Za-z0-9_.-]+)=(.+)", re.DOTALL)


def parse_check(text: str, *, timeout: float = 1.0, name: str | None = None) -> CheckSpec:
    """``[NAME=]URL`` as a check; raises ValueError saying what is wrong and what is accepted."""
    named = _NAMED.fullmatch(text.strip())
    if named and ":" not in named.group(1):
        name, text = name or named.group(1), named.group(2)
    text = text.strip()
    if text.startswith("sql:"):
        return _sql(text, name, timeout)
    url = urlsplit(text)
    scheme = url.scheme.lower()
    if scheme not in ("redis", "http", "https", "tcp"):
        raise ValueError(
            f"cannot check {text!r}: use redis://HOST:PORT, http://HOST[:PORT]/PATH, "
            "tcp://HOST:PORT or sql:sqlite:///PATH?query=SELECT+1"
        )
    if not url.hostname:
        raise ValueError(f"cannot check {text!r}: no host")
    try:
        port = url.port
    except ValueError:
        raise ValueError(f"cannot check {text!r}: the port is not a number") from None
    host = url.hostname
    if scheme == "redis":
        port = port or 6379
        return CheckSpec(
            name=name or f"redis {host}:{port}",
            kind="redis",
            target=f"redis://{host}:{port}",
            host=host,
            port=port,
            username=unquote(url.username) if url.username else None,
            password=unquote(url.password) if url.password is not None else None,
            timeout=timeout,
        )
    if scheme == "tcp":
        if port is None:
            raise ValueError(f"cannot check {text!r}: tcp:// needs a port")
        return CheckSpec(
            name=name or f"tcp {host}:{port}",
            kind="tcp",
            target=f"tcp://{host}:{port}",
            host=host,
            port=port,
            timeout=timeout,
        )
    # http(s): the password, if any, stays in the URL used but never in the one shown.
    shown = url._replace(netloc=url.netloc.rpartition("@")[2]).geturl()
    return CheckSpec(
        name=name or f"http {shown}",
        kind="http",
        target=shown,
        host=host,
        port=port or (443 if scheme == "https" else 80),
        url=text,
        timeout=timeout,
    )


def _sql(text: str, name: str | None, timeout: float) -> CheckSpec:
    rest = text.removeprefix("sql:")
    url = urlsplit(rest)
    if url.scheme in ("postgres", "postgresql", "mysql", "mariadb"):
        raise ValueError(
            f"cannot check {url.scheme}: shoal ships no {url.scheme} driver; only "
            "sql:sqlite:///PATH?query=... runs a query (check the port with tcp://HOST:PORT)"
        )
    if url.scheme != "sqlite" or not url.path:
        raise ValueError(f"cannot check {text!r}: use sql:sqlite:///PATH?query=SELECT+1")
    queries = parse_qs(url.query).get("query", [])
    query = queries[0] if queries else "SELECT 1"
    path = unquote(url.path)
    return CheckSpec(
        name=name or f"sqlite {path}",
        kind="sql",
        target=f"sqlite://{path}",
        path=path,
        query=query,
        timeout=timeout,
    )


# --- the board (pure) ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CheckOutcome:
    """What one run of a check found."""

    passed: bool
    latency: float
    """Seconds the check took."""
    detail: str = ""
    """Why it failed, or what it saw."""


@dataclass(slots=True)
class _Last:
    outcome: CheckOutcome
    at: float


class HealthBoard:
    """Schedules checks, judges them (rise/fall) and writes the report; no I/O, no clock.

    Every call takes ``now`` (seconds, monotonic).
    """

    def __init__(
        self,
        names: Sequence[str],
        *,
        interval: float = 2.0,
        rise: int = 1,
        fall: int = 1,
        stale_after: float | None = None,
        now: float = 0.0,
    ) -> None:
        if len(set(names)) != len(names):
            raise ValueError("two checks have the same name: give each a NAME= of its own")
        self.names = tuple(names)
        self._health = ActiveHealth(
            ActiveCheckSettings(interval=interval, rise=rise, fall=fall, start_healthy=False)
        )
        self._health.sync(self.names, now)
        self.stale_after = stale_after if stale_after is not None else 3 * interval + 5
        self._last: dict[str, _Last] = {}

    def due(self, now: float) -> list[str]:
        """Checks to start now (each is not due again until its result is recorded)."""
        return self._health.due(now)

    def next_deadline(self) -> float | None:
        return self._health.next_deadline()

    def record(self, name: str, outcome: CheckOutcome, now: float) -> None:
        self._last[name] = _Last(outcome, now)
        self._health.record(name, CheckResult(outcome.passed, outcome.detail), now)

    def status(self, name: str, now: float) -> str:
        """``pass``, ``fail``, ``pending`` (never finished) or ``stale`` (too old to trust)."""
        last = self._last.get(name)
        if last is None:
            return "pending"
        if now - last.at > self.stale_after:
            return "stale"
        return "pass" if self._health.state(name) is HealthState.HEALTHY else "fail"

    def report(
        self, now: float, targets: dict[str, str] | None = None
    ) -> tuple[int, dict[str, Any]]:
        """``(200 or 503, body)``: 200 only when every check passes."""
        checks = []
        for name in self.names:
            status = self.status(name, now)
            entry: dict[str, Any] = {"name": name, "status": status}
            if targets and name in targets:
                entry["target"] = targets[name]
            last = self._last.get(name)
            if last is not None:
                entry["latencyMs"] = round(last.outcome.latency * 1000, 3)
                entry["checkedSecondsAgo"] = round(max(0.0, now - last.at), 3)
                if last.outcome.detail:
                    entry["detail"] = last.outcome.detail
            checks.append(entry)
        ok = all(c["status"] == "pass" for c in checks)
        return (200 if ok else 503), {"status": "pass" if ok else "fail", "checks": checks}


# --- running checks ------------------------------------------------------------------------


async def run_check(spec: CheckSpec, session: aiohttp.ClientSession | None = None) -> CheckOutcome:
    """Run one check under its timeout; never raises for what the dependency does."""
    started = time.perf_counter()
    try:
        async with asyncio.timeout(spec.timeout):
            passed, detail = await _RUNNERS[spec.kind](spec, session)
    except TimeoutError:
        passed, detail = False, f"no answer within {spec.timeout:g}s"
    except (OSError, aiohttp.ClientError, ProtocolViolation, sqlite3.Error) as error:
        passed, detail = False, _describe(error)
    return CheckOutcome(passed, time.perf_counter() - started, detail)


def _describe(error: BaseException) -> str:
    if isinstance(error, OSError) and error.strerror:
        return f"{type(error).__name__}: {error.strerror}"
    return f"{type(error).__name__}: {error}"


async def _redis(spec: CheckSpec, session: aiohttp.ClientSession | None) -> tuple[bool, str]:
    reply = await redis_command(
        spec.host, spec.port, "PING", username=spec.username, password=spec.password
    )
    if isinstance(reply, RedisReplyError):
        return False, f"Redis answered an error: {reply.message}"
    if reply != "PONG":
        return False, f"Redis answered {reply!r}, not PONG"
    return True, ""


async def _http(spec: CheckSpec, session: aiohttp.ClientSession | None) -> tuple[bool, str]:
    if session is None:
        raise RuntimeError("http checks need a ClientSession")
    async with session.get(spec.url, allow_redirects=False) as response:
        await response.read()
        return response.status < 400, f"HTTP {response.status}"


async def _tcp(spec: CheckSpec, session: aiohttp.ClientSession | None) -> tuple[bool, str]:
    _, writer = await asyncio.open_connection(spec.host, spec.port)
    writer.close()
    # A reset after the connection opened still shows that the port is served.
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True, ""


async def _sqlite(spec: CheckSpec, session: aiohttp.ClientSession | None) -> tuple[bool, str]:
    # sqlite3 blocks: run it in a thread. Its own busy timeout keeps a locked file from holding
    # the thread much longer than the check's timeout.
    return await asyncio.to_thread(_sqlite_query, spec.path, spec.query, spec.timeout)


def _sqlite_query(path: str, query: str, timeout: float) -> tuple[bool, str]:
    # Read-only, and never created: a missing database is a failed check, not a new empty file.
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=timeout)
    try:
        row = connection.execute(query).fetchone()
    finally:
        connection.close()
    return True, "" if row is None else f"first row: {row[0]!r}"[:200]


_RUNNERS: dict[str, Callable[[CheckSpec, aiohttp.ClientSession | None], Any]] = {
    "redis": _redis,
    "http": _http,
    "tcp": _tcp,
    "sql": _sqlite,
}


# --- settings, driver, server --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HealthSettings:
    """Everything ``shoal adapter health`` needs."""

    listen: str = "127.0.0.1:8086"
    """Where /healthz and /livez are served."""
    checks: tuple[CheckSpec, ...] = ()
    """The dependencies to check."""
    interval: float = 2.0
    """Seconds from the start of one check of a dependency to the start of the next."""
    rise: int = 1
    """Passed checks in a row before a failed dependency counts as healthy again."""
    fall: int = 1
    """Failed checks in a row before a healthy dependency counts as failed."""


class CheckConfig(ShoalModel):
    """One check in the ``--config`` file."""

    name: str | None = None
    """How reports call it (default: the kind and address)."""
    url: str
    """redis://, http(s)://, tcp:// or sql:sqlite:///PATH?query=..."""
    timeout_seconds: float = Field(default=1.0, gt=0)
    """Seconds the check may take."""

    def _checks(self) -> Iterator[Check]:
        try:
            parse_check(self.url)
        except ValueError as error:
            yield ("url",), f"Invalid value: {error}"


class HealthConfig(ShoalModel):
    """The ``--config`` file of ``shoal adapter health``."""

    listen: str = "127.0.0.1:8086"
    """Where /healthz and /livez are served."""
    checks: list[CheckConfig] = Field(min_length=1)
    """The dependencies."""
    interval_seconds: float = Field(default=2.0, gt=0)
    """Seconds between checks of each dependency."""
    rise: int = Field(default=1, ge=1)
    """Passes in a row to count as healthy again."""
    fall: int = Field(default=1, ge=1)
    """Failures in a row to count as failed."""

    def _checks(self) -> Iterator[Check]:
        names = [c.name or parse_check(c.url).name for c in self.checks if _parses(c.url)]
        for index, check in enumerate(self.checks):
            if check.name is not None and names.count(check.name) > 1:
                yield ("checks", index, "name"), f"Duplicate value: {check.name!r}"

    def settings(self) -> HealthSettings:
        return HealthSettings(
            listen=self.listen,
            checks=tuple(
                parse_check(c.url, timeout=c.timeout_seconds, name=c.name) for c in self.checks
            ),
            interval=self.interval_seconds,
            rise=self.rise,
            fall=self.fall,
        )


def _parses(url: str) -> bool:
    try:
        parse_check(url)
    except ValueError:
        return False
    return True


class HealthChecker:
    """Runs the checks when the board says they are due, until ``stop``."""

    def __init__(self, settings: HealthSettings, *, clock: Callable[[], float] = time.monotonic):
        if not settings.checks:
            raise ValueError("give at least one check")
        self.settings = settings
        self.clock = clock
        self.specs = {spec.name: spec for spec in settings.checks}
        self.board = HealthBoard(
            [spec.name for spec in settings.checks],
            interval=settings.interval,
            rise=settings.rise,
            fall=settings.fall,
            stale_after=3 * settings.interval + max(s.timeout for s in settings.checks) + 5,
            now=clock(),
        )
        self.targets = {spec.name: spec.target for spec in settings.checks}

    def report(self) -> tuple[int, dict[str, Any]]:
        return self.board.report(self.clock(), self.targets)

    async def run(self, stop: asyncio.Event) -> None:
        timeout = aiohttp.ClientTimeout(total=None)  # each check has its own asyncio timeout
        async with aiohttp.ClientSession(timeout=timeout) as session:
            while not stop.is_set():
                due = self.board.due(self.clock())
                if due:
                    async with asyncio.TaskGroup() as group:
                        for name in due:
                            group.create_task(self._check(name, session))
                    continue
                deadline = self.board.next_deadline()
                wait = 0.1 if deadline is None else max(0.0, deadline - self.clock())
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait):
                        await stop.wait()

    async def _check(self, name: str, session: aiohttp.ClientSession) -> None:
        outcome = await run_check(self.specs[name], session)
        self.board.record(name, outcome, self.clock())


def health_app(checker: HealthChecker) -> web.Application:
    """``/healthz`` (200 or 503, JSON) and ``/livez`` (always 200)."""

    async def healthz(request: web.Request) -> web.Response:
        status, body = checker.report()
        return web.json_response(body, status=status, headers={"Cache-Control": "no-store"})

    async def livez(request: web.Request) -> web.Response:
        return web.json_response({"status": "pass"}, headers={"Cache-Control": "no-store"})

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", healthz)
    app.router.add_get("/livez", livez)
    return app


async def serve_health(settings: HealthSettings, *, stop: asyncio.Event | None = None) -> None:
    """Check and serve until SIGTERM/SIGINT (or until ``stop`` is set)."""
    stop = stop or asyncio.Event()
    checker = HealthChecker(settings)
    async with asyncio.TaskGroup() as group:
        group.create_task(checker.run(stop))
        try:
            await serve_until_stopped(health_app(checker), settings.listen, stop=stop)
        finally:
            stop.set()
