"""The Deployment controller's pure core: revisions, rolling updates, Recreate, status.

Theory of operation
-------------------
A Deployment owns one ReplicaSet per revision of its pod template. The ReplicaSet of the current
template is the *new* one; it is named ``<deployment>-<pod-template-hash>``, where the hash is
of the template (and ``status.collisionCount``), and its selector and template carry the label
``pod-template-hash``, so the sets' pods never overlap. Every ReplicaSet records its revision in
the annotation ``deployment.kubernetes.io/revision``; the new one always has the highest (a
rollback to an old template makes its old ReplicaSet the newest revision again).

:func:`plan_deployment` is one round, decided from the Deployment and its ReplicaSets as
Kubernetes' deployment controller decides it (``pkg/controller/deployment``):

* **RollingUpdate** (``maxSurge`` rounded up, ``maxUnavailable`` rounded down, from a percentage
  of ``spec.replicas``; both 0 means ``maxUnavailable`` 1):

  1. scale the new ReplicaSet up, keeping the sum of every set's ``spec.replicas`` within
     ``replicas + maxSurge`` (or down to ``replicas`` if it has more);
  2. otherwise scale old ReplicaSets down: first their unavailable pods, then available ones,
     keeping ``replicas - maxUnavailable`` pods available counting the new set's unavailable
     pods as lost (``maxScaledDown = allPods - minAvailable - newUnavailable``).

  Each round does one of the two; the ReplicaSets' changes bring the next round.
* **Recreate**: scale every old ReplicaSet to 0; once none has a pod left, create (or scale) the
  new one to ``replicas``.
* **History**: when the rollout is complete, old ReplicaSets with no pods beyond
  ``revisionHistoryLimit`` are deleted, oldest revision first.
* **Status**: ``replicas``, ``updatedReplicas``, ``readyReplicas``, ``availableReplicas`` and
  ``unavailableReplicas`` from the ReplicaSets' status, ``observedGeneration``, and the
  conditions ``Available`` (``MinimumReplicasAvailable``/``MinimumReplicasUnavailable``) and
  ``Progressing`` (``NewReplicaSetCreated``, ``ReplicaSetUpdated``, ``NewReplicaSetAvailable``,
  or ``False``/``ProgressDeadlineExceeded`` after ``progressDeadlineSeconds`` without progress),
  so ``kubectl rollout status`` reads it as it reads Kubernetes'.

The plan is data (ReplicaSets to create, update and delete, the status, Events); the driver in
:mod:`shoal.controllers.deployment` carries it out.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from shoal.controllers._objects import (
    Body,
    format_time,
    is_deleting,
    meta,
    name_of,
    namespace_of,
    owner_reference,
    parse_time,
)

__all__ = [
    "ANNOTATION_DESIRED",
    "ANNOTATION_MAX",
    "ANNOTATION_REVISION",
    "LABEL_HASH",
    "DeploymentPlan",
    "plan_deployment",
    "resolve_bounds",
    "revision_of",
    "template_hash",
    "templates_equal",
]

LABEL_HASH = "pod-template-hash"
ANNOTATION_REVISION = "deployment.kubernetes.io/revision"
ANNOTATION_DESIRED = "deployment.kubernetes.io/desired-replicas"
ANNOTATION_MAX = "deployment.kubernetes.io/max-replicas"
ANNOTATION_CHANGE_CAUSE = "kubernetes.io/change-cause"

_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # Kubernetes' rand.SafeEncodeString alphabet


@dataclass(frozen=True, slots=True)
class DeploymentPlan:
    """What one round of the Deployment controller does."""

    create: Body | None = None
    """A new ReplicaSet to create."""
    update: tuple[Body, ...] = ()
    """ReplicaSets to write back changed (scaled, re-annotated)."""
    delete: tuple[str, ...] = ()
    """Old ReplicaSets beyond the history limit."""
    annotations: Mapping[str, str] | None = None
    """The Deployment's new annotations (its revision), or None when unchanged."""
    status: Mapping[str, Any] | None = None
    """The Deployment's new status, or None when unchanged."""
    events: tuple[tuple[str, str], ...] = ()
    """(reason, message) Events to record on the Deployment."""
    requeue_after: float | None = None
    """Look again after this many seconds (the progress deadline)."""


