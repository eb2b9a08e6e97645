"""Server-side apply and managed fields, as transcripts: who applies or writes what, and the object
and ``managedFields`` that result. Then the properties: apply is idempotent, FieldsV1 round-trips."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shoal.apiserver import applying
from shoal.apiserver.applying import (
    BEFORE_FIRST_APPLY,
    ApplyResult,
    FieldPath,
    apply,
    field_path_text,
    fields_from_v1,
    fields_to_v1,
    managed_entries,
    record_update,
)
from shoal.apiserver.patching import (
    ApplyConflictError,
    BadPatchError,
    InvalidPatchError,
    strategic_merge_patch,
)
from shoal.model.core import Deployment

T1, T2, T3 = "2026-03-01T10:00:00Z", "2026-03-01T11:00:00Z", "2026-03-01T12:00:00Z"


def config(**spec: Any) -> dict[str, Any]:
    """An applied configuration of the Deployment ``web``; ``spec`` replaces parts of the default."""
    base: dict[str, Any] = {
        "replicas": 2,
        "selector": {"matchLabels": {"app": "web"}},
        "template": {
            "metadata": {"labels": {"app": "web"}},
            "spec": {
                "containers": [
                    {"name": "app", "image": "nginx:1.27", "ports": [{"containerPort": 80}]}
                ]
            },
        },
    }
    base.update(spec)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
        "spec": {k: v for k, v in base.items() if v is not None},
    }


def entry(obj: dict[str, Any], manager: str, operation: str = "Apply") -> dict[str, Any]:
    """The managedFields entry of ``manager``."""
    found = [
        e
        for e in obj["metadata"].get("managedFields", [])
        if e["manager"] == manager and e["operation"] == operation
    ]
    assert len(found) == 1, obj["metadata"].get("managedFields")
    result: dict[str, Any] = found[0]
    return result


def owners(obj: dict[str, Any], text: str) -> set[str]:
    """The managers owning the field printed as ``text`` (``.spec.replicas``)."""
    return {
        e.manager
        for e in managed_entries(obj)
        if any(field_path_text(path) == text for path in e.fields)
    }


def first_apply() -> ApplyResult:
    return apply(None, config(), "kubectl", force=False, now=T1)


class TestFirstApply:
    def test_creates_the_object_and_records_ownership(self) -> None:
        """The first apply creates the object; the Apply entry lists the leaves and list items
        it set, in the real FieldsV1 format (a port item keyed with its defaulted protocol)."""
        result = first_apply()
        assert result.created
        assert result.changed
        assert result.forced == ()
        assert result.object["spec"]["replicas"] == 2
        assert result.object["metadata"]["managedFields"] == [
            {
                "apiVersion": "apps/v1",
                "fieldsType": "FieldsV1",
                "fieldsV1": {
                    "f:metadata": {"f:labels": {"f:app": {}}},
                    "f:spec": {
                        "f:replicas": {},
                        "f:selector": {},
                        "f:template": {
                            "f:metadata": {"f:labels": {"f:app": {}}},
                            "f:spec": {
                                "f:containers": {
                                    'k:{"name":"app"}': {
                                        ".": {},
                                        "f:image": {},
                                        "f:name": {},
                                        "f:ports": {
                                            'k:{"containerPort":80,"protocol":"TCP"}': {
                                                ".": {},
                                                "f:containerPort": {},
                                            }
                                        },
                                    }
                                }
                            },
                        },
                    },
                },
                "manager": "kubectl",
                "operation": "Apply",
                "time": T1,
            }
        ]
        Deployment.model_validate(result.object)

    def test_reapplying_changes_nothing(self) -> None:
        """The same configuration again is a no-op: same object, same time, ``changed`` false."""
        first = first_apply()
        again = apply(first.object, config(), "kubectl", force=False, now=T2)
        assert again.object == first.object
        assert not again.changed
        assert not again.created


class TestConflicts:
    def test_another_manager_changing_an_owned_field_conflicts(self) -> None:
        """A second manager setting ``replicas`` to another value gets a 409 naming the field
        and its owner, with a FieldManagerConflict cause."""
        live = first_apply().object
        scale = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}}
        scale["spec"] = {"replicas": 5}
        with pytest.raises(ApplyConflictError) as caught:
            apply(live, scale, "autoscaler", force=False, now=T2)
        error = caught.value
        assert (error.reason, error.code) == ("Conflict", 409)
        assert str(error) == 'Apply failed with 1 conflict: conflict with "kubectl": .spec.replicas'
        status = error.to_api_error().to_status()
        assert status["details"]["causes"] == [
            {
                "reason": "FieldManagerConflict",
                "message": 'conflict with "kubectl"',
                "field": ".spec.replicas",
            }
        ]

    def test_force_moves_ownership(self) -> None:
        """With force the value changes and the field changes owner; the old owner now
        conflicts in turn when it applies its old value."""
        live = first_apply().object
        scale = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}}
        scale["spec"] = {"replicas": 5}
        forced = apply(live, scale, "autoscaler", force=True, now=T2)
        assert forced.object["spec"]["replicas"] == 5
        assert [c.field for c in forced.forced] == [".spec.replicas"]
        assert owners(forced.object, ".spec.replicas") == {"autoscaler"}
        assert entry(forced.object, "autoscaler")["fieldsV1"] == {"f:spec": {"f:replicas": {}}}
        assert owners(forced.object, '.spec.template.spec.containers[name="app"].image') == {
            "kubectl"
        }
        with pytest.raises(
            ApplyConflictError, match=r'conflict with "autoscaler": \.spec\.replicas'
        ):
            apply(forced.object, config(), "kubectl", force=False, now=T3)

    def test_applying_the_same_value_shares_the_field(self) -> None:
        """Two managers applying the same value both own it; dropping it from one configuration
        keeps it (the other still owns it); dropping it from both removes it."""
        live = first_apply().object
        team = {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web", "labels": {"app": "web", "team": "blue"}},
        }
        shared = apply(live, team, "platform", force=False, now=T2).object
        assert owners(shared, ".metadata.labels.app") == {"kubectl", "platform"}

        kubectl_drops = copy.deepcopy(config())
        kubectl_drops["metadata"]["labels"] = {"owner": "web-team"}
        after = apply(shared, kubectl_drops, "kubectl", force=False, now=T3).object
        assert after["metadata"]["labels"] == {"app": "web", "team": "blue", "owner": "web-team"}
        assert owners(after, ".metadata.labels.app") == {"platform"}

        platform_drops = {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web"},
        }
        final = apply(after, platform_drops, "platform", force=False, now=T3).object
        assert final["metadata"]["labels"] == {"owner": "web-team"}
        assert all(e["manager"] != "platform" for e in final["metadata"]["managedFields"])

    def test_several_conflicts_are_listed_by_owner(self) -> None:
        """Every conflicting field is listed, grouped under its owner, as Kubernetes words it."""
        live = first_apply().object
        other = config(replicas=3)
        other["spec"]["template"]["spec"]["containers"][0]["image"] = "nginx:1.28"
        with pytest.raises(ApplyConflictError) as caught:
            apply(live, other, "ci", force=False, now=T2)
        assert str(caught.value) == (
            'Apply failed with 2 conflicts: conflicts with "kubectl":\n'
            "- .spec.replicas\n"
            '- .spec.template.spec.containers[name="app"].image'
        )
        assert [c.field for c in caught.value.conflicts] == [
            ".spec.replicas",
            '.spec.template.spec.containers[name="app"].image',
        ]


class TestRemoval:
    def test_dropping_fields_removes_them(self) -> None:
        """Fields the manager applied before and no longer applies are removed from the object
        (``replicas``, a container, an env var), and from its entry."""
        two = config()
        two["spec"]["template"]["spec"]["containers"] = [
            {"name": "app", "image": "nginx", "env": [{"name": "A", "value": "1"}, {"name": "B"}]},
            {"name": "sidecar", "image": "busybox"},
        ]
        live = apply(None, two, "kubectl", force=False, now=T1).object

        one = config(replicas=None)
        one["spec"]["template"]["spec"]["containers"] = [
            {"name": "app", "image": "nginx", "env": [{"name": "B"}]}
        ]
        result = apply(live, one, "kubectl", force=False, now=T2)
        spec = result.object["spec"]
        assert "replicas" not in spec
        assert spec["template"]["spec"]["containers"] == [
            {"name": "app", "image": "nginx", "env": [{"name": "B"}]}
        ]
        assert owners(result.object, ".spec.replicas") == set()
        assert entry(result.object, "kubectl")["time"] == T2

    def test_fields_someone_else_touched_stay(self) -> None:
        """A container the applier drops stays when another manager owns a field inside it;
        only what nobody owns goes, and its key field stays with it."""
        two = config()
        two["spec"]["template"]["spec"]["containers"].append(
            {"name": "sidecar", "image": "busybox"}
        )
        live = apply(None, two, "kubectl", force=False, now=T1).object
        edited = copy.deepcopy(live)
        edited["spec"]["template"]["spec"]["containers"][1]["image"] = "busybox:2"
        live = record_update(live, edited, "kubectl-edit", T2)

        result = apply(live, config(), "kubectl", force=False, now=T3).object
        assert result["spec"]["template"]["spec"]["containers"][1] == {
            "name": "sidecar",
            "image": "busybox:2",
        }
        assert owners(result, '.spec.template.spec.containers[name="sidecar"].image') == {
            "kubectl-edit"
        }

    def test_lists_the_schema_calls_sets(self) -> None:
        """Finalizers are a set: each value is owned on its own (``v:``) and removed on its own."""
        with_finalizers = config()
        with_finalizers["metadata"]["finalizers"] = ["example.com/a", "example.com/b"]
        live = apply(None, with_finalizers, "kubectl", force=False, now=T1).object
        assert entry(live, "kubectl")["fieldsV1"]["f:metadata"]["f:finalizers"] == {
            'v:"example.com/a"': {},
            'v:"example.com/b"': {},
        }
        other = {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web", "finalizers": ["example.com/c"]},
        }
        live = apply(live, other, "operator", force=False, now=T2).object
        assert live["metadata"]["finalizers"] == ["example.com/a", "example.com/b", "example.com/c"]
        with_finalizers["metadata"]["finalizers"] = ["example.com/b"]
        live = apply(live, with_finalizers, "kubectl", force=False, now=T3).object
        assert live["metadata"]["finalizers"] == ["example.com/b", "example.com/c"]


class TestUpdates:
    def test_create_records_an_update_entry(self) -> None:
        """``kubectl create`` is an Update: it owns everything it wrote, maps with ``"."``."""
        created = record_update(None, config(), "kubectl-create", T1)
        fields = entry(created, "kubectl-create", "Update")
        assert fields["apiVersion"] == "apps/v1"
        assert fields["time"] == T1
        assert fields["fieldsV1"]["f:metadata"] == {"f:labels": {".": {}, "f:app": {}}}
        assert fields["fieldsV1"]["f:spec"]["f:replicas"] == {}

    def test_rewriting_owned_values_keeps_the_entries_as_they_were(self) -> None:
        """The same manager changing only values it owns: entries (and their times) unchanged,
        as copies of the stored ones; a new field, or another manager, rebuilds them."""
        created = record_update(None, config(replicas=2), "kubectl-create", T1)
        again = record_update(created, config(replicas=5), "kubectl-create", T2)
        assert again["spec"]["replicas"] == 5
        assert again["metadata"]["managedFields"] == created["metadata"]["managedFields"]
        again["metadata"]["managedFields"][0]["manager"] = "changed"
        assert created["metadata"]["managedFields"][0]["manager"] == "kubectl-create"
        other = record_update(created, config(replicas=6), "scaler", T2)
        assert owners(other, ".spec.replicas") == {"scaler"}
        assert entry(other, "kubectl-create", "Update")["time"] == T1

    def test_apply_after_create_conflicts_with_the_creator(self) -> None:
        """An applier changing a field ``kubectl create`` wrote conflicts ``using`` its version."""
        created = record_update(None, config(), "kubectl-create", T1)
        with pytest.raises(ApplyConflictError) as caught:
            apply(created, config(replicas=4), "kubectl", force=False, now=T2)
        assert str(caught.value) == (
            'Apply failed with 1 conflict: conflict with "kubectl-create" using apps/v1: '
            ".spec.replicas"
        )
        same = apply(created, config(), "kubectl", force=False, now=T2)
        assert owners(same.object, ".spec.replicas") == {"kubectl", "kubectl-create"}

    def test_updates_take_fields_from_appliers(self) -> None:
        """An update (here a strategic merge patch by ``kubectl-edit``) takes the fields it
        changes; the applier then conflicts when it applies its old value."""
        live = first_apply().object
        patched = strategic_merge_patch(
            live,
            {"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "nginx:2"}]}}}},
        )
        updated = record_update(live, patched, "kubectl-edit", T2)
        image = '.spec.template.spec.containers[name="app"].image'
        assert owners(updated, image) == {"kubectl-edit"}
        assert entry(updated, "kubectl-edit", "Update")["fieldsV1"] == {
            "f:spec": {
                "f:template": {"f:spec": {"f:containers": {'k:{"name":"app"}': {"f:image": {}}}}}
            }
        }
        with pytest.raises(ApplyConflictError, match="kubectl-edit"):
            apply(updated, config(), "kubectl", force=False, now=T3)

    def test_removed_fields_leave_every_entry_and_empty_entries_go(self) -> None:
        """A field an update removes is owned by nobody; an entry left with nothing is dropped."""
        live = first_apply().object
        scaled = record_update(live, {**live, "spec": {**live["spec"], "replicas": 3}}, "hpa", T2)
        without = copy.deepcopy(scaled)
        del without["spec"]["replicas"]
        result = record_update(scaled, without, "kubectl-edit", T3)
        assert [e["manager"] for e in result["metadata"]["managedFields"]] == ["kubectl"]
        assert owners(result, ".spec.replicas") == set()

    def test_managed_fields_sent_with_an_update(self) -> None:
        """Leaving managedFields out keeps them; sending ``[{}]`` clears them; echoing them
        back (as ``kubectl replace`` does after a GET) changes nothing."""
        live = first_apply().object
        kept = record_update(live, {**live, "metadata": {"name": "web"}}, "x", T2)
        assert entry(kept, "kubectl")["manager"] == "kubectl"
        cleared_input = copy.deepcopy(live)
        cleared_input["metadata"]["managedFields"] = [{}]
        assert "managedFields" not in record_update(live, cleared_input, "x", T2)["metadata"]
        assert record_update(live, live, "kubectl-replace", T2) == live

    def test_an_object_without_managed_fields_is_owned_before_first_apply(self) -> None:
        """Applying to an object with no managedFields: a ``before-first-apply`` manager owns
        what was there, so changing it conflicts."""
        legacy = copy.deepcopy(config())
        with pytest.raises(ApplyConflictError, match=BEFORE_FIRST_APPLY):
            apply(legacy, config(replicas=9), "kubectl", force=False, now=T1)
        adopted = apply(legacy, config(), "kubectl", force=False, now=T1).object
        assert {e["manager"] for e in adopted["metadata"]["managedFields"]} == {
            BEFORE_FIRST_APPLY,
            "kubectl",
        }


class TestSubresourcesAndKinds:
    def test_status_applies_through_the_subresource(self) -> None:
        """A controller applying status through ``/status`` owns only status, in an entry
        marked with the subresource; the main resource ignores status in an applied config."""
        live = first_apply().object
        status = {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web"},
            "spec": {"replicas": 100},
            "status": {"readyReplicas": 2, "conditions": [{"type": "Available", "status": "True"}]},
        }
        result = apply(
            live, status, "deployment-controller", force=False, now=T2, subresource="status"
        )
        obj = result.object
        assert obj["spec"]["replicas"] == 2
        assert obj["status"]["readyReplicas"] == 2
        controller = entry(obj, "deployment-controller")
        assert controller["subresource"] == "status"
        assert controller["fieldsV1"] == {
            "f:status": {
                "f:conditions": {'k:{"type":"Available"}': {".": {}, "f:status": {}, "f:type": {}}},
                "f:readyReplicas": {},
            }
        }
        main = apply(
            obj, {**config(), "status": {"readyReplicas": 0}}, "kubectl", force=False, now=T3
        )
        assert main.object["status"]["readyReplicas"] == 2

    def test_custom_kinds_have_atomic_lists(self) -> None:
        """A custom kind's lists are atomic (a CRD without list markers), its metadata is typed;
        the talk's short ``loadtest/v1`` is recorded as the canonical API version."""
        load_test = {
            "apiVersion": "loadtest/v1",
            "kind": "LoadTest",
            "metadata": {"name": "lt", "finalizers": ["example.com/x"]},
            "spec": {"service": "web", "tests": [{"name": "t", "test": [{"path": "/"}]}]},
        }
        result = apply(None, load_test, "kubectl", force=False, now=T1).object
        assert entry(result, "kubectl")["apiVersion"] == "loadtest.shoal.dev/v1"
        assert entry(result, "kubectl")["fieldsV1"] == {
            "f:metadata": {"f:finalizers": {'v:"example.com/x"': {}}},
            "f:spec": {"f:service": {}, "f:tests": {}},
        }

    def test_unknown_kinds_apply_untyped(self) -> None:
        """A kind the model does not know (a user CRD) applies with maps merged, lists atomic."""
        widget = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}
        widget["spec"] = {"sizes": [1, 2], "labels": {"a": "b"}}
        result = apply(None, widget, "kubectl", force=False, now=T1).object
        assert entry(result, "kubectl")["fieldsV1"] == {
            "f:spec": {"f:labels": {"f:a": {}}, "f:sizes": {}}
        }


