"""The pattern controller: ReplicatedService and ShardedService become their children, and report.

Theory of operation
-------------------
:func:`plan_pattern` is the pure core. It compiles the stored pattern with
:func:`shoal.patterns.compile_pattern` (the same step ``shoal render --target kubernetes`` runs,
so both substrates get the same objects; every child carries a controller reference to the
pattern, so deleting the pattern deletes its children through the garbage collector) and
compares the result with the children that exist:

* a child that does not exist is **created**;
* an owned child whose content differs (``spec``, ``data``, or labels and annotations the
  compile step sets) is **updated**: the compiled content replaces the stored one, while what
  others wrote stays (a Deployment's revision annotation, a Service's ``clusterIP``, status);
* an owned child the compile step no longer produces (a shard removed) is **deleted**;
* an object of the same name that the pattern does not own is left alone and reported.

The pattern's ``status`` comes from its Deployments: ``replicas``/``readyReplicas``/
``updatedReplicas`` (of the app's pods: the shards' for a ShardedService), per shard
``shardStatuses`` and ``readyShards``, the ``url`` of its Service, ``observedGeneration``, and the
condition ``Ready`` (True once every Deployment has rolled out and all its replicas are
available).
"""

from __future__ import annotations

import copy
import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from shoal.client import APINotFound, Result
from shoal.controllers._objects import (
    CONFIG_MAP,
    DEPLOYMENT,
    REPLICATED_SERVICE,
    SERVICE,
    SHARDED_SERVICE,
    Body,
    format_time,
    in_namespace,
    is_deleting,
    labels_of,
    meta,
    name_of,
    owned_by,
    split_key,
)
from shoal.controllers._runtime import Context
from shoal.errors import PermanentError, ShoalError
from shoal.model import ReplicatedService, ShardedService, object_from_dict
from shoal.patterns.compile import LABEL_COMPONENT, compile_pattern

__all__ = ["PATTERN_KINDS", "PatternController", "PatternPlan", "pattern_key", "plan_pattern"]

PATTERN_KINDS = ("ReplicatedService", "ShardedService")
CHILD_KINDS = ("ConfigMap", "Service", "Deployment")
_KEPT_SERVICE_FIELDS = ("clusterIP", "clusterIPs")


def pattern_key(kind: str, key: str) -> str:
    """The work-queue key of a pattern: ``Kind:namespace/name``."""
    return f"{kind}:{key}"


@dataclass(frozen=True, slots=True)
class PatternPlan:
    """What one round of the pattern controller does."""

    create: tuple[Body, ...] = ()
    update: tuple[Body, ...] = ()
    delete: tuple[tuple[str, str], ...] = ()
    """(kind, name) of children no longer produced."""
    status: Mapping[str, Any] | None = None


def _content_keys(body: Mapping[str, Any]) -> list[str]:
    return [k for k in body if k not in ("apiVersion", "kind", "metadata", "status")]


def _differs(current: Mapping[str, Any], wanted: Mapping[str, Any]) -> bool:
    for key in _content_keys(wanted):
        have, want = current.get(key), wanted.get(key)
        if key == "spec" and wanted.get("kind") == "Service" and isinstance(have, dict):
            have = {k: v for k, v in have.items() if k not in _KEPT_SERVICE_FIELDS}
        if have != want:
            return True
    current_meta, wanted_meta = meta(current), meta(wanted)
    for field in ("labels", "annotations"):
        have_map = current_meta.get(field) or {}
        if any(have_map.get(k) != v for k, v in (wanted_meta.get(field) or {}).items()):
            return True
    return False


def _merged(current: Mapping[str, Any], wanted: Mapping[str, Any]) -> Body:
    out = copy.deepcopy(dict(current))
    for key in _content_keys(current):
        if key != "status" and key not in wanted:
            out.pop(key, None)
    for key in _content_keys(wanted):
        out[key] = copy.deepcopy(wanted[key])
    if wanted.get("kind") == "Service":
        for field in _KEPT_SERVICE_FIELDS:
            kept = (current.get("spec") or {}).get(field)
            if kept is not None:
                out["spec"][field] = kept
    metadata = out["metadata"]
    for field in ("labels", "annotations"):
        merged = {**(metadata.get(field) or {}), **(meta(wanted).get(field) or {})}
        if merged:
            metadata[field] = merged
    metadata["ownerReferences"] = copy.deepcopy(meta(wanted).get("ownerReferences") or [])
    return out


def _complete(deployment: Mapping[str, Any]) -> bool:
    spec, status = deployment.get("spec") or {}, deployment.get("status") or {}
    wanted = int(spec.get("replicas", 1))
    return (
        int(status.get("observedGeneration") or 0) >= int(meta(deployment).get("generation") or 1)
        and int(status.get("updatedReplicas") or 0) == wanted
        and int(status.get("availableReplicas") or 0) == wanted
        and int(status.get("replicas") or 0) == wanted
    )


def _count(deployment: Mapping[str, Any] | None, field: str) -> int:
    return int(((deployment or {}).get("status") or {}).get(field) or 0)