# -- hashes, revisions, bounds -------------------------------------------------------------


def _fnv1a32(data: bytes) -> int:
    value = 0x811C9DC5
    for byte in data:
        value = ((value ^ byte) * 0x01000193) & 0xFFFFFFFF
    return value


def _template_without_hash(template: Mapping[str, Any]) -> Body:
    out = copy.deepcopy(dict(template))
    labels = (out.get("metadata") or {}).get("labels")
    if isinstance(labels, dict):
        labels.pop(LABEL_HASH, None)
    return out


def template_hash(template: Mapping[str, Any], collision_count: int | None = None) -> str:
    """The ``pod-template-hash`` of a template: FNV-1a of its canonical JSON (and the collision
    count), spelled in Kubernetes' vowel-free alphabet."""
    text = json.dumps(_template_without_hash(template), sort_keys=True, separators=(",", ":"))
    if collision_count:
        text += f"#{collision_count}"
    digits = str(_fnv1a32(text.encode()))
    return "".join(_ALPHABET[ord(c) % len(_ALPHABET)] for c in digits)


def templates_equal(rs_template: Mapping[str, Any], template: Mapping[str, Any]) -> bool:
    """Whether a ReplicaSet's template is the Deployment's (ignoring ``pod-template-hash``)."""
    return _template_without_hash(rs_template) == _template_without_hash(template)


def revision_of(body: Mapping[str, Any]) -> int:
    try:
        return int((meta(body).get("annotations") or {}).get(ANNOTATION_REVISION, 0))
    except (TypeError, ValueError):
        return 0


def _scaled(value: int | str, total: int, *, round_up: bool) -> int:
    if isinstance(value, int):
        return value
    text = str(value).strip()
    if text.endswith("%"):
        exact = int(text[:-1]) * total / 100
        return math.ceil(exact) if round_up else math.floor(exact)
    return int(text)


def resolve_bounds(deployment: Mapping[str, Any]) -> tuple[int, int]:
    """``(maxSurge, maxUnavailable)`` as pod counts (Kubernetes' ``ResolveFenceposts``)."""
    spec = deployment.get("spec") or {}
    replicas = int(spec.get("replicas", 1))
    strategy = spec.get("strategy") or {}
    if strategy.get("type") == "Recreate":
        return 0, 0
    rolling = strategy.get("rollingUpdate") or {}
    surge = _scaled(rolling.get("maxSurge", "25%"), replicas, round_up=True)
    unavailable = _scaled(rolling.get("maxUnavailable", "25%"), replicas, round_up=False)
    if surge == 0 and unavailable == 0:
        unavailable = 1  # a rollout must be able to move
    return surge, unavailable


# -- ReplicaSet arithmetic -----------------------------------------------------------------


def _spec_replicas(rs: Mapping[str, Any]) -> int:
    return int((rs.get("spec") or {}).get("replicas", 1))


def _status(rs: Mapping[str, Any], field_: str) -> int:
    return int((rs.get("status") or {}).get(field_) or 0)


def _creation(rs: Mapping[str, Any]) -> tuple[str, str]:
    return (str(meta(rs).get("creationTimestamp") or ""), name_of(rs))


def _scale(rs: Mapping[str, Any], replicas: int, deployment: Mapping[str, Any]) -> Body:
    out = copy.deepcopy(dict(rs))
    out.setdefault("spec", {})["replicas"] = replicas
    _annotate(out, deployment)
    return out


