"""``shoal ambassador redis|memcached`` as processes, the YAML form and its located errors."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from click.testing import CliRunner

from shoal.cli import main
from shoal.components.ambassadors.config import load_config
from shoal.components.ambassadors.resp import encode_command
from shoal.components.ambassadors.servers import ServerSpec
from shoal.errors import InvalidObjectsError

from .ambassador_servers import RedisServer, free_port


def test_yaml_form_with_both_server_forms(tmp_path: Path) -> None:
    path = tmp_path / "amb.yaml"
    path.write_text(
        "listen: 127.0.0.1:7000\nhash: rendezvous\nhashTag: '[]'\nservers:\n"
        "  - 10.0.0.1:6379:2 a\n  - {address: '10.0.0.2:6379', name: b}\n"
        "autoEjectHosts: true\nserverRetryTimeoutSeconds: 5\nadmin: 127.0.0.1:9121\n"
    )
    config = load_config(path, "redis", {"timeout": 9.0})
    assert config.servers == (
        ServerSpec("10.0.0.1", 6379, 2, "a"),
        ServerSpec("10.0.0.2", 6379, 1, "b"),
    )
    assert config.listen == "127.0.0.1:7000"
    assert config.admin == "127.0.0.1:9121"
    assert (config.settings.algorithm, config.settings.hash_tag) == ("rendezvous", "[]")
    assert config.settings.health.auto_eject
    assert config.settings.health.retry_timeout == 5
    assert config.settings.timeout == 9.0  # a flag wins over the file
    assert config.settings.implementation == "auto"
    path.write_text("servers: [10.0.0.1:6379]\nimplementation: python\n")
    assert load_config(path, "redis").settings.implementation == "python"
    assert load_config(path, "redis", {"implementation": "compiled"}).settings.implementation == (
        "compiled"
    )


def test_yaml_errors_name_file_line_and_field(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        "protocol: memcached\nservers:\n  - 10.0.0.1\n  - {address: 'x:1', wieght: 2}\nhash: jump\n"
    )
    with pytest.raises(InvalidObjectsError) as caught:
        load_config(path, "redis")
    text = str(caught.value)
    assert f"{path}:1:11: protocol:" in text
    assert f"{path}:4:22: servers[1].wieght: unknown field" in text
    assert f"{path}:5:7: hash:" in text
    # Values are checked once the structure is right.
    path.write_text("servers:\n  - 10.0.0.1\n  - {address: 'x:1:0'}\nlisten: nowhere\n")
    with pytest.raises(InvalidObjectsError) as caught:
        load_config(path, "redis")
    text = str(caught.value)
    assert f"{path}:2:5: servers[0]: Invalid value: expected HOST:PORT" in text
    assert f"{path}:3:15: servers[1].address: Invalid value: weight must be" in text
    assert f"{path}:4:9: listen: Invalid value: expected HOST:PORT" in text


def test_flags_are_checked() -> None:
    result = CliRunner().invoke(main, ["ambassador", "redis", "--listen", "127.0.0.1:0"])
    assert result.exit_code == 2
    assert "at least one server is needed" in result.output
    result = CliRunner().invoke(main, ["ambassador", "memcached", "--server", "nohost"])
    assert result.exit_code == 2
    assert "expected HOST:PORT" in result.output
    result = CliRunner().invoke(
        main, ["ambassador", "redis", "--server", "127.0.0.1:1", "--implementation", "turbo"]
    )
    assert result.exit_code == 2
    assert "'turbo' is not one of 'auto', 'compiled', 'python'" in result.output


@pytest.mark.parametrize("implementation", ["python", "compiled"])
def test_the_command_serves_and_exposes_metrics(
    redis_servers: list[RedisServer], implementation: str
) -> None:
    admin = free_port()
    args = [sys.executable, "-m", "shoal", "ambassador", "redis", "--listen", "127.0.0.1:0",
            "--admin", f"127.0.0.1:{admin}", "--hash", "ring",
            "--implementation", implementation]  # fmt: skip
    for server in redis_servers:
        args += ["--server", server.address]
    process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert process.stdout is not None
        line = process.stdout.readline().decode()
        assert line.startswith("listening on 127.0.0.1:"), (
            process.stderr.read() if process.stderr else line
        )
        port = int(line.rsplit(":", 1)[1])
        assert process.stdout.readline().decode().strip() == f"admin on 127.0.0.1:{admin}"
        with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
            conn.sendall(encode_command([b"SET", b"a", b"1"]) + encode_command([b"GET", b"a"]))
            data = b""
            while not data.endswith(b"$1\r\n1\r\n"):
                chunk = conn.recv(1024)
                assert chunk, data
                data += chunk
        assert data == b"+OK\r\n$1\r\n1\r\n"
        with urllib.request.urlopen(f"http://127.0.0.1:{admin}/metrics", timeout=5) as response:
            body = response.read().decode()
        assert 'shoal_ambassador_requests_total{protocol="redis"} 2' in body
        try:
            from prometheus_client.parser import text_string_to_metric_families
        except ImportError:
            pytest.fail("prometheus-client (the dev extra) checks the exposition format")
        names = {family.name for family in text_string_to_metric_families(body)}
        assert "shoal_ambassador_server_up" in names
    finally:
        process.terminate()
        deadline = time.monotonic() + 10
        while process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        if process.poll() is None:
            process.kill()
        process.wait()
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()
    assert process.returncode == 0


def test_workers_share_the_port(redis_servers: list[RedisServer]) -> None:
    args = [sys.executable, "-m", "shoal", "ambassador", "redis", "--listen", "127.0.0.1:0",
            "--workers", "2"]  # fmt: skip
    for server in redis_servers:
        args += ["--server", server.address]
    process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert process.stdout is not None
        line = process.stdout.readline().decode()
        assert line.startswith("listening on 127.0.0.1:"), line
        port = int(line.rsplit(":", 1)[1])
        # Connections spread over both workers; every one sees the same sharded keyspace.
        for i in range(20):
            with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
                key = b"w%d" % i
                conn.sendall(encode_command([b"SET", key, key]) + encode_command([b"GET", key]))
                want = b"+OK\r\n$%d\r\n%b\r\n" % (len(key), key)
                data = b""
                while len(data) < len(want):
                    chunk = conn.recv(1024)
                    assert chunk, data
                    data += chunk
                assert data == want
        assert sum(len(server.keys()) for server in redis_servers) == 20
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
            for stream in (process.stdout, process.stderr):
                if stream is not None:
                    stream.close()
    assert process.returncode == 0


def test_admin_with_workers_is_refused() -> None:
    result = CliRunner().invoke(
        main,
        [
            "ambassador",
            "redis",
            "--server",
            "127.0.0.1:1",
            "--workers",
            "2",
            "--admin",
            "127.0.0.1:0",
        ],
    )
    assert result.exit_code == 2
    assert "--admin with --workers > 1 is not supported yet" in result.output


def test_memcached_file_without_listen_listens_on_memcacheds_port(tmp_path: Path) -> None:
    path = tmp_path / "mc.yaml"
    path.write_text("servers: [10.0.0.1:11211]\n")
    assert load_config(path, "memcached").listen == "127.0.0.1:11211"
    assert load_config(path, "redis").listen == "127.0.0.1:6379"
