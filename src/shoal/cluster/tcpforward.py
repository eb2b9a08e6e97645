"""Plain TCP forwarding for the Service ports that do not speak HTTP/1.1 (Redis, TLS...).

Theory of operation
-------------------
kube-proxy forwards connections, not requests; shoal's service proxy serves HTTP Service ports
with its HTTP proxy engine (per-request balancing, retries, ejection), which would only answer
400 to a Redis client or a TLS handshake. The ports that :func:`~shoal.cluster.services.port_mode`
calls ``tcp`` (by ``appProtocol`` or the port's name: ``redis``, ``https``, ``tcp-...``) are served
here instead, the way kube-proxy serves every port:

* :meth:`TcpForwarder.apply` takes the plan's TCP listeners: a new ``clusterIP:port`` starts
  listening, a removed one stops accepting (its open connections go on until either side closes,
  as conntrack entries outlive a kube-proxy rule), and a changed endpoint list applies to the next
  connection;
* each accepted connection is given to one ready endpoint: tried in a random order
  (``sessionAffinity: ClientIP``: an order fixed by the client's address), the first that accepts
  within ``connect_timeout`` gets it, so a dead pod costs one refused connect, not a failure;
  with no endpoint left the client's connection is closed;
* bytes are copied both ways until each side has finished (a half-close is passed on), then both
  connections are closed.

:meth:`TcpForwarder.shutdown` stops listening and closes the connections still open.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from shoal.cluster.services import ServiceListener

__all__ = ["TcpForwarder", "TcpForwarderSettings", "endpoint_order"]

log = logging.getLogger("shoal.serviceproxy")

Address = tuple[str, int]


@dataclass(frozen=True, slots=True)
class TcpForwarderSettings:
    """How connections to TCP Service ports are forwarded."""

    connect_timeout: float = 2.0
    """Seconds an endpoint gets to accept before the next one is tried."""
    buffer_bytes: int = 65536
    """Largest read per copy step."""


def endpoint_order(
    endpoints: Sequence[Address], client: str | None, affinity: str, rng: random.Random
) -> list[Address]:
    """The order endpoints are tried in: random, or fixed by the client's address for
    ``ClientIP`` affinity (the same client reaches the same endpoint while it is there)."""
    if affinity == "ClientIP" and client is not None:

        def score(endpoint: Address) -> bytes:
            key = f"{client}|{endpoint[0]}:{endpoint[1]}".encode()
            return hashlib.blake2b(key, digest_size=8).digest()

        return sorted(endpoints, key=score)
    order = list(endpoints)
    rng.shuffle(order)
    return order


class _Port:
    """One listening ``clusterIP:port`` and the endpoints its next connections go to."""

    def __init__(self, listener: ServiceListener, server: asyncio.Server) -> None:
        self.listener = listener
        self.server = server


class TcpForwarder:
    """Serves the TCP listeners of a service plan (see the module docstring)."""

    def __init__(self, settings: TcpForwarderSettings | None = None) -> None:
        self.settings = settings or TcpForwarderSettings()
        self._ports: dict[Address, _Port] = {}
        self._open: set[asyncio.StreamWriter] = set()
        self._rng = random.Random()  # noqa: S311 (load spreading, not a secret)

    def addresses(self) -> list[Address]:
        """Where it listens now (the bound addresses)."""
        return sorted(
            sock.getsockname()[:2] for port in self._ports.values() for sock in port.server.sockets
        )

    def retain(self, listeners: Iterable[ServiceListener]) -> None:
        """Stop listening on every address that is not one of ``listeners``' (the connections
        open through it go on)."""
        wanted = {(listener.host, listener.port) for listener in listeners}
        for key in [key for key in self._ports if key not in wanted]:
            self._ports.pop(key).server.close()

    async def apply(self, listeners: Iterable[ServiceListener]) -> None:
        """Serve exactly ``listeners`` (all of mode ``tcp``). OSError if an address cannot be
        bound; the listeners already applied stay."""
        wanted = {(listener.host, listener.port): listener for listener in listeners}
        self.retain(wanted.values())
        for key, listener in wanted.items():
            current = self._ports.get(key)
            if current is not None:
                current.listener = listener
                continue
            server = await asyncio.start_server(
                functools.partial(self._forward, key), listener.host, listener.port
            )
            self._ports[key] = _Port(listener, server)

    async def shutdown(self) -> None:
        """Stop listening and close every connection still open."""
        for port in self._ports.values():
            port.server.close()
        self._ports.clear()
        for writer in list(self._open):
            writer.close()
        self._open.clear()

    async def _forward(
        self, key: Address, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        port = self._ports.get(key)
        self._open.add(writer)
        try:
            if port is None:
                return
            listener = port.listener
            peer = writer.get_extra_info("peername")
            client = str(peer[0]) if peer else None
            upstream = await self._connect(listener, client)
            if upstream is None:
                log.warning("%s: no endpoint accepted a connection", listener.name)
                return
            up_reader, up_writer = upstream
            self._open.add(up_writer)
            try:
                async with asyncio.TaskGroup() as group:
                    group.create_task(self._copy(reader, up_writer, writer))
                    group.create_task(self._copy(up_reader, writer, up_writer))
            finally:
                self._open.discard(up_writer)
                up_writer.close()
        finally:
            self._open.discard(writer)
            writer.close()

    async def _connect(
        self, listener: ServiceListener, client: str | None
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        order = endpoint_order(listener.endpoints, client, listener.affinity, self._rng)
        for host, port in order:
            try:
                async with asyncio.timeout(self.settings.connect_timeout):
                    return await asyncio.open_connection(host, port)
            except (OSError, TimeoutError):
                continue  # a pod that is gone or not listening: the next one
        return None

    async def _copy(
        self,
        source: asyncio.StreamReader,
        sink: asyncio.StreamWriter,
        source_writer: asyncio.StreamWriter,
    ) -> None:
        """Copy until ``source`` ends, then pass the end on (half-close). A broken connection
        closes both sides, so the other direction does not wait for a peer that is gone."""
        try:
            while data := await source.read(self.settings.buffer_bytes):
                sink.write(data)
                await sink.drain()
            if sink.can_write_eof():
                sink.write_eof()
        except (ConnectionError, OSError):
            sink.close()
            source_writer.close()
