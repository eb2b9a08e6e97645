"""The controllers' pure cores: transcripts of decisions, and the rolling-update planner's
convergence and bounds under Hypothesis."""

from __future__ import annotations

import copy
import datetime as dt
import itertools
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from shoal.controllers.endpointslice import plan_slices
from shoal.controllers.patterns import plan_pattern
from shoal.controllers.replicaset import plan_replicaset
from shoal.controllers.rollout import (
    ANNOTATION_REVISION,
    LABEL_HASH,
    plan_deployment,
    resolve_bounds,
    template_hash,
)

NOW = dt.datetime(2026, 1, 1, 12, 0, 0, tzinfo=dt.UTC)
_uids = itertools.count(1)


def stamp(seconds_ago: float = 0) -> str:
    return (NOW - dt.timedelta(seconds=seconds_ago)).strftime("%Y-%m-%dT%H:%M:%SZ")


def pod(
    name: str,
    labels: dict[str, str],
    *,
    owner: dict[str, Any] | None = None,
    ready: bool | None = None,
    since: float = 100,
    created: float = 100,
    deleting: bool = False,
    ip: str | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": "default",
            "uid": f"pod-{name}",
            "labels": labels,
            "creationTimestamp": stamp(created),
        },
        "spec": {
            "containers": [
                {
                    "name": "app",
                    "command": ["x"],
                    "ports": [{"containerPort": 8080, "name": "http"}],
                }
            ]
        },
        "status": {"phase": "Running" if ready is not None else "Pending"},
    }
    if owner is not None:
        body["metadata"]["ownerReferences"] = [
            {
                "apiVersion": "apps/v1",
                "kind": owner["kind"],
                "name": owner["metadata"]["name"],
                "uid": owner["metadata"]["uid"],
                "controller": True,
            }
        ]
    if ready is not None:
        body["status"]["conditions"] = [
            {
                "type": "Ready",
                "status": "True" if ready else "False",
                "lastTransitionTime": stamp(since),
            }
        ]
    if deleting:
        body["metadata"]["deletionTimestamp"] = stamp()
    if ip:
        body["status"]["podIP"] = ip
    return body


def replicaset(name: str, replicas: int, min_ready: int = 0) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {"name": name, "namespace": "default", "uid": f"rs-{name}", "generation": 2},
        "spec": {
            "replicas": replicas,
            "minReadySeconds": min_ready,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "app", "command": ["x"]}]},
            },
        },
    }


# -- ReplicaSet --------------------------------------------------------------------------


def test_replicaset_creates_missing_pods_and_adopts_and_releases() -> None:
    rs = replicaset("web", 3)
    other = {"kind": "ReplicaSet", "metadata": {"name": "other", "uid": "rs-other"}}
    pods = [
        pod("mine", {"app": "web"}, owner=rs, ready=True),
        pod("orphan", {"app": "web"}, ready=True),
        pod("theirs", {"app": "web"}, owner=other, ready=True),
        pod("relabelled", {"app": "db"}, owner=rs, ready=True),
        pod("dying", {"app": "web"}, owner=rs, ready=True, deleting=True),
    ]
    plan = plan_replicaset(rs, pods, NOW)
    assert plan.adopt == ("orphan",)
    assert plan.release == ("relabelled",)
    assert plan.create == 1  # mine + orphan are 2 of 3; the dying pod does not count
    assert plan.delete == ()
    assert plan.status is not None
    assert plan.status["replicas"] == 2
    assert plan.status["readyReplicas"] == 2
    assert plan.status["observedGeneration"] == 2


def test_replicaset_deletes_the_least_valuable_pods_first() -> None:
    rs = replicaset("web", 2)
    pods = [
        pod("old-ready", {"app": "web"}, owner=rs, ready=True, since=500, created=600),
        pod("new-ready", {"app": "web"}, owner=rs, ready=True, since=10, created=20),
        pod("pending", {"app": "web"}, owner=rs),
        pod("not-ready", {"app": "web"}, owner=rs, ready=False),
    ]
    assert plan_replicaset(rs, pods, NOW).delete == ("pending", "not-ready")
    rs["spec"]["replicas"] = 1
    assert plan_replicaset(rs, pods, NOW).delete == ("pending", "not-ready", "new-ready")


