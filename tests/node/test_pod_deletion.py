"""Graceful deletion of Pods by the API server (Kubernetes' pod strategy): a pod bound to a node
is kept with ``deletionTimestamp`` and ``deletionGracePeriodSeconds`` until its node deletes it
with ``gracePeriodSeconds=0``; a pod never bound, or already finished, goes at once."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from shoal.apiserver.strategy import pod_deletion_grace
from shoal.client import ResourceRef
from shoal.client.http import APIError, HTTPClient, NotFoundError
from shoal.testing import api_server

PODS = ResourceRef("v1", "Pod", "default")
NOW = dt.datetime(2025, 1, 2, 3, 4, 5, tzinfo=dt.UTC)


def pod(name: str = "p", *, node: str | None = "n1", grace: int | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": [{"name": "c", "command": ["true"]}]}
    if node is not None:
        spec["nodeName"] = node
    if grace is not None:
        spec["terminationGracePeriodSeconds"] = grace
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}


# -- the pure rule --------------------------------------------------------------------------------


def test_an_unbound_pod_goes_at_once() -> None:
    assert pod_deletion_grace(pod(node=None), None, NOW) == (0, None)


@pytest.mark.parametrize("phase", ["Succeeded", "Failed"])
def test_a_finished_pod_goes_at_once(phase: str) -> None:
    body = pod()
    body["status"] = {"phase": phase}
    assert pod_deletion_grace(body, None, NOW) == (0, None)


def test_a_bound_pod_is_kept_for_its_own_grace_period() -> None:
    grace, metadata = pod_deletion_grace(pod(grace=7), None, NOW)
    assert grace == 7
    assert metadata == {
        "name": "p",
        "deletionTimestamp": "2025-01-02T03:04:12Z",
        "deletionGracePeriodSeconds": 7,
    }


def test_the_default_grace_is_thirty_seconds_and_the_request_overrides_it() -> None:
    assert pod_deletion_grace(pod(), None, NOW)[0] == 30
    assert pod_deletion_grace(pod(), 3, NOW)[0] == 3
    assert pod_deletion_grace(pod(), 0, NOW) == (0, None)
    assert pod_deletion_grace(pod(), -5, NOW) == (0, None)


def test_a_second_delete_may_shorten_the_grace_never_lengthen_it() -> None:
    body = pod()
    _, metadata = pod_deletion_grace(body, 20, NOW)
    assert metadata is not None
    body["metadata"] = metadata
    assert pod_deletion_grace(body, 60, NOW) == (20, None)
    assert pod_deletion_grace(body, 20, NOW) == (20, None)
    shorter, again = pod_deletion_grace(body, 5, NOW)
    assert shorter == 5
    assert again is not None
    assert again["deletionGracePeriodSeconds"] == 5
    assert pod_deletion_grace(body, 0, NOW) == (0, None)


# -- over HTTP ------------------------------------------------------------------------------------


@pytest.fixture
async def api(tmp_path: Path, _no_leaked_tasks: None) -> AsyncIterator[HTTPClient]:
    async with (
        api_server(data_dir=tmp_path / "data") as server,
        HTTPClient.from_kubeconfig(server.kubeconfig) as client,
    ):
        yield client


async def test_deleting_a_bound_pod_keeps_it_until_the_node_deletes_it_with_grace_0(
    api: HTTPClient,
) -> None:
    await api.create(PODS, pod("bound", grace=10))
    await api.delete(PODS, "bound")
    kept = await api.get(PODS, "bound")
    assert kept["metadata"]["deletionGracePeriodSeconds"] == 10
    assert kept["metadata"]["deletionTimestamp"]
    # A status update still works while it terminates (the node reports the containers stopping).
    kept["status"] = {"phase": "Running"}
    await api.update_status(PODS, kept)
    await api.delete(PODS, "bound", grace_period_seconds=0)
    with pytest.raises(NotFoundError):
        await api.get(PODS, "bound")


async def test_the_delete_answer_is_202_with_the_terminating_pod(api: HTTPClient) -> None:
    await api.create(PODS, pod("answer", grace=5))
    answer = await api.request(
        "DELETE", "/api/v1/namespaces/default/pods/answer", params={"gracePeriodSeconds": "3"}
    )
    assert answer["metadata"]["deletionGracePeriodSeconds"] == 3


async def test_deleting_an_unbound_pod_removes_it_at_once(api: HTTPClient) -> None:
    await api.create(PODS, pod("unbound", node=None))
    await api.delete(PODS, "unbound")
    with pytest.raises(NotFoundError):
        await api.get(PODS, "unbound")


async def test_a_bad_grace_period_is_a_400(api: HTTPClient) -> None:
    await api.create(PODS, pod("bad"))
    with pytest.raises(APIError) as raised:
        await api.request(
            "DELETE", "/api/v1/namespaces/default/pods/bad", params={"gracePeriodSeconds": "x"}
        )
    assert raised.value.status.code == 400
