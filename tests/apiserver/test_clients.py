"""The official `kubernetes` Python client and lightkube work against shoal's API server unchanged.

Each does what controllers do: list, watch from the list's revision, patch, and meet a conflict.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes import watch as k8s_watch
from kubernetes.client.exceptions import ApiException
from lightkube import AsyncClient, KubeConfig
from lightkube.core.exceptions import ApiError
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import ConfigMap

from shoal.testing import LocalAPIServer, api_server, api_server_process


def _official(server: LocalAPIServer) -> Any:
    api_client = k8s_config.new_client_from_config(config_file=str(server.kubeconfig))  # type: ignore[no-untyped-call]
    return k8s.CoreV1Api(api_client)


async def test_official_client_lists_watches_patches_and_conflicts() -> None:
    # The blocking client runs in a thread against a server in its own process, as in real use.
    async with api_server_process() as server:
        core = _official(server)

        def scenario() -> None:
            body = {"metadata": {"name": "settings"}, "data": {"color": "blue"}}
            created = core.create_namespaced_config_map("default", body)
            listing = core.list_namespaced_config_map("default")
            assert [item.metadata.name for item in listing.items] == ["settings"]

            patched = core.patch_namespaced_config_map(
                "settings", "default", {"data": {"size": "L"}}
            )
            assert patched.data == {"color": "blue", "size": "L"}

            stale = created
            stale.data = {"color": "red"}
            with pytest.raises(ApiException) as caught:
                core.replace_namespaced_config_map("settings", "default", stale)
            assert caught.value.status == 409

            events = []
            stream = k8s_watch.Watch().stream(  # type: ignore[no-untyped-call]
                core.list_namespaced_config_map,
                "default",
                resource_version=listing.metadata.resource_version,
                timeout_seconds=2,
            )
            for event in stream:
                events.append((event["type"], event["object"].metadata.name, event["object"].data))
            assert events == [("MODIFIED", "settings", {"color": "blue", "size": "L"})]
            core.api_client.close()

        await asyncio.wait_for(asyncio.to_thread(scenario), timeout=60)


async def test_lightkube_lists_watches_patches_and_conflicts() -> None:
    async with api_server() as server:
        kube = AsyncClient(config=KubeConfig.from_file(str(server.kubeconfig)), namespace="default")
        try:
            created = await kube.create(
                ConfigMap(metadata=ObjectMeta(name="settings"), data={"a": "1"})
            )
            names = [cm.metadata.name async for cm in kube.list(ConfigMap) if cm.metadata]
            assert names == ["settings"]

            patched = await kube.patch(ConfigMap, "settings", {"data": {"b": "2"}})
            assert patched.data == {"a": "1", "b": "2"}

            created.data = {"a": "changed"}
            with pytest.raises(ApiError) as caught:
                await kube.replace(created)
            assert caught.value.status.code == 409

            assert created.metadata is not None
            seen: list[tuple[str, str | None]] = []
            async with asyncio.timeout(20):
                watcher = kube.watch(ConfigMap, resource_version=created.metadata.resourceVersion)
                async for kind, obj in watcher:
                    seen.append((kind, obj.metadata.name if obj.metadata else None))
                    break
            assert seen == [("MODIFIED", "settings")]
        finally:
            await kube.close()
