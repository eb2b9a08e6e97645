"""A crash of the API server loses no acknowledged write.

Many clients create objects concurrently; the server is killed with SIGKILL mid-stream and
started again on the same data directory. Every object whose creation was acknowledged (201)
must be there, and a watch from the last acknowledged revision must either resume or answer
410 Expired, never fail otherwise.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aiohttp
import pytest

from shoal.testing import ServerProcess, api_server_process

WRITERS = 16
KILL_AFTER = 300


async def _writer(
    server: ServerProcess, index: int, acknowledged: dict[str, int], enough: asyncio.Event
) -> None:
    url = f"{server.url}/api/v1/namespaces/default/configmaps"
    async with server.session() as session:
        n = 0
        while True:
            name = f"w{index}-{n}"
            n += 1
            body = {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": name},
                "data": {"n": str(n)},
            }
            try:
                async with session.post(
                    url, json=body, timeout=aiohttp.ClientTimeout(total=10)
                ) as response:
                    if response.status != 201:
                        continue
                    stored = await response.json()
            except (aiohttp.ClientError, TimeoutError, ConnectionError):
                return  # the server is gone: this write was never acknowledged
            acknowledged[name] = int(stored["metadata"]["resourceVersion"])
            if len(acknowledged) >= KILL_AFTER:
                enough.set()


async def test_sigkill_mid_stream_loses_no_acknowledged_write(tmp_path: Path) -> None:
    acknowledged: dict[str, int] = {}
    enough = asyncio.Event()
    async with api_server_process(data_dir=tmp_path) as server, asyncio.TaskGroup() as group:
        for index in range(WRITERS):
            group.create_task(_writer(server, index, acknowledged, enough))
        await asyncio.wait_for(enough.wait(), timeout=60)
        server.kill()
    assert len(acknowledged) >= KILL_AFTER

    async with api_server_process(data_dir=tmp_path) as server, server.session() as session:
        listing_url = f"{server.url}/api/v1/namespaces/default/configmaps"
        async with session.get(listing_url, timeout=aiohttp.ClientTimeout(total=30)) as response:
            assert response.status == 200
            items = (await response.json())["items"]
        stored = {
            item["metadata"]["name"]: int(item["metadata"]["resourceVersion"]) for item in items
        }
        missing = sorted(set(acknowledged) - set(stored))
        assert not missing, f"{len(missing)} acknowledged writes lost, e.g. {missing[:5]}"
        assert all(stored[name] == revision for name, revision in acknowledged.items())

        last = max(acknowledged.values())
        watch_url = f"{listing_url}?watch=1&resourceVersion={last}&timeoutSeconds=1"
        async with session.get(watch_url, timeout=aiohttp.ClientTimeout(total=30)) as response:
            assert response.status == 200
            events = [json.loads(line) for line in (await response.text()).splitlines() if line]
        for event in events:
            if event["type"] == "ERROR":
                assert event["object"]["code"] == 410
            else:
                assert int(event["object"]["metadata"]["resourceVersion"]) > last


@pytest.mark.parametrize("cycles", [3])
async def test_repeated_crashes_keep_every_object(tmp_path: Path, cycles: int) -> None:
    names: list[str] = []
    for cycle in range(cycles):
        async with api_server_process(data_dir=tmp_path) as server, server.session() as session:
            url = f"{server.url}/api/v1/namespaces/default/configmaps"
            for n in range(20):
                name = f"c{cycle}-{n}"
                body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}}
                async with session.post(url, json=body) as response:
                    assert response.status == 201
                names.append(name)
            server.kill()
    async with (
        api_server_process(data_dir=tmp_path) as server,
        server.session() as session,
        session.get(f"{server.url}/api/v1/namespaces/default/configmaps") as response,
    ):
        found = {item["metadata"]["name"] for item in (await response.json())["items"]}
    assert set(names) <= found
