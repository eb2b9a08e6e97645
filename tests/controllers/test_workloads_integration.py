"""Deployments, ReplicaSets and EndpointSlices against a real API server (and real kubectl)."""

from __future__ import annotations

import asyncio
import os
import shutil
from typing import Any

import pytest

from shoal.client import ResourceRef
from shoal.controllers.rollout import LABEL_HASH

from ._controllers_cluster import POD, Cluster, change, cluster, make_ready, until

DEPLOYMENT = ResourceRef("apps/v1", "Deployment", "default")
RS = ResourceRef("apps/v1", "ReplicaSet", "default")
SERVICE = ResourceRef("v1", "Service", "default")
SLICES = ResourceRef("discovery.k8s.io/v1", "EndpointSlice", "default")


def deployment(name: str, replicas: int, version: str, **strategy: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "containers": [
                        {
                            "name": "app",
                            "command": ["serve", version],
                            "ports": [{"containerPort": 8080, "name": "http"}],
                        }
                    ]
                },
            },
        },
    }
    if strategy:
        body["spec"]["strategy"] = strategy
    return body


async def ready_all(c: Cluster, selector: str) -> int:
    """Mark every pod that is not ready yet ready; how many were."""
    count = 0
    for pod in await c.pods(selector):
        conditions = pod.get("status", {}).get("conditions") or []
        ready = any(x["type"] == "Ready" and x["status"] == "True" for x in conditions)
        if not ready and not pod["metadata"].get("deletionTimestamp"):
            await make_ready(c.client, pod)
            count += 1
    return count


async def status_of(c: Cluster, name: str) -> dict[str, Any]:
    status: dict[str, Any] = (await c.client.get(DEPLOYMENT, name)).get("status", {})
    return status


async def test_deployment_creates_a_replicaset_and_pods_and_reports_availability() -> None:
    async with cluster() as c:
        await c.client.create(DEPLOYMENT, deployment("web", 3, "v1"))

        async def three_pods() -> bool:
            return len(await c.pods("app=web")) == 3

        await until(three_pods, what="3 pods")
        sets = (await c.client.list(RS)).items
        assert len(sets) == 1
        rs = sets[0]
        assert rs["metadata"]["name"] == f"web-{rs['metadata']['labels'][LABEL_HASH]}"
        assert rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "1"
        assert rs["metadata"]["ownerReferences"][0]["kind"] == "Deployment"
        for pod in await c.pods("app=web"):
            ref = pod["metadata"]["ownerReferences"][0]
            assert (ref["kind"], ref["name"], ref["controller"]) == (
                "ReplicaSet",
                rs["metadata"]["name"],
                True,
            )
            assert pod["metadata"]["name"].startswith(rs["metadata"]["name"] + "-")
        status = await status_of(c, "web")
        assert status.get("availableReplicas", 0) == 0
        conditions = {x["type"]: x for x in status["conditions"]}
        assert conditions["Available"]["status"] == "False"

        await ready_all(c, "app=web")

        async def available() -> bool:
            return (await status_of(c, "web")).get("availableReplicas") == 3

        await until(available, what="3 available")
        status = await status_of(c, "web")
        conditions = {x["type"]: x for x in status["conditions"]}
        assert conditions["Available"]["reason"] == "MinimumReplicasAvailable"
        assert conditions["Progressing"]["reason"] == "NewReplicaSetAvailable"
        assert status["updatedReplicas"] == status["readyReplicas"] == 3

        # A pod deleted by hand is replaced; a surplus one (scale down) is removed.
        victim = (await c.pods("app=web"))[0]["metadata"]["name"]
        await c.client.delete(POD, victim)

        async def replaced() -> bool:
            names = [p["metadata"]["name"] for p in await c.pods("app=web")]
            return len(names) == 3 and victim not in names

        await until(replaced, what="replacement")
        await change(c.client, DEPLOYMENT, "web", lambda d: d["spec"].update(replicas=1))

        async def one_pod() -> bool:
            return len(await c.pods("app=web")) == 1

        await until(one_pod, what="scale down to 1")


