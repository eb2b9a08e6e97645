"""``shoal adapter health``: check parsing and the board (pure), each kind of check against a real
dependency, and /healthz following a real redis-server as it stops and starts again."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from shoal.cli import main
from shoal.components.adapters._serving import running
from shoal.components.adapters.health import (
    CheckOutcome,
    HealthBoard,
    HealthChecker,
    HealthConfig,
    HealthSettings,
    health_app,
    parse_check,
    run_check,
)
from shoal.errors import InvalidObjectsError
from shoal.model.configfile import load_config_text

from .adapter_servers import RedisServer, free_port

# --- parsing -------------------------------------------------------------------------------


def test_each_kind_of_check() -> None:
    redis = parse_check("cache=redis://:pw@10.0.0.5:6380", timeout=0.5)
    assert (redis.name, redis.kind, redis.host, redis.port, redis.password) == (
        "cache",
        "redis",
        "10.0.0.5",
        6380,
        "pw",
    )
    assert redis.target == "redis://10.0.0.5:6380"
    assert redis.timeout == 0.5
    assert "pw" not in repr(redis)
    assert parse_check("redis://cache").port == 6379
    http = parse_check("http://user:pw@api.local:8080/ready?deep=1")
    assert http.kind == "http"
    assert http.url == "http://user:pw@api.local:8080/ready?deep=1"
    assert http.target == "http://api.local:8080/ready?deep=1"
    assert http.name == "http http://api.local:8080/ready?deep=1"
    tcp = parse_check("db=tcp://127.0.0.1:5432")
    assert (tcp.kind, tcp.port, tcp.name) == ("tcp", 5432, "db")
    sql = parse_check("sql:sqlite:///var/lib/app.db?query=SELECT count(*) FROM users")
    assert (sql.kind, sql.path, sql.query) == (
        "sql",
        "/var/lib/app.db",
        "SELECT count(*) FROM users",
    )
    assert sql.name == "sqlite /var/lib/app.db"
    assert parse_check("store=sql:sqlite:///tmp/x.db").query == "SELECT 1"


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("ftp://x", "use redis://"),
        ("redis://", "no host"),
        ("tcp://host", "needs a port"),
        ("tcp://host:http", "not a number"),
        ("sql:postgresql://db/app?query=SELECT 1", "ships no postgresql driver"),
        ("sql:mysql://db/app", "ships no mysql driver"),
        ("sql:sqlite:", "use sql:sqlite:///PATH"),
        ("localhost:6379", "use redis://"),
    ],
)
def test_bad_checks_say_what_is_accepted(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        parse_check(text)


SECRET = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=6, max_size=12).map(
    lambda s: "S3" + s
)


@given(
    scheme=st.sampled_from(["redis", "http", "https"]),
    user=st.sampled_from(["", "admin"]),
    secret=SECRET,
    host=st.sampled_from(["127.0.0.1", "cache.local", "[::1]"]),
    port=st.integers(1, 65535),
    path=st.text(alphabet="abc/", max_size=8),
)
def test_reports_never_show_a_password(
    scheme: str, user: str, secret: str, host: str, port: int, path: str
) -> None:
    spec = parse_check(f"{scheme}://{user}:{secret}@{host}:{port}/{path}")
    assert secret not in spec.target
    assert secret not in spec.name
    assert secret not in repr(spec)
    assert spec.port == port


@given(st.text(max_size=60))
def test_any_text_is_a_check_or_a_clear_error(text: str) -> None:
    problem = ""
    try:
        spec = parse_check(text)
    except ValueError as error:
        problem = str(error)
    if problem:
        assert problem.startswith("cannot check")
    else:
        assert spec.kind in ("redis", "http", "tcp", "sql")
        assert spec.name


# --- the board, as a transcript ------------------------------------------------------------


def test_board_transcript_pending_pass_fail_stale() -> None:
    board = HealthBoard(["redis", "api"], interval=2.0, stale_after=10.0, now=0.0)
    assert board.due(0.0) == ["api", "redis"]
    assert board.due(0.5) == []  # started, not finished: not due twice
    status, body = board.report(0.5, {"redis": "redis://127.0.0.1:6379"})
    assert status == 503
    assert body == {
        "status": "fail",
        "checks": [
            {"name": "redis", "status": "pending", "target": "redis://127.0.0.1:6379"},
            {"name": "api", "status": "pending"},
        ],
    }
    board.record("redis", CheckOutcome(True, 0.002), 0.6)
    board.record("api", CheckOutcome(True, 0.010, "HTTP 200"), 0.7)
    status, body = board.report(1.0)
    assert status == 200
    assert body["checks"][0] == {
        "name": "redis",
        "status": "pass",
        "latencyMs": 2.0,
        "checkedSecondsAgo": 0.4,
    }
    assert body["checks"][1]["detail"] == "HTTP 200"
    assert board.next_deadline() == 2.0
    assert board.due(1.9) == []
    assert board.due(2.0) == ["api", "redis"]
    board.record("api", CheckOutcome(True, 0.010, "HTTP 200"), 2.5)
    board.record("redis", CheckOutcome(False, 1.0, "no answer within 1s"), 3.0)
    status, body = board.report(3.0)
    assert status == 503
    assert body["checks"][0]["status"] == "fail"
    assert body["checks"][0]["detail"] == "no answer within 1s"
    assert board.status("api", 12.5) == "pass"
    assert board.status("api", 12.75) == "stale"  # the checker stopped recording: do not trust it


def test_board_rise_and_fall() -> None:
    board = HealthBoard(["db"], interval=1.0, rise=2, fall=3, now=0.0)
    outcomes = [True, False, False, True, False, False, False, True, True]
    seen = []
    for step, passed in enumerate(outcomes):
        board.due(float(step))
        board.record("db", CheckOutcome(passed, 0.001), float(step))
        seen.append(board.status("db", float(step)))
    # The first pass admits at once (as the data plane's checks do); then fall=3, rise=2.
    assert seen == ["pass", "pass", "pass", "pass", "pass", "pass", "fail", "fail", "pass"]


def test_board_refuses_two_checks_of_one_name() -> None:
    with pytest.raises(ValueError, match="same name"):
        HealthBoard(["a", "a"])


# --- each check against a real dependency --------------------------------------------------


@pytest.fixture
async def http_dependency() -> AsyncIterator[tuple[str, dict[str, Any]]]:
    state: dict[str, Any] = {"status": 200, "hang": False, "release": asyncio.Event(), "busy": 0}

    async def ready(request: web.Request) -> web.Response:
        if state["hang"]:
            state["busy"] += 1
            try:
                await state["release"].wait()  # until the test lets it go
            finally:
                state["busy"] -= 1
        return web.Response(status=state["status"], text="state")

    async def moved(request: web.Request) -> web.Response:
        raise web.HTTPFound("/elsewhere")

    app = web.Application()
    app.router.add_get("/ready", ready)
    app.router.add_get("/moved", moved)
    async with running(app, "127.0.0.1:0") as (host, port):
        yield f"{host}:{port}", state


async def test_http_checks(http_dependency: tuple[str, dict[str, Any]]) -> None:
    address, state = http_dependency
    async with aiohttp.ClientSession() as session:
        spec = parse_check(f"http://{address}/ready", timeout=2)
        outcome = await run_check(spec, session)
        assert outcome.passed
        assert outcome.detail == "HTTP 200"
        state["status"] = 503
        outcome = await run_check(spec, session)
        assert not outcome.passed
        assert outcome.detail == "HTTP 503"
        # A redirect is an answer below 400; it is not followed.
        assert (await run_check(parse_check(f"http://{address}/moved"), session)).passed
        state["status"], state["hang"] = 200, True
        outcome = await run_check(parse_check(f"http://{address}/ready", timeout=0.2), session)
        assert not outcome.passed
        assert outcome.detail == "no answer within 0.2s"
        state["release"].set()
        await poll_until(lambda: _true(state["busy"] == 0), "the hung handler to finish")
        refused = await run_check(parse_check(f"http://127.0.0.1:{free_port()}/"), session)
        assert not refused.passed


async def test_redis_and_tcp_checks(redis_server: RedisServer) -> None:
    assert (await run_check(parse_check(f"redis://{redis_server.address}"))).passed
    assert (await run_check(parse_check(f"tcp://{redis_server.address}"))).passed
    closed = f"127.0.0.1:{free_port()}"
    outcome = await run_check(parse_check(f"redis://{closed}"))
    assert not outcome.passed
    assert "ConnectionRefusedError" in outcome.detail
    assert not (await run_check(parse_check(f"tcp://{closed}"))).passed


async def test_redis_check_with_a_password(tmp_path: Path) -> None:
    server = RedisServer(tmp_path, password="pw1")
    server.start()
    try:
        assert (await run_check(parse_check(f"redis://:pw1@{server.address}"))).passed
        outcome = await run_check(parse_check(f"redis://{server.address}"))
        assert not outcome.passed
        assert "NOAUTH" in outcome.detail
    finally:
        server.stop()


async def test_a_server_that_never_answers_times_out() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # read until the client gives up and closes; never answer
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        outcome = await run_check(parse_check(f"redis://127.0.0.1:{port}", timeout=0.2))
        assert not outcome.passed
        assert outcome.detail == "no answer within 0.2s"
    finally:
        server.close()
        await server.wait_closed()


async def test_sqlite_checks(tmp_path: Path) -> None:
    database = tmp_path / "app.db"
    with sqlite3.connect(database) as connection:
        connection.execute("CREATE TABLE users (name TEXT)")
        connection.execute("INSERT INTO users VALUES ('ada')")
    connection.close()
    outcome = await run_check(
        parse_check(f"sql:sqlite://{database}?query=SELECT count(*) FROM users")
    )
    assert outcome.passed
    assert outcome.detail == "first row: 1"
    bad = await run_check(parse_check(f"sql:sqlite://{database}?query=SELECT * FROM missing_table"))
    assert not bad.passed
    assert "no such table" in bad.detail
    missing = tmp_path / "missing.db"
    assert not (await run_check(parse_check(f"sql:sqlite://{missing}"))).passed
    assert not missing.exists()  # opened read-only: a check never creates the database


async def _true(value: bool) -> bool:
    return value


# --- /healthz following a real redis-server ------------------------------------------------


async def poll_until(
    check: Callable[[], Any], what: str, deadline: float = 15.0, every: float = 0.05
) -> Any:
    end = time.monotonic() + deadline
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(every)


async def test_healthz_follows_redis_down_and_up(redis_server: RedisServer, tmp_path: Path) -> None:
    database = tmp_path / "app.db"
    sqlite3.connect(database).close()
    settings = HealthSettings(
        checks=(
            parse_check(f"cache=redis://{redis_server.address}", timeout=0.5),
            parse_check(f"store=sql:sqlite://{database}", timeout=0.5),
        ),
        interval=0.1,
    )
    checker = HealthChecker(settings)
    stop = asyncio.Event()
    async with (
        asyncio.TaskGroup() as group,
        running(health_app(checker), "127.0.0.1:0") as (
            host,
            port,
        ),
        aiohttp.ClientSession() as session,
    ):
        base = f"http://{host}:{port}"

        async def healthz(expected: int) -> dict[str, Any] | None:
            async with session.get(f"{base}/healthz") as response:
                body: dict[str, Any] = await response.json()
                return body if response.status == expected else None

        async def livez() -> int:
            async with session.get(f"{base}/livez") as response:
                return response.status

        group.create_task(checker.run(stop))
        try:
            body = await poll_until(lambda: healthz(200), "healthy with redis up")
            assert body["status"] == "pass"
            cache = body["checks"][0]
            assert (cache["name"], cache["target"], cache["status"]) == (
                "cache",
                f"redis://{redis_server.address}",
                "pass",
            )
            assert cache["latencyMs"] >= 0
            redis_server.stop()
            body = await poll_until(lambda: healthz(503), "unhealthy with redis stopped")
            assert body["status"] == "fail"
            assert [c["status"] for c in body["checks"]] == ["fail", "pass"]
            assert await livez() == 200
            redis_server.start()
            await poll_until(lambda: healthz(200), "healthy again with redis restarted")
        finally:
            stop.set()


async def test_healthz_is_503_before_the_first_checks_finish() -> None:
    settings = HealthSettings(checks=(parse_check(f"tcp://127.0.0.1:{free_port()}"),))
    checker = HealthChecker(settings)
    status, body = checker.report()
    assert status == 503
    assert body["checks"][0]["status"] == "pending"


# --- configuration and the command ---------------------------------------------------------


def test_config_file_form_and_located_errors() -> None:
    config = load_config_text(
        "listen: 127.0.0.1:0\nintervalSeconds: 5\nfall: 2\nchecks:\n"
        "  - {name: cache, url: 'redis://127.0.0.1:6379', timeoutSeconds: 0.3}\n"
        "  - url: tcp://127.0.0.1:5432\n",
        HealthConfig,
        "health.yaml",
    )
    settings = config.settings()
    assert [c.name for c in settings.checks] == ["cache", "tcp 127.0.0.1:5432"]
    assert settings.checks[0].timeout == 0.3
    assert (settings.interval, settings.fall) == (5.0, 2)
    with pytest.raises(InvalidObjectsError) as caught:
        load_config_text(
            "checks:\n  - url: 'sql:postgresql://db/app'\n  - {name: a, url: 'tcp://h:1'}\n"
            "  - {name: a, url: 'tcp://h:2'}\n",
            HealthConfig,
            "health.yaml",
        )
    problems = [str(issue) for issue in caught.value.issues]
    assert problems[0].startswith(
        "health.yaml:2:10: checks[0].url: Invalid value: cannot check postgresql"
    )
    assert problems[1] == "health.yaml:3:12: checks[1].name: Duplicate value: 'a'"


def test_cli_refuses_bad_checks() -> None:
    result = CliRunner().invoke(main, ["adapter", "health"])
    assert result.exit_code == 2
    assert "give at least one --check" in result.output
    result = CliRunner().invoke(
        main, ["adapter", "health", "--check", "sql:postgresql://db/app?query=SELECT 1"]
    )
    assert result.exit_code == 2
    assert "ships no postgresql driver" in result.output
    result = CliRunner().invoke(
        main, ["adapter", "health", "--check", "a=tcp://h:1", "--check", "a=tcp://h:2"]
    )
    assert result.exit_code == 2
    assert "same name" in result.output


def test_the_command_serves_healthz(redis_server: RedisServer) -> None:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "shoal",
            "adapter",
            "health",
            "--listen",
            "127.0.0.1:0",
            "--check",
            f"cache=redis://{redis_server.address}",
            "--interval",
            "0.1",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        assert process.stderr is not None
        line = process.stdout.readline()
        assert line.startswith("listening on 127.0.0.1:"), line + process.stderr.read()
        address = line.split()[-1]
        import json
        import urllib.error
        import urllib.request

        end = time.monotonic() + 15
        while True:
            try:
                with urllib.request.urlopen(f"http://{address}/healthz", timeout=5) as response:
                    body = json.loads(response.read())
                    break
            except urllib.error.HTTPError as error:
                code = error.code
                error.close()
                assert code == 503
            assert time.monotonic() < end, "never healthy"
            time.sleep(0.05)
        assert body["checks"][0]["name"] == "cache"
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()
