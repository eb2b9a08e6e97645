"""Start a real API server for a test: in-process on the running loop, or as a subprocess.

::

    async with api_server() as server:          # 127.0.0.1, a free port, a temporary data dir
        async with aiohttp.ClientSession(headers=server.headers) as http:
            await http.get(server.url + "/api/v1/namespaces", ssl=server.ssl_context())

    async with api_server_process() as server:  # ``shoal server`` in a child process
        server.kill()                            # SIGKILL, for crash tests
        async with api_server_process(data_dir=server.data_dir) as again: ...

Both yield the URL, the kubeconfig path (for kubectl and other clients), the token and the CA
certificate. Nothing is mocked: these are the server's own code paths, TLS and authentication
included.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import ssl
import sys
import tempfile
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from shoal.apiserver.server import RunningServer, ServerSettings, serve

__all__ = ["LocalAPIServer", "ServerProcess", "api_server", "api_server_process"]


@dataclass(frozen=True, slots=True)
class LocalAPIServer:
    """A running API server and what a client needs to reach it."""

    url: str
    kubeconfig: Path
    token: str = field(repr=False)
    ca_cert: Path
    data_dir: Path
    running: RunningServer | None = field(default=None, repr=False)
    """The in-process server's internals (store, collector); None for a subprocess."""

    @property
    def headers(self) -> dict[str, str]:
        """The ``Authorization`` header that authenticates as the admin."""
        return {"Authorization": f"Bearer {self.token}"}

    def ssl_context(self) -> ssl.SSLContext:
        """A client TLS context that trusts exactly this server's CA."""
        return ssl.create_default_context(cafile=str(self.ca_cert))

    def session(self, *, authenticated: bool = True) -> aiohttp.ClientSession:
        """An aiohttp session for this server: paths relative to its URL, its CA trusted, the
        token sent (unless ``authenticated`` is False). Use it as ``async with``."""
        return aiohttp.ClientSession(
            base_url=self.url,
            headers=self.headers if authenticated else None,
            connector=aiohttp.TCPConnector(ssl=self.ssl_context()),
        )


@contextlib.asynccontextmanager
async def _data_dir(data_dir: Path | None) -> AsyncIterator[Path]:
    if data_dir is not None:
        yield data_dir
        return
    with tempfile.TemporaryDirectory(prefix="shoal-apiserver-") as temporary:
        yield Path(temporary)


@contextlib.asynccontextmanager
async def api_server(
    *,
    data_dir: Path | None = None,
    storage: Mapping[str, Any] | None = None,
    gc_interval: float = 0.1,
) -> AsyncIterator[LocalAPIServer]:
    """A server on 127.0.0.1, port 0, in ``data_dir`` (a temporary directory by default).

    ``storage`` overrides :class:`~shoal.apiserver.storage.StorageSettings` fields, e.g.
    ``{"bookmark_interval": 0.2}`` or ``{"history_revisions": 10}``.
    """
    async with _data_dir(data_dir) as directory:
        settings = ServerSettings(
            directory,
            address="127.0.0.1",
            port=0,
            storage=dict(storage or {}),
            gc_interval=gc_interval,
        )
        async with serve(settings) as running:
            yield LocalAPIServer(
                url=running.url,
                kubeconfig=running.kubeconfig,
                token=running.token,
                ca_cert=running.ca_cert,
                data_dir=directory,
                running=running,
            )


@dataclass(frozen=True, slots=True)
class ServerProcess(LocalAPIServer):
    """``shoal server`` running as a child process; its output goes to ``log``."""

    log: Path | None = None

    process: asyncio.subprocess.Process | None = field(default=None, repr=False)

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def kill(self) -> None:
        """SIGKILL the server (a crash: no cleanup runs)."""
        if self.process is not None and self.process.returncode is None:
            os.kill(self.process.pid, signal.SIGKILL)


async def _stop(process: asyncio.subprocess.Process, grace: float) -> None:
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            process.terminate()
        try:
            async with asyncio.timeout(grace):
                await process.wait()
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()


@contextlib.asynccontextmanager
async def api_server_process(
    *, data_dir: Path | None = None, startup_timeout: float = 30.0, stop_timeout: float = 10.0
) -> AsyncIterator[ServerProcess]:
    """``python -m shoal server --port 0`` in ``data_dir``; stopped (or killed) on the way out.

    The server's output is appended to ``DATA_DIR/server.log`` (a file, so a chatty server never
    blocks on a full pipe). Raises RuntimeError with that output if the server does not print
    its URL within ``startup_timeout`` seconds.
    """
    async with _data_dir(data_dir) as directory:
        log = directory / "server.log"
        start = log.stat().st_size if log.exists() else 0
        with log.open("ab") as output:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "shoal",
                "server",
                "--data-dir",
                str(directory),
                "--port",
                "0",
                stdout=output,
                stderr=asyncio.subprocess.STDOUT,
            )
        try:
            url = await _wait_for_url(process, log, start, startup_timeout)
            yield ServerProcess(
                url=url,
                kubeconfig=directory / "kubeconfig",
                token=(directory / "token").read_text().strip(),
                ca_cert=directory / "pki" / "ca.crt",
                data_dir=directory,
                process=process,
                log=log,
            )
        finally:
            await _stop(process, stop_timeout)


async def _wait_for_url(
    process: asyncio.subprocess.Process, log: Path, start: int, within: float
) -> str:
    marker = "listening on "
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    text = ""
    while loop.time() < deadline:
        with log.open("rb") as file:
            file.seek(start)
            text = file.read().decode(errors="replace")
        for line in text.splitlines():
            if marker in line:
                return line.split(marker, 1)[1].strip()
        if process.returncode is not None:
            break
        await asyncio.sleep(0.05)
    raise RuntimeError(
        f"shoal server did not start within {within} s (exit code {process.returncode}); "
        f"its output:\n{text}"
    )
