"""``shoal adapter logs``: parsers and normalization (pure, with Hypothesis), the ``tail -F``
follower across rename and truncation (real files), and the command."""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from shoal.cli import main
from shoal.components.adapters.logs import (
    FileStamp,
    Follower,
    LogsConfig,
    LogsSettings,
    Rotation,
    dumps,
    make_parser,
    normalize,
    parse_duration,
    parse_logfmt,
    parse_timestamp,
    rotation,
    run_logs,
)
from shoal.model.configfile import load_config_text

# --- one line of each format ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "line", "expected"),
    [
        (
            "common",
            '127.0.0.1 - frank [10/Oct/2000:13:55:36 -0700] "GET /apache_pb.gif HTTP/1.0" 200 2326',
            {
                "timestamp": "2000-10-10T20:55:36Z",
                "remote_addr": "127.0.0.1",
                "user": "frank",
                "method": "GET",
                "path": "/apache_pb.gif",
                "protocol": "HTTP/1.0",
                "status": 200,
                "bytes": 2326,
            },
        ),
        (
            "combined",
            '::1 - - [29/Nov/2026:18:00:00 +0000] "POST /users/7?expand=1 HTTP/1.1" 201 - '
            '"https://example.com/a" "curl/8.5 (x86_64) \\"quoted\\"" 0.004',
            {
                "timestamp": "2026-11-29T18:00:00Z",
                "remote_addr": "::1",
                "method": "POST",
                "path": "/users/7",
                "query": "expand=1",
                "protocol": "HTTP/1.1",
                "status": 201,
                "bytes": 0,
                "referer": "https://example.com/a",
                "user_agent": 'curl/8.5 (x86_64) "quoted"',
                "extra": "0.004",
            },
        ),
        (
            "logfmt",
            'ts=2024-01-02T03:04:05.123+01:00 lvl=WARNING msg="cache \\"miss\\" rate high" '
            "duration=1.5ms code=503 method=get path=/x remote=10.0.0.9 shard=3 dry",
            {
                "timestamp": "2024-01-02T02:04:05.123Z",
                "level": "warn",
                "message": 'cache "miss" rate high',
                "remote_addr": "10.0.0.9",
                "method": "GET",
                "path": "/x",
                "status": 503,
                "duration": 0.0015,
                "shard": "3",
                "dry": True,
            },
        ),
    ],
)
def test_each_format(fmt: Any, line: str, expected: dict[str, Any]) -> None:
    record = make_parser(fmt)(line)
    assert record == expected
    assert list(record)[: len(expected)] == list(expected)  # schema order first


def test_regexp_with_named_groups() -> None:
    parse = make_parser(
        "regexp", r"^(?P<time>\S+) \[(?P<severity>\w+)\] (?P<msg>.*?)( took=(?P<took>\S+))?$"
    )
    assert parse("1700000000.5 [CRIT] disk full took=2s") == {
        "timestamp": "2023-11-14T22:13:20.5Z",
        "level": "fatal",
        "message": "disk full",
        "duration": 2.0,
    }
    assert parse("1700000000 [info] started") == {
        "timestamp": "2023-11-14T22:13:20Z",
        "level": "info",
        "message": "started",
    }
    assert parse("no match here") == {"message": "no match here", "parse_error": True}


@pytest.mark.parametrize(
    ("regexp", "problem"),
    [(None, "needs --regexp"), ("(unclosed", "not a valid"), (r"\d+", "no named groups")],
)
def test_bad_regexps_are_refused_with_a_hint(regexp: str | None, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        make_parser("regexp", regexp)


@pytest.mark.parametrize("fmt", ["common", "combined", "logfmt"])
@pytest.mark.parametrize(
    "line",
    [
        "",
        "plain text",
        '1.2.3.4 - - [bad time] "GET / HTTP/1.1" 200 5',
        'k="unclosed',
        "=value",
    ],
)
def test_unparsable_lines_are_passed_through(fmt: Any, line: str) -> None:
    record = make_parser(fmt)(line)
    if record.get("parse_error"):
        assert record == {"message": line, "parse_error": True}
    else:
        assert "timestamp_raw" in record  # the CLF line with a bad time keeps it as text


def test_values_that_do_not_convert_are_kept_as_raw_text() -> None:
    assert normalize({"status": "abc", "bytes": "12", "level": "loud", "ts": "yesterday"}) == {
        "bytes": 12,
        "status_raw": "abc",
        "level_raw": "loud",
        "timestamp_raw": "yesterday",
    }


def test_a_canonical_name_wins_over_its_alias() -> None:
    assert normalize({"msg": "a", "message": "b"}) == {"message": "b", "msg": "a"}
    # Two aliases: the first takes the name, the second keeps its own.
    assert normalize({"ts": "1700000000", "time": "x"}) == {
        "timestamp": "2023-11-14T22:13:20Z",
        "time": "x",
    }


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("1.5ms", 0.0015),
        ("2s", 2.0),
        ("1h2m3.5s", 3723.5),
        ("250us", 0.00025),
        ("0.25", 0.25),
        (3, 3.0),
        ("fast", None),
        ("5 s", None),
        ("", None),
        (True, None),
    ],
)
def test_durations(text: Any, seconds: float | None) -> None:
    got = parse_duration(text)
    assert got == pytest.approx(seconds) if seconds is not None else got is None