def test_replicaset_counts_available_after_min_ready_seconds_and_requeues() -> None:
    rs = replicaset("web", 2, min_ready=30)
    pods = [
        pod("a", {"app": "web"}, owner=rs, ready=True, since=100),
        pod("b", {"app": "web"}, owner=rs, ready=True, since=10),
    ]
    plan = plan_replicaset(rs, pods, NOW)
    assert plan.status is not None
    assert (plan.status["readyReplicas"], plan.status["availableReplicas"]) == (2, 1)
    assert plan.requeue_after is not None
    assert 20 <= plan.requeue_after <= 21
    # The status written, nothing changes: no write.
    rs["status"] = dict(plan.status)
    assert plan_replicaset(rs, pods, NOW).status is None


# -- Deployment --------------------------------------------------------------------------


def deployment(
    replicas: int = 4,
    surge: Any = 1,
    unavailable: Any = 1,
    version: str = "v1",
    recreate: bool = False,
) -> dict[str, Any]:
    strategy: dict[str, Any] = (
        {"type": "Recreate"}
        if recreate
        else {
            "type": "RollingUpdate",
            "rollingUpdate": {"maxSurge": surge, "maxUnavailable": unavailable},
        }
    )
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default", "uid": "d-web", "generation": 1},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "strategy": strategy,
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "app", "command": ["serve", version]}]},
            },
            "revisionHistoryLimit": 10,
            "progressDeadlineSeconds": 600,
        },
    }


def test_bounds_round_like_kubernetes() -> None:
    assert resolve_bounds(deployment(10, "25%", "25%")) == (3, 2)
    assert resolve_bounds(deployment(1, "25%", "25%")) == (1, 0)
    assert resolve_bounds(deployment(4, 0, 0)) == (0, 1)
    assert resolve_bounds(deployment(4, recreate=True)) == (0, 0)


def test_a_new_deployment_creates_revision_one_with_the_hash() -> None:
    d = deployment(3, surge="25%")
    plan = plan_deployment(d, [], NOW)
    assert plan.create is not None
    pod_hash = template_hash(d["spec"]["template"])
    assert plan.create["metadata"]["name"] == f"web-{pod_hash}"
    assert plan.create["spec"]["replicas"] == 3
    assert plan.create["spec"]["selector"]["matchLabels"] == {"app": "web", LABEL_HASH: pod_hash}
    assert plan.create["metadata"]["annotations"][ANNOTATION_REVISION] == "1"
    assert plan.annotations == {ANNOTATION_REVISION: "1"}
    assert plan.status is not None
    progressing = {c["type"]: c for c in plan.status["conditions"]}["Progressing"]
    assert progressing["reason"] == "NewReplicaSetCreated"
    assert template_hash(d["spec"]["template"]) != template_hash(d["spec"]["template"], 1)


def test_progress_deadline_exceeded_after_no_progress() -> None:
    d = deployment(2)
    rs = plan_deployment(d, [], NOW).create
    assert rs is not None
    rs["metadata"]["uid"] = "rs-1"
    rs["status"] = {"replicas": 2, "readyReplicas": 0, "availableReplicas": 0}
    first = plan_deployment(d, [rs], NOW)
    assert first.status is not None
    d["status"] = dict(first.status)
    later = plan_deployment(d, [rs], NOW + dt.timedelta(seconds=601))
    assert later.status is not None
    progressing = {c["type"]: c for c in later.status["conditions"]}["Progressing"]
    assert (progressing["status"], progressing["reason"]) == ("False", "ProgressDeadlineExceeded")