class TestRefusals:
    @pytest.mark.parametrize(
        ("applied", "manager", "error", "message"),
        [
            (config(), "", InvalidPatchError, "fieldManager: Required value"),
            ([], "m", BadPatchError, "must be an object"),
            ({"kind": "Deployment", "metadata": {"name": "web"}}, "m", BadPatchError, "apiVersion"),
            ({"apiVersion": "apps/v1", "kind": "Deployment"}, "m", BadPatchError, "metadata.name"),
            (
                {**config(), "metadata": {"name": "web", "managedFields": []}},
                "m",
                BadPatchError,
                "managedFields must be nil",
            ),
            ({**config(), "metadata": {"name": "api"}}, "m", BadPatchError, "names 'api'"),
            ({**config(), "kind": "Pod", "apiVersion": "v1"}, "m", BadPatchError, "is a Pod"),
        ],
    )
    def test_bad_configurations(
        self, applied: Any, manager: str, error: type[Exception], message: str
    ) -> None:
        """Each malformed apply is refused with the right status and a message naming the fix."""
        with pytest.raises(error, match=message):
            apply(first_apply().object, applied, manager, force=False, now=T2)

    def test_list_items_need_their_keys_once(self) -> None:
        """Items of a map-list need every key field (unless it has a default) and unique keys."""
        missing = config()
        missing["spec"]["template"]["spec"]["containers"] = [{"image": "nginx"}]
        with pytest.raises(InvalidPatchError, match='omits key field "name"') as caught:
            apply(None, missing, "m", force=False, now=T1)
        assert caught.value.causes[0].field == ".spec.template.spec.containers"
        twice = config()
        twice["spec"]["template"]["spec"]["containers"] *= 2
        with pytest.raises(InvalidPatchError, match=r'duplicate entries for key \[name="app"\]'):
            apply(None, twice, "m", force=False, now=T1)

    def test_malformed_fields_v1(self) -> None:
        """Stored or sent FieldsV1 that is not FieldsV1 is refused with its place named."""
        with pytest.raises(BadPatchError, match="not a FieldsV1 element"):
            fields_from_v1({"spec": {}})
        with pytest.raises(BadPatchError, match="does not hold JSON"):
            fields_from_v1({"f:spec": {"k:{name": {}}})
        with pytest.raises(BadPatchError, match="must be an object"):
            fields_from_v1({"f:spec": 1})


