"""Real servers for the adapters' integration tests: redis-server from Debian.

A missing redis-server fails the test (``.ci/run`` installs it): skipping would hide that the
adapters were never run against a real Redis.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

REDIS_SERVER = "redis-server"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as conn:
            conn.sendall(b"*1\r\n$4\r\nPING\r\n")
            return conn.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """One redis-server on 127.0.0.1, no persistence; stop and start again on the same port."""

    def __init__(
        self, workdir: Path, password: str | None = None, extra: Sequence[str] = ()
    ) -> None:
        binary = shutil.which(REDIS_SERVER)
        if binary is None:
            pytest.fail(
                "redis-server is not installed: `apt-get install -y redis-server` (.ci/run does)"
            )
        self.binary = binary
        self.workdir = workdir
        self.password = password
        self.extra = tuple(extra)
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, deadline: float = 10.0) -> None:
        assert self.process is None
        args = [
            self.binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.workdir),
        ]
        if self.password is not None:
            args += ["--requirepass", self.password]
        args += self.extra
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.process.returncode}")
            if self._answers():
                return
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"redis-server did not answer on {self.address} within {deadline}s")

    def _answers(self) -> bool:
        if self.password is None:
            return _ping(self.port)
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as conn:
                conn.sendall(b"*1\r\n$4\r\nPING\r\n")
                return conn.recv(64).startswith(b"-NOAUTH")
        except OSError:
            return False

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None

    def command(self, *args: str) -> bytes:
        """Run one command with a plain socket (test setup, independent of the code under test)."""
        payload = b"*%d\r\n" % len(args) + b"".join(
            b"$%d\r\n%s\r\n" % (len(a.encode()), a.encode()) for a in args
        )
        with socket.create_connection(("127.0.0.1", self.port), timeout=2) as conn:
            conn.sendall(payload)
            return conn.recv(65536)