class Sim:
    """Deployment + ReplicaSet controllers over pods, with pods becoming ready at random."""

    def __init__(self, d: dict[str, Any]) -> None:
        self.d = d
        self.sets: dict[str, dict[str, Any]] = {}
        self.pods: dict[str, tuple[str, bool]] = {}  # name -> (rs name, available)
        self.names = itertools.count()

    def deployment_step(self) -> None:
        plan = plan_deployment(self.d, list(self.sets.values()), NOW)
        if plan.create is not None:
            body = copy.deepcopy(plan.create)
            body["metadata"]["uid"] = f"uid-{next(_uids)}"
            body["metadata"]["creationTimestamp"] = f"{next(self.names):08d}"
            body["status"] = {"replicas": 0, "availableReplicas": 0}
            self.sets[body["metadata"]["name"]] = body
        for rs in plan.update:
            old = self.sets[rs["metadata"]["name"]]
            new = copy.deepcopy(rs)
            # As the API server does: a spec change is a new generation.
            bump = old["spec"] != new["spec"]
            new["metadata"]["generation"] = old["metadata"].get("generation", 1) + bump
            self.sets[rs["metadata"]["name"]] = new
        for name in plan.delete:
            self.sets.pop(name)
        if plan.status is not None:
            self.d["status"] = dict(plan.status)
        if plan.annotations is not None:
            self.d["metadata"]["annotations"] = dict(plan.annotations)

    def replicaset_step(self, name: str) -> None:
        rs = self.sets[name]
        mine = [p for p, (owner, _) in self.pods.items() if owner == name]
        wanted = rs["spec"]["replicas"]
        for _ in range(wanted - len(mine)):
            self.pods[f"p{next(self.names)}"] = (name, False)
        if len(mine) > wanted:
            # Not-ready first, then newest.
            ranked = sorted(mine, key=lambda p: (self.pods[p][1], -int(p[1:])))
            for p in ranked[: len(mine) - wanted]:
                del self.pods[p]
        mine = [p for p, (owner, _) in self.pods.items() if owner == name]
        rs["status"] = {
            "replicas": len(mine),
            "readyReplicas": sum(self.pods[p][1] for p in mine),
            "availableReplicas": sum(self.pods[p][1] for p in mine),
            "observedGeneration": rs["metadata"].get("generation", 1),
        }

    def become_ready(self, index: int) -> None:
        waiting = sorted(p for p, (_, ready) in self.pods.items() if not ready)
        if waiting:
            name = waiting[index % len(waiting)]
            self.pods[name] = (self.pods[name][0], True)

    def available(self) -> int:
        return sum(ready for _, ready in self.pods.values())