def _status(
    pattern: Mapping[str, Any],
    compiled: Sequence[Mapping[str, Any]],
    children: Mapping[tuple[str, str], Mapping[str, Any]],
    problems: Sequence[str],
    now: dt.datetime,
) -> Body:
    deployments = [
        children.get(("Deployment", name_of(c))) for c in compiled if c["kind"] == "Deployment"
    ]
    components = {
        name_of(c): labels_of(c).get(LABEL_COMPONENT) for c in compiled if c["kind"] == "Deployment"
    }
    app = [
        (name, children.get(("Deployment", name)))
        for name, component in components.items()
        if component in ("server", "shard")
    ]
    status: Body = {
        "observedGeneration": int(meta(pattern).get("generation") or 1),
        "replicas": sum(_count(d, "replicas") for _, d in app),
        "readyReplicas": sum(_count(d, "readyReplicas") for _, d in app),
        "updatedReplicas": sum(_count(d, "updatedReplicas") for _, d in app),
    }
    if pattern.get("kind") == "ShardedService":
        shards = [(name, d) for name, d in app if components[name] == "shard"]
        status["shards"] = len(shards)
        status["readyShards"] = sum(1 for _, d in shards if d is not None and _complete(d))
        status["shardStatuses"] = [
            {
                "name": name,
                "replicas": _count(d, "replicas"),
                "readyReplicas": _count(d, "readyReplicas"),
                "availableReplicas": _count(d, "availableReplicas"),
            }
            for name, d in shards
        ]
    service = children.get(("Service", name_of(pattern)))
    if service is not None:
        spec = service.get("spec") or {}
        ip, ports = spec.get("clusterIP"), spec.get("ports") or []
        if ip and ip != "None" and ports:
            status["url"] = f"http://{ip}:{ports[0].get('port')}"
    waiting = [
        name_of(c)
        for c, d in zip(
            (c for c in compiled if c["kind"] == "Deployment"), deployments, strict=True
        )
        if d is None or not _complete(d)
    ]
    if problems:
        ready = ("False", "ChildConflict", "; ".join(problems))
    elif waiting:
        ready = (
            "False",
            "ReplicasNotReady",
            f"waiting for {', '.join(waiting)}: {status['readyReplicas']} of "
            f"{sum(int((d or {}).get('spec', {}).get('replicas', 1)) for _, d in app)} replicas ready",
        )
    else:
        ready = ("True", "AllReplicasReady", "every replica is ready")
    old = next(
        (
            c
            for c in (pattern.get("status") or {}).get("conditions") or ()
            if c.get("type") == "Ready"
        ),
        None,
    )
    stamp = format_time(now)
    if old is not None and old.get("status") == ready[0]:
        stamp = str(old.get("lastTransitionTime") or stamp)
    status["conditions"] = [
        {
            "type": "Ready",
            "status": ready[0],
            "observedGeneration": status["observedGeneration"],
            "lastTransitionTime": stamp,
            "reason": ready[1],
            "message": ready[2],
        }
    ]
    return status


def plan_pattern(
    pattern: Mapping[str, Any],
    existing: Sequence[Mapping[str, Any]],
    now: dt.datetime,
) -> PatternPlan:
    """One round for ``pattern`` given the ConfigMaps, Services and Deployments of its namespace."""
    try:
        model = object_from_dict(dict(pattern))
    except ShoalError as error:
        raise PermanentError(
            f"{pattern.get('kind')}/{name_of(pattern)} is invalid: {error}"
        ) from None
    assert isinstance(model, ReplicatedService | ShardedService)
    compiled = [obj.to_dict() for obj in compile_pattern(model)]
    by_key = {(str(o.get("kind")), name_of(o)): o for o in existing}
    owned = {key: o for key, o in by_key.items() if owned_by(o, pattern)}
    create: list[Body] = []
    update: list[Body] = []
    problems: list[str] = []
    deleting = is_deleting(pattern)
    for wanted in compiled:
        key = (str(wanted["kind"]), name_of(wanted))
        current = by_key.get(key)
        if deleting:
            continue
        if current is None:
            create.append(wanted)
        elif key not in owned:
            problems.append(
                f"{key[0]} {key[1]} exists and is not owned by this {pattern.get('kind')}"
            )
        elif _differs(current, wanted):
            update.append(_merged(current, wanted))
    produced = {(str(w["kind"]), name_of(w)) for w in compiled}
    delete = tuple(sorted(key for key in owned if key not in produced))
    status = _status(pattern, compiled, owned, problems, now)
    old = pattern.get("status") or {}
    return PatternPlan(
        create=tuple(create),
        update=tuple(update),
        delete=delete,
        status=None if _same_status(old, status) else status,
    )


def _same_status(old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    def normal(status: Mapping[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in status.items() if v not in (None, [], {})}

    return normal(old) == normal(new)


_REFS = {"ConfigMap": CONFIG_MAP, "Service": SERVICE, "Deployment": DEPLOYMENT}


class PatternController:
    """Reconciles one pattern per key (``Kind:namespace/name``)."""

    name = "pattern"

    def __init__(self, context: Context) -> None:
        self.context = context

    async def reconcile(self, key: str) -> Result | None:
        context = self.context
        kind, _, object_key = key.partition(":")
        ref = REPLICATED_SERVICE if kind == "ReplicatedService" else SHARDED_SERVICE
        pattern = context.caches.get(ref, object_key)
        if pattern is None:
            return None  # its children go with it (garbage collection)
        namespace, _ = split_key(object_key)
        existing = [
            child
            for child_kind in CHILD_KINDS
            for child in context.caches.list(_REFS[child_kind], namespace)
        ]
        plan = plan_pattern(pattern, existing, context.now())
        for body in plan.create:
            await context.api.create(in_namespace(_REFS[body["kind"]], namespace), body)
        for body in plan.update:
            await context.api.update(in_namespace(_REFS[body["kind"]], namespace), body)
        for child_kind, name in plan.delete:
            try:
                await context.api.delete(in_namespace(_REFS[child_kind], namespace), name)
            except APINotFound:
                continue
        if plan.status is not None:
            await context.api.update_status(
                in_namespace(ref, namespace), {**pattern, "status": dict(plan.status)}
            )
        return None