# --------------------------------------------------------------------------------------------------
# Properties

_names = st.text(alphabet="abcde", min_size=1, max_size=3)
_env = st.lists(
    st.fixed_dictionaries({"name": _names.map(str.upper)}, optional={"value": _names}),
    unique_by=lambda e: e["name"],
    max_size=3,
)
_containers = st.lists(
    st.fixed_dictionaries(
        {"name": _names, "image": _names},
        optional={
            "env": _env,
            "args": st.lists(_names, max_size=2),
            "ports": st.lists(
                st.builds(lambda p: {"containerPort": p}, st.integers(1, 5)),
                unique_by=lambda p: p["containerPort"],
                max_size=2,
            ),
        },
    ),
    unique_by=lambda c: c["name"],
    min_size=1,
    max_size=3,
)
_configs = st.builds(
    lambda replicas, labels, containers: config(
        replicas=replicas,
        template={"metadata": {"labels": labels}, "spec": {"containers": containers}},
    ),
    st.none() | st.integers(0, 5),
    st.dictionaries(_names, _names, max_size=3),
    _containers,
)


@given(first=_configs, second=_configs, third=_configs)
def test_apply_is_idempotent(
    first: dict[str, Any], second: dict[str, Any], third: dict[str, Any]
) -> None:
    """Whatever the history (another manager applied first, the same manager applied something
    else), applying a configuration twice gives the same object the second time, and the
    arguments are never modified."""
    live = apply(None, first, "other", force=False, now=T1).object
    live = apply(live, second, "me", force=True, now=T2).object
    frozen = copy.deepcopy((live, third))
    once = apply(live, third, "me", force=True, now=T2)
    twice = apply(once.object, third, "me", force=True, now=T3)
    assert twice.object == once.object
    assert not twice.changed
    assert (live, third) == frozen


