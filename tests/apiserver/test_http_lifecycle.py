"""Deletion over HTTP: finalizers, owner-reference garbage collection, namespaces, and CRDs."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp

from shoal.testing import api_server

CM = "/api/v1/namespaces/default/configmaps"
MERGE = {"Content-Type": "application/merge-patch+json"}
WAIT = 10.0


async def eventually(check: Callable[[], Awaitable[bool]], what: str) -> None:
    """Poll ``check`` until it holds, for at most WAIT seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT
    while not await check():
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


async def exists(http: aiohttp.ClientSession, path: str) -> bool:
    async with http.get(path) as response:
        assert response.status in (200, 404), await response.text()
        return response.status == 200


async def create(http: aiohttp.ClientSession, path: str, body: dict[str, Any]) -> dict[str, Any]:
    async with http.post(path, json=body) as response:
        assert response.status == 201, await response.text()
        created: dict[str, Any] = await response.json()
        return created


def owned(name: str, owner: dict[str, Any]) -> dict[str, Any]:
    ref = {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"],
    }
    return {"metadata": {"name": name, "ownerReferences": [ref]}, "data": {}}


async def test_finalizers_hold_an_object_until_removed() -> None:
    async with api_server() as server, server.session() as http:
        body = {"metadata": {"name": "held", "finalizers": ["example.com/cleanup"]}, "data": {}}
        await create(http, CM, body)
        async with http.delete(f"{CM}/held") as response:
            assert response.status == 202
            marked = await response.json()
        assert marked["metadata"]["deletionTimestamp"]
        assert await exists(http, f"{CM}/held")
        more = {"metadata": {"finalizers": ["example.com/cleanup", "example.com/more"]}}
        async with http.patch(f"{CM}/held", json=more, headers=MERGE) as response:
            assert response.status == 422  # no new finalizers once deleting
        release = {"metadata": {"finalizers": None}}
        async with http.patch(f"{CM}/held", json=release, headers=MERGE) as response:
            assert response.status == 200
        assert not await exists(http, f"{CM}/held")


async def test_background_deletion_collects_dependents_and_orphan_keeps_them() -> None:
    async with api_server() as server, server.session() as http:
        owner = await create(http, CM, {"metadata": {"name": "owner"}, "data": {}})
        await create(http, CM, owned("child-a", owner))
        await create(http, CM, owned("child-b", owner))
        async with http.delete(f"{CM}/owner") as response:
            assert response.status == 200

        async def children_gone() -> bool:
            return not (await exists(http, f"{CM}/child-a") or await exists(http, f"{CM}/child-b"))

        await eventually(children_gone, "background GC of the dependents")

        parent = await create(http, CM, {"metadata": {"name": "parent"}, "data": {}})
        await create(http, CM, owned("kept", parent))
        params = {"propagationPolicy": "Orphan"}
        async with http.delete(f"{CM}/parent", params=params) as response:
            assert response.status == 200
        assert not await exists(http, f"{CM}/parent")
        async with http.get(f"{CM}/kept") as response:
            kept = await response.json()
        assert "ownerReferences" not in kept["metadata"]
        sweeps = server.running.collector.sweeps if server.running else 0
        await eventually(
            lambda: _after(server, sweeps + 2), "two more collector sweeps after the orphaning"
        )
        assert await exists(http, f"{CM}/kept")


async def _after(server: Any, sweeps: int) -> bool:
    server.running.collector.poke()
    return bool(server.running.collector.sweeps >= sweeps)


async def test_foreground_deletion_waits_for_dependents() -> None:
    async with api_server() as server, server.session() as http:
        owner = await create(http, CM, {"metadata": {"name": "fg"}, "data": {}})
        child = owned("fg-child", owner)
        child["metadata"]["finalizers"] = ["example.com/slow"]
        await create(http, CM, child)
        async with http.delete(f"{CM}/fg", params={"propagationPolicy": "Foreground"}) as r:
            assert r.status == 202
            assert "foregroundDeletion" in (await r.json())["metadata"]["finalizers"]

        async def child_deleting() -> bool:
            async with http.get(f"{CM}/fg-child") as response:
                return bool((await response.json())["metadata"].get("deletionTimestamp"))

        await eventually(child_deleting, "the dependent to be marked for deletion")
        assert await exists(http, f"{CM}/fg")  # the owner waits for its dependent
        release = {"metadata": {"finalizers": None}}
        async with http.patch(f"{CM}/fg-child", json=release, headers=MERGE) as response:
            assert response.status == 200

        async def owner_gone() -> bool:
            return not await exists(http, f"{CM}/fg")

        await eventually(owner_gone, "the foreground owner to go once its dependent went")


