"""``shoal adapter metrics``: an application's own statistics served as Prometheus metrics.

Theory of operation
-------------------
Each ``GET /metrics`` scrapes the upstream once, as exporters do (Prometheus sets the pace; the
adapter keeps no timer): ``INFO ALL`` over RESP for ``redis-info``, or ``GET`` of the statistics
page over HTTP for ``json`` and ``kv``. The reply goes through the pure converters of
:mod:`~shoal.components.adapters.stats` into an :class:`~.exposition.Exposition`, and
:func:`render_scrape` adds the adapter's own families first:

- ``{prefix}_up`` 1 when the scrape worked, 0 when it did not (then no application samples);
- ``{prefix}_scrape_duration_seconds`` how long the scrape took;
- ``{prefix}_scrape_errors_total`` failed scrapes since start;
- ``{prefix}_scrape_dropped_samples`` samples left out (two keys that became the same name).

A failed scrape is still a 200 with ``up 0``: that is how Prometheus tells "the app is down"
from "the adapter is down". Bad upstream bytes never crash the server.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web
from pydantic import Field

from shoal.components.adapters._serving import serve_until_stopped
from shoal.components.adapters.exposition import CONTENT_TYPE, Exposition, metric_name
from shoal.components.adapters.resp import ProtocolViolation, RedisReplyError, redis_command
from shoal.components.adapters.stats import (
    json_exposition,
    kv_exposition,
    parse_redis_info,
    redis_exposition,
)
from shoal.dataplane.standalone import parse_address
from shoal.model._base import ShoalModel

__all__ = [
    "FORMATS",
    "MetricsAdapter",
    "MetricsConfig",
    "MetricsSettings",
    "RedisAddress",
    "ScrapeFailed",
    "convert",
    "metrics_app",
    "parse_redis_upstream",
    "render_scrape",
    "serve_metrics",
    "stats_url",
]

log = logging.getLogger(__name__)

Format = Literal["redis-info", "json", "kv"]
FORMATS: tuple[Format, ...] = ("redis-info", "json", "kv")
DEFAULT_PREFIX: Mapping[Format, str] = {"redis-info": "redis", "json": "app", "kv": "app"}
MAX_STATS_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class MetricsSettings:
    """Everything ``shoal adapter metrics`` needs (flags and ``--config`` both end here)."""

    listen: str = "127.0.0.1:9121"
    """Where /metrics is served (HOST:PORT; port 0 picks a free one)."""
    upstream: str = "127.0.0.1:6379"
    """The app: ``HOST:PORT`` or ``redis://[user:password@]HOST:PORT`` or ``http://HOST:PORT/path``."""
    format: Format = "redis-info"
    """What the app speaks: ``redis-info``, ``json`` or ``kv``."""
    prefix: str | None = None
    """Prefix of every metric name; ``redis`` for redis-info, ``app`` otherwise."""
    path: str = "/stats"
    """HTTP path of the statistics page (json, kv) when ``upstream`` has none."""
    timeout: float = 5.0
    """Seconds one scrape of the upstream may take."""
    label_paths: Mapping[str, str] = field(default_factory=dict)
    """json: dotted key paths (``*`` = any key) whose keys become values of the named label."""
    counters: tuple[str, ...] = ()
    """Glob patterns of metric names that are counters (names ending ``_total`` always are)."""

    @property
    def metric_prefix(self) -> str:
        return self.prefix if self.prefix is not None else DEFAULT_PREFIX[self.format]