def _annotate(rs: Body, deployment: Mapping[str, Any]) -> None:
    surge, _ = resolve_bounds(deployment)
    replicas = int((deployment.get("spec") or {}).get("replicas", 1))
    annotations = rs.setdefault("metadata", {}).setdefault("annotations", {})
    annotations[ANNOTATION_DESIRED] = str(replicas)
    annotations[ANNOTATION_MAX] = str(replicas + surge)


def _new_replicaset(
    deployment: Mapping[str, Any], name: str, pod_hash: str, replicas: int, revision: int
) -> Body:
    spec = deployment.get("spec") or {}
    template = copy.deepcopy(spec.get("template") or {})
    template_meta = template.setdefault("metadata", {})
    template_meta["labels"] = {**(template_meta.get("labels") or {}), LABEL_HASH: pod_hash}
    selector = copy.deepcopy(spec.get("selector") or {})
    selector["matchLabels"] = {**(selector.get("matchLabels") or {}), LABEL_HASH: pod_hash}
    annotations = {ANNOTATION_REVISION: str(revision)}
    cause = (meta(deployment).get("annotations") or {}).get(ANNOTATION_CHANGE_CAUSE)
    if cause:
        annotations[ANNOTATION_CHANGE_CAUSE] = cause
    rs: Body = {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {
            "name": name,
            "namespace": namespace_of(deployment),
            "labels": dict(template_meta["labels"]),
            "annotations": annotations,
            "ownerReferences": [owner_reference(deployment)],
        },
        "spec": {
            "replicas": replicas,
            "minReadySeconds": int(spec.get("minReadySeconds") or 0),
            "selector": selector,
            "template": template,
        },
    }
    _annotate(rs, deployment)
    return rs


@dataclass(slots=True)
class _Round:
    """The ReplicaSets as this round leaves them (scaled in memory), and what changed."""

    deployment: Mapping[str, Any]
    new: Body | None
    old: list[Body]
    changed: dict[str, Body] = field(default_factory=dict)
    events: list[tuple[str, str]] = field(default_factory=list)

    @property
    def everything(self) -> list[Body]:
        return [*([self.new] if self.new is not None else []), *self.old]

    def scale(self, rs: Body, replicas: int) -> Body:
        before = _spec_replicas(rs)
        scaled = _scale(rs, replicas, self.deployment)
        self.changed[name_of(rs)] = scaled
        if before != replicas:
            direction = "up" if replicas > before else "down"
            self.events.append(
                (
                    "ScalingReplicaSet",
                    f"Scaled {direction} replica set {name_of(rs)} from {before} to {replicas}",
                )
            )
        if self.new is not None and name_of(self.new) == name_of(rs):
            self.new = scaled
        else:
            self.old = [scaled if name_of(o) == name_of(rs) else o for o in self.old]
        return scaled


def _rolling(state: _Round, replicas: int, surge: int, unavailable: int) -> None:
    new = state.new
    assert new is not None
    # 1. The new ReplicaSet up (or down to the desired count).
    new_replicas = _spec_replicas(new)
    if new_replicas > replicas:
        state.scale(new, replicas)
        return
    if new_replicas < replicas:
        current = sum(_spec_replicas(rs) for rs in state.everything)
        room = replicas + surge - current
        if room > 0:
            state.scale(new, new_replicas + min(room, replicas - new_replicas))
            return
    # 2. Old ReplicaSets down, within the availability budget.
    old = [rs for rs in state.old if _spec_replicas(rs) > 0]
    if not old:
        return
    all_pods = sum(_spec_replicas(rs) for rs in state.everything)
    min_available = replicas - unavailable
    new_unavailable = _spec_replicas(new) - _status(new, "availableReplicas")
    budget = all_pods - min_available - new_unavailable
    if budget <= 0:
        return
    # 2a. Unhealthy pods of old sets cost no availability: those go first.
    for rs in sorted(old, key=_creation):
        if budget <= 0:
            break
        unhealthy = _spec_replicas(rs) - _status(rs, "availableReplicas")
        if unhealthy <= 0:
            continue
        down = min(budget, unhealthy)
        budget -= down
        state.scale(rs, _spec_replicas(rs) - down)
    # 2b. Then available ones, oldest sets first, keeping minAvailable.
    available = sum(_status(rs, "availableReplicas") for rs in state.everything)
    # Pods just scaled away in 2a were unavailable: they do not change ``available``.
    total = min(available - min_available, budget)
    for rs in sorted((r for r in state.old if _spec_replicas(r) > 0), key=_creation):
        if total <= 0:
            break
        down = min(_spec_replicas(rs), total)
        total -= down
        state.scale(rs, _spec_replicas(rs) - down)


