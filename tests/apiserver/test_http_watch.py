"""Watches over HTTP: initial state, replay from a resourceVersion, 410 after compaction,
bookmarks, the watch-list request, selectors and timeouts."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp

from shoal.testing import api_server

CM = "/api/v1/namespaces/default/configmaps"
WAIT = 10.0


async def create(http: aiohttp.ClientSession, name: str, **labels: str) -> dict[str, Any]:
    body = {"metadata": {"name": name, "labels": labels}, "data": {}}
    async with http.post(CM, json=body) as response:
        assert response.status == 201, await response.text()
        created: dict[str, Any] = await response.json()
        return created


async def read_events(response: aiohttp.ClientResponse, count: int) -> list[dict[str, Any]]:
    """The next ``count`` events of a watch stream (bounded by WAIT seconds)."""
    events: list[dict[str, Any]] = []
    async with asyncio.timeout(WAIT):
        while len(events) < count:
            line = await response.content.readline()
            assert line, f"the stream ended after {events}"
            events.append(json.loads(line))
    return events


def summary(events: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(e["type"], e["object"]["metadata"].get("name", "")) for e in events]


async def test_watch_without_resource_version_sends_current_state_then_changes() -> None:
    async with api_server() as server, server.session() as http:
        await create(http, "a")
        await create(http, "b")
        async with http.get(CM, params={"watch": "1"}) as response:
            assert response.status == 200
            assert summary(await read_events(response, 2)) == [("ADDED", "a"), ("ADDED", "b")]
            async with http.delete(f"{CM}/a") as deleted:
                assert deleted.status == 200
            await create(http, "c")
            events = await read_events(response, 2)
        assert summary(events) == [("DELETED", "a"), ("ADDED", "c")]
        assert events[1]["object"]["metadata"]["resourceVersion"].isdigit()


async def test_watch_from_a_resource_version_replays_only_later_changes() -> None:
    async with api_server() as server, server.session() as http:
        first = await create(http, "a")
        rv = first["metadata"]["resourceVersion"]
        await create(http, "b")
        patch = {"data": {"k": "v"}}
        async with http.patch(
            f"{CM}/a", json=patch, headers={"Content-Type": "application/merge-patch+json"}
        ) as response:
            assert response.status == 200
        async with http.get(CM, params={"watch": "true", "resourceVersion": rv}) as response:
            events = await read_events(response, 2)
        assert summary(events) == [("ADDED", "b"), ("MODIFIED", "a")]
        assert events[1]["object"]["data"] == {"k": "v"}


async def test_watch_from_a_compacted_revision_gets_410_expired() -> None:
    async with api_server(storage={"history_revisions": 2}) as server, server.session() as http:
        first = await create(http, "a")
        for index in range(5):
            await create(http, f"n{index}")
        assert server.running is not None
        await server.running.service.store.compact()
        params = {"watch": "1", "resourceVersion": first["metadata"]["resourceVersion"]}
        async with http.get(CM, params=params) as response:
            assert response.status == 200
            [event] = await read_events(response, 1)
            assert await response.content.read() == b""  # the stream ends
        assert event["type"] == "ERROR"
        status = event["object"]
        assert (status["kind"], status["code"], status["reason"]) == ("Status", 410, "Expired")
        assert status["message"].startswith("too old resource version: ")


async def test_bookmarks_and_the_watch_list_request() -> None:
    async with api_server(storage={"bookmark_interval": 0.1}) as server, server.session() as http:
        await create(http, "a")
        params = {
            "watch": "1",
            "sendInitialEvents": "true",
            "resourceVersionMatch": "NotOlderThan",
            "allowWatchBookmarks": "true",
        }
        async with http.get(CM, params=params) as response:
            added, end = await read_events(response, 2)
            assert summary([added]) == [("ADDED", "a")]
            assert end["type"] == "BOOKMARK"
            annotations = end["object"]["metadata"]["annotations"]
            assert annotations == {"k8s.io/initial-events-end": "true"}
            [idle] = await read_events(response, 1)
        assert idle["type"] == "BOOKMARK"
        assert set(idle["object"]["metadata"]) == {"resourceVersion"}
        assert idle["object"]["kind"] == "ConfigMap"
        # Misused, the watch-list request is refused (clients fall back to list + watch).
        bad = {"watch": "1", "sendInitialEvents": "true"}
        async with http.get(CM, params=bad) as response:
            assert response.status == 400


async def test_watch_with_a_label_selector_sees_objects_leave_and_enter() -> None:
    async with api_server() as server, server.session() as http:
        await create(http, "a", tier="web")
        await create(http, "b", tier="db")
        merge = {"Content-Type": "application/merge-patch+json"}
        params = {"watch": "1", "labelSelector": "tier=web"}
        async with http.get(CM, params=params) as response:
            assert summary(await read_events(response, 1)) == [("ADDED", "a")]
            move = {"metadata": {"labels": {"tier": "db"}}}
            async with http.patch(f"{CM}/a", json=move, headers=merge) as patched:
                assert patched.status == 200
            join = {"metadata": {"labels": {"tier": "web"}}}
            async with http.patch(f"{CM}/b", json=join, headers=merge) as patched:
                assert patched.status == 200
            events = await read_events(response, 2)
        assert summary(events) == [("DELETED", "a"), ("ADDED", "b")]


async def test_timeout_seconds_ends_the_stream_and_tables_stream_too() -> None:
    async with api_server() as server, server.session() as http:
        await create(http, "a")
        params = {"watch": "1", "timeoutSeconds": "1"}
        accept = {"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"}
        async with http.get(CM, params=params, headers=accept) as response:
            [event] = await read_events(response, 1)
            async with asyncio.timeout(WAIT):
                rest = await response.content.read()
        assert rest == b""
        assert event["type"] == "ADDED"
        assert event["object"]["kind"] == "Table"
        assert event["object"]["rows"][0]["cells"][0] == "a"
