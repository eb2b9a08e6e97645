"""Real servers for the ambassadors' integration tests: redis-server and memcached from Debian.

A missing binary fails the test with the install hint (``.ci/run`` installs both): skipping would
hide that the ambassadors were never run against real servers.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from shoal.components.ambassadors import resp
from shoal.components.ambassadors.memcache import response_end


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _binary(name: str, package: str) -> str:
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: `apt-get install -y {package}` (.ci/run does)")
    return found


class Server:
    """One server process on 127.0.0.1 and a free port; ``stop`` and ``start`` again keep the port."""

    kind = ""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        raise NotImplementedError

    def answers(self) -> bool:
        raise NotImplementedError

    def start(self, deadline: float = 10.0) -> None:
        assert self.process is None
        self.process = subprocess.Popen(
            self.command(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.kind} exited with {self.process.returncode}")
            if self.answers():
                return
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"{self.kind} did not answer on {self.address} within {deadline}s")

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.kill()
        self.process.wait(timeout=10)
        self.process = None

    def call(self, request: bytes, *, memcached_get: bool = False) -> bytes:
        """One request straight to the server (bypassing the ambassador); its raw reply."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as conn:
            conn.sendall(request)
            data = b""
            while True:
                chunk = conn.recv(65536)
                if not chunk:
                    raise ConnectionError("closed before a whole reply")
                data += chunk
                if self.kind == "redis-server":
                    end = resp.reply_end(data, 0)
                else:
                    end = response_end(data, 0, memcached_get)
                if end >= 0:
                    return data[:end]


class RedisServer(Server):
    kind = "redis-server"

    def command(self) -> list[str]:
        binary = _binary("redis-server", "redis-server")
        return [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no", "--dir", str(self.workdir)]  # fmt: skip

    def answers(self) -> bool:
        try:
            return self.call(b"PING\r\n") == b"+PONG\r\n"
        except OSError:
            return False

    def keys(self) -> set[bytes]:
        value = resp.decode(self.call(resp.encode_command([b"KEYS", b"*"])))
        assert isinstance(value, list)
        return {k for k in value if isinstance(k, bytes)}


class MemcachedServer(Server):
    kind = "memcached"

    def command(self) -> list[str]:
        binary = _binary("memcached", "memcached")
        command = [
            binary,
            "-l",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-U",
            "0",
            "-m",
            "16",
            "-t",
            "1",
        ]
        # memcached refuses to run as root unless told which user to be.
        return [*command, "-u", "root"] if os.geteuid() == 0 else command

    def answers(self) -> bool:
        try:
            return self.call(b"version\r\n").startswith(b"VERSION")
        except OSError:
            return False


class Client:
    """A raw pipelining client over asyncio streams (what an app's library does on the wire)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.buf = b""

    @classmethod
    async def connect(cls, address: tuple[str, int]) -> Client:
        reader, writer = await asyncio.open_connection(*address)
        return cls(reader, writer)

    async def replies(self, count: int, *, memcached: list[bool] | None = None) -> list[bytes]:
        out: list[bytes] = []
        async with asyncio.timeout(10):
            while len(out) < count:
                retrieval = memcached[len(out)] if memcached is not None else False
                end = (
                    response_end(self.buf, 0, retrieval)
                    if memcached is not None
                    else resp.reply_end(self.buf, 0)
                )
                if end >= 0:
                    out.append(self.buf[:end])
                    self.buf = self.buf[end:]
                    continue
                chunk = await self.reader.read(65536)
                if not chunk:
                    raise ConnectionError(f"closed after {len(out)} of {count} replies")
                self.buf += chunk
        return out

    async def redis(self, *commands: list[bytes]) -> list[resp.RespValue]:
        """Send every command in one write (pipelined), then read the replies in order."""
        self.writer.write(b"".join(resp.encode_command(c) for c in commands))
        raw = await self.replies(len(commands))
        return [resp.decode(r) for r in raw]

    async def closed(self) -> bool:
        async with asyncio.timeout(10):
            return await self.reader.read(1) == b""

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()