async def test_rolling_update_respects_max_surge_and_max_unavailable() -> None:
    async with cluster() as c:
        strategy = {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 1}}
        await c.client.create(DEPLOYMENT, deployment("roll", 4, "v1", **strategy))

        async def four_ready() -> bool:
            await ready_all(c, "app=roll")
            return (await status_of(c, "roll")).get("availableReplicas") == 4

        await until(four_ready, what="v1 available")

        # Watch every pod change from here on and check each observed state.
        listed = await c.client.list(POD, label_selector="app=roll")
        pods = {p["metadata"]["name"]: p for p in listed.items}
        violations: list[str] = []
        states = 0

        def ready(pod: dict[str, Any]) -> bool:
            return not pod["metadata"].get("deletionTimestamp") and any(
                x["type"] == "Ready" and x["status"] == "True"
                for x in pod.get("status", {}).get("conditions") or []
            )

        async def observe() -> None:
            nonlocal states
            async for event in c.client.watch(
                POD, listed.resource_version, label_selector="app=roll"
            ):
                if event.type == "BOOKMARK":
                    continue
                name = event.object["metadata"]["name"]
                if event.type == "DELETED":
                    pods.pop(name, None)
                else:
                    pods[name] = event.object
                states += 1
                live = [p for p in pods.values() if not p["metadata"].get("deletionTimestamp")]
                if len(live) > 4 + 1:
                    violations.append(f"{len(live)} pods > replicas + maxSurge")
                if sum(map(ready, live)) < 4 - 1:
                    violations.append(f"{sum(map(ready, live))} ready < replicas - maxUnavailable")

        def to_v2(body: dict[str, Any]) -> None:
            body["spec"]["template"]["spec"]["containers"][0]["command"] = ["serve", "v2"]

        await change(c.client, DEPLOYMENT, "roll", to_v2)
        async with asyncio.TaskGroup() as group:
            watcher = group.create_task(observe())

            async def rolled() -> bool:
                # The node stand-in: new pods become ready one round at a time.
                await ready_all(c, "app=roll")
                status = await status_of(c, "roll")
                current = await c.pods("app=roll")
                return (
                    status.get("updatedReplicas") == 4
                    and status.get("availableReplicas") == 4
                    and status.get("replicas") == 4
                    and len(current) == 4
                    and all(
                        p["spec"]["containers"][0]["command"] == ["serve", "v2"] for p in current
                    )
                )

            try:
                await until(rolled, within=30, what="rollout to v2")
            finally:
                watcher.cancel()
        assert states > 8, "the watch saw the rollout"
        assert violations == []
        sets = {rs["metadata"]["name"]: rs for rs in (await c.client.list(RS)).items}
        assert sorted(rs["spec"]["replicas"] for rs in sets.values()) == [0, 4]
        revisions = sorted(
            rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"]
            for rs in sets.values()
        )
        assert revisions == ["1", "2"]
        events = (await c.client.list(ResourceRef("v1", "Event", "default"))).items
        assert any(e["reason"] == "ScalingReplicaSet" for e in events)


async def test_endpoint_slices_follow_readiness_and_deletion() -> None:
    async with cluster() as c:
        await c.client.create(DEPLOYMENT, deployment("api", 2, "v1"))
        await c.client.create(
            SERVICE,
            {
                "metadata": {"name": "api"},
                "spec": {"selector": {"app": "api"}, "ports": [{"port": 80, "targetPort": "http"}]},
            },
        )

        async def slice_() -> dict[str, Any] | None:
            items = (
                await c.client.list(SLICES, label_selector="kubernetes.io/service-name=api")
            ).items
            return items[0] if items else None

        async def two_pods() -> bool:
            return len(await c.pods("app=api")) == 2

        await until(two_pods, what="2 pods")
        first, second = await c.pods("app=api")
        await make_ready(c.client, first)
        await make_ready(c.client, second, ready=False)

        async def one_ready() -> bool:
            found = await slice_()
            if found is None:
                return False
            return sorted(e["conditions"]["ready"] for e in found["endpoints"]) == [False, True]

        await until(one_ready, what="slice with one ready endpoint")
        found = await slice_()
        assert found is not None
        assert found["ports"] == [{"name": "", "port": 8080, "protocol": "TCP"}]
        assert found["addressType"] == "IPv4"
        assert found["metadata"]["ownerReferences"][0]["kind"] == "Service"
        await make_ready(c.client, await c.client.get(POD, second["metadata"]["name"]))

        async def both_ready() -> bool:
            found = await slice_()
            return found is not None and all(e["conditions"]["ready"] for e in found["endpoints"])

        await until(both_ready, what="both ready")
        # A deleted pod leaves the slice (the server removes a pod no node runs at once).
        await c.client.delete(POD, first["metadata"]["name"])

        async def gone() -> bool:
            found = await slice_()
            names = [e["targetRef"]["name"] for e in (found or {}).get("endpoints", [])]
            return first["metadata"]["name"] not in names

        await until(gone, what="deleted pod out of the slice")


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (dev extra) is not installed")
async def test_kubectl_rollout_status_waits_for_the_rollout() -> None:
    async with cluster() as c:
        await c.client.create(DEPLOYMENT, deployment("kube", 2, "v1"))
        env = {**os.environ, "KUBECONFIG": str(c.server.kubeconfig)}
        process = await asyncio.create_subprocess_exec(
            "kubectl",
            "rollout",
            "status",
            "deployment/kube",
            "--timeout=60s",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=env,
        )
        try:

            async def two_ready() -> bool:
                await ready_all(c, "app=kube")
                return process.returncode is not None or (
                    (await status_of(c, "kube")).get("availableReplicas") == 2
                )

            await until(two_ready, within=30, what="2 ready")
            output, _ = await asyncio.wait_for(process.communicate(), 60)
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
        text = output.decode()
        assert process.returncode == 0, text
        assert 'deployment "kube" successfully rolled out' in text
        # The server runs in this process: kubectl must run without blocking the loop.
        history = await asyncio.create_subprocess_exec(
            "kubectl",
            "rollout",
            "history",
            "deployment/kube",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=env,
        )
        listing, _ = await asyncio.wait_for(history.communicate(), 60)
        assert history.returncode == 0, listing.decode()
        assert "REVISION" in listing.decode()