@given(first=_configs, second=_configs)
def test_applied_values_win_and_ownership_is_exact(
    first: dict[str, Any], second: dict[str, Any]
) -> None:
    """After a forced apply every applied value is in the object and the manager's entry is
    exactly the set of fields it applied (the same set as applying it to nothing)."""
    live = apply(None, first, "other", force=False, now=T1).object
    result = apply(live, second, "me", force=True, now=T2).object
    template = second["spec"]["template"]
    labels = result["spec"]["template"]["metadata"].get("labels", {})
    for key, value in template["metadata"]["labels"].items():
        assert labels[key] == value
    merged = {c["name"]: c for c in result["spec"]["template"]["spec"]["containers"]}
    for container in template["spec"]["containers"]:
        assert merged[container["name"]]["image"] == container["image"]
        if "args" in container:
            assert merged[container["name"]]["args"] == container["args"]
    alone = apply(None, second, "me", force=False, now=T1).object
    assert fields_from_v1(entry(result, "me")["fieldsV1"]) == fields_from_v1(
        entry(alone, "me")["fieldsV1"]
    )


_elements = st.one_of(
    _names.map(lambda n: f"f:{n}"),
    _names.map(lambda n: 'k:{"name":"' + n + '"}'),
    _names.map(lambda n: f'v:"{n}"'),
)