@pytest.mark.parametrize(
    ("text", "rfc3339"),
    [
        ("2024-01-02T03:04:05Z", "2024-01-02T03:04:05Z"),
        ("2024-01-02 03:04:05", "2024-01-02T03:04:05Z"),
        ("2024-01-02T03:04:05.123456789-05:00", "2024-01-02T08:04:05.123456Z"),
        ("2024-01-02T03:04:05,5+00:00", "2024-01-02T03:04:05.5Z"),
        ("10/Oct/2000:13:55:36 -0700", "2000-10-10T20:55:36Z"),
        ("1700000000", "2023-11-14T22:13:20Z"),
        ("1700000000123", "2023-11-14T22:13:20.123Z"),
        (1700000000.25, "2023-11-14T22:13:20.25Z"),
        ("Tuesday", None),
        ("2024-13-45T00:00:00Z", None),
    ],
)
def test_timestamps(text: Any, rfc3339: str | None) -> None:
    assert parse_timestamp(text) == rfc3339


@pytest.mark.parametrize(
    ("level", "normal"),
    [
        ("WARNING", "warn"),
        ("err", "error"),
        ("Notice", "info"),
        ("CRITICAL", "fatal"),
        ("panic", "fatal"),
        ("TRACE", "trace"),
        ("dbg", "debug"),
    ],
)
def test_levels(level: str, normal: str) -> None:
    assert normalize({"level": level}) == {"level": normal}


# --- properties ---------------------------------------------------------------------------


@given(st.sampled_from(["common", "combined", "logfmt"]), st.text(max_size=200))
def test_any_line_gives_one_json_object_on_one_line(fmt: Any, line: str) -> None:
    record = make_parser(fmt)(line)
    text = dumps(record)
    assert "\n" not in text
    assert json.loads(text) == json.loads(json.dumps(record, default=str))
    if record.get("parse_error"):
        assert record == {"message": line, "parse_error": True}
    for name, kind in (("status", int), ("bytes", int), ("duration", float), ("level", str)):
        if name in record:
            assert isinstance(record[name], kind)


TOKEN = st.text(
    alphabet=st.characters(min_codepoint=33, max_codepoint=126, blacklist_characters='"[]\\'),
    min_size=1,
    max_size=12,
)


