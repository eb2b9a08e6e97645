"""Test helpers: the controllers against a real API server, and a stand-in for the node that
marks pods running and ready (no node runs in these tests)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import itertools
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from shoal.client import APIConflict, HTTPClient, ResourceRef, load_kubeconfig
from shoal.controllers import ControllerManager, ControllerSettings, all_controllers
from shoal.testing import LocalAPIServer, api_server

POD = ResourceRef("v1", "Pod", "default")
_ips = itertools.count(1)


def now_text() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


async def make_ready(client: HTTPClient, pod: dict[str, Any], ready: bool = True) -> dict[str, Any]:
    """What the node would report: Running, an address, and the Ready condition."""
    number = next(_ips)
    ip = pod.get("status", {}).get("podIP") or f"127.1.{number // 250}.{number % 250 + 1}"
    status = {
        "phase": "Running",
        "podIP": ip,
        "podIPs": [{"ip": ip}],
        "conditions": [
            {
                "type": "Ready",
                "status": "True" if ready else "False",
                "lastTransitionTime": now_text(),
            }
        ],
    }
    # The pod in hand may be stale (a controller adopted or labelled it since it was listed):
    # on a conflict, read it again and retry, as the node does.
    for _ in range(20):
        try:
            return await client.update_status(POD, {**pod, "status": status})
        except APIConflict:
            pod = await client.get(POD, pod["metadata"]["name"])
    return await client.update_status(POD, {**pod, "status": status})


async def until(
    condition: Callable[[], Any], within: float = 20.0, what: str = "condition"
) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while True:
        result = condition()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        assert asyncio.get_running_loop().time() < deadline, f"{what} not reached in {within}s"
        await asyncio.sleep(0.02)


@dataclass
class Cluster:
    server: LocalAPIServer
    client: HTTPClient
    manager: ControllerManager

    async def pods(self, selector: str | None = None) -> list[dict[str, Any]]:
        return (await self.client.list(POD, label_selector=selector)).items


@contextlib.asynccontextmanager
async def cluster(settings: ControllerSettings | None = None) -> AsyncIterator[Cluster]:
    async with api_server() as server:
        config = load_kubeconfig(server.kubeconfig)
        async with HTTPClient(config) as client, HTTPClient(config) as controller_client:
            manager = all_controllers(
                controller_client, settings or ControllerSettings(resync_period=None)
            )
            async with asyncio.TaskGroup() as group:
                for runnable in manager:
                    group.create_task(runnable.run())
                try:
                    await asyncio.wait_for(manager.synced(), 10)
                    yield Cluster(server, client, manager)
                finally:
                    manager.stop()


async def change(
    client: HTTPClient, ref: ResourceRef, name: str, mutate: Callable[[dict[str, Any]], None]
) -> dict[str, Any]:
    """Read, change and write an object, again on a conflict (controllers write it too)."""
    for _ in range(20):
        body = await client.get(ref, name)
        mutate(body)
        try:
            return await client.update(ref, body)
        except APIConflict:
            continue
    raise AssertionError(f"could not update {name}: always conflicting")
