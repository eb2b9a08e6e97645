"""Strategic merge patch, as transcripts: the live object, the patch ``kubectl apply`` (client-side,
three-way) or another client sends, and the object the server must store.

The patches are written the way kubectl computes them: the new
``last-applied-configuration`` annotation, ``$setElementOrder`` for every merged list it touches,
deletions as ``$patch: delete`` items at the end of the list, ``$retainKeys`` for fields tagged
``retainKeys``.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shoal.apiserver.patching import (
    FIELD_STRATEGIES,
    BadPatchError,
    InvalidPatchError,
    UnsupportedPatchError,
    merge_patch,
    strategic_merge_patch,
)
from shoal.model.core import Container, Deployment, Pod, PodSpec, Service
from shoal.model.patterns import ReplicatedService

LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


def deployment(*containers: dict[str, Any], **spec: Any) -> dict[str, Any]:
    """A Deployment as the server stores it: loaded through the model, so defaults are filled."""
    manifest = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default", "annotations": {LAST_APPLIED: "{}"}},
        "spec": {
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": list(containers)},
            },
            **spec,
        },
    }
    return Deployment.model_validate(manifest).to_dict()


def containers_of(obj: dict[str, Any]) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = obj["spec"]["template"]["spec"]["containers"]
    return result


def pod_spec_patch(**patch: Any) -> dict[str, Any]:
    return {
        "metadata": {"annotations": {LAST_APPLIED: '{"new": true}\n'}},
        "spec": {"template": {"spec": patch}},
    }


APP = {"name": "app", "image": "nginx:1.27", "env": [{"name": "A", "value": "1"}]}
SIDECAR = {"name": "sidecar", "image": "busybox:1.36", "command": ["sleep", "infinity"]}


class TestKubectlApplyTranscripts:
    def test_container_image_change(self) -> None:
        """Changing one container's image touches that container only; the annotation follows."""
        live = deployment(APP, SIDECAR)
        patch = pod_spec_patch(
            **{
                "$setElementOrder/containers": [{"name": "app"}, {"name": "sidecar"}],
                "containers": [{"image": "nginx:1.28", "name": "app"}],
            }
        )
        result = strategic_merge_patch(live, patch)
        assert containers_of(result) == [{**APP, "image": "nginx:1.28"}, SIDECAR]
        assert result["metadata"]["annotations"][LAST_APPLIED] == '{"new": true}\n'
        assert containers_of(live)[0]["image"] == "nginx:1.27"  # the live object is untouched
        Deployment.model_validate(result)

    def test_adding_an_env_var(self) -> None:
        """A new env var is merged in by name, in the order ``$setElementOrder`` gives."""
        live = deployment(APP)
        patch = pod_spec_patch(
            **{
                "$setElementOrder/containers": [{"name": "app"}],
                "containers": [
                    {
                        "$setElementOrder/env": [{"name": "A"}, {"name": "B"}],
                        "env": [{"name": "B", "value": "2"}],
                        "name": "app",
                    }
                ],
            }
        )
        result = strategic_merge_patch(live, patch)
        assert containers_of(result)[0]["env"] == [
            {"name": "A", "value": "1"},
            {"name": "B", "value": "2"},
        ]

    def test_removing_an_env_var(self) -> None:
        """A dropped env var comes as a ``$patch: delete`` item naming it by its merge key."""
        live = deployment(
            {**APP, "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]}
        )
        patch = pod_spec_patch(
            **{
                "$setElementOrder/containers": [{"name": "app"}],
                "containers": [
                    {
                        "$setElementOrder/env": [{"name": "B"}],
                        "env": [{"$patch": "delete", "name": "A"}],
                        "name": "app",
                    }
                ],
            }
        )
        result = strategic_merge_patch(live, patch)
        assert containers_of(result)[0]["env"] == [{"name": "B", "value": "2"}]

    def test_set_element_order_reorders_and_keeps_server_only_items_in_place(self) -> None:
        """``$setElementOrder`` orders the items it names; an item only the server has (injected
        by someone else) stays next to the live neighbour it followed."""
        injected = {"name": "injected", "image": "proxy:1"}
        metrics = {"name": "metrics", "image": "exporter:2"}
        live = deployment(APP, injected, SIDECAR)
        patch = pod_spec_patch(
            **{
                "$setElementOrder/containers": [
                    {"name": "app"},
                    {"name": "metrics"},
                    {"name": "sidecar"},
                ],
                "containers": [{"image": "exporter:2", "name": "metrics"}],
            }
        )
        result = strategic_merge_patch(live, patch)
        assert [c["name"] for c in containers_of(result)] == [
            "app",
            "metrics",
            "injected",
            "sidecar",
        ]
        assert containers_of(result)[1] == metrics

        reorder = pod_spec_patch(
            **{"$setElementOrder/containers": [{"name": "sidecar"}, {"name": "app"}]}
        )
        reordered = strategic_merge_patch(deployment(APP, SIDECAR), reorder)
        assert containers_of(reordered) == [SIDECAR, APP]

    def test_retain_keys_when_switching_to_recreate(self) -> None:
        """Switching the strategy to Recreate clears the defaulted ``rollingUpdate``, which a
        plain merge would keep (and the result would be invalid)."""
        live = deployment(APP)
        assert live["spec"]["strategy"]["type"] == "RollingUpdate"
        # Kubernetes defaults rollingUpdate on the server; the manifest never mentioned it.
        live["spec"]["strategy"]["rollingUpdate"] = {"maxUnavailable": "25%", "maxSurge": "25%"}
        patch = {"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}}
        result = strategic_merge_patch(live, patch)
        assert result["spec"]["strategy"] == {"type": "Recreate"}
        assert Deployment.model_validate(result).spec.strategy.type == "Recreate"

        plain = strategic_merge_patch(live, {"spec": {"strategy": {"type": "Recreate"}}})
        assert "rollingUpdate" in plain["spec"]["strategy"]

        # When the last applied configuration had rollingUpdate, kubectl also nulls it.
        with_null = {
            "spec": {
                "strategy": {"$retainKeys": ["type"], "rollingUpdate": None, "type": "Recreate"}
            }
        }
        assert strategic_merge_patch(live, with_null)["spec"]["strategy"] == {"type": "Recreate"}

    def test_deleting_a_container(self) -> None:
        """A container dropped from the manifest is deleted by name; the others stay as they are."""
        live = deployment(APP, SIDECAR)
        patch = pod_spec_patch(
            **{
                "$setElementOrder/containers": [{"name": "app"}],
                "containers": [{"$patch": "delete", "name": "sidecar"}],
            }
        )
        result = strategic_merge_patch(live, patch)
        assert containers_of(result) == [APP]

    def test_switching_a_volume_source(self) -> None:
        """Volumes merge by name and retain keys: switching emptyDir to configMap drops emptyDir."""
        live = deployment({**APP, "volumeMounts": [{"name": "data", "mountPath": "/data"}]})
        live["spec"]["template"]["spec"]["volumes"] = [{"name": "data", "emptyDir": {}}]
        patch = pod_spec_patch(
            **{
                "$setElementOrder/volumes": [{"name": "data"}],
                "volumes": [
                    {
                        "$retainKeys": ["configMap", "name"],
                        "configMap": {"name": "cfg"},
                        "name": "data",
                    }
                ],
            }
        )
        result = strategic_merge_patch(live, patch)
        assert result["spec"]["template"]["spec"]["volumes"] == [
            {"name": "data", "configMap": {"name": "cfg"}}
        ]
        Deployment.model_validate(result)

    def test_container_ports_and_mounts_merge_by_their_keys(self) -> None:
        """Container ports merge by ``containerPort`` and mounts by ``mountPath``."""
        live = deployment(
            {
                **APP,
                "ports": [{"containerPort": 80, "name": "http"}],
                "volumeMounts": [{"name": "data", "mountPath": "/data"}],
            }
        )
        live["spec"]["template"]["spec"]["volumes"] = [{"name": "data", "emptyDir": {}}]
        patch = pod_spec_patch(
            containers=[
                {
                    "name": "app",
                    "ports": [{"containerPort": 80, "name": "web"}, {"containerPort": 9090}],
                    "volumeMounts": [{"mountPath": "/data", "readOnly": True}],
                }
            ]
        )
        container = containers_of(strategic_merge_patch(live, patch))[0]
        assert container["ports"] == [
            {"containerPort": 80, "name": "web", "protocol": "TCP"},
            {"containerPort": 9090},
        ]
        assert container["volumeMounts"] == [
            {"name": "data", "mountPath": "/data", "readOnly": True}
        ]


class TestOtherKinds:
    def test_service_ports_merge_by_port(self) -> None:
        """Service ports merge by ``port``: adding https keeps http."""
        live = Service.model_validate(
            {
                "metadata": {"name": "web"},
                "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80}]},
            }
        ).to_dict()
        patch = {
            "spec": {
                "$setElementOrder/ports": [{"port": 80}, {"port": 443}],
                "ports": [{"name": "https", "port": 443, "targetPort": 8443}],
            }
        }
        result = strategic_merge_patch(live, patch)
        assert [(p["name"], p["port"]) for p in result["spec"]["ports"]] == [
            ("http", 80),
            ("https", 443),
        ]
        Service.model_validate(result)

    def test_metadata_lists(self) -> None:
        """Finalizers merge as a set and lose values by ``$deleteFromPrimitiveList``; owner
        references merge by uid; a null label is deleted."""
        live = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": "p",
                "labels": {"app": "web", "tier": "front"},
                "finalizers": ["example.com/a", "example.com/b"],
                "ownerReferences": [
                    {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": "u1"}
                ],
            },
            "spec": {"containers": [{"name": "app", "image": "nginx"}]},
        }
        patch = {
            "metadata": {
                "$deleteFromPrimitiveList/finalizers": ["example.com/a"],
                "finalizers": ["example.com/c", "example.com/b"],
                "labels": {"tier": None},
                "ownerReferences": [{"uid": "u1", "controller": True}],
            }
        }
        result = strategic_merge_patch(live, patch)
        metadata = result["metadata"]
        assert metadata["finalizers"] == ["example.com/c", "example.com/b"]
        assert metadata["labels"] == {"app": "web"}
        assert metadata["ownerReferences"] == [
            {
                "apiVersion": "apps/v1",
                "kind": "ReplicaSet",
                "name": "rs",
                "uid": "u1",
                "controller": True,
            }
        ]
        Pod.model_validate(result)

    def test_an_item_added_without_set_element_order_goes_first(self) -> None:
        """Kubernetes' order rule: items the patch names come first, in the patch's order."""
        live = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "p", "finalizers": ["example.com/a"]},
            "spec": {"containers": [{"name": "app", "image": "nginx"}]},
        }
        result = strategic_merge_patch(
            live, {"spec": {"containers": [{"name": "debug", "image": "busybox"}]}}
        )
        assert [c["name"] for c in result["spec"]["containers"]] == ["debug", "app"]

    def test_status_conditions_merge_by_type(self) -> None:
        """A controller's status patch updates one condition and keeps the others."""
        live = deployment(APP)
        live["status"] = {
            "conditions": [
                {"type": "Available", "status": "False", "reason": "MinimumReplicasUnavailable"},
                {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"},
            ]
        }
        patch = {
            "status": {
                "$setElementOrder/conditions": [{"type": "Available"}, {"type": "Progressing"}],
                "conditions": [
                    {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"}
                ],
            }
        }
        result = strategic_merge_patch(live, patch)
        assert [(c["type"], c["status"]) for c in result["status"]["conditions"]] == [
            ("Available", "True"),
            ("Progressing", "True"),
        ]

    def test_merge_key_table_uses_model_field_aliases(self) -> None:
        """Every table entry names a field of its model (or a Kubernetes field the model lacks and
        whose items the entry types), so a renamed field cannot silently fall back to replace."""
        for (model, alias), strategy in FIELD_STRATEGIES.items():
            aliases = {f.alias or n for n, f in model.model_fields.items()}
            assert alias in aliases or strategy.item is not None, (model.__name__, alias)
        assert FIELD_STRATEGIES[(PodSpec, "containers")].merge_key == "name"
        assert FIELD_STRATEGIES[(Container, "ports")].keys == ("containerPort", "protocol")


class TestDirectives:
    def test_patch_replace_on_a_map_and_in_a_list(self) -> None:
        """``$patch: replace`` replaces a map, or (as a list item) the whole list."""
        live = deployment(APP, SIDECAR)
        patch = {
            "spec": {"template": {"metadata": {"$patch": "replace", "labels": {"app": "web"}}}}
        }
        result = strategic_merge_patch(live, patch)
        assert result["spec"]["template"]["metadata"] == {"labels": {"app": "web"}}

        replace_list = pod_spec_patch(
            containers=[{"$patch": "replace"}, {"name": "solo", "image": "nginx"}]
        )
        assert containers_of(strategic_merge_patch(live, replace_list)) == [
            {"name": "solo", "image": "nginx"}
        ]

    def test_patch_delete_on_a_map_empties_it(self) -> None:
        """``$patch: delete`` inside a map leaves an empty map, as on Kubernetes."""
        live = deployment(APP)
        result = strategic_merge_patch(live, {"metadata": {"annotations": {"$patch": "delete"}}})
        assert result["metadata"]["annotations"] == {}

    def test_patch_merge_is_the_default(self) -> None:
        """``$patch: merge`` says the default out loud, on maps and on list items."""
        live = deployment(APP)
        patch = pod_spec_patch(
            containers=[{"$patch": "merge", "name": "app", "image": "nginx:2"}],
        )
        patch["spec"]["template"]["$patch"] = "merge"
        result = strategic_merge_patch(live, patch)
        assert containers_of(result) == [{**APP, "image": "nginx:2"}]

    def test_directives_in_new_values_are_applied_not_stored(self) -> None:
        """A directive inside a value the live object lacks is applied to an empty value."""
        live = deployment({"name": "app", "image": "nginx"})
        patch = pod_spec_patch(
            containers=[
                {
                    "name": "app",
                    "env": [{"name": "X", "value": "1"}, {"$patch": "delete", "name": "Y"}],
                }
            ]
        )
        assert containers_of(strategic_merge_patch(live, patch))[0]["env"] == [
            {"name": "X", "value": "1"}
        ]

    @pytest.mark.parametrize(
        ("patch", "error", "message"),
        [
            ({"spec": {"$patch": "explode"}}, BadPatchError, "unknown \\$patch directive"),
            ({"spec": {"$retainKeys": "type"}}, BadPatchError, "must be a list of field names"),
            (
                {"spec": {"strategy": {"$retainKeys": ["type"], "rollingUpdate": {}}}},
                BadPatchError,
                "does not list",
            ),
            (
                {"metadata": {"$deleteFromPrimitiveList/finalizers": "a"}},
                BadPatchError,
                "must be a list",
            ),
            (
                {"spec": {"template": {"spec": {"$setElementOrder/containers": "app"}}}},
                BadPatchError,
                "must be a list",
            ),
            (
                {
                    "spec": {
                        "template": {
                            "spec": {
                                "$setElementOrder/containers": [{"name": "a"}, {"name": "b"}],
                                "containers": [{"name": "b"}, {"name": "a"}],
                            }
                        }
                    }
                },
                BadPatchError,
                "not in the order",
            ),
            (
                {"spec": {"template": {"spec": {"containers": [{"image": "x"}]}}}},
                InvalidPatchError,
                "has no merge key 'name'",
            ),
            (
                {"spec": {"template": {"spec": {"containers": [{"$patch": "delete"}]}}}},
                InvalidPatchError,
                "must name the item",
            ),
            (
                {"spec": {"template": {"spec": {"containers": [["app"]]}}}},
                InvalidPatchError,
                "lists of lists",
            ),
            ({"spec": {"$frobnicate": 1}}, BadPatchError, "unknown directive"),
            ({"$patch": "delete"}, BadPatchError, "send a DELETE"),
            (["not", "a", "map"], BadPatchError, "must be a JSON object"),
        ],
    )
    def test_malformed_patches_say_what_is_wrong(
        self, patch: Any, error: type[Exception], message: str
    ) -> None:
        """Each malformed patch is refused with the status code Kubernetes uses and a message
        naming the problem."""
        with pytest.raises(error, match=message):
            strategic_merge_patch(deployment(APP), patch)

    def test_custom_kinds_are_refused(self) -> None:
        """ReplicatedService is a custom resource on Kubernetes: no strategic merge patch."""
        live = {"apiVersion": "patterns.shoal.dev/v1", "kind": "ReplicatedService"}
        with pytest.raises(UnsupportedPatchError):
            strategic_merge_patch(live, {})
        with pytest.raises(UnsupportedPatchError):
            strategic_merge_patch({}, {}, ReplicatedService)


# --------------------------------------------------------------------------------------------------
# Properties

_texts = st.text(alphabet="abcxyz", min_size=1, max_size=4)
_maps = st.dictionaries(_texts, st.text(max_size=5), max_size=5)


@given(live=_maps, patch=st.dictionaries(_texts, st.none() | st.text(max_size=5), max_size=5))
def test_without_lists_it_is_a_merge_patch(live: dict[str, str], patch: dict[str, Any]) -> None:
    """On a map of strings (a ConfigMap's data) a strategic merge patch is a merge patch."""
    config_map = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": live}
    before = copy.deepcopy(config_map)
    result = strategic_merge_patch(config_map, {"data": patch})
    assert result["data"] == merge_patch(live, patch)
    assert config_map == before


@given(
    names=st.lists(_texts, unique=True, min_size=1, max_size=5),
    added=st.lists(_texts, unique=True, max_size=3),
    data=st.data(),
)
def test_set_element_order_is_the_final_order(
    names: list[str], added: list[str], data: st.DataObject
) -> None:
    """When ``$setElementOrder`` names every item, the merged list is in exactly that order."""
    live = deployment(*({"name": n, "image": "i"} for n in names))
    new = [n for n in added if n not in names]
    final = data.draw(st.permutations([*names, *new]))
    patch = pod_spec_patch(
        **{
            "$setElementOrder/containers": [{"name": n} for n in final],
            "containers": [{"name": n, "image": "new"} for n in final if n in new],
        }
    )
    result = strategic_merge_patch(live, patch)
    assert [c["name"] for c in containers_of(result)] == final
    assert json.dumps(result)  # still plain JSON
