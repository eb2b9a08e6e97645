"""``shoal rollout`` and ``shoal scale`` against a real server with the controllers running."""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import pytest

from shoal.cli.objects import CommandError
from shoal.cli.rollout import rollout_message, undo_target
from shoal.client import ResourceRef

from ._controllers_cluster import Cluster, change, cluster, make_ready, until

DEPLOYMENT = ResourceRef("apps/v1", "Deployment", "default")


def test_rollout_message_reads_status_as_kubectl_does() -> None:
    d: dict[str, Any] = {
        "metadata": {"name": "web", "generation": 2},
        "spec": {"replicas": 3},
        "status": {"observedGeneration": 1},
    }
    assert rollout_message(d) == ("Waiting for deployment spec update to be observed...", False)
    d["status"] = {
        "observedGeneration": 2,
        "replicas": 4,
        "updatedReplicas": 3,
        "availableReplicas": 2,
    }
    assert rollout_message(d)[0].endswith("1 old replicas are pending termination...")
    d["status"]["replicas"] = 3
    assert rollout_message(d)[0].endswith("2 of 3 updated replicas are available...")
    d["status"]["availableReplicas"] = 3
    assert rollout_message(d) == ('deployment "web" successfully rolled out', True)
    d["status"]["conditions"] = [{"type": "Progressing", "reason": "ProgressDeadlineExceeded"}]
    with pytest.raises(CommandError, match="exceeded its progress deadline"):
        rollout_message(d)


def test_undo_target_is_the_previous_or_the_named_revision() -> None:
    sets = [
        {
            "metadata": {
                "name": f"r{n}",
                "annotations": {"deployment.kubernetes.io/revision": str(n)},
            }
        }
        for n in (3, 1, 2)
    ]
    assert undo_target(sets, 0)["metadata"]["name"] == "r2"
    assert undo_target(sets, 1)["metadata"]["name"] == "r1"
    with pytest.raises(CommandError, match="revision 7"):
        undo_target(sets, 7)


async def shoal(c: Cluster, *args: str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "shoal",
        *args,
        "--kubeconfig",
        str(c.server.kubeconfig),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, output.decode()


async def test_scale_history_and_undo() -> None:
    async with cluster() as c:
        await c.client.create(
            DEPLOYMENT,
            {
                "metadata": {"name": "web"},
                "spec": {
                    "replicas": 1,
                    "selector": {"matchLabels": {"app": "web"}},
                    "template": {
                        "metadata": {"labels": {"app": "web"}},
                        "spec": {"containers": [{"name": "app", "command": ["serve", "v1"]}]},
                    },
                },
            },
        )

        async def settled(version: str, replicas: int) -> bool:
            for pod in await c.pods("app=web"):
                if not pod.get("status", {}).get("conditions"):
                    await make_ready(c.client, pod)
            d = await c.client.get(DEPLOYMENT, "web")
            done = rollout_message(d)[1] and d["spec"]["replicas"] == replicas
            return done and d["spec"]["template"]["spec"]["containers"][0]["command"][1] == version

        await until(lambda: settled("v1", 1), what="v1")
        code, out = await shoal(c, "scale", "deployment/web", "--replicas", "2")
        assert (code, out.strip()) == (0, "deployment.apps/web scaled")
        await until(lambda: settled("v1", 2), what="scaled to 2")

        def to_v2(body: dict[str, Any]) -> None:
            body["spec"]["template"]["spec"]["containers"][0]["command"] = ["serve", "v2"]

        await change(c.client, DEPLOYMENT, "web", to_v2)
        await until(lambda: settled("v2", 2), what="v2")
        code, out = await shoal(c, "rollout", "history", "deployment/web")
        assert code == 0, out
        assert [line.split()[0] for line in out.splitlines()[2:]] == ["1", "2"]

        code, out = await shoal(c, "rollout", "undo", "deployment/web")
        assert (code, out.strip()) == (0, "deployment.apps/web rolled back")
        await until(lambda: settled("v1", 2), within=30, what="back to v1")
        code, out = await shoal(c, "rollout", "status", "deployment/web", "--timeout", "30")
        assert code == 0, out
        assert 'deployment "web" successfully rolled out' in out
        code, out = await shoal(c, "rollout", "history", "deployment/web")
        assert [line.split()[0] for line in out.splitlines()[2:]] == ["2", "3"]