def _recreate(state: _Round, replicas: int) -> bool:
    """Scale old sets to 0, then the new one up; True when the new set must still wait."""
    scaled_down = False
    for rs in state.old:
        if _spec_replicas(rs) > 0:
            state.scale(rs, 0)
            scaled_down = True
    if scaled_down:
        return True
    # Old pods must be gone before new ones start (their status must have caught up).
    running = any(
        _status(rs, "replicas") > 0
        or int((rs.get("status") or {}).get("observedGeneration") or 0)
        < int(meta(rs).get("generation") or 1)
        for rs in state.old
    )
    if running:
        return True
    if state.new is not None and _spec_replicas(state.new) != replicas:
        state.scale(state.new, replicas)
    return False


# -- conditions and status -----------------------------------------------------------------


def _condition(conditions: Sequence[Mapping[str, Any]], kind: str) -> Mapping[str, Any] | None:
    return next((c for c in conditions if c.get("type") == kind), None)


def _set_condition(
    conditions: list[Body],
    kind: str,
    status: str,
    reason: str,
    message: str,
    now: str,
    *,
    touch: bool = True,
) -> None:
    """Set a condition; ``lastTransitionTime`` moves only when the status flips, and
    ``lastUpdateTime`` when ``touch`` (progress) or anything changed."""
    old = _condition(conditions, kind)
    if (
        old is not None
        and (old.get("status"), old.get("reason"), old.get("message"))
        == (
            status,
            reason,
            message,
        )
        and not touch
    ):
        return
    new: Body = {
        "type": kind,
        "status": status,
        "lastUpdateTime": now,
        "lastTransitionTime": now,
        "reason": reason,
        "message": message,
    }
    if old is not None and old.get("status") == status:
        new["lastTransitionTime"] = old.get("lastTransitionTime", now)
    conditions[:] = [c for c in conditions if c.get("type") != kind] + [new]


