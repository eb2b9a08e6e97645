"""``shoal ambassador split``'s flags and configuration file."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from shoal.cli.ambassador_split import split_command


def test_missing_flags_and_located_config_errors(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(split_command, ["--weight", "10"])
    assert result.exit_code == 2
    assert "missing --upstream, --canary" in result.output
    config = tmp_path / "split.yaml"
    config.write_text("upstream: 127.0.0.1:8080\ncanary: nowhere\nweight: 120\nstickyCookei: s\n")
    result = runner.invoke(split_command, ["--config", str(config)])
    assert result.exit_code == 1
    assert f"{config}:3:9: weight: " in result.output
    assert (
        f'{config}:4:1: stickyCookei: unknown field "stickyCookei"; did you mean "stickyCookie"?'
        in result.output
    )
    config.write_text("upstream: 127.0.0.1:8080\ncanary: nowhere\n")
    result = runner.invoke(split_command, ["--config", str(config)])
    assert result.exit_code == 1
    assert "expected HOST:PORT, got 'nowhere'" in result.output


async def test_split_process() -> None:
    import asyncio
    import os
    import signal
    import sys

    from tests.components.http_app import App, request

    async with App("primary") as primary, App("canary") as canary:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "shoal",
            "ambassador",
            "split",
            "--listen",
            "127.0.0.1:0",
            "--upstream",
            primary.address,
            "--canary",
            canary.address,
            "--weight",
            "100",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        try:
            assert process.stdout is not None
            line = (await asyncio.wait_for(process.stdout.readline(), 10)).decode()
            assert line.startswith("listening on "), line
            host, _, port = line.removeprefix("listening on ").strip().rpartition(":")
            status, _, body = await request(host, int(port))
        finally:
            process.send_signal(signal.SIGTERM)
            code = await asyncio.wait_for(process.wait(), 10)
    assert (status, code) == (200, 0)
    assert b'"app": "canary"' in body
