"""The ReplicaSet controller: keeps ``spec.replicas`` pods of the template, and reports them.

Theory of operation
-------------------
:func:`plan_replicaset` is the pure core. Given a ReplicaSet, the pods of its namespace and the
time, it decides, as Kubernetes' ReplicaSet controller does:

1. **Ownership.** A pod whose controller reference names this set is *owned* if the selector
   still matches its labels, else it is *released* (the reference removed). A matching pod with
   no controller and not being deleted is *adopted* (a controller reference added), unless the set
   itself is being deleted. Pods of other controllers are never touched.
2. **Replicas.** Active pods (not finished, no ``deletionTimestamp``) are counted; missing ones are
   *created* from the template (``generateName: <set>-``, the template's labels and annotations,
   a controller reference); surplus ones are *deleted*, the least valuable first: pending before
   running, not ready before ready, ready for less time before longer, more restarts before
   fewer, newer before older (``controller.ActivePods``' order).
3. **Status.** ``replicas`` (active pods), ``fullyLabeledReplicas``, ``readyReplicas``,
   ``availableReplicas`` (ready for ``minReadySeconds``) and ``observedGeneration``, computed from
   the pods before this round's changes; when a pod becomes available only later, the plan asks to
   be run again then (``requeue_after``).

:class:`ReplicaSetController` drives it: it reads the caches, and, as client-go's controllers do
with *expectations*, creates or deletes nothing more while pods it created or deleted have not
shown up (or gone) in the pod cache, so a stale cache never doubles a scale-up.
"""

from __future__ import annotations

import asyncio
import copy
import datetime as dt
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from shoal.client import APINotFound, ResourceRef, Result
from shoal.controllers._objects import (
    POD,
    REPLICA_SET,
    Body,
    available_in,
    controller_ref,
    in_namespace,
    is_active,
    is_deleting,
    labels_of,
    meta,
    name_of,
    namespace_of,
    owned_by,
    owner_reference,
    parse_time,
    pod_ready,
    restarts,
    selector_of,
    split_key,
    with_owner,
    without_owner,
)
from shoal.controllers._runtime import Context

__all__ = ["ReplicaSetController", "ReplicaSetPlan", "plan_replicaset", "pod_from_template"]

log = logging.getLogger("shoal.controllers.replicaset")

BURST = 500
"""At most this many pods are created or deleted per round (Kubernetes' burstReplicas)."""


@dataclass(frozen=True, slots=True)
class ReplicaSetPlan:
    """What one round of the ReplicaSet controller does."""

    adopt: tuple[str, ...] = ()
    """Pods to take a controller reference to."""
    release: tuple[str, ...] = ()
    """Owned pods the selector no longer matches: their reference is removed."""
    create: int = 0
    """Pods to create from the template."""
    delete: tuple[str, ...] = ()
    """Surplus pods, in the order to delete them."""
    status: Mapping[str, Any] | None = None
    """The new ``status``; None when it is unchanged."""
    requeue_after: float | None = None
    """Run again after this many seconds (a pod becomes available then)."""


def _deletion_rank(pod: Mapping[str, Any]) -> tuple[Any, ...]:
    """Sort key: the pod to delete first sorts first (Kubernetes' ``ActivePods`` order)."""
    phase = (pod.get("status") or {}).get("phase")
    phase_rank = {"Pending": 0, "Unknown": 1, "Running": 2}.get(str(phase), 0)
    ready = pod_ready(pod)
    since = None
    if ready:
        condition = next(
            c for c in pod["status"]["conditions"] if c.get("type") == "Ready"
        )  # pod_ready found it
        since = parse_time(condition.get("lastTransitionTime"))
    created = parse_time(meta(pod).get("creationTimestamp"))
    epoch = dt.datetime.min.replace(tzinfo=dt.UTC)
    return (
        phase_rank,
        ready,
        # Ready for less time first: a later "since" sorts first.
        -(since or epoch).timestamp() if ready else 0.0,
        -restarts(pod),
        -(created or epoch).timestamp(),
        name_of(pod),
    )


def pod_from_template(owner: Mapping[str, Any]) -> Body:
    """A new pod of ``owner``'s template (the server completes its name)."""
    template = (owner.get("spec") or {}).get("template") or {}
    template_meta = template.get("metadata") or {}
    metadata: Body = {
        "generateName": f"{name_of(owner)}-",
        "namespace": namespace_of(owner),
        "ownerReferences": [owner_reference(owner)],
    }
    if template_meta.get("labels"):
        metadata["labels"] = dict(template_meta["labels"])
    if template_meta.get("annotations"):
        metadata["annotations"] = dict(template_meta["annotations"])
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": metadata,
        "spec": copy.deepcopy(template.get("spec") or {}),
    }


