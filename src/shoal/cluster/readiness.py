"""Is an applied object done yet? The rules ``shoal up`` and ``shoal status`` show progress with.

A pure function of the object as the API serves it. The rules follow what Kubernetes tools check:

* Deployment (and ReplicaSet): ``kubectl rollout status``'s rule: the controller has observed the
  latest generation, and every replica is updated and available.
* ReplicatedService / ShardedService: the pattern controller's ``Ready`` condition for the latest
  generation.
* Pod: its ``Ready`` condition; ``Failed``/``Succeeded`` phases end it.
* LoadTest: ``Succeeded`` or ``Failed`` (a load test is done when it has run, not when it starts).
* Service: it has its cluster address (``spec.clusterIP``), or is headless.
* Anything else (ConfigMap, Secret, Namespace, CRDs...) is done once it exists.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

__all__ = ["Progress", "Readiness", "readiness"]


class Progress(StrEnum):
    READY = "ready"
    WAITING = "waiting"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class Readiness:
    """Where an object stands and a short human explanation."""

    progress: Progress
    detail: str
    done: int = 0
    """Units finished (replicas ready, for instance), for a progress bar."""
    total: int = 1


def _condition(obj: Mapping[str, Any], kind: str) -> Mapping[str, Any] | None:
    for condition in (obj.get("status") or {}).get("conditions") or ():
        if isinstance(condition, Mapping) and condition.get("type") == kind:
            return condition
    return None


def _observed(obj: Mapping[str, Any]) -> bool:
    generation = (obj.get("metadata") or {}).get("generation")
    observed = (obj.get("status") or {}).get("observedGeneration")
    return generation is None or (isinstance(observed, int) and observed >= generation)


def _replicas(obj: Mapping[str, Any]) -> Readiness:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    want = spec.get("replicas", 1)
    want = want if isinstance(want, int) else 1
    updated = int(status.get("updatedReplicas") or 0)
    available = int(status.get("availableReplicas") or 0)
    total = int(status.get("replicas") or 0)
    progressing = _condition(obj, "Progressing")
    if progressing and progressing.get("reason") == "ProgressDeadlineExceeded":
        return Readiness(Progress.FAILED, "progress deadline exceeded", available, want)
    if not _observed(obj):
        return Readiness(Progress.WAITING, "waiting for the controller", available, want)
    if obj.get("kind") == "ReplicaSet":
        ready = int(status.get("readyReplicas") or 0)
        if ready >= want and total == want:
            return Readiness(Progress.READY, f"{ready}/{want} ready", ready, want)
        return Readiness(Progress.WAITING, f"{ready}/{want} ready", ready, want)
    if updated < want:
        return Readiness(Progress.WAITING, f"{updated}/{want} updated", available, want)
    if total > updated:
        return Readiness(
            Progress.WAITING, f"{total - updated} old replicas pending termination", available, want
        )
    if available < updated:
        return Readiness(Progress.WAITING, f"{available}/{want} available", available, want)
    return Readiness(Progress.READY, f"{available}/{want} available", available, want)


def _wanted(obj: Mapping[str, Any]) -> int | None:
    """The app replicas a pattern asks for (the router's not counted)."""
    spec = obj.get("spec") or {}
    if obj.get("kind") == "ShardedService":
        shards, per_shard = spec.get("shards", 1), spec.get("replicasPerShard", 1)
        if isinstance(shards, int) and isinstance(per_shard, int):
            return shards * per_shard
        return None
    replicas = spec.get("replicas", 1)
    return replicas if isinstance(replicas, int) else None


def _pattern(obj: Mapping[str, Any]) -> Readiness:
    status = obj.get("status") or {}
    want = _wanted(obj)
    ready = status.get("readyReplicas")
    total = want if want else 1
    done = ready if isinstance(ready, int) else 0
    condition = _condition(obj, "Ready")
    counts = f"{done}/{want} replicas ready" if want is not None else "waiting for the controller"
    if not _observed(obj) or condition is None:
        return Readiness(Progress.WAITING, counts, done, total)
    if condition.get("status") == "True":
        return Readiness(Progress.READY, counts, total, total)
    reason = condition.get("reason") or ""
    message = condition.get("message") or ""
    detail = counts + (f" ({reason}: {message})" if reason or message else "")
    return Readiness(Progress.WAITING, detail, done, total)


def _pod(obj: Mapping[str, Any]) -> Readiness:
    status = obj.get("status") or {}
    phase = status.get("phase") or "Pending"
    if phase == "Succeeded":
        return Readiness(Progress.READY, "Succeeded")
    if phase == "Failed":
        return Readiness(Progress.FAILED, status.get("reason") or "Failed")
    condition = _condition(obj, "Ready")
    if condition and condition.get("status") == "True":
        return Readiness(Progress.READY, "Ready", 1, 1)
    for container in status.get("containerStatuses") or ():
        waiting = (container.get("state") or {}).get("waiting") or {}
        if waiting.get("reason"):
            return Readiness(Progress.WAITING, f"{container.get('name')}: {waiting['reason']}")
    return Readiness(Progress.WAITING, phase)


def _loadtest(obj: Mapping[str, Any]) -> Readiness:
    for kind, progress in (("Succeeded", Progress.READY), ("Failed", Progress.FAILED)):
        condition = _condition(obj, kind)
        if condition and condition.get("status") == "True" and _observed(obj):
            message = condition.get("message") or condition.get("reason") or kind
            return Readiness(progress, str(message))
    running = _condition(obj, "Running")
    if running and running.get("status") == "True":
        return Readiness(Progress.WAITING, "running")
    return Readiness(Progress.WAITING, "waiting to start")


def readiness(obj: Mapping[str, Any]) -> Readiness:
    """Where ``obj`` (as served by the API) stands; see the module docstring for the rules."""
    kind = obj.get("kind")
    if kind in ("Deployment", "ReplicaSet"):
        return _replicas(obj)
    if kind in ("ReplicatedService", "ShardedService"):
        return _pattern(obj)
    if kind == "Pod":
        return _pod(obj)
    if kind == "LoadTest":
        return _loadtest(obj)
    if kind == "Service":
        cluster_ip = (obj.get("spec") or {}).get("clusterIP")
        if cluster_ip:
            return Readiness(Progress.READY, str(cluster_ip))
        return Readiness(Progress.WAITING, "waiting for a cluster address")
    return Readiness(Progress.READY, "created")
