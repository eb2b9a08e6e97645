"""Server-side apply over HTTP: ``PATCH`` with ``Content-Type: application/apply-patch+yaml``.

Every test starts a real server (TLS, token) on a free port and talks to it with aiohttp.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp

from shoal.testing import api_server

ROOT = Path(__file__).resolve().parents[2]
LOADTEST_YAML = ROOT / "examples" / "07-loadtest" / "loadtest.yaml"

CM = "/api/v1/namespaces/default/configmaps"
DEPLOY = "/apis/apps/v1/namespaces/default/deployments"
LT_SHORT = "/apis/loadtest/v1/namespaces/default/loadtests"
APPLY = {"Content-Type": "application/apply-patch+yaml"}


def deployment(name: str, replicas: int = 1, **extra_spec: Any) -> dict[str, Any]:
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
            **extra_spec,
        },
    }


def configmap(name: str, labels: dict[str, str] | None = None, **data: str) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name}
    if labels:
        metadata["labels"] = labels
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata, "data": data}


def entries(obj: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    """``managedFields`` by (manager, operation)."""
    return {(e["manager"], e["operation"]): e for e in obj["metadata"].get("managedFields", [])}


async def apply(
    http: aiohttp.ClientSession,
    path: str,
    body: dict[str, Any] | str,
    manager: str | None = "ssa",
    **params: str,
) -> tuple[int, dict[str, Any]]:
    if manager is not None:
        params["fieldManager"] = manager
    data = body if isinstance(body, str) else json.dumps(body)
    async with http.patch(path, data=data, headers=APPLY, params=params) as response:
        answer: dict[str, Any] = await response.json()
        if answer.get("kind") == "Status":
            assert answer["code"] == response.status
        return response.status, answer


async def get(http: aiohttp.ClientSession, path: str) -> dict[str, Any]:
    async with http.get(path) as response:
        assert response.status == 200
        body: dict[str, Any] = await response.json()
        return body


async def test_apply_creates_then_applies_and_an_unchanged_apply_writes_nothing() -> None:
    async with api_server() as server, server.session() as http:
        code, created = await apply(http, f"{CM}/a", configmap("a", x="1"))
        assert code == 201
        assert created["metadata"]["namespace"] == "default"
        assert created["data"] == {"x": "1"}
        (entry,) = created["metadata"]["managedFields"]
        assert entry["manager"] == "ssa"
        assert entry["operation"] == "Apply"
        assert entry["apiVersion"] == "v1"
        assert entry["fieldsV1"] == {"f:data": {"f:x": {}}}
        revision = created["metadata"]["resourceVersion"]

        code, again = await apply(http, f"{CM}/a", configmap("a", x="1"))
        assert code == 200
        assert again["metadata"]["resourceVersion"] == revision
        assert again["metadata"]["managedFields"] == created["metadata"]["managedFields"]
        assert (await get(http, f"{CM}/a"))["metadata"]["resourceVersion"] == revision

        code, changed = await apply(http, f"{CM}/a", configmap("a", x="2"))
        assert code == 200
        assert changed["data"] == {"x": "2"}
        assert int(changed["metadata"]["resourceVersion"]) > int(revision)


async def test_the_talks_loadtest_yaml_applies_verbatim_under_the_short_group() -> None:
    text = LOADTEST_YAML.read_text()
    async with api_server() as server, server.session() as http:
        code, created = await apply(http, f"{LT_SHORT}/my-cool-loadtest", text, "kubectl")
        assert code == 201, created
        assert created["spec"]["service"] == "my-cool-service"
        (entry,) = created["metadata"]["managedFields"]
        # Recorded in the canonical group version; a custom kind's lists are atomic.
        assert entry["apiVersion"] == "loadtest.shoal.dev/v1"
        assert entry["fieldsV1"] == {
            "f:spec": {"f:requestPerSecond": {}, "f:service": {}, "f:tests": {}}
        }
        code, again = await apply(http, f"{LT_SHORT}/my-cool-loadtest", text, "kubectl")
        assert code == 200
        assert again["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]


async def test_apply_needs_a_field_manager_and_force_is_for_apply_only() -> None:
    async with api_server() as server, server.session() as http:
        code, status = await apply(http, f"{CM}/a", configmap("a"), manager=None)
        assert code == 422
        assert status["reason"] == "Invalid"
        assert status["message"] == (
            'PatchOptions.meta.k8s.io "" is invalid: fieldManager: Required value: is required '
            "for apply patch"
        )
        assert status["details"]["causes"][0]["field"] == "fieldManager"
        async with http.get(f"{CM}/a") as response:
            assert response.status == 404
        async with http.post(CM, json=configmap("m")) as response:
            assert response.status == 201
        merge = {"Content-Type": "application/merge-patch+json"}
        async with http.patch(
            f"{CM}/m", json={"data": {"k": "v"}}, headers=merge, params={"force": "true"}
        ) as response:
            assert response.status == 422
            body = await response.json()
            assert body["details"]["causes"][0]["field"] == "force"


async def test_conflicts_name_each_field_and_owner_and_force_takes_them() -> None:
    async with api_server() as server, server.session() as http:
        params = {"fieldManager": "creator"}
        async with http.post(DEPLOY, json=deployment("web", 1), params=params) as response:
            assert response.status == 201
        code, status = await apply(http, f"{DEPLOY}/web", deployment("web", 3))
        assert code == 409
        assert status["reason"] == "Conflict"
        assert status["message"] == (
            'Apply failed with 1 conflict: conflict with "creator" using apps/v1: .spec.replicas'
        )
        assert status["details"]["causes"] == [
            {
                "reason": "FieldManagerConflict",
                "message": 'conflict with "creator" using apps/v1',
                "field": ".spec.replicas",
            }
        ]
        assert (await get(http, f"{DEPLOY}/web"))["spec"]["replicas"] == 1

        code, forced = await apply(http, f"{DEPLOY}/web", deployment("web", 3), force="true")
        assert code == 200
        assert forced["spec"]["replicas"] == 3
        owners = entries(forced)
        assert "f:replicas" in owners[("ssa", "Apply")]["fieldsV1"]["f:spec"]
        assert "f:replicas" not in owners[("creator", "Update")]["fieldsV1"]["f:spec"]
        # The values the apply left alone are shared, so the creator still owns the image.
        creator_containers = owners[("creator", "Update")]["fieldsV1"]["f:spec"]["f:template"][
            "f:spec"
        ]["f:containers"]
        assert "f:image" in creator_containers['k:{"name":"web"}']


async def test_ordinary_writes_own_list_items_by_key_so_apply_can_add_beside_them() -> None:
    """A create owns containers item by item (``k:{"name":...}``), not the whole list: an apply
    adding another container is no conflict, and the list keeps both."""
    async with api_server() as server, server.session() as http:
        params = {"fieldManager": "creator"}
        async with http.post(DEPLOY, json=deployment("web"), params=params) as response:
            assert response.status == 201
            created = await response.json()
        (entry,) = created["metadata"]["managedFields"]
        assert (entry["manager"], entry["operation"]) == ("creator", "Update")
        containers = entry["fieldsV1"]["f:spec"]["f:template"]["f:spec"]["f:containers"]
        assert set(containers) == {'k:{"name":"web"}'}
        sidecar = {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web"},
            "spec": {
                "template": {"spec": {"containers": [{"name": "sidecar", "image": "envoy:1.31"}]}}
            },
        }
        code, applied = await apply(http, f"{DEPLOY}/web", sidecar, "mesh")
        assert code == 200, applied
        names = [c["name"] for c in applied["spec"]["template"]["spec"]["containers"]]
        assert names == ["web", "sidecar"]
        mesh = entries(applied)[("mesh", "Apply")]["fieldsV1"]
        assert set(mesh["f:spec"]["f:template"]["f:spec"]["f:containers"]) == {
            'k:{"name":"sidecar"}'
        }


async def test_a_field_left_out_of_the_next_apply_is_removed() -> None:
    async with api_server() as server, server.session() as http:
        first = configmap("a", labels={"keep": "1", "drop": "1"}, x="1", y="2")
        code, _ = await apply(http, f"{CM}/a", first)
        assert code == 201
        code, second = await apply(http, f"{CM}/a", configmap("a", labels={"keep": "1"}, x="1"))
        assert code == 200
        assert second["metadata"]["labels"] == {"keep": "1"}
        assert second["data"] == {"x": "1"}
        stored = await get(http, f"{CM}/a")
        assert stored["data"] == {"x": "1"}
        assert entries(stored)[("ssa", "Apply")]["fieldsV1"] == {
            "f:data": {"f:x": {}},
            "f:metadata": {"f:labels": {"f:keep": {}}},
        }


async def test_a_field_another_manager_still_owns_stays() -> None:
    async with api_server() as server, server.session() as http:
        code, _ = await apply(http, f"{CM}/a", configmap("a", x="1"), "one")
        assert code == 201
        code, _ = await apply(http, f"{CM}/a", configmap("a", x="1"), "two")
        assert code == 200  # the same value: shared, no conflict
        nothing = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}}
        code, after = await apply(http, f"{CM}/a", nothing, "one")
        assert code == 200
        assert after["data"] == {"x": "1"}
        assert ("one", "Apply") not in entries(after)
        assert entries(after)[("two", "Apply")]["fieldsV1"] == {"f:data": {"f:x": {}}}


async def test_status_apply_touches_only_status() -> None:
    async with api_server() as server, server.session() as http:
        code, created = await apply(http, f"{DEPLOY}/web", deployment("web", 2))
        assert code == 201
        body = deployment("web", 9)
        body["status"] = {"replicas": 2, "readyReplicas": 1}
        code, updated = await apply(http, f"{DEPLOY}/web/status", body, "controller")
        assert code == 200, updated
        assert updated["status"]["replicas"] == 2
        assert updated["status"]["readyReplicas"] == 1
        assert updated["spec"]["replicas"] == 2
        assert updated["metadata"]["generation"] == created["metadata"]["generation"]
        status_entry = entries(updated)[("controller", "Apply")]
        assert status_entry["subresource"] == "status"
        assert set(status_entry["fieldsV1"]) == {"f:status"}
        # Status sent to the main resource is ignored there.
        main = deployment("web", 2)
        main["status"] = {"replicas": 7}
        code, again = await apply(http, f"{DEPLOY}/web", main)
        assert code == 200
        assert again["status"]["replicas"] == 2
        assert "f:status" not in entries(again)[("ssa", "Apply")]["fieldsV1"]
        code, status = await apply(http, f"{DEPLOY}/missing/status", deployment("missing"))
        assert code == 404
        assert status["reason"] == "NotFound"


async def test_dry_run_apply_stores_nothing() -> None:
    async with api_server() as server, server.session() as http:
        code, created = await apply(http, f"{CM}/a", configmap("a", x="1"), dryRun="All")
        assert code == 201
        assert created["data"] == {"x": "1"}
        async with http.get(f"{CM}/a") as response:
            assert response.status == 404
        code, stored = await apply(http, f"{CM}/a", configmap("a", x="1"))
        assert code == 201
        code, preview = await apply(http, f"{CM}/a", configmap("a", x="2"), dryRun="All")
        assert code == 200
        assert preview["data"] == {"x": "2"}
        after = await get(http, f"{CM}/a")
        assert after["data"] == {"x": "1"}
        assert after["metadata"]["resourceVersion"] == stored["metadata"]["resourceVersion"]


async def test_a_resource_version_in_the_applied_configuration_is_a_precondition() -> None:
    async with api_server() as server, server.session() as http:
        code, created = await apply(http, f"{CM}/a", configmap("a", x="1"))
        assert code == 201
        revision = created["metadata"]["resourceVersion"]
        code, _ = await apply(http, f"{CM}/a", configmap("a", x="2"))
        assert code == 200
        stale = configmap("a", x="3")
        stale["metadata"]["resourceVersion"] = revision
        code, status = await apply(http, f"{CM}/a", stale)
        assert code == 409
        assert status["reason"] == "Conflict"
        assert "the object has been modified" in status["message"]
        assert (await get(http, f"{CM}/a"))["data"] == {"x": "2"}
        current = configmap("a", x="3")
        current["metadata"]["resourceVersion"] = (await get(http, f"{CM}/a"))["metadata"][
            "resourceVersion"
        ]
        code, applied = await apply(http, f"{CM}/a", current)
        assert code == 200
        assert applied["data"] == {"x": "3"}


async def test_bad_applied_configurations_are_refused() -> None:
    async with api_server() as server, server.session() as http:
        other_name = configmap("b")
        code, status = await apply(http, f"{CM}/a", other_name)
        assert (code, status["reason"]) == (400, "BadRequest")
        assert "does not match the name on the URL" in status["message"]
        generated = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"generateName": "a-"}}
        code, status = await apply(http, f"{CM}/a", generated)
        assert (code, status["reason"]) == (400, "BadRequest")
        assert "generateName" in status["message"]
        elsewhere = configmap("a")
        elsewhere["metadata"]["namespace"] = "kube-system"
        code, status = await apply(http, f"{CM}/a", elsewhere)
        assert code == 400
        wrong_kind = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "a"}}
        code, status = await apply(http, f"{CM}/a", wrong_kind)
        assert code == 400
        with_managed = configmap("a")
        with_managed["metadata"]["managedFields"] = [{"manager": "x", "operation": "Apply"}]
        code, status = await apply(http, f"{CM}/a", with_managed)
        assert code == 400
        code, status = await apply(http, f"{CM}/a", "kind: [unclosed")
        assert code == 400
        code, status = await apply(http, f"{CM}/a", "- a list")
        assert code == 400
        invalid = deployment("web")
        invalid["spec"]["replicas"] = -1
        code, status = await apply(http, f"{DEPLOY}/web", invalid)
        assert (code, status["reason"]) == (422, "Invalid")
        async with http.get(f"{CM}/a") as response:
            assert response.status == 404
        async with http.get(f"{DEPLOY}/web") as response:
            assert response.status == 404