@given(
    remote=TOKEN,
    user=TOKEN,
    moment=st.datetimes(
        min_value=datetime(1971, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
    ),
    offset_minutes=st.integers(-12 * 60, 14 * 60),
    method=st.sampled_from(["GET", "POST", "DELETE"]),
    path=TOKEN.filter(lambda s: "?" not in s),
    status=st.integers(100, 599),
    size=st.integers(0, 10**12),
    referer=st.text(max_size=20),
    agent=st.text(max_size=30),
)
def test_combined_lines_round_trip(
    remote: str,
    user: str,
    moment: datetime,
    offset_minutes: int,
    method: str,
    path: str,
    status: int,
    size: int,
    referer: str,
    agent: str,
) -> None:
    moment = moment.replace(microsecond=0)
    local = moment.astimezone(timezone(timedelta(minutes=offset_minutes)))

    def quote(text: str) -> str:
        return text.replace("\\", "\\\\").replace('"', '\\"')

    line = (
        f"{remote} - {user} [{local.strftime('%d/%b/%Y:%H:%M:%S %z')}] "
        f'"{method} {path} HTTP/1.1" {status} {size} "{quote(referer)}" "{quote(agent)}"'
    )
    record = make_parser("combined")(line.replace("\n", " "))
    if "\n" in referer + agent or "\r" in referer + agent:
        return  # a log line holds no line break: covered by the any-line property
    expected: dict[str, Any] = {
        "timestamp": moment.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "remote_addr": remote,
        "method": method,
        "path": path,
        "protocol": "HTTP/1.1",
        "status": status,
        "bytes": size,
    }
    if remote == "-":
        del expected["remote_addr"]
    if user != "-":
        expected["user"] = user
    if referer not in ("-",):
        expected["referer"] = referer
    if agent not in ("-",):
        expected["user_agent"] = agent
    assert record == expected


LOGFMT_KEY = st.text(
    alphabet=st.characters(min_codepoint=97, max_codepoint=122), min_size=1, max_size=8
).map(lambda k: "x_" + k)  # never an alias of a schema field


@given(st.dictionaries(LOGFMT_KEY, st.text(max_size=20), min_size=1, max_size=6))
def test_logfmt_round_trips_quoted_values(fields: dict[str, str]) -> None:
    line = " ".join(f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in fields.items())
    assert parse_logfmt(line) == fields


# --- rotation, pure -------------------------------------------------------------------------


def test_rotation_decisions() -> None:
    opened = FileStamp(1, 100, 500)
    assert rotation(opened, FileStamp(1, 100, 500), 500) is Rotation.WAIT
    assert rotation(opened, FileStamp(1, 100, 900), 500) is Rotation.WAIT  # grew: read on
    assert rotation(opened, None, 500) is Rotation.WAIT  # renamed, not yet recreated
    assert rotation(opened, FileStamp(1, 101, 0), 500) is Rotation.REOPEN
    assert rotation(opened, FileStamp(2, 100, 0), 500) is Rotation.REOPEN
    assert rotation(opened, FileStamp(1, 100, 10), 500) is Rotation.REWIND


# --- following real files -------------------------------------------------------------------


async def wait_for(condition: Callable[[], bool], what: str, deadline: float = 10.0) -> None:
    end = time.monotonic() + deadline
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


def append(path: Path, text: str) -> None:
    with path.open("a", encoding="utf-8") as handle:
        handle.write(text)


async def test_follower_reads_across_rename_and_truncation(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    log.write_text("one\ntwo\npart")
    seen: list[str] = []
    stop = asyncio.Event()

    async def consume() -> None:
        async for line in Follower(str(log), poll=0.02).lines(stop):
            seen.append(line)

    async with asyncio.TaskGroup() as group:
        group.create_task(consume())
        await wait_for(lambda: seen == ["one", "two"], "the first lines")
        append(log, "ial\nthree\n")
        await wait_for(lambda: seen[2:] == ["partial", "three"], "a completed line")
        # logrotate's default: rename, the app writes a last line to the old file, then reopens.
        log.rename(tmp_path / "access.log.1")
        append(tmp_path / "access.log.1", "late in old\n")
        log.write_text("new one\n")
        await wait_for(lambda: seen[4:] == ["late in old", "new one"], "the rotated file")
        # copytruncate: the file is cut in place and written from the top.
        log.write_text("")
        await asyncio.sleep(0.1)  # a poll or more passes with the file empty
        append(log, "after truncate\n")
        await wait_for(lambda: seen[6:] == ["after truncate"], "lines after truncation")
        stop.set()
    assert seen == [
        "one",
        "two",
        "partial",
        "three",
        "late in old",
        "new one",
        "after truncate",
    ]


async def test_follower_from_the_end_skips_what_is_there(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_text("old\n")
    follower = Follower(str(log), poll=0.02, from_end=True)
    seen: list[str] = []
    stop = asyncio.Event()

    async def consume() -> None:
        async for line in follower.lines(stop):
            seen.append(line)

    async with asyncio.TaskGroup() as group:
        group.create_task(consume())
        await wait_for(follower.opened.is_set, "the file to be opened")
        append(log, "new\n")
        await wait_for(lambda: seen == ["new"], "the appended line")
        stop.set()


async def test_follower_waits_for_a_missing_file_and_reads_it_all(tmp_path: Path) -> None:
    log = tmp_path / "later.log"
    follower = Follower(str(log), poll=0.02, from_end=True)
    seen: list[str] = []
    stop = asyncio.Event()

    async def consume() -> None:
        async for line in follower.lines(stop):
            seen.append(line)

    async with asyncio.TaskGroup() as group:
        group.create_task(consume())
        # One turn of the loop runs the consumer up to its first wait: the file is missing then.
        await asyncio.sleep(0)
        assert not follower.opened.is_set()
        log.write_text("first\n")
        await wait_for(lambda: seen == ["first"], "the new file's first line")
        stop.set()


async def test_not_following_reads_to_the_end_and_a_missing_file_is_an_error(
    tmp_path: Path,
) -> None:
    log = tmp_path / "app.log"
    log.write_bytes(b"level=info msg=a\r\nlevel=error msg=\xff\nno newline at end")
    out = tmp_path / "out.jsonl"
    count = await run_logs(LogsSettings(input=str(log), output=str(out), format="logfmt"))
    assert count == 3
    assert [json.loads(line) for line in out.read_text().splitlines()] == [
        {"level": "info", "message": "a"},
        {"level": "error", "message": "\ufffd"},
        {"message": "no newline at end", "parse_error": True},
    ]
    with pytest.raises(FileNotFoundError):
        await run_logs(LogsSettings(input=str(tmp_path / "missing.log")))


async def test_standard_input_to_standard_output() -> None:
    stdin = io.StringIO('1.2.3.4 - - [01/Jan/2024:00:00:00 +0000] "GET / HTTP/1.1" 200 5\nbad\n')
    stdout = io.StringIO()
    count = await run_logs(LogsSettings(format="common"), stdin=stdin, stdout=stdout)
    assert count == 2
    first, second = (json.loads(line) for line in stdout.getvalue().splitlines())
    assert first["status"] == 200
    assert second == {"message": "bad", "parse_error": True}


# --- the command ----------------------------------------------------------------------------


def test_cli_reads_standard_input_and_refuses_bad_flags(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main, ["adapter", "logs", "--format", "logfmt"], input="a=1 msg=hi\n"
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == {"message": "hi", "a": "1"}
    result = CliRunner().invoke(main, ["adapter", "logs", "--format", "regexp"])
    assert result.exit_code == 2
    assert "needs --regexp" in result.output
    result = CliRunner().invoke(main, ["adapter", "logs", "--follow"])
    assert result.exit_code == 2
    assert "--follow needs --input FILE" in result.output
    result = CliRunner().invoke(main, ["adapter", "logs", "--input", str(tmp_path / "none")])
    assert result.exit_code == 1
    assert "no such file" in result.output


def test_config_file_form() -> None:
    config = load_config_text(
        "input: /var/log/app.log\nformat: regexp\nregexp: '(?P<level>\\w+): (?P<msg>.*)'\n"
        "follow: true\npollSeconds: 0.5\n",
        LogsConfig,
        "logs.yaml",
    )
    settings = config.settings()
    assert settings.follow
    assert settings.poll == 0.5
    assert make_parser(settings.format, settings.regexp)("ERROR: boom") == {
        "level": "error",
        "message": "boom",
    }


def test_the_command_follows_a_rotated_file(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    out = tmp_path / "access.jsonl"
    log.write_text('10.0.0.1 - - [01/Jan/2024:00:00:00 +0000] "GET /a HTTP/1.1" 200 1\n')
    config = tmp_path / "logs.yaml"
    config.write_text(f"input: {log}\noutput: {out}\nformat: common\npollSeconds: 0.05\n")
    process = subprocess.Popen(
        [sys.executable, "-m", "shoal", "adapter", "logs", "--config", str(config), "--follow"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )

    def records() -> list[dict[str, Any]]:
        if not out.exists():
            return []
        return [json.loads(line) for line in out.read_text().splitlines()]

    def wait(count: int) -> None:
        end = time.monotonic() + 15
        while len(records()) < count:
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            assert time.monotonic() < end, f"timed out waiting for {count} records: {records()}"
            time.sleep(0.02)

    try:
        wait(1)
        log.rename(tmp_path / "access.log.1")
        log.write_text("not an access log line\n")
        wait(2)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)
        if process.stderr is not None:
            process.stderr.close()
    got = records()
    assert got[0]["path"] == "/a"
    assert got[1] == {"message": "not an access log line", "parse_error": True}
    assert os.path.exists(tmp_path / "access.log.1")


def test_the_command_reads_an_idle_pipe_and_stops_on_sigterm() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "shoal", "adapter", "logs", "--format", "logfmt"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdin is not None
        assert process.stdout is not None
        process.stdin.write("level=error msg=first\n")
        process.stdin.flush()
        # The pipe stays open: the record must come out now, not when the input ends.
        assert json.loads(process.stdout.readline()) == {"level": "error", "message": "first"}
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)
        for stream in (process.stdin, process.stdout, process.stderr):
            if stream is not None:
                stream.close()
