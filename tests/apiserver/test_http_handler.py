"""The HTTP layer on aiohttp's low-level server: what the router and middlewares used to give.

``Expect: 100-continue`` (curl sends it before large bodies), the 3 MiB body limit, the error
boundary and authentication all hold without an ``Application``; :func:`make_app` still serves
the same handler for code that wants an ``Application``.
"""

from __future__ import annotations

import io
import json
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from shoal.apiserver.app import ServerInfo, make_app
from shoal.testing import api_server

CM = "/api/v1/namespaces/default/configmaps"


def configmap(name: str, **data: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data}


async def test_expect_100_continue_gets_its_continue_and_the_create_lands() -> None:
    async with api_server() as server, server.session() as http:
        async with http.post(CM, json=configmap("big", k="x" * 100_000), expect100=True) as r:
            assert r.status == 201, await r.text()
        async with http.get(f"{CM}/big") as r:
            assert r.status == 200
            assert len((await r.json())["data"]["k"]) == 100_000


def large(obj: dict[str, Any]) -> io.BytesIO:
    """A body aiohttp streams (raw bytes this large make it warn)."""
    return io.BytesIO(json.dumps(obj).encode())


async def test_bodies_over_3_mib_are_refused_and_up_to_it_are_read() -> None:
    json_type = {"Content-Type": "application/json"}
    async with api_server() as server, server.session() as http:
        huge = large(configmap("huge", k="x" * (3 * 1024 * 1024)))
        async with http.post(CM, data=huge, headers=json_type) as r:
            assert r.status == 413
            body = await r.json()
            assert (body["kind"], body["reason"]) == ("Status", "RequestEntityTooLarge")
        # Over aiohttp's default limit of 1 MiB, under Kubernetes' 3 MiB: accepted.
        two = large(configmap("two-mib", k="x" * (2 * 1024 * 1024)))
        async with http.post(CM, data=two, headers=json_type) as r:
            assert r.status == 201, await r.text()


async def test_unauthenticated_and_unknown_paths_are_statuses() -> None:
    async with api_server() as server:
        async with server.session(authenticated=False) as anonymous:
            async with anonymous.get(CM) as r:
                assert r.status == 401
                assert (await r.json())["reason"] == "Unauthorized"
            async with anonymous.get("/healthz") as r:
                assert (r.status, await r.text()) == (200, "ok")
        async with server.session() as http, http.get("/no/such/path") as r:
            assert r.status == 404
            assert (await r.json())["kind"] == "Status"


async def test_make_app_serves_the_same_handler() -> None:
    async with api_server() as server:
        assert server.running is not None
        app = make_app(server.running.service, ServerInfo(token="t0ken"))
        async with TestClient(TestServer(app)) as client:
            r = await client.get("/version")
            assert r.status == 200
            assert (await r.json())["gitVersion"].startswith("v1.")
            r = await client.get(CM)
            assert r.status == 401
            r = await client.get(CM, headers={"Authorization": "Bearer t0ken"})
            assert r.status == 200
            assert (await r.json())["kind"] == "ConfigMapList"
