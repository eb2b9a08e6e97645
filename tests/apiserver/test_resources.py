"""The served resources and discovery documents."""

from __future__ import annotations

from shoal.apiserver.resources import Registry
from shoal.kube.crds import crd_for
from shoal.model import LoadTest


def test_every_model_kind_is_served_with_discovery() -> None:
    registry = Registry.builtin()
    core = registry.resource_list("", "v1")
    assert core is not None
    names = {r["name"] for r in core["resources"]}
    assert {
        "pods",
        "pods/status",
        "services",
        "configmaps",
        "secrets",
        "namespaces",
        "events",
    } <= names
    pods = next(r for r in core["resources"] if r["name"] == "pods")
    assert pods["shortNames"] == ["po"]
    assert pods["namespaced"] is True
    assert "watch" in pods["verbs"]
    namespaces = next(r for r in core["resources"] if r["name"] == "namespaces")
    assert namespaces["namespaced"] is False
    apps = registry.resource_list("apps", "v1")
    assert apps is not None
    assert [r["name"] for r in apps["resources"]] == [
        "deployments",
        "deployments/status",
        "deployments/scale",
        "replicasets",
        "replicasets/status",
        "replicasets/scale",
    ]
    scale = next(r for r in apps["resources"] if r["name"] == "deployments/scale")
    assert (scale["group"], scale["version"], scale["kind"]) == ("autoscaling", "v1", "Scale")


def test_group_list_includes_shoal_groups_and_their_short_names() -> None:
    groups = {g["name"]: g for g in Registry.builtin().group_list()["groups"]}
    assert {
        "apps",
        "apiextensions.k8s.io",
        "patterns.shoal.dev",
        "loadtest.shoal.dev",
        "loadtest",
        "patterns",
    } <= set(groups)
    assert groups["loadtest"]["preferredVersion"] == {
        "groupVersion": "loadtest/v1",
        "version": "v1",
    }


def test_short_group_serves_the_same_objects() -> None:
    registry = Registry.builtin()
    alias = registry.lookup("loadtest", "v1", "loadtests")
    full = registry.lookup("loadtest.shoal.dev", "v1", "loadtests")
    assert alias is not None
    assert full is not None
    assert alias.storage_group == full.storage_group == "loadtest.shoal.dev"
    assert alias.is_alias
    assert not full.is_alias
    assert alias.model is LoadTest


def test_user_crds_are_served_and_removed() -> None:
    registry = Registry.builtin()
    crd = {
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
                "shortNames": ["wd"],
            },
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": {"type": "object"}},
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": [
                        {"name": "Size", "type": "integer", "jsonPath": ".spec.size"}
                    ],
                }
            ],
        },
    }
    (widget,) = registry.add_crd(crd)
    assert registry.for_kind("example.com/v1", "Widget") is widget
    assert widget.status_subresource
    assert widget.printer_columns[0].json_path == ".spec.size"
    listing = registry.resource_list("example.com", "v1")
    assert listing is not None
    assert [r["name"] for r in listing["resources"]] == ["widgets", "widgets/status"]
    registry.remove_crd("widgets.example.com")
    assert registry.lookup("example.com", "v1", "widgets") is None


def test_crds_of_built_in_kinds_are_accepted_but_the_model_keeps_serving() -> None:
    registry = Registry.builtin()
    assert registry.add_crd(crd_for(LoadTest)) == []
    resource = registry.lookup("loadtest.shoal.dev", "v1", "loadtests")
    assert resource is not None
    assert resource.model is LoadTest
