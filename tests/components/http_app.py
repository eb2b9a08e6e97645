"""A tiny HTTP/1.1 app for the sidecar and split tests: it answers JSON describing each request.

Every connection task is tracked and cancelled on close; ``delay`` makes it slow and
``fail`` makes it drop connections, for the isolation tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any


class App:
    def __init__(self, name: str = "app", *, delay: float = 0.0, fail: bool = False) -> None:
        self.name = name
        self.delay = delay
        self.fail = fail
        self.requests: list[dict[str, Any]] = []
        self.tasks: set[asyncio.Task[None]] = set()
        self.server: asyncio.Server | None = None
        self.seen = asyncio.Event()

    @property
    def address(self) -> str:
        assert self.server is not None
        host, port = self.server.sockets[0].getsockname()[:2]
        return f"{host}:{port}"

    async def __aenter__(self) -> App:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.tasks.add(task)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, target, _ = lines[0].split(" ", 2)
                headers: dict[str, str] = {}
                for line in lines[1:]:
                    if line:
                        name, _, value = line.partition(":")
                        headers[name.strip().lower()] = value.strip()
                body = b""
                if "content-length" in headers:
                    body = await reader.readexactly(int(headers["content-length"]))
                record = {"method": method, "target": target, "headers": headers, "body": len(body)}
                self.requests.append(record)
                self.seen.set()
                if self.fail:
                    return
                if self.delay:
                    await asyncio.sleep(self.delay)
                payload = json.dumps({"app": self.name, **record}).encode()
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    b"Content-Length: %d\r\n\r\n%s" % (len(payload), payload)
                )
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()
            self.tasks.discard(task)


async def request(
    host: str,
    port: int,
    target: str = "/",
    *,
    method: str = "GET",
    headers: dict[str, str] | None = None,
    body: bytes = b"",
    ssl: Any = None,
    wait: float = 5.0,
) -> tuple[int, dict[str, str], bytes]:
    """One request on a new connection (Connection: close); status, headers, body."""

    async def go() -> tuple[int, dict[str, str], bytes]:
        reader, writer = await asyncio.open_connection(
            host, port, ssl=ssl, server_hostname="localhost" if ssl else None
        )
        try:
            lines = [f"{method} {target} HTTP/1.1", f"Host: {host}", "Connection: close"]
            for name, value in (headers or {}).items():
                lines.append(f"{name}: {value}")
            if body:
                lines.append(f"Content-Length: {len(body)}")
            writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
            await writer.drain()
            raw = await reader.read()
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()
        if not raw:
            raise ConnectionError("the connection closed without a response")
        head, _, rest = raw.partition(b"\r\n\r\n")
        status_line, *fields = head.decode("latin-1").split("\r\n")
        parsed = {}
        for line in fields:
            name, _, value = line.partition(":")
            parsed[name.strip().lower()] = value.strip()
        return int(status_line.split(" ")[1]), parsed, rest

    return await asyncio.wait_for(go(), wait)