class MetricsConfig(ShoalModel):
    """The ``--config`` file of ``shoal adapter metrics`` (camelCase keys, like the flags)."""

    listen: str = "127.0.0.1:9121"
    """Where /metrics is served (HOST:PORT)."""
    upstream: str
    """The app's address or URL."""
    format: Format = "redis-info"
    """redis-info, json or kv."""
    prefix: str | None = None
    """Prefix of every metric name."""
    path: str = "/stats"
    """HTTP path of the statistics page."""
    timeout_seconds: float = Field(default=5.0, gt=0)
    """Seconds one scrape may take."""
    labels: dict[str, str] = Field(default_factory=dict)
    """json: key path -> label name."""
    counters: list[str] = Field(default_factory=list)
    """Glob patterns of metric names that are counters."""

    def settings(self) -> MetricsSettings:
        return MetricsSettings(
            listen=self.listen,
            upstream=self.upstream,
            format=self.format,
            prefix=self.prefix,
            path=self.path,
            timeout=self.timeout_seconds,
            label_paths=dict(self.labels),
            counters=tuple(self.counters),
        )


@dataclass(frozen=True, slots=True)
class RedisAddress:
    """Where a Redis server is and how to log in; ``repr`` hides the password."""

    host: str
    port: int
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    def __str__(self) -> str:
        return f"redis://{self.host}:{self.port}"


def parse_redis_upstream(text: str) -> RedisAddress:
    """``HOST:PORT`` or ``redis://[[user]:password@]HOST[:PORT]`` (port 6379 by default)."""
    if "://" not in text:
        host, port = parse_address(text)
        return RedisAddress(host, port)
    url = urlsplit(text)
    if url.scheme != "redis":
        raise ValueError(f"expected redis://HOST:PORT, got scheme {url.scheme!r}")
    if not url.hostname:
        raise ValueError(f"expected redis://HOST:PORT, got {url.netloc!r} with no host")
    try:
        port = url.port or 6379
    except ValueError:
        raise ValueError(
            f"expected redis://HOST:PORT, the port of {url.netloc!r} is not a number"
        ) from None
    return RedisAddress(url.hostname, port, url.username or None, url.password)


def stats_url(upstream: str, path: str) -> str:
    """The URL of the statistics page: ``upstream`` if it is one, else ``http://upstream{path}``."""
    if "://" in upstream:
        url = urlsplit(upstream)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(f"expected http://HOST:PORT/PATH, got {upstream!r}")
        return upstream if url.path else upstream.rstrip("/") + path
    parse_address(upstream)
    return f"http://{upstream}{path if path.startswith('/') else '/' + path}"


class ScrapeFailed(Exception):
    """The upstream could not be read or understood; the message says why (no secrets)."""


def convert(settings: MetricsSettings, payload: str) -> Exposition:
    """The application's statistics text as an exposition (pure; raises ScrapeFailed)."""
    out = Exposition()
    prefix = settings.metric_prefix
    if settings.format == "redis-info":
        redis_exposition(parse_redis_info(payload), out, prefix)
    elif settings.format == "json":
        try:
            document = json.loads(payload)
            json_exposition(
                document, out, prefix, label_paths=settings.label_paths, counters=settings.counters
            )
        except ValueError as error:
            raise ScrapeFailed(f"the statistics page is not JSON: {error}") from None
        except RecursionError:
            # Nesting deeper than Python's stack: refuse the page, keep serving.
            raise ScrapeFailed("the statistics page nests too deeply to read") from None
    else:
        kv_exposition(payload, out, prefix, counters=settings.counters)
    return out


def render_scrape(
    prefix: str,
    app: Exposition | None,
    *,
    duration: float,
    errors_total: int,
) -> str:
    """The full /metrics text: the adapter's own families, then the app's (None: scrape failed).

    An app family whose name is one of the adapter's own is left out (and counted as dropped).
    """
    own = Exposition()
    names = {
        "up": metric_name(prefix, "up"),
        "duration": metric_name(prefix, "scrape_duration_seconds"),
        "errors": metric_name(prefix, "scrape_errors_total"),
        "dropped": metric_name(prefix, "scrape_dropped_samples"),
    }
    clashes = [f for f in (app.families() if app else []) if f.name in names.values()]
    dropped = (len(app.dropped) if app else 0) + sum(len(f.samples) for f in clashes)
    own.add(
        names["up"], 1 if app is not None else 0, help_="1 if the last scrape of the app worked"
    )
    own.add(names["duration"], duration, help_="Seconds the scrape of the app took")
    own.add(names["errors"], errors_total, type_="counter", help_="Failed scrapes since start")
    own.add(names["dropped"], dropped, help_="Samples left out: a name or series seen twice")
    text = own.render()
    if app is not None:
        for family in clashes:
            family.samples.clear()
        text += app.render()
    return text


