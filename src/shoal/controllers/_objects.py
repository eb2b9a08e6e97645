"""Small pure helpers over API objects (plain dicts): owners, selectors, pod state, times.

Controllers read objects as the API serves them; these helpers answer the questions every
controller asks of them the way Kubernetes answers them (``metav1.GetControllerOf``,
``podutil.IsPodReady``/``IsPodAvailable``, ``controller.FilterActivePods``).
"""

from __future__ import annotations

import copy
import datetime as dt
from collections.abc import Iterable, Mapping
from typing import Any

from shoal.client import ResourceRef
from shoal.model.meta import LabelSelector

Body = dict[str, Any]

POD = ResourceRef("v1", "Pod")
SERVICE = ResourceRef("v1", "Service")
CONFIG_MAP = ResourceRef("v1", "ConfigMap")
REPLICA_SET = ResourceRef("apps/v1", "ReplicaSet")
DEPLOYMENT = ResourceRef("apps/v1", "Deployment")
ENDPOINT_SLICE = ResourceRef("discovery.k8s.io/v1", "EndpointSlice")
REPLICATED_SERVICE = ResourceRef("patterns.shoal.dev/v1", "ReplicatedService")
SHARDED_SERVICE = ResourceRef("patterns.shoal.dev/v1", "ShardedService")


def in_namespace(ref: ResourceRef, namespace: str | None) -> ResourceRef:
    return ResourceRef(ref.api_version, ref.kind, namespace)


def meta(body: Mapping[str, Any]) -> Mapping[str, Any]:
    value = body.get("metadata")
    return value if isinstance(value, Mapping) else {}


def name_of(body: Mapping[str, Any]) -> str:
    return str(meta(body).get("name", ""))


def namespace_of(body: Mapping[str, Any]) -> str:
    return str(meta(body).get("namespace") or "default")


def uid_of(body: Mapping[str, Any]) -> str:
    return str(meta(body).get("uid", ""))


def labels_of(body: Mapping[str, Any]) -> dict[str, str]:
    return dict(meta(body).get("labels") or {})


def split_key(key: str) -> tuple[str, str]:
    namespace, _, name = key.rpartition("/")
    return namespace or "default", name


def controller_ref(body: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The owner reference with ``controller: true`` (at most one exists)."""
    for ref in meta(body).get("ownerReferences") or ():
        if ref.get("controller"):
            return ref  # type: ignore[no-any-return]
    return None


def owned_by(body: Mapping[str, Any], owner: Mapping[str, Any]) -> bool:
    ref = controller_ref(body)
    return ref is not None and ref.get("uid") == uid_of(owner)


def owner_reference(owner: Mapping[str, Any]) -> Body:
    """A controller reference to ``owner``, as the workload controllers set it."""
    return {
        "apiVersion": owner.get("apiVersion"),
        "kind": owner.get("kind"),
        "name": name_of(owner),
        "uid": uid_of(owner),
        "controller": True,
        "blockOwnerDeletion": True,
    }


def with_owner(body: Mapping[str, Any], owner: Mapping[str, Any]) -> Body:
    """``body`` adopted by ``owner`` (a copy)."""
    out = copy.deepcopy(dict(body))
    refs = [r for r in out["metadata"].get("ownerReferences") or () if not r.get("controller")]
    out["metadata"]["ownerReferences"] = [*refs, owner_reference(owner)]
    return out


def without_owner(body: Mapping[str, Any], owner: Mapping[str, Any]) -> Body:
    """``body`` released by ``owner`` (a copy)."""
    out = copy.deepcopy(dict(body))
    refs = [
        r for r in out["metadata"].get("ownerReferences") or () if r.get("uid") != uid_of(owner)
    ]
    if refs:
        out["metadata"]["ownerReferences"] = refs
    else:
        out["metadata"].pop("ownerReferences", None)
    return out


def selector_of(body: Mapping[str, Any]) -> LabelSelector:
    """``spec.selector`` of a workload (a LabelSelector); an invalid one selects nothing."""
    raw = (body.get("spec") or {}).get("selector") or {}
    try:
        selector = LabelSelector.model_validate(raw)
    except ValueError:
        return LabelSelector(match_labels={"shoal.dev/invalid-selector": "\0"})
    return selector


def is_deleting(body: Mapping[str, Any]) -> bool:
    return bool(meta(body).get("deletionTimestamp"))


def parse_time(text: Any) -> dt.datetime | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def format_time(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- pods ----------------------------------------------------------------------------------


def pod_condition(pod: Mapping[str, Any], kind: str) -> Mapping[str, Any] | None:
    for condition in (pod.get("status") or {}).get("conditions") or ():
        if condition.get("type") == kind:
            return condition  # type: ignore[no-any-return]
    return None


def pod_ready(pod: Mapping[str, Any]) -> bool:
    condition = pod_condition(pod, "Ready")
    return condition is not None and condition.get("status") == "True"


def is_active(pod: Mapping[str, Any]) -> bool:
    """Counts towards a ReplicaSet's replicas: not finished and not being deleted."""
    phase = (pod.get("status") or {}).get("phase")
    return phase not in ("Succeeded", "Failed") and not is_deleting(pod)


def available_in(pod: Mapping[str, Any], min_ready_seconds: int, now: dt.datetime) -> float | None:
    """Seconds until ``pod`` is available (0: it is; None: it is not ready, so not soon)."""
    condition = pod_condition(pod, "Ready")
    if condition is None or condition.get("status") != "True":
        return None
    if min_ready_seconds <= 0:
        return 0.0
    since = parse_time(condition.get("lastTransitionTime"))
    if since is None:
        return None
    remaining = (since + dt.timedelta(seconds=min_ready_seconds) - now).total_seconds()
    return max(remaining, 0.0)


def restarts(pod: Mapping[str, Any]) -> int:
    return sum(
        int(s.get("restartCount") or 0)
        for s in (pod.get("status") or {}).get("containerStatuses") or ()
    )


def in_ns(objects: Iterable[Mapping[str, Any]], namespace: str) -> list[Body]:
    return [dict(o) for o in objects if namespace_of(o) == namespace]


def claim(
    owner: Mapping[str, Any], candidates: Iterable[Mapping[str, Any]]
) -> tuple[list[Body], list[Body], list[Body]]:
    """``(owned, adopt, release)`` among ``candidates`` for a workload ``owner``, as Kubernetes'
    ``ControllerRefManager`` decides: owned and matching are kept, owned and no longer matching
    are released, matching orphans are adopted (unless either side is being deleted)."""
    selector = selector_of(owner)
    owned: list[Body] = []
    adopt: list[Body] = []
    release: list[Body] = []
    for item in candidates:
        matches = selector.matches(labels_of(item))
        if owned_by(item, owner):
            (owned if matches else release).append(dict(item))
        elif (
            controller_ref(item) is None
            and matches
            and not is_deleting(owner)
            and not is_deleting(item)
        ):
            adopt.append(dict(item))
    return owned, adopt, release
