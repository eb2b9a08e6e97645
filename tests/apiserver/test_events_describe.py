"""Events recorded by a controller through the HTTP client show in `kubectl describe`."""

from __future__ import annotations

import asyncio
import os

from shoal.client import EventRecorder, EventSettings, ResourceRef
from shoal.client.http import HTTPClient
from shoal.testing import api_server


async def _kubectl(kubeconfig: str, *args: str) -> str:
    process = await asyncio.create_subprocess_exec(
        "kubectl",
        "--kubeconfig",
        kubeconfig,
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "KUBECACHEDIR": os.devnull},
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 0, err.decode()
    return out.decode()


async def test_recorded_events_show_in_kubectl_describe() -> None:
    async with api_server() as server, HTTPClient.from_kubeconfig(server.kubeconfig) as client:
        ref = ResourceRef("v1", "ConfigMap", "default")
        settings = await client.create(
            ref, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"}}
        )
        recorder = EventRecorder(client, EventSettings(component="pattern-controller"))
        for _ in range(2):
            await recorder.record(
                settings, "Warning", "ShardUnavailable", "shard 3 has no ready pod"
            )
        await recorder.record(settings, "Normal", "Ready", "every shard is ready")
        described = await _kubectl(str(server.kubeconfig), "describe", "configmap", "settings")
    events = described.split("Events:", 1)[1]
    assert "ShardUnavailable" in events
    assert "shard 3 has no ready pod" in events
    assert "(x2 over" in events or " 2 " in events
    assert "pattern-controller" in events
    assert "every shard is ready" in events
