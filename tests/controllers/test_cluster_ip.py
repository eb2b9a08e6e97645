"""The API server allocates Services' cluster IPs as Kubernetes does, and serves the new kinds."""

from __future__ import annotations

import ipaddress

import pytest

from shoal.client import APIError, HTTPClient, ResourceRef, load_kubeconfig
from shoal.testing import api_server

SERVICE = ResourceRef("v1", "Service", "default")


def _service(name: str, **spec: object) -> dict[str, object]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {"selector": {"app": name}, "ports": [{"port": 80}], **spec},
    }


async def test_cluster_ips_are_allocated_unique_kept_and_headless_gets_none() -> None:
    async with api_server() as server, HTTPClient(load_kubeconfig(server.kubeconfig)) as client:
        first = await client.create(SERVICE, _service("a"))
        second = await client.create(SERVICE, _service("b"))
        ips = [first["spec"]["clusterIP"], second["spec"]["clusterIP"]]
        assert len(set(ips)) == 2
        for ip in ips:
            assert ipaddress.ip_address(ip) in ipaddress.ip_network("127.2.0.0/16")
        assert first["spec"]["clusterIPs"] == [ips[0]]

        headless = await client.create(SERVICE, _service("h", clusterIP="None"))
        assert headless["spec"]["clusterIP"] == "None"

        # An update that leaves the address out keeps it; one that changes it is refused.
        body = dict(first)
        body["spec"] = {
            k: v for k, v in first["spec"].items() if k not in ("clusterIP", "clusterIPs")
        }
        body["spec"]["ports"] = [{"port": 81}]
        updated = await client.update(SERVICE, body)
        assert updated["spec"]["clusterIP"] == ips[0]
        changed = dict(updated)
        changed["spec"] = {**updated["spec"], "clusterIP": "127.2.9.9", "clusterIPs": ["127.2.9.9"]}
        with pytest.raises(APIError, match="field is immutable"):
            await client.update(SERVICE, changed)

        # An address asked for explicitly: taken, or outside the range, is refused.
        with pytest.raises(APIError, match="already allocated"):
            await client.create(SERVICE, _service("c", clusterIP=ips[1]))
        with pytest.raises(APIError, match="not in the valid range"):
            await client.create(SERVICE, _service("d", clusterIP="10.0.0.1"))
        chosen = await client.create(SERVICE, _service("e", clusterIP="127.2.200.1"))
        assert chosen["spec"]["clusterIP"] == "127.2.200.1"

        # A deleted Service's address is free again.
        await client.delete(SERVICE, "a")
        again = await client.create(SERVICE, _service("f"))
        assert again["spec"]["clusterIP"] == ips[0]


async def test_replicasets_and_endpointslices_are_served_with_tables() -> None:
    async with api_server() as server, HTTPClient(load_kubeconfig(server.kubeconfig)) as client:
        rs = await client.create(
            ResourceRef("apps/v1", "ReplicaSet", "default"),
            {
                "metadata": {"name": "web-abc"},
                "spec": {
                    "replicas": 2,
                    "selector": {"matchLabels": {"app": "web"}},
                    "template": {
                        "metadata": {"labels": {"app": "web"}},
                        "spec": {"containers": [{"name": "app", "command": ["true"]}]},
                    },
                },
            },
        )
        assert rs["spec"]["minReadySeconds"] == 0
        resource = await client.find_resource("rs")
        table = await client.table(resource, namespace="default")
        names = [c["name"] for c in table["columnDefinitions"]]
        assert names == ["Name", "Desired", "Current", "Ready", "Age"]
        assert table["rows"][0]["cells"][:4] == ["web-abc", 2, 0, 0]

        slices = ResourceRef("discovery.k8s.io/v1", "EndpointSlice", "default")
        await client.create(
            slices,
            {
                "metadata": {"name": "web-0", "labels": {"kubernetes.io/service-name": "web"}},
                "addressType": "IPv4",
                "endpoints": [
                    {"addresses": [f"127.1.0.{i}"], "conditions": {"ready": True}}
                    for i in range(1, 6)
                ],
                "ports": [{"name": "", "port": 8080, "protocol": "TCP"}],
            },
        )
        resource = await client.find_resource("endpointslices")
        table = await client.table(resource, namespace="default")
        assert table["rows"][0]["cells"][1:4] == [
            "IPv4",
            "8080",
            "127.1.0.1,127.1.0.2,127.1.0.3 + 2 more...",
        ]
        with pytest.raises(APIError, match="must be a valid IP address"):
            await client.create(
                slices,
                {
                    "metadata": {"name": "bad"},
                    "addressType": "IPv4",
                    "endpoints": [{"addresses": ["not-an-ip"]}],
                },
            )