@given(st.sets(st.lists(_elements, min_size=1, max_size=4).map(tuple), max_size=8))
def test_fields_v1_round_trips(paths: set[FieldPath]) -> None:
    """Any set of paths survives FieldsV1 and back, ``"."`` markers included."""
    assert fields_from_v1(fields_to_v1(paths)) == paths


@given(st.sets(st.lists(_elements, min_size=1, max_size=4).map(tuple), max_size=8))
def test_fields_v1_from_the_cache_is_a_fresh_render(paths: set[FieldPath]) -> None:
    """The kept trees are copied out: the same tree every time, and changing one answer
    changes neither the cache nor the next answer."""
    first = fields_to_v1(paths)
    expected = copy.deepcopy(first)
    first["f:changed"] = {}
    second = fields_to_v1(frozenset(paths))
    assert second == expected
    assert second is not first
    assert fields_to_v1(list(paths)) == expected


def test_fields_v1_cache_is_bounded() -> None:
    for n in range(applying._V1_CACHE_SIZE * 2):
        fields_to_v1({(f"f:field{n}",)})
    assert len(applying._V1_CACHE) <= applying._V1_CACHE_SIZE


_elements_or_garbage = st.sampled_from(
    ["f:spec", "f:replicas", 'k:{"name":"app"}', "k:[1]", 'v:"a"', "i:0", ".", "x", "f:metadata"]
)
_fields_v1: st.SearchStrategy[Any] = st.recursive(
    st.just({}) | st.integers(),
    lambda inner: st.dictionaries(_elements_or_garbage, inner, max_size=3),
    max_leaves=10,
)
_entries = st.lists(
    st.fixed_dictionaries(
        {"manager": st.sampled_from(["a", "me", ""]), "fieldsV1": _fields_v1},
        optional={"operation": st.sampled_from(["Apply", "Update", "Delete"])},
    ),
    max_size=3,
)


