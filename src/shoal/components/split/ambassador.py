"""
``shoal ambassador split``: a weighted share of requests to a canary, and a mirrored share to a shadow.

Theory of operation
-------------------
The app (or a client) talks to one local address; the ambassador is the data plane's
:class:`~shoal.dataplane.driver.ProxyServer` whose ``route`` asks the pure
:class:`~shoal.components.split.core.Splitter` for a side (primary or canary) per request, sticky
on a header or cookie when asked. The chosen side's answer is the client's answer, streamed.

**Mirroring** (``mirror``): the ``admit`` filter asks :class:`~shoal.components.split.core.MirrorPolicy`
whether to copy the request; a copy is the request head as it would be forwarded
(``X-Forwarded-For`` included), put on a bounded queue without waiting. A few
:class:`Mirror` workers, each with its own keep-alive connection, send the copies to the shadow
and read and drop the answers. The client's request never waits for the shadow: when the shadow
is slow the queue fills and further copies are dropped (counted in ``Mirror.dropped``); when it
fails, only the copy fails (``Mirror.failed``). Requests with a body are not mirrored (the body
streams to the chosen side and is not kept): ``Mirror.skipped`` counts them.
"""

from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import dataclass, field

from pydantic import Field, model_validator

from shoal.components.sidecars._serve import parse_address, serve_until_stopped
from shoal.components.split.core import CANARY, MirrorPolicy, Splitter, sticky_key
from shoal.dataplane.driver import Address, ProxyServer, ProxySettings
from shoal.dataplane.http1 import EndOfMessage, ProtocolError, Request, Response, ResponseParser
from shoal.dataplane.proxy import upstream_request
from shoal.model._base import ShoalModel

__all__ = ["Mirror", "SplitConfig", "SplitCounts", "SplitSettings", "run_split", "split_ambassador"]

log = logging.getLogger("shoal.ambassador.split")


@dataclass(frozen=True, slots=True)
class SplitSettings:
    """Everything ``shoal ambassador split`` can be told."""

    upstream: str
    """The primary service, ``HOST:PORT``."""
    canary: str
    """The canary service, ``HOST:PORT``."""
    listen: str = "127.0.0.1:8000"
    """Where the app sends its requests."""
    weight: float = 10.0
    """Percent of requests for the canary (0-100)."""
    sticky_header: str | None = None
    """Keep a client on one side by hashing this request header's value."""
    sticky_cookie: str | None = None
    """Keep a client on one side by hashing this cookie's value (after the header, if both)."""
    mirror: str | None = None
    """A shadow service, ``HOST:PORT``, that gets copies of requests; its answers are dropped."""
    mirror_percent: float = 100.0
    """Percent of (bodiless) requests copied to the shadow."""
    mirror_connections: int = 4
    """Connections (and copies in flight) to the shadow."""
    mirror_queue: int = 1024
    """Copies waiting for a connection before more are dropped."""
    mirror_timeout: float = 5.0
    """Seconds a copy may take before its connection is given up."""
    seed: int | None = None
    """Seed of the random draws (for reproducible tests); None: unpredictable."""
    proxy: ProxySettings = field(default_factory=ProxySettings)
    """The data plane's settings."""


class SplitConfig(ShoalModel):
    """``--config`` file of ``shoal ambassador split``."""

    listen: str = "127.0.0.1:8000"
    upstream: str
    canary: str
    weight: float = Field(default=10.0, ge=0, le=100)
    sticky_header: str | None = None
    sticky_cookie: str | None = None
    mirror: str | None = None
    mirror_percent: float = Field(default=100.0, ge=0, le=100)

    @model_validator(mode="after")
    def _addresses(self) -> SplitConfig:
        for name in ("listen", "upstream", "canary", "mirror"):
            value = getattr(self, name)
            if value is not None:
                parse_address(value)  # ValueError: reported at the field's line
        return self

    def settings(self) -> SplitSettings:
        return SplitSettings(
            upstream=self.upstream,
            canary=self.canary,
            listen=self.listen,
            weight=self.weight,
            sticky_header=self.sticky_header,
            sticky_cookie=self.sticky_cookie,
            mirror=self.mirror,
            mirror_percent=self.mirror_percent,
        )


@dataclass(slots=True)
class SplitCounts:
    """Requests sent to each side so far."""

    primary: int = 0
    canary: int = 0


class _Broken(Exception):
    """The shadow broke the protocol or closed early."""