class MetricsAdapter:
    """Scrapes the upstream on demand and renders the exposition (one per process)."""

    def __init__(self, settings: MetricsSettings) -> None:
        self.settings = settings
        self.errors_total = 0
        # Validate the upstream now, so a bad flag fails at start, not at the first scrape.
        if settings.format == "redis-info":
            self._redis: RedisAddress | None = parse_redis_upstream(settings.upstream)
            self._url = ""
        else:
            self._redis = None
            self._url = stats_url(settings.upstream, settings.path)
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> MetricsAdapter:
        if self._redis is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.settings.timeout)
            )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def fetch(self) -> str:
        """The upstream's statistics text; raises ScrapeFailed."""
        try:
            if self._redis is not None:
                return await self._fetch_redis(self._redis)
            return await self._fetch_http()
        except TimeoutError:
            raise ScrapeFailed(f"no answer within {self.settings.timeout:g}s") from None
        except (OSError, aiohttp.ClientError, ProtocolViolation) as error:
            raise ScrapeFailed(f"{type(error).__name__}: {error}") from None

    async def _fetch_redis(self, address: RedisAddress) -> str:
        async with asyncio.timeout(self.settings.timeout):
            reply = await redis_command(
                address.host,
                address.port,
                "INFO",
                "ALL",
                username=address.username,
                password=address.password,
            )
        if isinstance(reply, RedisReplyError):
            raise ScrapeFailed(f"Redis answered INFO with an error: {reply.message}")
        if not isinstance(reply, str):
            raise ScrapeFailed(f"Redis answered INFO with {type(reply).__name__}, not text")
        return reply

    async def _fetch_http(self) -> str:
        if self._session is None:
            raise RuntimeError("use MetricsAdapter as an async context manager")
        async with self._session.get(self._url) as response:
            if response.status != 200:
                raise ScrapeFailed(f"GET {self._url} answered {response.status}")
            body = await response.content.read(MAX_STATS_BYTES + 1)
            if len(body) > MAX_STATS_BYTES:
                raise ScrapeFailed(f"the statistics page is larger than {MAX_STATS_BYTES} bytes")
            return body.decode(response.charset or "utf-8", "replace")

    async def scrape(self) -> str:
        """One scrape, rendered; never raises for an upstream problem."""
        started = time.perf_counter()
        app: Exposition | None
        try:
            app = convert(self.settings, await self.fetch())
        except ScrapeFailed as error:
            self.errors_total += 1
            log.warning("scrape of %s failed: %s", self._where, error)
            app = None
        return render_scrape(
            self.settings.metric_prefix,
            app,
            duration=time.perf_counter() - started,
            errors_total=self.errors_total,
        )

    @property
    def _where(self) -> str:
        return str(self._redis) if self._redis is not None else self._url


def metrics_app(adapter: MetricsAdapter) -> web.Application:
    """``GET /metrics`` (the exposition) and ``GET /`` (a pointer to it)."""

    async def metrics(request: web.Request) -> web.Response:
        text = await adapter.scrape()
        return web.Response(body=text.encode(), headers={"Content-Type": CONTENT_TYPE})

    async def index(request: web.Request) -> web.Response:
        return web.Response(text="shoal metrics adapter: see /metrics\n")

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/", index)
    return app


async def serve_metrics(settings: MetricsSettings, *, stop: asyncio.Event | None = None) -> None:
    """Serve /metrics until SIGTERM/SIGINT (or until ``stop`` is set)."""
    async with MetricsAdapter(settings) as adapter:
        await serve_until_stopped(metrics_app(adapter), settings.listen, stop=stop)