@settings(max_examples=40, deadline=None)
@given(
    replicas=st.integers(1, 8),
    surge=st.one_of(st.integers(0, 3), st.sampled_from(["0%", "25%", "50%", "100%"])),
    unavailable=st.one_of(st.integers(0, 3), st.sampled_from(["0%", "25%", "50%"])),
    revisions=st.integers(1, 3),
    schedule=st.lists(st.integers(0, 1000), min_size=0, max_size=400),
)
def test_rolling_update_converges_within_its_bounds(
    replicas: int, surge: Any, unavailable: Any, revisions: int, schedule: list[int]
) -> None:
    d = deployment(replicas, surge, unavailable, version="v0")
    max_surge, max_unavailable = resolve_bounds(d)
    sim = Sim(d)
    # Start from a finished rollout of v0, then roll through further versions.
    for version in range(revisions + 1):
        d["spec"]["template"]["spec"]["containers"][0]["command"] = ["serve", f"v{version}"]
        d["metadata"]["generation"] += 1
        steps = iter(schedule)
        fair = itertools.count(1000)  # once the random schedule is used up: round-robin
        for _ in range(2000):
            choice = next(steps, None)
            if choice is None:
                choice = next(fair)
            kind = choice % 3
            if kind == 0:
                sim.deployment_step()
            elif kind == 1 and sim.sets:
                names = sorted(sim.sets)
                sim.replicaset_step(names[(choice // 3) % len(names)])
            else:
                sim.become_ready(choice)
            if version > 0:
                spec_total = sum(rs["spec"]["replicas"] for rs in sim.sets.values())
                assert spec_total <= replicas + max_surge
                assert sim.available() >= replicas - max_unavailable
            status = d.get("status") or {}
            if (
                status.get("updatedReplicas") == replicas
                and status.get("availableReplicas") == replicas
                and status.get("replicas") == replicas
                and len(sim.pods) == replicas
                and all(
                    rs["spec"]["replicas"] == 0
                    for rs in sim.sets.values()
                    if rs["metadata"]["name"] != f"web-{template_hash(d['spec']['template'])}"
                )
            ):
                break
        else:
            raise AssertionError(f"rollout to v{version} did not converge: {d.get('status')}")
        new = f"web-{template_hash(d['spec']['template'])}"
        assert {owner for owner, _ in sim.pods.values()} == {new}
        assert sim.available() == replicas


def test_recreate_stops_old_pods_before_starting_new_ones() -> None:
    d = deployment(3, recreate=True)
    sim = Sim(d)
    for _ in range(20):
        sim.deployment_step()
        for name in sorted(sim.sets):
            sim.replicaset_step(name)
        for i in range(3):
            sim.become_ready(i)
    assert sim.available() == 3
    d["spec"]["template"]["spec"]["containers"][0]["command"] = ["serve", "v2"]
    new = f"web-{template_hash(d['spec']['template'])}"
    for _ in range(20):
        sim.deployment_step()
        owners = {owner for owner, _ in sim.pods.values()}
        assert not (new in owners and len(owners) > 1), "old and new pods at once"
        for name in sorted(sim.sets):
            sim.replicaset_step(name)
        for i in range(3):
            sim.become_ready(i)
    assert {owner for owner, _ in sim.pods.values()} == {new}
    revisions = sorted(
        rs["metadata"]["annotations"][ANNOTATION_REVISION] for rs in sim.sets.values()
    )
    assert revisions == ["1", "2"]


def test_rollback_makes_the_old_replicaset_the_newest_revision() -> None:
    d = deployment(2)
    sim = Sim(d)
    for version in ("v1", "v2", "v1"):
        d["spec"]["template"]["spec"]["containers"][0]["command"] = ["serve", version]
        for _ in range(30):
            sim.deployment_step()
            for name in sorted(sim.sets):
                sim.replicaset_step(name)
            sim.become_ready(0)
    revisions = {
        rs["spec"]["template"]["spec"]["containers"][0]["command"][1]: rs["metadata"][
            "annotations"
        ][ANNOTATION_REVISION]
        for rs in sim.sets.values()
    }
    assert revisions == {"v1": "3", "v2": "2"}
    assert d["metadata"]["annotations"][ANNOTATION_REVISION] == "3"


# -- EndpointSlices ----------------------------------------------------------------------


def service(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "api", "namespace": "default", "uid": "svc-api"},
        "spec": {"selector": {"app": "api"}, "ports": [{"port": 80, "targetPort": "http"}], **spec},
    }


def test_slices_carry_ready_serving_terminating_and_resolved_ports() -> None:
    pods = [
        pod("a", {"app": "api"}, ready=True, ip="127.1.0.1"),
        pod("b", {"app": "api"}, ready=False, ip="127.1.0.2"),
        pod("c", {"app": "api"}, ready=True, ip="127.1.0.3", deleting=True),
        pod("d", {"app": "api"}, ready=True),  # no address yet
        pod("e", {"app": "other"}, ready=True, ip="127.1.0.5"),
    ]
    plan = plan_slices(service(), "api", pods, [])
    assert len(plan.create) == 1
    created = plan.create[0]
    assert created["metadata"]["name"] == "api-0"
    assert created["metadata"]["labels"]["kubernetes.io/service-name"] == "api"
    assert created["ports"] == [{"name": "", "port": 8080, "protocol": "TCP"}]
    conditions = {e["targetRef"]["name"]: e["conditions"] for e in created["endpoints"]}
    assert conditions == {
        "a": {"ready": True, "serving": True, "terminating": False},
        "b": {"ready": False, "serving": False, "terminating": False},
        "c": {"ready": False, "serving": True, "terminating": True},
    }
    # Stored as planned: nothing to do. A pod gone: an update. The Service gone: a delete.
    stored = copy.deepcopy(created)
    assert plan_slices(service(), "api", pods, [stored]) == type(plan)()
    update = plan_slices(service(), "api", pods[1:], [stored]).update
    assert [e["targetRef"]["name"] for e in update[0]["endpoints"]] == ["b", "c"]
    assert plan_slices(None, "api", pods, [stored]).delete == ("api-0",)
    # A Service without a selector: its endpoints are the user's.
    assert plan_slices(service(selector=None), "api", pods, [stored]) == type(plan)()


# -- patterns ----------------------------------------------------------------------------


def test_pattern_plan_creates_children_then_updates_and_prunes() -> None:
    pattern: dict[str, Any] = {
        "apiVersion": "patterns.shoal.dev/v1",
        "kind": "ReplicatedService",
        "metadata": {"name": "web", "namespace": "default", "uid": "p-web", "generation": 1},
        "spec": {"command": ["serve"], "ports": [8080], "replicas": 2},
    }
    plan = plan_pattern(pattern, [], NOW)
    assert sorted((c["kind"], c["metadata"]["name"]) for c in plan.create) == [
        ("Deployment", "web"),
        ("Service", "web"),
    ]
    assert plan.status is not None
    assert plan.status["conditions"][0]["status"] == "False"
    stored = [copy.deepcopy(c) for c in plan.create]
    next(c for c in stored if c["kind"] == "Service")["spec"]["clusterIP"] = (
        "127.2.0.1"  # the server's
    )
    stale = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "web-old",
            "namespace": "default",
            "ownerReferences": stored[0]["metadata"]["ownerReferences"],
        },
    }
    again = plan_pattern(pattern, [*stored, stale], NOW)
    assert again.create == ()
    assert again.update == ()
    assert again.delete == (("ConfigMap", "web-old"),)
    pattern["spec"]["replicas"] = 3
    scaled = plan_pattern(pattern, stored, NOW)
    assert [u["spec"]["replicas"] for u in scaled.update] == [3]