@given(stored=_entries, applied=_configs, force=st.booleans())
def test_any_stored_managed_fields_apply_or_are_refused(
    stored: list[dict[str, Any]], applied: dict[str, Any], force: bool
) -> None:
    """Whatever ``managedFields`` an object carries, apply and update either succeed or raise
    a patch error with its status code (400, 409 or 422), never anything else."""
    live = apply(None, config(), "me", force=False, now=T1).object
    live["metadata"]["managedFields"] = stored
    codes = []
    try:
        apply(live, applied, "me", force=force, now=T2)
    except (BadPatchError, InvalidPatchError, ApplyConflictError) as error:
        codes.append(error.code)
    try:
        record_update(live, applied, "me", T2)
    except (BadPatchError, InvalidPatchError) as error:
        codes.append(error.code)
    assert set(codes) <= {400, 409, 422}


_leaf = st.one_of(
    st.integers(-2, 2), st.sampled_from([1.0, 0.0, True, False]), st.text(max_size=2), st.none()
)
_tree: st.SearchStrategy[Any] = st.recursive(
    _leaf,
    lambda inner: (
        st.dictionaries(st.sampled_from(["a", "b", "name", "x"]), inner, max_size=3)
        | st.lists(
            st.fixed_dictionaries({"name": st.sampled_from(["p", "q"])}, optional={"v": inner}),
            max_size=3,
        )
        | st.lists(inner, max_size=3)
    ),
    max_leaves=12,
)
_parts = st.fixed_dictionaries(
    {"spec": _tree, "status": _tree},
    optional={"data": _tree, "labels": st.dictionaries(st.sampled_from(["app", "tier"]), _leaf)},
)