def _status_of(
    deployment: Mapping[str, Any],
    state: _Round,
    now: dt.datetime,
    created_new: bool,
) -> tuple[Body, float | None]:
    spec = deployment.get("spec") or {}
    replicas = int(spec.get("replicas", 1))
    _, unavailable_budget = resolve_bounds(deployment)
    old_status = deployment.get("status") or {}
    everything = state.everything
    available = sum(_status(rs, "availableReplicas") for rs in everything)
    status: Body = {
        "observedGeneration": int(meta(deployment).get("generation") or 1),
        "replicas": sum(_status(rs, "replicas") for rs in everything),
        "updatedReplicas": _status(state.new, "replicas") if state.new is not None else 0,
        "readyReplicas": sum(_status(rs, "readyReplicas") for rs in everything),
        "availableReplicas": available,
        "unavailableReplicas": max(sum(_spec_replicas(rs) for rs in everything) - available, 0),
    }
    if old_status.get("collisionCount") is not None:
        status["collisionCount"] = old_status["collisionCount"]
    conditions: list[Body] = [dict(c) for c in old_status.get("conditions") or ()]
    stamp = format_time(now)
    if available >= replicas - unavailable_budget:
        _set_condition(
            conditions,
            "Available",
            "True",
            "MinimumReplicasAvailable",
            "Deployment has minimum availability.",
            stamp,
            touch=False,
        )
    else:
        _set_condition(
            conditions,
            "Available",
            "False",
            "MinimumReplicasUnavailable",
            "Deployment does not have minimum availability.",
            stamp,
            touch=False,
        )

    requeue: float | None = None
    new_name = name_of(state.new) if state.new is not None else ""
    complete = (
        state.new is not None
        and status["updatedReplicas"] == replicas
        and status["replicas"] == replicas
        and status["availableReplicas"] == replicas
        and _spec_replicas(state.new) == replicas
        and all(_spec_replicas(rs) == 0 for rs in state.old)
    )
    progressing = _condition(conditions, "Progressing")
    deadline = int(spec.get("progressDeadlineSeconds") or 600)
    if created_new:
        _set_condition(
            conditions,
            "Progressing",
            "True",
            "NewReplicaSetCreated",
            f'Created new replica set "{new_name}"',
            stamp,
        )
    elif complete:
        _set_condition(
            conditions,
            "Progressing",
            "True",
            "NewReplicaSetAvailable",
            f'ReplicaSet "{new_name}" has successfully progressed.',
            stamp,
            touch=False,
        )
    elif _made_progress(old_status, status) or progressing is None:
        _set_condition(
            conditions,
            "Progressing",
            "True",
            "ReplicaSetUpdated",
            f'ReplicaSet "{new_name}" is progressing.',
            stamp,
        )
        requeue = float(deadline)
    elif progressing.get("reason") != "ProgressDeadlineExceeded":
        last = parse_time(progressing.get("lastUpdateTime")) or now
        left = (last + dt.timedelta(seconds=deadline) - now).total_seconds()
        if left <= 0:
            _set_condition(
                conditions,
                "Progressing",
                "False",
                "ProgressDeadlineExceeded",
                f'ReplicaSet "{new_name}" has timed out progressing.',
                stamp,
            )
        else:
            requeue = left + 0.5
    status["conditions"] = conditions
    return status, requeue


