"""``shoal sidecar ...`` as a user runs it: a subprocess that prints its address, serves, and
drains on SIGTERM; configuration mistakes reported as FILE:LINE:COL."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from shoal.cli import main
from tests.components.http_app import App, request

from .sidecar_certs import authority, write_pair

WAIT = 10.0


async def start(*args: str) -> tuple[asyncio.subprocess.Process, str, int]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "shoal",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert process.stdout is not None
    try:
        line = await asyncio.wait_for(process.stdout.readline(), WAIT)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    text = line.decode().strip()
    if not text.startswith("listening on "):
        process.kill()
        _, err = await process.communicate()
        pytest.fail(f"no address printed: {text!r} {err.decode()}")
    host, _, port = text.removeprefix("listening on ").rpartition(":")
    return process, host, int(port)


async def stop(process: asyncio.subprocess.Process) -> int:
    process.send_signal(signal.SIGTERM)
    try:
        return await asyncio.wait_for(process.wait(), WAIT)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise


async def test_tls_sidecar_process(tmp_path: Path) -> None:
    ca = authority("cli CA")
    cert, key = write_pair(tmp_path, *ca.issue("localhost"))
    config = tmp_path / "tls.yaml"
    config.write_text(
        f"listen: 127.0.0.1:0\ncert: {cert}\nkey: {key}\nreloadIntervalSeconds: 0.5\n"
    )
    import ssl

    context = ssl.create_default_context(cafile=str(ca.write(tmp_path / "ca.pem")))
    async with App() as app:
        process, host, port = await start(
            "sidecar", "tls", "--config", str(config), "--upstream", app.address
        )
        try:
            status, _, _ = await request(host, port, ssl=context)
        finally:
            code = await stop(process)
    assert status == 200
    assert code == 0


async def test_auth_sidecar_process(tmp_path: Path) -> None:
    (tmp_path / "tokens").write_text("abc,alice\n")
    async with App() as app:
        process, host, port = await start(
            "sidecar",
            "auth",
            "--listen",
            "127.0.0.1:0",
            "--upstream",
            app.address,
            "--token-file",
            str(tmp_path / "tokens"),
            "--rate",
            "100/s",
        )
        try:
            denied, _, _ = await request(host, port)
            allowed, _, _ = await request(host, port, headers={"Authorization": "Bearer abc"})
        finally:
            code = await stop(process)
    assert (denied, allowed, code) == (401, 200, 0)


def test_config_errors_are_located(tmp_path: Path) -> None:
    runner = CliRunner()
    config = tmp_path / "auth.yaml"
    config.write_text("tokenFile: t\nrate: 3/fortnight\nburts: 4\n")
    result = runner.invoke(main, ["sidecar", "auth", "--config", str(config)])
    assert result.exit_code == 1
    assert f"{config}:2:7: rate: rate '3/fortnight': must be" in result.output
    assert f'{config}:3:1: burts: unknown field "burts"; did you mean "burst"?' in result.output
    result = runner.invoke(main, ["sidecar", "tls", "--listen", "127.0.0.1:0"])
    assert result.exit_code == 2
    assert "missing --cert, --key" in result.output
    result = runner.invoke(
        main,
        ["sidecar", "tls", "--cert", str(tmp_path / "no.crt"), "--key", str(tmp_path / "no.key")],
    )
    assert result.exit_code == 1
    assert "no.crt: no such file" in result.output


async def test_config_sync_process(tmp_path: Path) -> None:
    from shoal.client import HTTPClient, ResourceRef
    from shoal.testing import api_server

    async with api_server() as server:
        async with HTTPClient.from_kubeconfig(server.kubeconfig) as client:
            await client.create(
                ResourceRef("v1", "ConfigMap", "default"),
                {
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "metadata": {"name": "app"},
                    "data": {"greeting": "hello"},
                },
            )
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "shoal",
            "sidecar",
            "config-sync",
            "--configmap",
            "app",
            "--dir",
            str(tmp_path / "cfg"),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={**os.environ, "KUBECONFIG": str(server.kubeconfig)},
        )
        try:
            target = tmp_path / "cfg" / "greeting"
            deadline = asyncio.get_running_loop().time() + WAIT
            while not target.exists():
                assert asyncio.get_running_loop().time() < deadline, "no file written"
                assert process.returncode is None
                await asyncio.sleep(0.05)
            assert target.read_text() == "hello"
        finally:
            code = await stop(process)
    assert code == 0
