"""`shoal proxy` end to end: the installed command forwards to real backends and drains on SIGTERM."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import pathlib
import queue
import signal
import socket
import subprocess
import textwrap
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import IO

import pytest
from prometheus_client.parser import text_string_to_metric_families


def _backend(name: str) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            body = name.encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    return ThreadingHTTPServer(("127.0.0.1", 0), Handler)


@pytest.fixture
def backends() -> Iterator[list[str]]:
    servers = [_backend("a"), _backend("b")]
    threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in servers]
    for thread in threads:
        thread.start()
    yield [f"127.0.0.1:{s.server_address[1]}" for s in servers]
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("implementation", ["python", "compiled"])
def test_shoal_proxy_balances_and_drains(backends: list[str], implementation: str) -> None:
    command = ["shoal", "proxy", "--listen", "127.0.0.1:0", "--loop", "asyncio"]
    command += ["--implementation", implementation]
    for backend in backends:
        command += ["--backend", backend]
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as process:
        _exercise(process)


def _exercise(process: subprocess.Popen[str]) -> None:
    try:
        assert process.stdout is not None
        line = process.stdout.readline()  # the proxy prints this when it is ready
        assert line.startswith("listening on "), line + (
            process.stderr.read() if process.stderr else ""
        )
        host, port = line.split()[-1].rsplit(":", 1)
        connection = http.client.HTTPConnection(host, int(port), timeout=10)
        answers = []
        for _ in range(4):
            connection.request("GET", "/")
            answers.append(connection.getresponse().read().decode())
        connection.close()
        assert sorted(answers) == ["a", "a", "b", "b"]
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)


def test_shoal_proxy_refuses_a_bad_backend() -> None:
    result = subprocess.run(
        ["shoal", "proxy", "--listen", "127.0.0.1:0", "--backend", "nonsense"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert "expected HOST:PORT, got 'nonsense'" in result.stderr
    turbo = ["--backend", "127.0.0.1:1", "--implementation", "turbo"]
    result = subprocess.run(
        ["shoal", "proxy", "--listen", "127.0.0.1:0", *turbo],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert "'turbo' is not one of 'auto', 'compiled', 'python'" in result.stderr


# --- --config, SIGHUP, Services, admin ------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class _Lines:
    """The lines a process writes to one stream, read by a thread (so waits can time out)."""

    def __init__(self, stream: IO[str]) -> None:
        self.queue: queue.Queue[str] = queue.Queue()
        self.thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self.thread.start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self.queue.put(line)

    def wait_for(self, prefix: str, timeout: float = 20.0) -> str:
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"no line starting with {prefix!r}"
            line = self.queue.get(timeout=remaining)
            if line.startswith(prefix):
                return line


def _config(port: int, admin: int, backends: str) -> str:
    """A ProxyConfig with one listener whose route has ``backends`` (YAML list items)."""
    lines = [
        "apiVersion: proxy.shoal.dev/v1",
        "kind: ProxyConfig",
        "listeners:",
        "- name: web",
        f"  port: {port}",
        "  routes:",
        "  - name: web",
        "    retries: {maxRetries: 1}",
        "    backends:",
        textwrap.indent(backends, "    "),
        "admin:",
        f"  port: {admin}",
    ]
    return "\n".join(lines) + "\n"


class _Load:
    """Threads sending keep-alive GETs until stopped; every non-200 or error is kept."""

    def __init__(self, port: int, threads: int = 4) -> None:
        self.port = port
        self.stop = threading.Event()
        self.done = 0
        self.bodies: list[str] = []
        self.failures: list[object] = []
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]
        for thread in self.threads:
            thread.start()

    def _run(self) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        while not self.stop.is_set():
            try:
                connection.request("GET", "/")
                response = connection.getresponse()
                body = response.read().decode()
            except (OSError, http.client.HTTPException) as error:
                with self.lock:
                    self.failures.append(error)
                connection.close()
                continue
            with self.lock:
                self.done += 1
                self.bodies.append(body)
                if response.status != 200:
                    self.failures.append(response.status)
        connection.close()

    def wait_more(self, count: int, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        start = self.done
        while self.done < start + count:
            assert time.monotonic() < deadline, "the load made no progress"
            time.sleep(0.01)

    def wait_for_body(self, body: str, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            with self.lock:
                seen = self.bodies[-1] if self.bodies else ""
            if seen == body:
                return
            assert time.monotonic() < deadline, f"never saw {body!r}"
            time.sleep(0.01)

    def finish(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(20)


def _get(port: int, path: str) -> tuple[int, str]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read().decode()
    finally:
        connection.close()


@pytest.mark.slow
def test_config_file_sighup_reloads_under_load_without_failures(
    backends: list[str], tmp_path: pathlib.Path
) -> None:
    """`service:` backends resolve through <NAME>_SERVICE_HOST; five SIGHUP reloads that move
    traffic between the backends fail no request; a bad file is reported and the running
    configuration kept; /metrics parses; SIGTERM exits 0."""
    a_port = int(backends[0].rsplit(":", 1)[1])
    b_port = int(backends[1].rsplit(":", 1)[1])
    port, admin = _free_port(), _free_port()
    config = tmp_path / "proxy.yaml"
    config.write_text(_config(port, admin, f"- service: alpha\n  port: {a_port}"))
    env = dict(os.environ, ALPHA_SERVICE_HOST="127.0.0.1", BETA_SERVICE_HOST="127.0.0.1")
    command = ["shoal", "proxy", "--config", str(config), "--host", "127.0.0.1"]
    command += ["--namespace", "test", "--loop", "asyncio", "--resolve-interval", "0.2"]
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    ) as process:
        try:
            assert process.stdout is not None
            assert process.stderr is not None
            out, err = _Lines(process.stdout), _Lines(process.stderr)
            assert out.wait_for("listening on") == f"listening on 127.0.0.1:{port}\n"
            assert out.wait_for("admin on") == f"admin on 127.0.0.1:{admin}\n"
            load = _Load(port)
            try:
                load.wait_for_body("a")
                for turn in range(5):
                    name, backend_port = ("beta", b_port) if turn % 2 == 0 else ("alpha", a_port)
                    config.write_text(
                        _config(port, admin, f"- service: {name}\n  port: {backend_port}")
                    )
                    process.send_signal(signal.SIGHUP)
                    out.wait_for("reloaded")
                    load.wait_for_body("b" if name == "beta" else "a")
                    load.wait_more(50)
                config.write_text(_config(port, admin, "- address: nonsense"))
                process.send_signal(signal.SIGHUP)
                problem = err.wait_for(f"{config}:")
                assert "listeners[0].routes[0].backends[0].address" in problem
                assert "must be host:port" in problem
                load.wait_more(50)
            finally:
                load.finish()
            assert load.failures == []
            assert load.done > 250
            assert _get(admin, "/healthz") == (200, "ok\n")
            status, metrics = _get(admin, "/metrics")
            assert status == 200
            families = {f.name: f for f in text_string_to_metric_families(metrics)}
            assert families["shoal_proxy_config_applies"].samples[0].value == 6
            # The route's latency histogram outlives endpoint changes: it saw every request.
            [count] = [
                s.value
                for s in families["shoal_proxy_request_duration_seconds"].samples
                if s.name.endswith("_count")
            ]
            assert count >= load.done
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=20) == 0
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=10)


def test_bad_config_file_is_refused_with_its_line_and_field(tmp_path: pathlib.Path) -> None:
    config = tmp_path / "proxy.yaml"
    config.write_text(
        textwrap.dedent(
            """\
            apiVersion: proxy.shoal.dev/v1
            kind: ProxyConfig
            listeners:
            - name: web
              port: 8080
              routes:
              - name: users
                polcy: hash
                backends: [{address: "127.0.0.1:1"}]
            """
        )
    )
    result = subprocess.run(
        ["shoal", "proxy", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 1
    assert (
        f'{config}:8:5: listeners[0].routes[0].polcy: unknown field "polcy"; '
        'did you mean "policy"?' in result.stderr
    )


def test_flags_shard_regexp_health_path_admin_and_access_log(
    backends: list[str], tmp_path: pathlib.Path
) -> None:
    """--shard-regexp makes each backend a shard (a key always lands on one), --health-path
    checks them, --admin serves /metrics, --access-log writes a line per request."""
    log = tmp_path / "access.log"
    command = ["shoal", "proxy", "--listen", "127.0.0.1:0", "--loop", "asyncio"]
    for backend in backends:
        command += ["--backend", backend]
    command += ["--shard-regexp", "/users/([^/]+)", "--health-path", "/healthz"]
    command += ["--admin", "127.0.0.1:0", "--access-log", str(log), "--access-log-format", "json"]
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as process:
        try:
            assert process.stdout is not None
            out = _Lines(process.stdout)
            port = int(out.wait_for("listening on").rsplit(":", 1)[1])
            admin = int(out.wait_for("admin on").rsplit(":", 1)[1])
            deadline = time.monotonic() + 20
            while _get(port, "/users/x/")[0] != 200:  # until the first checks have passed
                assert time.monotonic() < deadline
                time.sleep(0.01)
            owners = {}
            for user in range(10):
                answers = {_get(port, f"/users/u{user}/item/{i}")[1] for i in range(3)}
                assert len(answers) == 1
                owners[user] = answers.pop()
            assert set(owners.values()) == {"a", "b"}
            _, metrics = _get(admin, "/metrics")
            families = {f.name: f for f in text_string_to_metric_families(metrics)}
            healthy = [s.value for s in families["shoal_proxy_endpoint_healthy"].samples]
            assert healthy == [1, 1]
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=20) == 0
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=10)
    entries = [json.loads(line) for line in log.read_text().splitlines()]
    assert [e["target"] for e in entries[-30:]] == [
        f"/users/u{user}/item/{i}" for user in range(10) for i in range(3)
    ]
    assert {e["shard"] for e in entries[-30:]} == set(backends)


@pytest.mark.slow
def test_workers_share_the_config_ports_and_all_reload_on_sighup(
    backends: list[str], tmp_path: pathlib.Path
) -> None:
    """--workers 2 with --config: both workers bind the listener and the admin port; the parent
    forwards SIGHUP and each worker reloads."""
    port, admin = _free_port(), _free_port()
    config = tmp_path / "proxy.yaml"
    config.write_text(_config(port, admin, f'- address: "{backends[0]}"'))
    command = ["shoal", "proxy", "--config", str(config), "--workers", "2", "--loop", "asyncio"]
    # Its own session: if the test fails, killing the group takes the workers too (an orphaned
    # worker would keep the output pipe open and hang the test on closing it).
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    ) as process:
        try:
            assert process.stdout is not None
            out = _Lines(process.stdout)
            for _ in range(2):
                out.wait_for("admin on")
            assert _get(port, "/")[1] == "a"
            config.write_text(_config(port, admin, f'- address: "{backends[1]}"'))
            process.send_signal(signal.SIGHUP)
            out.wait_for("reloaded")
            out.wait_for("reloaded")
            assert {_get(port, "/")[1] for _ in range(6)} == {"b"}
            assert _get(admin, "/healthz") == (200, "ok\n")
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=30) == 0
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)  # workers included; a no-op after exit
            process.wait(timeout=10)
