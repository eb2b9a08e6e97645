"""Run the API server: storage, credentials, TLS, the HTTP app and the garbage collector.

``async with serve(ServerSettings(data_dir)) as server`` starts everything on the running loop
and writes ``DATA_DIR/kubeconfig`` (mode 0600) pointing at the port actually bound (port 0 picks
a free one); leaving the block stops the listener, the collector and the store, in that order.
The data directory holds the SQLite file ``shoal.db``, the ``pki/`` directory and the token.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import gc
import ipaddress
import socket
import ssl
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from shoal.apiserver.aiostorage import AsyncStore
from shoal.apiserver.app import ServerInfo, make_handler, request_factory
from shoal.apiserver.clusterip import DEFAULT_SERVICE_CIDR
from shoal.apiserver.collecting import Collector
from shoal.apiserver.resources import Registry
from shoal.apiserver.security import ensure_credentials, write_kubeconfig
from shoal.apiserver.service import ObjectService
from shoal.apiserver.storage import StorageSettings
from shoal.errors import PermanentError

__all__ = ["AddressInUseError", "RunningServer", "ServerSettings", "serve", "tune_gc"]

DEFAULT_PORT = 6443
DATABASE = "shoal.db"
_ANY = ("0.0.0.0", "::")  # noqa: S104 (recognized to write a usable URL, not bound here)


class AddressInUseError(PermanentError):
    """The address and port are taken: choose another port (``--port 0`` picks a free one)."""


@dataclass(frozen=True, slots=True)
class ServerSettings:
    """Where the server keeps its state and where it listens."""

    data_dir: Path
    """The database, the certificates, the token and the kubeconfig live here."""
    address: str = "127.0.0.1"
    """The address to listen on; loopback by default."""
    port: int = DEFAULT_PORT
    """0 picks a free port."""
    storage: Mapping[str, Any] = field(default_factory=dict)
    """Overrides of :class:`StorageSettings` fields (history bounds, bookmark interval...)."""
    gc_interval: float = 0.5
    """Seconds between garbage-collection sweeps while work is pending."""
    service_cidr: str = DEFAULT_SERVICE_CIDR
    """Where Services' cluster IPs come from (loopback by default, so no root is needed)."""
    tune_gc: bool = False
    """Tune the process's cyclic garbage collector for serving (see :func:`tune_gc`): for a
    process that only runs this server, as ``shoal server`` does; left off in a host process
    (tests, embedding), whose collector settings are its own."""


GC_THRESHOLDS = (20_000, 50, 100)
"""The collector's thresholds while serving (Python's defaults: 700, 10, 10)."""


def tune_gc() -> None:
    """Make the cyclic garbage collector cheap for a serving process.

    A request allocates a few thousand short-lived containers (the parsed body, the validated
    model, the managed-fields walk); with Python's default gen-0 threshold of 700 the collector
    ran every few requests, promoted the objects of the requests in flight, and its full passes
    walked the whole start-up heap (the model's pydantic schemas, the registry) again and again:
    ~30 µs of CPU per create (gc callbacks, 10,000 creates by 64 clients). ``gc.freeze()`` moves
    everything alive after start-up out of the collector's sight (it stays alive anyway), and a
    gen-0 threshold of 20,000 lets a request's garbage die by reference counting before the
    collector looks; cycles are still collected, only less often. Measured: ~7 µs per create.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


@dataclass(frozen=True, slots=True)
class RunningServer:
    """A server that is listening: where, and how to reach it."""

    url: str
    port: int
    kubeconfig: Path
    token: str = field(repr=False)
    ca_cert: Path
    data_dir: Path
    service: ObjectService
    collector: Collector


def _listen(address: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((address, port))
    except OSError as error:
        sock.close()
        if error.errno == errno.EADDRINUSE:
            raise AddressInUseError(
                f"{address}:{port} is already in use (another shoal server?); pass --port N, or "
                "--port 0 to pick a free port"
            ) from None
        raise
    sock.listen(128)
    sock.setblocking(False)
    return sock


def _url(address: str, port: int) -> str:
    host = address
    with contextlib.suppress(ValueError):
        if ipaddress.ip_address(address).version == 6:
            host = f"[{address}]"
    if address in _ANY:
        host = "127.0.0.1"
    return f"https://{host}:{port}"


@contextlib.asynccontextmanager
async def serve(settings: ServerSettings) -> AsyncIterator[RunningServer]:
    """Start the API server on the running loop for the duration of a block."""
    data_dir = settings.data_dir
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    hosts = [settings.address] if settings.address not in _ANY else []
    credentials = ensure_credentials(data_dir, hosts)
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(credentials.server_cert, credentials.server_key)
    sock = _listen(settings.address, settings.port)
    storage = StorageSettings(path=data_dir / DATABASE, **dict(settings.storage))
    try:
        async with AsyncStore.open(storage) as store:
            service = ObjectService(store, Registry.builtin())
            service.service_cidr = settings.service_cidr
            await service.start()
            collector = Collector(service, interval=settings.gc_interval)
            port = int(sock.getsockname()[1])
            url = _url(settings.address, port)
            handler = make_handler(
                service, ServerInfo(token=credentials.token, address=f"{settings.address}:{port}")
            )
            # aiohttp's low-level server: one handler, no router or middlewares (see app.py).
            http = web.Server(
                handler,
                request_factory=request_factory(asyncio.get_running_loop()),
                handler_cancellation=True,
                access_log=None,
            )
            runner = web.ServerRunner(http, shutdown_timeout=1.0)
            await runner.setup()
            try:
                site = web.SockSite(runner, sock, ssl_context=tls)
                await site.start()
                if settings.tune_gc:
                    tune_gc()
                kubeconfig = data_dir / "kubeconfig"
                write_kubeconfig(
                    kubeconfig, server=url, ca_cert=credentials.ca_cert, token=credentials.token
                )
                async with collector.running():
                    yield RunningServer(
                        url=url,
                        port=port,
                        kubeconfig=kubeconfig,
                        token=credentials.token,
                        ca_cert=credentials.ca_cert,
                        data_dir=data_dir,
                        service=service,
                        collector=collector,
                    )
            finally:
                await runner.cleanup()
    finally:
        sock.close()
