"""Hypothesis sends the API server invalid bodies, paths, queries and headers: every answer is a
Kubernetes ``Status`` (or a success), never a 500, and the server keeps serving."""

from __future__ import annotations

import asyncio
import json
import queue
import threading
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from yarl import URL

from shoal.testing import LocalAPIServer, api_server

PATHS = [
    "/api/v1/namespaces/default/configmaps",
    "/api/v1/namespaces/default/configmaps/x",
    "/api/v1/namespaces/default/pods/x/status",
    "/apis/apps/v1/namespaces/default/deployments",
    "/apis/apps/v1/namespaces/default/deployments/web",
    "/apis/loadtest/v1/namespaces/default/loadtests/lt",
    "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
    "/api/v1/namespaces",
    "/api/v1/namespaces/default/status",
]
METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD"]
CONTENT_TYPES = [
    "application/json",
    "application/yaml",
    "application/merge-patch+json",
    "application/json-patch+json",
    "application/strategic-merge-patch+json",
    "application/apply-patch+yaml",
    "application/vnd.kubernetes.protobuf",
    "text/plain",
]
QUERY_KEYS = [
    "labelSelector",
    "fieldSelector",
    "limit",
    "continue",
    "resourceVersion",
    "resourceVersionMatch",
    "watch",
    "dryRun",
    "fieldValidation",
    "propagationPolicy",
    "timeoutSeconds",
    "sendInitialEvents",
    "includeObject",
]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
objects = st.fixed_dictionaries(
    {},
    optional={
        "apiVersion": st.sampled_from(["v1", "apps/v1", "loadtest/v1", "x/y"])
        | st.text(max_size=5),
        "kind": st.sampled_from(["ConfigMap", "Deployment", "LoadTest", "Namespace"]) | json_values,
        "metadata": st.fixed_dictionaries(
            {},
            optional={
                "name": st.sampled_from(["x", "web", "lt", "default"]) | json_values,
                "namespace": json_values,
                "labels": json_values,
                "resourceVersion": json_values,
                "finalizers": json_values,
                "ownerReferences": json_values,
                "generateName": json_values,
            },
        )
        | json_values,
        "spec": json_values,
        "status": json_values,
        "data": json_values,
    },
)
bodies = (
    objects.map(lambda o: json.dumps(o).encode())
    | json_values.map(lambda v: json.dumps(v).encode())
    | st.binary(max_size=64)
    | st.sampled_from([b"", b"{", b'{"a": NaN}', b"- a\n- b", b"a: [", b"\xff\xfe", b"[" * 2000])
)
paths = st.sampled_from(PATHS) | st.lists(
    st.sampled_from(["api", "apis", "v1", "namespaces", "default", "x", "status", "", "..", "%00"]),
    max_size=7,
).map(lambda parts: "/" + "/".join(parts))
queries = st.dictionaries(
    st.sampled_from(QUERY_KEYS),
    st.sampled_from(["", "0", "1", "-1", "true", "All", "a=b", "a in (", "x!!", "Strict", "9" * 30])
    | st.text(max_size=6),
    max_size=4,
)
headers = st.fixed_dictionaries(
    {"Content-Type": st.sampled_from(CONTENT_TYPES)},
    optional={
        "Accept": st.sampled_from(
            [
                "application/json;as=Table;v=v1;g=meta.k8s.io",
                "application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io",
                "application/vnd.kubernetes.protobuf",
                "text/html",
                "*/*",
            ]
        )
    },
)


async def _one(
    http: aiohttp.ClientSession,
    base: str,
    method: str,
    path: str,
    query: dict[str, str],
    header: dict[str, str],
    body: bytes,
) -> tuple[int, Any]:
    if query.get("watch") in ("1", "true"):
        query = dict(query, timeoutSeconds="1")
    url = URL(base + path, encoded=True).update_query(query)
    async with asyncio.timeout(20):
        async with http.request(
            method, url, headers=header, data=body, allow_redirects=False
        ) as response:
            text = await response.read()
            return response.status, text


@pytest.fixture(scope="module")
def shared_server() -> Iterator[LocalAPIServer]:
    """One server for every example, on its own loop in a thread (starting one per example
    would spend the whole budget on key generation)."""
    ready: queue.Queue[LocalAPIServer | BaseException] = queue.Queue()
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()

    async def main() -> None:
        try:
            async with api_server() as server:
                ready.put(server)
                await stop.wait()
        except BaseException as error:
            ready.put(error)
            raise

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    thread.start()
    started = ready.get(timeout=30)
    if isinstance(started, BaseException):
        raise started
    try:
        yield started
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(timeout=30)
        loop.close()


def test_invalid_requests_never_get_a_500(shared_server: LocalAPIServer) -> None:
    @settings(
        max_examples=60,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(
        requests=st.lists(
            st.tuples(st.sampled_from(METHODS), paths, queries, headers, bodies),
            min_size=1,
            max_size=6,
        )
    )
    def check(requests: list[Any]) -> None:
        asyncio.run(_run(shared_server, requests))

    check()


async def _run(server: LocalAPIServer, requests: list[Any]) -> None:
    session = aiohttp.ClientSession(
        headers=server.headers, connector=aiohttp.TCPConnector(ssl=server.ssl_context())
    )
    async with session as http:
        for method, path, query, header, body in requests:
            status, text = await _one(http, server.url, method, path, query, header, body)
            assert status < 500, (method, path, query, header, body, status, text)
            if status >= 400 and method != "HEAD":
                answer = json.loads(text)
                assert answer["kind"] == "Status"
                assert answer["code"] == status
        await _still_serving(server, http)


async def _still_serving(server: LocalAPIServer, http: aiohttp.ClientSession) -> None:
    async with http.get(server.url + "/api/v1/namespaces/default") as response:
        assert response.status == 200
    async with http.get(server.url + "/healthz") as response:
        assert response.status == 200
    assert server.url.startswith("https://127.0.0.1:")
