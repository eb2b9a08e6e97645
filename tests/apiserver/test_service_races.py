"""Writes racing between the service's read and its compare-and-swap: a concurrent write is
made to land exactly there, deterministically."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from shoal.apiserver.aiostorage import AsyncStore
from shoal.apiserver.records import Entry
from shoal.apiserver.resources import Registry, Resource
from shoal.apiserver.service import DeleteOptions, ObjectService, WriteOptions
from shoal.apiserver.status import APIError
from shoal.apiserver.storage import StorageSettings

OPTIONS = WriteOptions(manager="test")


class Racing(ObjectService):
    """Updates the object behind the reader's back right after the next ``races`` reads."""

    races = 0

    async def get_entry(self, resource: Resource, namespace: str | None, name: str) -> Entry:
        entry = await super().get_entry(resource, namespace, name)
        if self.races:
            self.races -= 1
            body = entry.value
            body["data"] = {"n": str(entry.revision)}
            await self.store.update(entry.key, body, entry.revision)
        return entry


@pytest.fixture
async def service(tmp_path: Path) -> AsyncIterator[Racing]:
    async with AsyncStore.open(StorageSettings(path=tmp_path / "s.db")) as store:
        racing = Racing(store, Registry.builtin())
        await racing.start()
        yield racing


def configmaps(service: ObjectService) -> Resource:
    resource = service.registry.lookup("", "v1", "configmaps")
    assert resource is not None
    return resource


async def create(service: ObjectService, name: str) -> str:
    body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}}
    result = await service.create(configmaps(service), "default", body, OPTIONS)
    return str(result.object["metadata"]["resourceVersion"])


async def test_a_delete_that_loses_a_race_reads_again_and_deletes(service: Racing) -> None:
    await create(service, "a")
    service.races = 3
    _, gone = await service.delete(configmaps(service), "default", "a", DeleteOptions())
    assert gone
    with pytest.raises(APIError) as caught:
        await service.get(configmaps(service), "default", "a")
    assert caught.value.reason == "NotFound"


async def test_a_delete_with_a_resource_version_precondition_still_conflicts(
    service: Racing,
) -> None:
    version = await create(service, "b")
    service.races = 1
    with pytest.raises(APIError) as caught:
        await service.delete(
            configmaps(service),
            "default",
            "b",
            DeleteOptions(precondition_resource_version=version),
        )
    assert caught.value.reason == "Conflict"


async def test_a_patch_that_loses_a_race_is_applied_to_the_new_object(service: Racing) -> None:
    await create(service, "c")
    service.races = 2

    def add(current: dict[str, object]) -> dict[str, object]:
        data = dict(current.get("data") or {})  # type: ignore[call-overload]
        data["mine"] = "yes"
        return {**current, "data": data}

    result = await service.patch(configmaps(service), "default", "c", add, OPTIONS)
    assert result.object["data"]["mine"] == "yes"
    assert "n" in result.object["data"]  # the racing writer's change is kept
