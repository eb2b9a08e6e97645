"""The API server over HTTP: create, read, update, patch, delete, lists, errors, tables.

Every test starts a real server (TLS, token) on a free port and talks to it with aiohttp.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp

from shoal.testing import api_server

CM = "/api/v1/namespaces/default/configmaps"
DEPLOY = "/apis/apps/v1/namespaces/default/deployments"
LT = "/apis/loadtest.shoal.dev/v1/namespaces/default/loadtests"
TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"


def configmap(name: str, labels: dict[str, str] | None = None, **data: str) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name}
    if labels:
        metadata["labels"] = labels
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata, "data": data}


def deployment(name: str, replicas: int = 1) -> dict[str, Any]:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]},
            },
        },
    }


def loadtest(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "loadtest.shoal.dev/v1",
        "kind": "LoadTest",
        "metadata": {"name": name},
        "spec": {"service": "web", "requestPerSecond": "10", "tests": [{"test": ["/"]}]},
    }


async def status_of(response: aiohttp.ClientResponse) -> dict[str, Any]:
    body: dict[str, Any] = await response.json()
    assert body["kind"] == "Status", body
    assert body["code"] == response.status
    return body


async def test_create_get_update_delete_a_configmap() -> None:
    """The server sets uid, resourceVersion, creationTimestamp and generation; PUT replaces."""
    async with api_server() as server, server.session() as http:
        async with http.post(CM, json=configmap("settings", color="blue")) as response:
            assert response.status == 201
            created = await response.json()
        meta = created["metadata"]
        assert meta["namespace"] == "default"
        assert meta["uid"]
        assert meta["resourceVersion"].isdigit()
        assert meta["creationTimestamp"].endswith("Z")
        assert meta["generation"] == 1
        async with http.get(f"{CM}/settings") as response:
            assert response.status == 200
            assert (await response.json())["data"] == {"color": "blue"}
        created["data"] = {"color": "green"}
        async with http.put(f"{CM}/settings", json=created) as response:
            assert response.status == 200
            updated = await response.json()
        assert updated["data"] == {"color": "green"}
        assert updated["metadata"]["uid"] == meta["uid"]
        assert int(updated["metadata"]["resourceVersion"]) > int(meta["resourceVersion"])
        async with http.delete(f"{CM}/settings") as response:
            assert response.status == 200
        async with http.get(f"{CM}/settings") as response:
            assert response.status == 404
            body = await status_of(response)
        assert body["reason"] == "NotFound"
        assert body["message"] == 'configmaps "settings" not found'


async def test_duplicate_create_is_409_already_exists_and_generate_name_is_unique() -> None:
    async with api_server() as server, server.session() as http:
        async with http.post(CM, json=configmap("one")) as response:
            assert response.status == 201
        async with http.post(CM, json=configmap("one")) as response:
            assert response.status == 409
            body = await status_of(response)
        assert body["reason"] == "AlreadyExists"
        assert body["message"] == 'configmaps "one" already exists'
        names = set()
        for _ in range(3):
            generated = {"metadata": {"generateName": "job-"}, "data": {}}
            async with http.post(CM, json=generated) as response:
                assert response.status == 201
                name = (await response.json())["metadata"]["name"]
            assert name.startswith("job-")
            assert len(name) == len("job-") + 5
            names.add(name)
        assert len(names) == 3


async def test_stale_resource_version_is_409_conflict_with_kubernetes_message() -> None:
    async with api_server() as server, server.session() as http:
        async with http.post(DEPLOY, json=deployment("web")) as response:
            first = await response.json()
        second = dict(first, spec=dict(first["spec"], replicas=2))
        async with http.put(f"{DEPLOY}/web", json=second) as response:
            assert response.status == 200
        stale = dict(first, spec=dict(first["spec"], replicas=3))
        async with http.put(f"{DEPLOY}/web", json=stale) as response:
            assert response.status == 409
            body = await status_of(response)
        assert body["reason"] == "Conflict"
        assert body["message"] == (
            'Operation cannot be fulfilled on deployments.apps "web": the object has been '
            "modified; please apply your changes to the latest version and try again"
        )


async def test_custom_resource_put_without_resource_version_is_422() -> None:
    async with api_server() as server, server.session() as http:
        async with http.post(LT, json=loadtest("smoke")) as response:
            assert response.status == 201
        async with http.put(f"{LT}/smoke", json=loadtest("smoke")) as response:
            assert response.status == 422
            body = await status_of(response)
        assert body["details"]["causes"][0]["field"] == "metadata.resourceVersion"
        # A built-in kind takes an unconditional update.
        async with http.post(CM, json=configmap("c")) as response:
            assert response.status == 201
        async with http.put(f"{CM}/c", json=configmap("c", a="b")) as response:
            assert response.status == 200


async def test_invalid_object_is_422_with_field_causes() -> None:
    async with api_server() as server, server.session() as http:
        async with http.post(DEPLOY, json=deployment("web", replicas=-1)) as response:
            assert response.status == 422
            body = await status_of(response)
        assert body["reason"] == "Invalid"
        assert body["message"].startswith('Deployment.apps "web" is invalid: ')
        assert body["details"]["kind"] == "Deployment"
        fields = [cause["field"] for cause in body["details"]["causes"]]
        assert fields == ["spec.replicas"]
        bad_name = configmap("Not_A_Name")
        async with http.post(CM, json=bad_name) as response:
            assert response.status == 422
            body = await status_of(response)
        assert body["details"]["causes"][0]["field"] == "metadata.name"


async def test_bad_requests_are_statuses_never_500() -> None:
    async with api_server() as server:
        async with server.session(authenticated=False) as anonymous:
            async with anonymous.get(CM) as response:
                assert response.status == 401
                assert (await status_of(response))["reason"] == "Unauthorized"
            async with anonymous.get("/healthz") as response:
                assert response.status == 200
            async with anonymous.get("/version") as response:
                assert (await response.json())["gitVersion"] == "v1.37.0-shoal"
        async with server.session() as http:
            async with http.post(CM, data=b"{not json", headers=_json) as response:
                assert response.status == 400
                assert (await status_of(response))["reason"] == "BadRequest"
            async with http.post(CM, data=b"[1, 2]", headers=_json) as response:
                assert response.status == 400
            async with http.get("/api/v1/namespaces/default/nothings") as response:
                assert response.status == 404
            async with http.get("/no/such/path") as response:
                assert response.status == 404
                assert (await status_of(response))["reason"] == "NotFound"
            async with http.post(f"{CM}/x", json=configmap("x")) as response:
                assert response.status == 405
                assert (await status_of(response))["reason"] == "MethodNotAllowed"
            async with http.get(CM, params={"labelSelector": "a in (b"}) as response:
                assert response.status == 400
            async with http.post(
                "/api/v1/namespaces/nowhere/configmaps", json=configmap("x")
            ) as response:
                assert response.status == 404
                assert (await status_of(response))["message"] == 'namespaces "nowhere" not found'


_json = {"Content-Type": "application/json"}


async def test_list_paging_label_and_field_selectors() -> None:
    async with api_server() as server, server.session() as http:
        for index in range(7):
            labels = {"tier": "web" if index % 2 else "db", "n": str(index)}
            if index == 3:
                labels["canary"] = "yes"
            async with http.post(CM, json=configmap(f"c{index}", labels)) as response:
                assert response.status == 201
        names: list[str] = []
        token = None
        revisions = set()
        while True:
            params = {"limit": "3", **({"continue": token} if token else {})}
            async with http.get(CM, params=params) as response:
                page = await response.json()
            assert len(page["items"]) <= 3
            names += [item["metadata"]["name"] for item in page["items"]]
            revisions.add(page["metadata"]["resourceVersion"])
            token = page["metadata"].get("continue")
            if not token:
                break
        assert names == [f"c{i}" for i in range(7)]
        assert len(revisions) == 1  # one snapshot
        assert page["kind"] == "ConfigMapList"

        async def select(**params: str) -> list[str]:
            async with http.get(CM, params=params) as response:
                assert response.status == 200, await response.text()
                return [i["metadata"]["name"] for i in (await response.json())["items"]]

        assert await select(labelSelector="tier=web") == ["c1", "c3", "c5"]
        assert await select(labelSelector="tier==web,n!=1") == ["c3", "c5"]
        assert await select(labelSelector="n in (0,6)") == ["c0", "c6"]
        assert await select(labelSelector="tier notin (web)") == ["c0", "c2", "c4", "c6"]
        assert await select(labelSelector="canary") == ["c3"]
        assert await select(labelSelector="!canary,tier=web") == ["c1", "c5"]
        assert await select(fieldSelector="metadata.name=c4") == ["c4"]
        assert await select(fieldSelector="metadata.name!=c4", labelSelector="tier=db") == [
            "c0",
            "c2",
            "c6",
        ]
        # Paging with a selector still fills pages with matching objects.
        assert await select(labelSelector="tier=db", limit="2") == ["c0", "c2"]
        # The cluster-wide list of a namespaced kind.
        async with http.get("/api/v1/configmaps") as response:
            assert len((await response.json())["items"]) == 7


async def test_status_subresource_and_generation() -> None:
    async with api_server() as server, server.session() as http:
        body = deployment("web")
        body["status"] = {"replicas": 5}
        async with http.post(DEPLOY, json=body) as response:
            created = await response.json()
        assert "status" not in created or created["status"].get("replicas") != 5
        assert created["metadata"]["generation"] == 1
        status = dict(created, status={"replicas": 1, "readyReplicas": 1, "observedGeneration": 1})
        async with http.put(f"{DEPLOY}/web/status", json=status) as response:
            assert response.status == 200
            after_status = await response.json()
        assert after_status["status"]["readyReplicas"] == 1
        assert after_status["metadata"]["generation"] == 1
        # A write to the main resource keeps the status and bumps the generation on spec changes.
        changed = dict(after_status, spec=dict(after_status["spec"], replicas=3), status={})
        async with http.put(f"{DEPLOY}/web", json=changed) as response:
            updated = await response.json()
        assert updated["metadata"]["generation"] == 2
        assert updated["status"]["readyReplicas"] == 1
        # A metadata-only change does not bump it.
        labelled = dict(updated, metadata=dict(updated["metadata"], labels={"x": "y"}))
        async with http.put(f"{DEPLOY}/web", json=labelled) as response:
            assert (await response.json())["metadata"]["generation"] == 2
        # /status writes change only status.
        sneaky = dict(labelled, spec=dict(labelled["spec"], replicas=9), status={"replicas": 3})
        sneaky["metadata"] = dict(sneaky["metadata"], resourceVersion=None)
        async with http.put(f"{DEPLOY}/web/status", json=sneaky) as response:
            final = await response.json()
        assert final["spec"]["replicas"] == 3
        assert final["status"] == {"replicas": 3}
        assert final["metadata"]["generation"] == 2


async def test_patch_json_and_merge_and_unsupported_types() -> None:
    async with api_server() as server, server.session() as http:
        async with http.post(CM, json=configmap("p", a="1")) as response:
            assert response.status == 201
        merge = {"Content-Type": "application/merge-patch+json"}
        async with http.patch(f"{CM}/p", json={"data": {"b": "2", "a": None}}, headers=merge) as r:
            assert r.status == 200
            assert (await r.json())["data"] == {"b": "2"}
        ops = [{"op": "add", "path": "/data/c", "value": "3"}, {"op": "remove", "path": "/data/b"}]
        jsonpatch = {"Content-Type": "application/json-patch+json"}
        async with http.patch(f"{CM}/p", json=ops, headers=jsonpatch) as r:
            assert r.status == 200
            assert (await r.json())["data"] == {"c": "3"}
        failing = [{"op": "test", "path": "/data/c", "value": "nope"}]
        async with http.patch(f"{CM}/p", json=failing, headers=jsonpatch) as r:
            assert r.status == 422
        stale = {"metadata": {"resourceVersion": "1"}, "data": {"d": "4"}}
        async with http.patch(f"{CM}/p", json=stale, headers=merge) as r:
            assert r.status == 409
        # Custom resources take no strategic merge patch (kubectl then sends a merge patch).
        async with http.post(LT, json=loadtest("p")) as r:
            assert r.status == 201
        strategic = {"Content-Type": "application/strategic-merge-patch+json"}
        async with http.patch(f"{LT}/p", json={"spec": {}}, headers=strategic) as r:
            assert r.status == 415
            assert (await status_of(r))["reason"] == "UnsupportedMediaType"
        async with http.patch(f"{CM}/p", json={}, headers={"Content-Type": "text/plain"}) as r:
            assert r.status == 415
        async with http.patch(f"{CM}/missing", json={}, headers=merge) as r:
            assert r.status == 404


async def test_dry_run_validates_without_storing() -> None:
    async with api_server() as server, server.session() as http:
        params = {"dryRun": "All"}
        async with http.post(CM, json=configmap("dry"), params=params) as response:
            assert response.status == 201
            assert (await response.json())["metadata"]["name"] == "dry"
        async with http.get(f"{CM}/dry") as response:
            assert response.status == 404
        async with http.post(DEPLOY, json=deployment("w", replicas=-2), params=params) as r:
            assert r.status == 422
        async with http.post(CM, json=configmap("real")) as response:
            assert response.status == 201
        async with http.delete(f"{CM}/real", params=params) as response:
            assert response.status == 200
        async with http.get(f"{CM}/real") as response:
            assert response.status == 200
        async with http.post(CM, json=configmap("x"), params={"dryRun": "Maybe"}) as response:
            assert response.status == 400


async def test_field_validation_warn_strict_ignore() -> None:
    async with api_server() as server, server.session() as http:
        body = configmap("fv", a="1")
        body["spec"] = {"foo": 1}
        async with http.post(CM, json=body) as response:  # Warn is the default
            assert response.status == 201
            assert response.headers.getall("Warning") == ['299 - "unknown field \\"spec\\""']
            assert "spec" not in await response.json()
        custom = loadtest("fv")
        custom["spec"]["foo"] = "bar"
        async with http.post(LT, json=custom, params={"fieldValidation": "Strict"}) as response:
            assert response.status == 400
            status = await status_of(response)
        assert status["message"] == 'strict decoding error: unknown field "spec.foo"'
        async with http.post(LT, json=custom, params={"fieldValidation": "Ignore"}) as response:
            assert response.status == 201
            assert "Warning" not in response.headers
            assert "foo" not in (await response.json())["spec"]


async def test_table_output_for_kubectl_get() -> None:
    async with api_server() as server, server.session() as http:
        async with http.post(LT, json=loadtest("t1")) as response:
            assert response.status == 201
        async with http.get(LT, headers={"Accept": TABLE}) as response:
            table = await response.json()
        assert table["kind"] == "Table"
        columns = [c["name"] for c in table["columnDefinitions"]]
        assert columns[:3] == ["Name", "Service", "Rate"]
        assert columns[-1] == "Age"
        row = table["rows"][0]
        assert [str(cell) for cell in row["cells"][:3]] == ["t1", "web", "10"]
        assert row["cells"][-1].endswith("s")  # an age, as kubectl shows it
        assert row["object"]["metadata"]["name"] == "t1"
        async with http.get(f"{LT}/t1", headers={"Accept": TABLE}) as response:
            assert (await response.json())["rows"][0]["cells"][0] == "t1"


async def test_discovery_and_openapi() -> None:
    async with api_server() as server, server.session() as http:
        async with http.get("/api") as response:
            assert (await response.json())["versions"] == ["v1"]
        async with http.get("/apis") as response:
            groups = {g["name"] for g in (await response.json())["groups"]}
        assert {"apps", "loadtest", "loadtest.shoal.dev", "apiextensions.k8s.io"} <= groups
        async with http.get("/apis/apps/v1") as response:
            resources = {r["name"] for r in (await response.json())["resources"]}
        assert {"deployments", "deployments/status"} <= resources
        async with http.get("/openapi/v3") as response:
            index = (await response.json())["paths"]
        assert "apis/loadtest/v1" in index
        assert "api/v1" in index
        async with http.get(index["apis/apps/v1"]["serverRelativeURL"]) as response:
            document = await response.json()
        patch = document["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"][
            "patch"
        ]
        assert patch["x-kubernetes-group-version-kind"] == {
            "group": "apps",
            "version": "v1",
            "kind": "Deployment",
        }
        assert "fieldValidation" in [p["name"] for p in patch["parameters"]]
        async with http.get("/openapi/v3/apis/nothing/v1") as response:
            assert response.status == 404


async def test_concurrent_patches_are_retried_and_a_patched_stale_version_is_409() -> None:
    """Patches without a resourceVersion of their own retry on a concurrent write (as Kubernetes
    does); one that names a stale resourceVersion is a 409."""
    merge = {"Content-Type": "application/merge-patch+json"}
    async with api_server() as server, server.session() as session:
        async with session.post(server.url + CM, json=configmap("c")) as r:
            assert r.status == 201
            first = (await r.json())["metadata"]["resourceVersion"]

        async def patch(n: int) -> int:
            async with session.patch(
                f"{server.url}{CM}/c", json={"data": {f"k{n}": "v"}}, headers=merge
            ) as response:
                return response.status

        assert await asyncio.gather(*(patch(n) for n in range(8))) == [200] * 8
        async with session.get(f"{server.url}{CM}/c") as r:
            assert len((await r.json())["data"]) == 8
        stale = {"metadata": {"resourceVersion": first}, "data": {"late": "v"}}
        async with session.patch(f"{server.url}{CM}/c", json=stale, headers=merge) as r:
            assert r.status == 409
