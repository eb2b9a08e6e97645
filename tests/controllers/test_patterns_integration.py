"""The pattern controller against a real API server: children, status, cascade on delete."""

from __future__ import annotations

from typing import Any

import pytest

from shoal.client import APIConflict, APINotFound, ResourceRef

from ._controllers_cluster import cluster, make_ready, until

SHARDED = ResourceRef("patterns.shoal.dev/v1", "ShardedService", "default")
DEPLOYMENT = ResourceRef("apps/v1", "Deployment", "default")
SERVICE = ResourceRef("v1", "Service", "default")
CONFIG_MAP = ResourceRef("v1", "ConfigMap", "default")


async def test_sharded_service_makes_its_children_reports_and_cascades() -> None:
    async with cluster() as c:
        await c.client.create(
            SHARDED,
            {
                "metadata": {"name": "users"},
                "spec": {
                    "command": ["python3", "-m", "http.server"],
                    "shardRegexp": "/users/(.*)/.*",
                    "ports": [8080],
                    "shards": 2,
                    "replicasPerShard": 2,
                },
            },
        )

        async def names(ref: ResourceRef) -> list[str]:
            return sorted(o["metadata"]["name"] for o in (await c.client.list(ref)).items)

        async def children() -> bool:
            return await names(DEPLOYMENT) == [
                "users-router",
                "users-shard-0",
                "users-shard-1",
            ] and {"users", "users-shard-0", "users-shard-1"} <= set(await names(SERVICE))

        await until(children, what="the compiled children")
        assert "users-router" in await names(CONFIG_MAP)
        shard = await c.client.get(DEPLOYMENT, "users-shard-0")
        assert shard["metadata"]["ownerReferences"][0]["kind"] == "ShardedService"

        # Pods appear (2 per shard + 1 router); once all are ready the pattern is Ready.
        async def five_pods() -> bool:
            return len(await c.pods()) == 5

        await until(five_pods, what="5 pods")

        async def ready() -> bool:
            for pod in await c.pods():
                if not pod.get("status", {}).get("conditions"):
                    await make_ready(c.client, pod)
            status: dict[str, Any] = (await c.client.get(SHARDED, "users")).get("status", {})
            conditions = {x["type"]: x for x in status.get("conditions", [])}
            return bool(conditions.get("Ready", {}).get("status") == "True")

        await until(ready, within=30, what="pattern Ready")
        status = (await c.client.get(SHARDED, "users"))["status"]
        assert status["shards"] == 2
        assert status["readyShards"] == 2
        assert status["readyReplicas"] == 4
        assert status["observedGeneration"] == 1
        assert [s["readyReplicas"] for s in status["shardStatuses"]] == [2, 2]
        service = await c.client.get(SERVICE, "users")
        assert status["url"] == f"http://{service['spec']['clusterIP']}:8080"

        # Fewer shards: the children of the shard no longer produced are deleted.
        for _ in range(10):
            body = await c.client.get(SHARDED, "users")
            body["spec"]["shards"] = 1
            try:
                await c.client.update(SHARDED, body)
                break
            except APIConflict:  # a status write raced us
                continue

        async def one_shard() -> bool:
            return "users-shard-1" not in await names(DEPLOYMENT)

        await until(one_shard, what="shard 1 removed")

        # Deleting the pattern deletes everything it made (garbage collection).
        await c.client.delete(SHARDED, "users")

        async def all_gone() -> bool:
            return (
                not await names(DEPLOYMENT)
                and not await c.pods()
                and "users" not in await names(SERVICE)
            )

        await until(all_gone, within=30, what="cascade")
        with pytest.raises(APINotFound):
            await c.client.get(CONFIG_MAP, "users-router")