def plan_replicaset(
    rs: Mapping[str, Any], pods: Iterable[Mapping[str, Any]], now: dt.datetime
) -> ReplicaSetPlan:
    """One round of the ReplicaSet controller (see the module docstring)."""
    spec = rs.get("spec") or {}
    selector = selector_of(rs)
    deleting = is_deleting(rs)
    owned: list[Mapping[str, Any]] = []
    adopt: list[str] = []
    release: list[str] = []
    for pod in pods:
        labels = labels_of(pod)
        if owned_by(pod, rs):
            if selector.matches(labels):
                owned.append(pod)
            else:
                release.append(name_of(pod))
        elif (
            controller_ref(pod) is None
            and selector.matches(labels)
            and not deleting
            and not is_deleting(pod)
        ):
            adopt.append(name_of(pod))
            owned.append(pod)

    active = [pod for pod in owned if is_active(pod)]
    wanted = 0 if deleting else int(spec.get("replicas", 1))
    create = 0
    delete: tuple[str, ...] = ()
    if len(active) < wanted:
        create = min(wanted - len(active), BURST)
    elif len(active) > wanted:
        surplus = sorted(active, key=_deletion_rank)[: min(len(active) - wanted, BURST)]
        delete = tuple(name_of(pod) for pod in surplus)

    min_ready = int(spec.get("minReadySeconds") or 0)
    template_labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
    ready = available = 0
    soonest: float | None = None
    for pod in active:
        if pod_ready(pod):
            ready += 1
        remaining = available_in(pod, min_ready, now)
        if remaining == 0:
            available += 1
        elif remaining is not None:
            # Pods are counted to the second; look again just after this one qualifies.
            wait = remaining + 0.5
            soonest = wait if soonest is None else min(soonest, wait)
    old_status = rs.get("status") or {}
    status: Body = {
        **{k: v for k, v in old_status.items() if k == "conditions"},
        "replicas": len(active),
        "fullyLabeledReplicas": sum(
            1
            for pod in active
            if all(labels_of(pod).get(k) == v for k, v in template_labels.items())
        ),
        "readyReplicas": ready,
        "availableReplicas": available,
        "observedGeneration": meta(rs).get("generation", 1),
    }
    return ReplicaSetPlan(
        adopt=tuple(adopt),
        release=tuple(release),
        create=create,
        delete=delete,
        status=None if _same_status(old_status, status) else status,
        requeue_after=soonest,
    )


def _same_status(old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    def normal(status: Mapping[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in status.items() if v not in (None, 0) or k == "replicas"}

    return normal(old) == normal(new)


class ReplicaSetController:
    """Runs :func:`plan_replicaset` for a key and carries it out through the API."""

    name = "replicaset"

    def __init__(self, context: Context) -> None:
        self.context = context

    async def reconcile(self, key: str) -> Result | None:
        context = self.context
        rs = context.caches.get(REPLICA_SET, key)
        if rs is None:
            context.expectations.forget(f"rs:{key}")
            return None
        namespace, _ = split_key(key)
        pods = context.caches.list(POD, namespace)
        plan = plan_replicaset(rs, pods, context.now())
        pod_api = in_namespace(POD, namespace)
        for name in plan.adopt:
            await self._update_owner(pod_api, name, rs, adopt=True)
        for name in plan.release:
            await self._update_owner(pod_api, name, rs, adopt=False)
        expectation = f"rs:{key}"
        cached = context.caches.lookup(POD, namespace)
        if context.expectations.satisfied(expectation, cached):
            if plan.create:
                await self._create(rs, plan.create, expectation)
            if plan.delete:
                await self._delete(rs, plan.delete, expectation)
        if plan.status is not None:
            body = {**rs, "status": dict(plan.status)}
            try:
                await context.api.update_status(in_namespace(REPLICA_SET, namespace), body)
            except APINotFound:
                return None
        if plan.requeue_after is not None:
            return Result(requeue_after=plan.requeue_after)
        return None

    async def _update_owner(
        self, ref: ResourceRef, name: str, rs: Mapping[str, Any], *, adopt: bool
    ) -> None:
        try:
            pod = await self.context.api.get(ref, name)
        except APINotFound:
            return
        if adopt:
            if controller_ref(pod) is not None or is_deleting(pod):
                return  # somebody else adopted it meanwhile
            pod = with_owner(pod, rs)
        else:
            if not owned_by(pod, rs):
                return
            pod = without_owner(pod, rs)
        try:
            await self.context.api.update(ref, pod)
        except APINotFound:
            return

    async def _create(self, rs: Mapping[str, Any], count: int, expectation: str) -> None:
        context = self.context
        namespace = namespace_of(rs)
        ref = in_namespace(POD, namespace)
        created: list[str] = []

        async def create_one() -> str:
            return name_of(await context.api.create(ref, pod_from_template(rs)))

        try:
            # Kubernetes' slow-start batches (1, 2, 4, ...): 50 pods take 6 round trips, not 50,
            # and a create that fails (a quota, a bad template) stops the rest after one try.
            remaining, batch = count, 1
            while remaining > 0:
                size = min(batch, remaining)
                results = await asyncio.gather(
                    *(create_one() for _ in range(size)), return_exceptions=True
                )
                errors = [r for r in results if isinstance(r, BaseException)]
                created.extend(r for r in results if isinstance(r, str))
                if errors:
                    raise errors[0]
                remaining -= size
                batch *= 2
        finally:
            context.expectations.expect(expectation, created=created)
            if created:
                await context.recorder.record(
                    rs,
                    "Normal",
                    "SuccessfulCreate",
                    f"Created pod: {created[0]}"
                    if len(created) == 1
                    else f"Created {len(created)} pods: {', '.join(created)}",
                )

    async def _delete(self, rs: Mapping[str, Any], names: Iterable[str], expectation: str) -> None:
        context = self.context
        ref = in_namespace(POD, namespace_of(rs))
        deleted: list[str] = []
        try:
            for name in names:
                try:
                    await context.api.delete(ref, name)
                except APINotFound:
                    continue
                deleted.append(name)
        finally:
            context.expectations.expect(expectation, deleted=deleted)
            for name in deleted:
                await context.recorder.record(
                    rs, "Normal", "SuccessfulDelete", f"Deleted pod: {name}"
                )
