"""`shoal proxy` end to end: the installed command forwards to real backends and drains on SIGTERM."""

from __future__ import annotations

import http.client
import signal
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest


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


def test_shoal_proxy_balances_and_drains(backends: list[str]) -> None:
    command = ["shoal", "proxy", "--listen", "127.0.0.1:0", "--loop", "asyncio"]
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