def _object(parts: dict[str, Any]) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": "web", "namespace": "default"}
    if "labels" in parts:
        metadata["labels"] = parts["labels"]
    obj = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": metadata}
    obj.update({key: value for key, value in parts.items() if key != "labels"})
    return obj


@given(first=_parts, second=_parts, third=_parts)
def test_record_update_skipping_identical_fields_changes_nothing(
    first: dict[str, Any], second: dict[str, Any], third: dict[str, Any]
) -> None:
    """Walking only the top-level fields that differ gives what walking both objects whole
    gives, whatever the values and their types (``1``, ``1.0`` and ``true`` included)."""
    old = record_update(None, _object(first), "creator", T1, kind=Deployment)
    old = record_update(old, _object(second), "editor", T2, kind=Deployment)
    for new in (_object(third), _object(second), _object(first)):
        fast = record_update(old, copy.deepcopy(new), "me", T3, kind=Deployment)
        saved = applying._identical
        applying._identical = lambda a, b: False
        try:
            whole = record_update(old, copy.deepcopy(new), "me", T3, kind=Deployment)
        finally:
            applying._identical = saved
        assert fast == whole


@given(st.sets(st.lists(_elements, min_size=1, max_size=4).map(tuple), max_size=8))
def test_fields_from_v1_kept_sets_equal_a_fresh_parse(paths: set[FieldPath]) -> None:
    tree = fields_to_v1(paths)
    assert fields_from_v1(tree) == applying._parse_v1(tree, "fieldsV1") == paths
    assert fields_from_v1(copy.deepcopy(tree)) == paths


def test_fields_from_v1_still_refuses_malformed_trees_after_a_good_one() -> None:
    good: dict[str, Any] = {"f:spec": {"f:replicas": {}}}
    assert fields_from_v1(good) == {("f:spec", "f:replicas")}
    bad: dict[str, Any]
    for bad in ({"f:spec": 1}, {"spec": {}}, {"f:spec": {"k:{name": {}}}, {"f:x": float("nan")}):
        with pytest.raises(BadPatchError):
            fields_from_v1(bad)
