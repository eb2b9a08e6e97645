"""Events: created for an object, counted up when repeated, never raising."""

from __future__ import annotations

from shoal.client import EventRecorder, EventSettings, ResourceRef
from shoal.testing import InMemoryAPI

PODS = ResourceRef("v1", "Pod", "default")
EVENTS = ResourceRef("v1", "Event", "default")


async def test_an_event_names_its_object_and_repeats_count_up() -> None:
    api = InMemoryAPI()
    pod = await api.create(PODS, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web-1"}})
    times = iter(["2026-01-01T00:00:00Z", "2026-01-01T00:00:10Z", "2026-01-01T00:00:20Z"])
    recorder = EventRecorder(api, EventSettings(component="node"), now=lambda: next(times))
    for _ in range(3):
        await recorder.record(pod, "Warning", "BackOff", "Back-off restarting failed container")
    (event,) = (await api.list(EVENTS)).items
    assert event["involvedObject"] == {
        "apiVersion": "v1",
        "kind": "Pod",
        "name": "web-1",
        "namespace": "default",
        "uid": pod["metadata"]["uid"],
        "resourceVersion": pod["metadata"]["resourceVersion"],
    }
    assert (event["type"], event["reason"], event["count"]) == ("Warning", "BackOff", 3)
    assert event["firstTimestamp"] == "2026-01-01T00:00:00Z"
    assert event["lastTimestamp"] == "2026-01-01T00:00:20Z"
    assert event["source"] == {"component": "node"}


async def test_a_different_reason_is_a_different_event_and_a_deleted_one_is_recreated() -> None:
    api = InMemoryAPI()
    pod = await api.create(PODS, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web-1"}})
    recorder = EventRecorder(api)
    first = await recorder.record(pod, "Normal", "Started", "Started container app")
    await recorder.record(pod, "Normal", "Killing", "Stopping container app")
    assert len((await api.list(EVENTS)).items) == 2
    assert first is not None
    await api.delete(EVENTS, first["metadata"]["name"])
    again = await recorder.record(pod, "Normal", "Started", "Started container app")
    assert again is not None
    assert again["count"] == 1
    assert len((await api.list(EVENTS)).items) == 2
