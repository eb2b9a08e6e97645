"""The ``/scale`` subresource over HTTP (Deployments, ReplicaSets, CRDs with ``subresources.scale``)
and the pure view functions behind it (``shoal.apiserver.scaling``)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from shoal.apiserver.resources import Registry
from shoal.apiserver.scaling import scale_of, selector_string, with_replicas
from shoal.apiserver.status import APIError
from shoal.testing import api_server

DEPLOY = "/apis/apps/v1/namespaces/default/deployments"
MERGE = {"Content-Type": "application/merge-patch+json"}


def deployment(name: str, replicas: int = 1) -> dict[str, Any]:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {
                "matchLabels": labels,
                "matchExpressions": [{"key": "tier", "operator": "In", "values": ["b", "a"]}],
            },
            "template": {
                "metadata": {"labels": {**labels, "tier": "a"}},
                "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]},
            },
        },
    }


CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "pools.example.com"},
    "spec": {
        "group": "example.com",
        "scope": "Namespaced",
        "names": {"plural": "pools", "singular": "pool", "kind": "Pool", "listKind": "PoolList"},
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "subresources": {
                    "status": {},
                    "scale": {
                        "specReplicasPath": ".spec.size",
                        "statusReplicasPath": ".status.ready",
                        "labelSelectorPath": ".status.selector",
                    },
                },
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {"type": "object", "properties": {"size": {"type": "integer"}}},
                            "status": {
                                "type": "object",
                                "properties": {
                                    "ready": {"type": "integer"},
                                    "selector": {"type": "string"},
                                },
                            },
                        },
                    }
                },
            }
        ],
    },
}


async def test_get_put_and_patch_the_scale_of_a_deployment() -> None:
    async with api_server() as server, server.session() as session:
        async with session.post(server.url + DEPLOY, json=deployment("web", 2)) as r:
            assert r.status == 201
        scale_url = f"{server.url}{DEPLOY}/web/scale"
        async with session.get(scale_url) as r:
            assert r.status == 200
            scale = await r.json()
        assert scale["kind"] == "Scale"
        assert scale["apiVersion"] == "autoscaling/v1"
        assert scale["spec"] == {"replicas": 2}
        assert scale["status"]["selector"] == "app=web,tier in (a,b)"
        # PUT with the current resourceVersion.
        scale["spec"]["replicas"] = 4
        async with session.put(scale_url, json=scale) as r:
            assert r.status == 200, await r.text()
            put = await r.json()
        assert put["spec"] == {"replicas": 4}
        assert put["metadata"]["resourceVersion"] != scale["metadata"]["resourceVersion"]
        # A stale resourceVersion is a 409 Conflict.
        async with session.put(scale_url, json=scale) as r:
            assert r.status == 409
            assert (await r.json())["reason"] == "Conflict"
        # Merge patch (what kubectl scale sends), strategic merge and JSON patch.
        async with session.patch(scale_url, json={"spec": {"replicas": 0}}, headers=MERGE) as r:
            assert r.status == 200
            assert (await r.json())["spec"] == {}
        strategic = {"Content-Type": "application/strategic-merge-patch+json"}
        async with session.patch(scale_url, json={"spec": {"replicas": 3}}, headers=strategic) as r:
            assert r.status == 200
        json_patch = {"Content-Type": "application/json-patch+json"}
        ops = [{"op": "replace", "path": "/spec/replicas", "value": 5}]
        async with session.patch(scale_url, json=ops, headers=json_patch) as r:
            assert r.status == 200
        async with session.get(f"{server.url}{DEPLOY}/web") as r:
            stored = await r.json()
        assert stored["spec"]["replicas"] == 5
        assert stored["metadata"]["generation"] == 5  # every replica change is a spec change


async def test_bad_scale_writes_are_statuses() -> None:
    async with api_server() as server, server.session() as session:
        async with session.post(server.url + DEPLOY, json=deployment("web")) as r:
            assert r.status == 201
        scale_url = f"{server.url}{DEPLOY}/web/scale"
        async with session.patch(scale_url, json={"spec": {"replicas": -1}}, headers=MERGE) as r:
            assert r.status == 422
            status = await r.json()
            assert status["details"]["causes"][0]["field"] == "spec.replicas"
        async with session.patch(scale_url, json={"spec": {"replicas": "x"}}, headers=MERGE) as r:
            assert r.status == 422
        apply = {"Content-Type": "application/apply-patch+yaml"}
        async with session.patch(
            scale_url + "?fieldManager=x", data="spec: {replicas: 2}", headers=apply
        ) as r:
            assert r.status == 415
        async with session.put(scale_url, json={"kind": "Scale", "metadata": {"name": "x"}}) as r:
            assert r.status == 400
        async with session.delete(scale_url) as r:
            assert r.status == 405
        async with session.get(f"{server.url}{DEPLOY}/missing/scale") as r:
            assert r.status == 404
        # Kinds without replicas have no /scale.
        async with session.get(f"{server.url}/api/v1/namespaces/default/configmaps/x/scale") as r:
            assert r.status == 404


async def test_concurrent_scale_patches_all_land_as_compare_and_swap() -> None:
    async with api_server() as server, server.session() as session:
        async with session.post(server.url + DEPLOY, json=deployment("web", 0)) as r:
            assert r.status == 201
        scale_url = f"{server.url}{DEPLOY}/web/scale"

        async def patch(n: int) -> int:
            async with session.patch(
                scale_url, json={"spec": {"replicas": n}}, headers=MERGE
            ) as response:
                return response.status

        codes = await asyncio.gather(*(patch(n) for n in range(1, 9)))
        assert codes == [200] * 8
        async with session.get(f"{server.url}{DEPLOY}/web") as r:
            assert (await r.json())["metadata"]["generation"] == 9


async def test_a_crd_with_a_scale_subresource() -> None:
    crds = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
    pools = "/apis/example.com/v1/namespaces/default/pools"
    async with api_server() as server, server.session() as session:
        async with session.post(server.url + crds, json=CRD) as r:
            assert r.status == 201, await r.text()
        async with session.get(server.url + "/apis/example.com/v1") as r:
            names = [x["name"] for x in (await r.json())["resources"]]
        assert names == ["pools", "pools/status", "pools/scale"]
        pool = {"apiVersion": "example.com/v1", "kind": "Pool", "metadata": {"name": "p"}}
        pool["spec"] = {"size": 1}
        async with session.post(server.url + pools, json=pool) as r:
            assert r.status == 201
        status = {"status": {"ready": 1, "selector": "pool=p"}}
        async with session.patch(f"{server.url}{pools}/p/status", json=status, headers=MERGE) as r:
            assert r.status == 200
        async with session.patch(
            f"{server.url}{pools}/p/scale", json={"spec": {"replicas": 3}}, headers=MERGE
        ) as r:
            assert r.status == 200
            scale = await r.json()
        assert scale["spec"] == {"replicas": 3}
        assert scale["status"] == {"replicas": 1, "selector": "pool=p"}
        async with session.get(f"{server.url}{pools}/p") as r:
            assert (await r.json())["spec"] == {"size": 3}


class TestViews:
    deployments = Registry.builtin().lookup("apps", "v1", "deployments")

    def test_selector_strings(self) -> None:
        assert selector_string({"matchLabels": {"b": "2", "a": "1"}}) == "a=1,b=2"
        expressions = [
            {"key": "x", "operator": "Exists"},
            {"key": "y", "operator": "DoesNotExist"},
            {"key": "z", "operator": "NotIn", "values": ["q"]},
        ]
        assert selector_string({"matchExpressions": expressions}) == "x,!y,z notin (q)"
        assert selector_string("a=b") == "a=b"
        assert selector_string(None) == ""

    def test_round_trip(self) -> None:
        assert self.deployments is not None
        obj = deployment("d", 2)
        obj["metadata"].update(resourceVersion="7", uid="u")
        scale = scale_of(self.deployments, obj)
        assert scale["metadata"] == {"name": "d", "resourceVersion": "7", "uid": "u"}
        scale["spec"]["replicas"] = 9
        updated = with_replicas(self.deployments, obj, scale)
        assert updated["spec"]["replicas"] == 9
        assert obj["spec"]["replicas"] == 2  # the input is not changed

    @pytest.mark.parametrize("bad", [True, 1.5, "3", -2, 2**31])
    def test_bad_replicas_are_422(self, bad: Any) -> None:
        assert self.deployments is not None
        with pytest.raises(APIError) as caught:
            with_replicas(self.deployments, deployment("d"), {"spec": {"replicas": bad}})
        assert caught.value.code == 422