async def test_namespace_deletion_deletes_everything_in_it() -> None:
    async with api_server() as server, server.session() as http:
        await create(http, "/api/v1/namespaces", {"metadata": {"name": "team"}})
        path = "/api/v1/namespaces/team/configmaps"
        await create(http, path, {"metadata": {"name": "a"}, "data": {}})
        await create(http, path, {"metadata": {"name": "b", "finalizers": ["x.io/f"]}})
        async with http.delete("/api/v1/namespaces/team") as response:
            assert response.status == 202
            assert (await response.json())["status"]["phase"] == "Terminating"
        async with http.post(path, json={"metadata": {"name": "c"}}) as response:
            assert response.status == 403
            assert (await response.json())["reason"] == "Forbidden"

        async def a_gone() -> bool:
            return not await exists(http, f"{path}/a")

        await eventually(a_gone, "the namespace's objects to be deleted")
        assert await exists(http, "/api/v1/namespaces/team")  # b's finalizer holds it
        async with http.patch(
            f"{path}/b", json={"metadata": {"finalizers": None}}, headers=MERGE
        ) as response:
            assert response.status == 200

        async def namespace_gone() -> bool:
            return not await exists(http, "/api/v1/namespaces/team")

        await eventually(namespace_gone, "the empty namespace to be deleted")
        async with http.get("/api/v1/namespaces/default/status") as response:
            assert (await response.json())["status"]["phase"] == "Active"


CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.example.com"},
    "spec": {
        "group": "example.com",
        "scope": "Namespaced",
        "names": {
            "plural": "widgets",
            "singular": "widget",
            "kind": "Widget",
            "listKind": "WidgetList",
            "shortNames": ["wd"],
        },
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "additionalPrinterColumns": [
                    {"name": "Size", "type": "integer", "jsonPath": ".spec.size"}
                ],
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {
                                "type": "object",
                                "properties": {
                                    "size": {"type": "integer", "minimum": 1},
                                    "color": {"type": "string", "default": "red"},
                                },
                                "required": ["size"],
                            },
                            "status": {
                                "type": "object",
                                "properties": {"ready": {"type": "boolean"}},
                            },
                        },
                    }
                },
            }
        ],
    },
}
CRDS = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
WIDGETS = "/apis/example.com/v1/namespaces/default/widgets"


async def test_a_crd_is_served_at_once_validated_defaulted_and_cleaned_up() -> None:
    async with api_server() as server, server.session() as http:
        async with http.get(WIDGETS) as response:
            assert response.status == 404
        crd = await create(http, CRDS, CRD)
        conditions = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
        assert conditions == {"NamesAccepted": "True", "Established": "True"}
        async with http.get("/apis/example.com/v1") as response:
            names = [r["name"] for r in (await response.json())["resources"]]
        assert names == ["widgets", "widgets/status"]
        body = {
            "apiVersion": "example.com/v1",
            "kind": "Widget",
            "metadata": {"name": "w1"},
            "spec": {"size": 3, "extra": True},
        }
        async with http.post(WIDGETS, json=body) as response:
            assert response.status == 201
            assert response.headers.getall("Warning") == ['299 - "unknown field \\"spec.extra\\""']
            widget = await response.json()
        assert widget["spec"] == {"size": 3, "color": "red"}  # pruned and defaulted
        bad = dict(body, metadata={"name": "w2"}, spec={"size": 0})
        async with http.post(WIDGETS, json=bad) as response:
            assert response.status == 422
            causes = (await response.json())["details"]["causes"]
        assert [c["field"] for c in causes] == ["spec.size"]
        async with http.get(
            WIDGETS, headers={"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io"}
        ) as response:
            table = await response.json()
        assert [c["name"] for c in table["columnDefinitions"]] == ["Name", "Size", "Age"]
        assert table["rows"][0]["cells"][:2] == ["w1", 3]

        async with http.delete(f"{CRDS}/widgets.example.com") as response:
            assert response.status == 200
        async with http.get(WIDGETS) as response:
            assert response.status == 404
        # Registering it again serves an empty collection: the objects went with the CRD.
        await create(http, CRDS, CRD)
        async with http.get(WIDGETS) as response:
            assert (await response.json())["items"] == []


async def test_an_invalid_crd_is_422_with_causes() -> None:
    async with api_server() as server, server.session() as http:
        bad = {**CRD, "spec": {**CRD["spec"], "group": "nodot"}}  # type: ignore[dict-item]
        async with http.post(CRDS, json=bad) as response:
            assert response.status == 422
            causes = (await response.json())["details"]["causes"]
        assert "spec.group" in [c["field"] for c in causes]


async def test_crds_are_served_again_after_a_restart(tmp_path: Any) -> None:
    async with api_server(data_dir=tmp_path) as server, server.session() as http:
        await create(http, CRDS, CRD)
        body = {"metadata": {"name": "w1"}, "spec": {"size": 1}}
        await create(http, WIDGETS, body)
    async with api_server(data_dir=tmp_path) as server, server.session() as http:
        response = await http.get(f"{WIDGETS}/w1")
        assert response.status == 200
        assert (await response.json())["spec"]["size"] == 1