def _made_progress(old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    """Kubernetes' ``DeploymentProgressing``: more updated, ready or available pods, or fewer
    old ones, than the last status said."""
    old_old = int(old.get("replicas") or 0) - int(old.get("updatedReplicas") or 0)
    new_old = int(new.get("replicas") or 0) - int(new.get("updatedReplicas") or 0)
    return (
        int(new.get("updatedReplicas") or 0) > int(old.get("updatedReplicas") or 0)
        or new_old < old_old
        or int(new.get("readyReplicas") or 0) > int(old.get("readyReplicas") or 0)
        or int(new.get("availableReplicas") or 0) > int(old.get("availableReplicas") or 0)
    )


def _same(old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    def normal(status: Mapping[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in status.items() if v not in (None, 0, [])}

    return normal(old) == normal(new)


# -- the round -----------------------------------------------------------------------------


def plan_deployment(
    deployment: Mapping[str, Any],
    replica_sets: Sequence[Mapping[str, Any]],
    now: dt.datetime,
    *,
    taken_names: Mapping[str, Mapping[str, Any]] | None = None,
) -> DeploymentPlan:
    """One round of the Deployment controller over its own ReplicaSets (see the module docstring).

    ``taken_names`` maps the names of every ReplicaSet in the namespace to it, to detect a hash
    collision with a ReplicaSet that is not this Deployment's.
    """
    spec = deployment.get("spec") or {}
    replicas = int(spec.get("replicas", 1))
    template = spec.get("template") or {}
    owned = [copy.deepcopy(dict(rs)) for rs in replica_sets]
    new = next(
        (
            rs
            for rs in sorted(owned, key=_creation)
            if templates_equal((rs.get("spec") or {}).get("template") or {}, template)
        ),
        None,
    )
    old = [rs for rs in owned if rs is not new]
    max_revision = max((revision_of(rs) for rs in old), default=0)
    surge, unavailable = resolve_bounds(deployment)
    recreate = (spec.get("strategy") or {}).get("type") == "Recreate"
    state = _Round(deployment, new, old)
    create: Body | None = None
    annotations: dict[str, str] | None = None
    old_status = deployment.get("status") or {}

    if is_deleting(deployment):
        # The garbage collector removes the ReplicaSets; only report.
        status, _ = _status_of(deployment, state, now, False)
        return DeploymentPlan(status=None if _same(old_status, status) else status)

    if new is not None and revision_of(new) <= max_revision:
        # A rollback (or an old template again): its ReplicaSet becomes the newest revision.
        bumped = copy.deepcopy(new)
        bumped["metadata"].setdefault("annotations", {})[ANNOTATION_REVISION] = str(
            max_revision + 1
        )
        state.new = bumped
        state.changed[name_of(new)] = bumped
    if new is None:
        collisions = int(old_status.get("collisionCount") or 0)
        pod_hash = template_hash(template, collisions)
        name = f"{name_of(deployment)}-{pod_hash}"
        clash = (taken_names or {}).get(name)
        if clash is not None and not templates_equal(
            (clash.get("spec") or {}).get("template") or {}, template
        ):
            # Another template has this name: count the collision; the next hash differs.
            status = {**copy.deepcopy(dict(old_status)), "collisionCount": collisions + 1}
            return DeploymentPlan(status=status, requeue_after=0.0)
        if recreate:
            initial = 0
        else:
            current = sum(_spec_replicas(rs) for rs in old)
            initial = max(0, min(replicas + surge - current, replicas))
        create = _new_replicaset(deployment, name, pod_hash, initial, max_revision + 1)
        state.new = create
        if initial:
            state.events.append(
                ("ScalingReplicaSet", f"Scaled up replica set {name} from 0 to {initial}")
            )
    else:
        # Keep the new set's annotations current (desired and max replicas follow the spec).
        annotated = copy.deepcopy(state.new) if state.new is not None else None
        if annotated is not None:
            _annotate(annotated, deployment)
            if annotated["metadata"].get("annotations") != (
                (state.new or {}).get("metadata") or {}
            ).get("annotations"):
                state.changed[name_of(annotated)] = annotated
                state.new = annotated

    assert state.new is not None
    if create is None:
        if recreate:
            _recreate(state, replicas)
        else:
            _rolling(state, replicas, surge, unavailable)

    revision = str(revision_of(state.new))
    current_annotations = dict(meta(deployment).get("annotations") or {})
    if current_annotations.get(ANNOTATION_REVISION) != revision:
        annotations = {**current_annotations, ANNOTATION_REVISION: revision}

    status, requeue = _status_of(deployment, state, now, create is not None)
    delete: tuple[str, ...] = ()
    reason = _condition(status["conditions"], "Progressing")
    if reason is not None and reason.get("reason") == "NewReplicaSetAvailable":
        delete = _history_to_delete(state.old, int(spec.get("revisionHistoryLimit", 10)))
    return DeploymentPlan(
        create=create,
        update=tuple(
            rs for name, rs in state.changed.items() if create is None or name != name_of(create)
        ),
        delete=delete,
        annotations=annotations,
        status=None if _same(old_status, status) else status,
        events=tuple(state.events),
        requeue_after=requeue,
    )


def _history_to_delete(old: Sequence[Mapping[str, Any]], limit: int) -> tuple[str, ...]:
    idle = [
        rs
        for rs in old
        if _spec_replicas(rs) == 0 and _status(rs, "replicas") == 0 and not is_deleting(rs)
    ]
    surplus = len(idle) - limit
    if surplus <= 0:
        return ()
    idle.sort(key=lambda rs: (revision_of(rs), _creation(rs)))
    return tuple(name_of(rs) for rs in idle[:surplus])
