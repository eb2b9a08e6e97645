"""A real HTTP server on 127.0.0.1, port 0, for the generator to load.

A context manager rather than a fixture: it must be cleaned up before the leaked-task check runs.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from aiohttp import web


async def _ok(request: web.Request) -> web.Response:
    return web.Response(text="ok")


async def _fail(request: web.Request) -> web.Response:
    return web.Response(status=500, text="no")


async def _slow(request: web.Request) -> web.Response:
    await asyncio.sleep(0.05)
    return web.Response(text="slow")


async def _close(request: web.Request) -> web.Response:
    return web.Response(text="bye", headers={"Connection": "close"})


async def _chunked(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse()
    response.enable_chunked_encoding()
    await response.prepare(request)
    await response.write(b"hel")
    await response.write(b"lo")
    await response.write_eof()
    return response


async def _reset(request: web.Request) -> web.Response:
    assert request.transport is not None
    request.transport.abort()  # no answer: the request fails as a reset
    return web.Response(text="never sent")


async def _echo(request: web.Request) -> web.Response:
    body = await request.read()
    return web.Response(body=body, headers={"X-Method": request.method})


@contextlib.asynccontextmanager
async def serving() -> AsyncIterator[str]:
    """The base URL of a server with /ok, /fail (500), /slow (50 ms), /close, /chunked, /reset
    (closes without an answer); anything else echoes."""
    app = web.Application()
    app.router.add_get("/ok", _ok)  # also serves HEAD
    app.router.add_get("/fail", _fail)
    app.router.add_get("/slow", _slow)
    app.router.add_get("/close", _close)
    app.router.add_get("/chunked", _chunked)
    app.router.add_get("/reset", _reset)
    app.router.add_route("*", "/echo", _echo)
    app.router.add_route("*", "/{tail:.*}", _echo)  # anything else: 200
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()