class Mirror:
    """Copies of requests to a shadow, answers dropped; see the module docstring."""

    def __init__(
        self, address: Address, *, connections: int = 4, queue: int = 1024, timeout: float = 5.0
    ) -> None:
        if connections < 1 or queue < 1:
            raise ValueError("mirror connections and queue must be at least 1")
        self.address = address
        self.connections = connections
        self.timeout = timeout
        self._queue: asyncio.Queue[tuple[bytes, bytes]] = asyncio.Queue(queue)
        self.offered = 0
        """Copies queued."""
        self.completed = 0
        """Copies the shadow answered (the answers were dropped)."""
        self.failed = 0
        """Copies lost to the shadow's errors, closes or timeouts."""
        self.dropped = 0
        """Copies not made because the queue was full (the shadow is slower than the traffic)."""
        self.skipped = 0
        """Requests not copied because they carry a body (only bodiless requests are mirrored)."""

    def offer(self, head: bytes, method: bytes) -> None:
        """Queue a copy without waiting (dropped when the queue is full)."""
        try:
            self._queue.put_nowait((head, method))
        except asyncio.QueueFull:
            self.dropped += 1
        else:
            self.offered += 1

    async def run(self, stop: asyncio.Event) -> None:
        """Send copies until ``stop`` is set."""
        async with asyncio.TaskGroup() as group:
            workers = [group.create_task(self._worker()) for _ in range(self.connections)]
            await stop.wait()
            for worker in workers:
                worker.cancel()

    async def _worker(self) -> None:
        reader: asyncio.StreamReader | None = None
        writer: asyncio.StreamWriter | None = None
        parser = ResponseParser()
        try:
            while True:
                head, method = await self._queue.get()
                try:
                    async with asyncio.timeout(self.timeout):
                        if writer is None or reader is None:
                            reader, writer = await asyncio.open_connection(*self.address)
                        writer.write(head)
                        parser.expect(method)
                        keep = await self._answer(reader, parser)
                    self.completed += 1
                    if keep:
                        parser.next_cycle()
                        continue
                except (OSError, TimeoutError, _Broken) as error:
                    self.failed += 1
                    log.debug("mirror copy failed: %s", error)
                if writer is not None:
                    writer.close()
                reader = writer = None
                parser = ResponseParser()
        finally:
            if writer is not None:
                writer.close()

    @staticmethod
    async def _answer(reader: asyncio.StreamReader, parser: ResponseParser) -> bool:
        """Read one answer whole and drop it; whether the connection may be reused."""
        keep = True
        while True:
            data = await reader.read(65536)
            for event in parser.feed(data) if data else parser.feed_eof():
                if isinstance(event, Response) and event.status >= 200:
                    keep = event.keep_alive
                elif isinstance(event, EndOfMessage):
                    return keep and bool(data)
                elif isinstance(event, ProtocolError):
                    raise _Broken(event.detail)
            if not data:
                raise _Broken("the shadow closed the connection")


def split_ambassador(
    settings: SplitSettings,
) -> tuple[ProxyServer, SplitCounts, Mirror | None]:
    """The proxy of a split ambassador (not started), its counters and its mirror."""
    primary = parse_address(settings.upstream)
    canary = parse_address(settings.canary)
    parse_address(settings.listen)
    rng = random.Random(settings.seed)  # noqa: S311 -- traffic splitting, not cryptography
    splitter = Splitter(settings.weight, rng)
    header = settings.sticky_header.encode("ascii") if settings.sticky_header else None
    cookie = settings.sticky_cookie.encode("ascii") if settings.sticky_cookie else None
    counts = SplitCounts()

    def route(request: Request) -> Address:
        key = sticky_key(request, header, cookie) if header or cookie else None
        if splitter.choose(key) == CANARY:
            counts.canary += 1
            return canary
        counts.primary += 1
        return primary

    if settings.mirror is None:
        return ProxyServer(route, settings.proxy), counts, None

    mirror = Mirror(
        parse_address(settings.mirror),
        connections=settings.mirror_connections,
        queue=settings.mirror_queue,
        timeout=settings.mirror_timeout,
    )
    policy = MirrorPolicy(settings.mirror_percent, rng)
    forwarding = settings.proxy.forwarding

    def admit(request: Request, client: str) -> Request:
        if policy.wants(request):
            head, _ = upstream_request(request, client, forwarding)
            mirror.offer(head, request.method)
        elif request.framing != "none" and settings.mirror_percent > 0:
            mirror.skipped += 1
        return request

    return ProxyServer(route, settings.proxy, admit=admit), counts, mirror


async def run_split(settings: SplitSettings, *, stop: asyncio.Event | None = None) -> None:
    """Serve on ``settings.listen`` until ``stop`` or SIGTERM/SIGINT, then drain."""
    server, _, mirror = split_ambassador(settings)
    jobs = [mirror.run] if mirror is not None else []
    await serve_until_stopped(server, settings.listen, jobs=jobs, stop=stop)
