"""Informers: list then watch, recovery from 410 Expired, resync — against the in-memory API."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from shoal.client import FakeClock, Informer, InformerSettings, ResourceRef
from shoal.testing import InMemoryAPI

PODS = ResourceRef("v1", "Pod", "default")


def _pod(name: str, **labels: str) -> dict[str, object]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels}}


async def _until(condition: Callable[[], bool], within: float = 2.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.001)


async def test_list_then_watch_keeps_the_cache_and_reports_keys() -> None:
    api = InMemoryAPI()
    await api.create(PODS, _pod("a"))
    informer = Informer(api, PODS, settings=InformerSettings(resync_period=None))
    seen: list[str] = []
    informer.add_handler(seen.append)
    async with asyncio.TaskGroup() as group:
        group.create_task(informer.run())
        await asyncio.wait_for(informer.synced.wait(), 2)
        assert seen == ["default/a"]
        await _until(lambda: api.watch_count == 1)
        b = await api.create(PODS, _pod("b"))
        await _until(lambda: "default/b" in informer.cache)
        b["metadata"]["labels"] = {"x": "y"}
        await api.update(PODS, b)
        await _until(lambda: informer.cache["default/b"]["metadata"]["labels"] == {"x": "y"})
        await api.delete(PODS, "a")
        await _until(lambda: "default/a" not in informer.cache)
        informer.stop()
    assert seen == ["default/a", "default/b", "default/b", "default/a"]


async def test_a_closed_watch_resumes_from_the_last_revision_without_listing() -> None:
    api = InMemoryAPI()
    informer = Informer(api, PODS, settings=InformerSettings(resync_period=None))
    async with asyncio.TaskGroup() as group:
        group.create_task(informer.run())
        await _until(lambda: api.watch_count == 1)
        await api.create(PODS, _pod("a"))
        await _until(lambda: "default/a" in informer.cache)
        api.close_watches()
        await api.create(PODS, _pod("b"))  # happens while no watch is open
        await _until(lambda: "default/b" in informer.cache)
        informer.stop()
    assert informer.lists == 1


async def test_expired_watch_lists_again_and_reports_what_changed_meanwhile() -> None:
    api = InMemoryAPI()
    await api.create(PODS, _pod("a"))
    informer = Informer(api, PODS, settings=InformerSettings(resync_period=None))
    seen: list[str] = []
    informer.add_handler(seen.append)
    async with asyncio.TaskGroup() as group:
        group.create_task(informer.run())
        await _until(lambda: api.watch_count == 1)
        api.close_watches()
        # While the informer reconnects, history is compacted: its revision is now too old.
        await api.delete(PODS, "a")
        await api.create(PODS, _pod("c"))
        api.compact()
        await _until(lambda: informer.lists == 2 and set(informer.cache) == {"default/c"})
        informer.stop()
    assert "default/a" in seen[1:]
    assert "default/c" in seen


async def test_resync_reports_every_key_again() -> None:
    api = InMemoryAPI()
    await api.create(PODS, _pod("a"))
    await api.create(PODS, _pod("b"))
    clock = FakeClock()
    informer = Informer(api, PODS, settings=InformerSettings(resync_period=60), clock=clock)
    seen: list[str] = []
    informer.add_handler(seen.append)
    async with asyncio.TaskGroup() as group:
        group.create_task(informer.run())
        await asyncio.wait_for(informer.synced.wait(), 2)
        await _until(lambda: clock.next_deadline() is not None)
        clock.advance(60)
        await _until(lambda: len(seen) == 4)
        informer.stop()
    assert seen == ["default/a", "default/b", "default/a", "default/b"]


async def test_a_label_selector_applies_to_the_watch_too() -> None:
    api = InMemoryAPI()
    await api.create(PODS, _pod("in", tier="web"))
    informer = Informer(
        api, PODS, settings=InformerSettings(resync_period=None, label_selector="tier=web")
    )
    async with asyncio.TaskGroup() as group:
        group.create_task(informer.run())
        await _until(lambda: api.watch_count == 1)
        assert set(informer.cache) == {"default/in"}
        await api.create(PODS, _pod("out", tier="db"))
        late = await api.create(PODS, _pod("late", tier="db"))
        late["metadata"]["labels"] = {"tier": "web"}
        await api.update(PODS, late)  # starts matching: arrives as ADDED
        await _until(lambda: "default/late" in informer.cache)
        leaving = await api.get(PODS, "in")
        leaving["metadata"]["labels"] = {"tier": "db"}
        await api.update(PODS, leaving)  # stops matching: arrives as DELETED
        await _until(lambda: "default/in" not in informer.cache)
        informer.stop()
    assert set(informer.cache) == {"default/late"}
