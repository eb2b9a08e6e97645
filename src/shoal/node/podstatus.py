"""Pod status as Kubernetes reports it, computed from what the node knows of each container.

Pure: :func:`pod_status` takes the containers' records and returns the ``status`` object
(``phase``, ``conditions``, ``containerStatuses``, ``podIP``...), following the kubelet's
``getPhase`` and ``generateAPIPodStatus``:

* a container that never started and has no previous termination is *waiting*; a waiting
  container with a previous termination (back-off) counts as *stopped*;
* any waiting container: ``Pending``; some running and none unknown: ``Running``; none running
  and some stopped: ``Running`` under ``restartPolicy: Always`` (they restart), ``Succeeded``
  when every stopped one succeeded, ``Failed`` under ``Never``, else ``Running``;
* ``ContainersReady`` is True when every container is ready; ``Ready`` follows it (no readiness
  gates here); a pod that finished is not ready, with reason ``PodCompleted``;
* ``lastTransitionTime`` of a condition changes only when its status flips.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ContainerRecord", "Running", "Terminated", "Waiting", "pod_phase", "pod_status"]


@dataclass(frozen=True, slots=True)
class Waiting:
    reason: str = "ContainerCreating"
    message: str | None = None


@dataclass(frozen=True, slots=True)
class Running:
    started_at: str


@dataclass(frozen=True, slots=True)
class Terminated:
    exit_code: int
    reason: str
    started_at: str | None
    finished_at: str
    signal: int | None = None
    message: str | None = None


State = Waiting | Running | Terminated


@dataclass(slots=True)
class ContainerRecord:
    """What the node knows of one container (the supervisor updates it)."""

    name: str
    image: str = ""
    state: State = field(default_factory=Waiting)
    last_terminated: Terminated | None = None
    restart_count: int = 0
    ready: bool = False
    started: bool = False
    container_id: str | None = None


def _state(state: State) -> dict[str, Any]:
    if isinstance(state, Waiting):
        waiting: dict[str, Any] = {"reason": state.reason}
        if state.message:
            waiting["message"] = state.message
        return {"waiting": waiting}
    if isinstance(state, Running):
        return {"running": {"startedAt": state.started_at}}
    terminated: dict[str, Any] = {
        "exitCode": state.exit_code,
        "reason": state.reason,
        "finishedAt": state.finished_at,
    }
    if state.started_at:
        terminated["startedAt"] = state.started_at
    if state.signal is not None:
        terminated["signal"] = state.signal
    if state.message:
        terminated["message"] = state.message
    return {"terminated": terminated}


def container_status(record: ContainerRecord) -> dict[str, Any]:
    status: dict[str, Any] = {
        "name": record.name,
        "ready": record.ready,
        "restartCount": record.restart_count,
        "state": _state(record.state),
        "lastState": _state(record.last_terminated) if record.last_terminated else {},
        "image": record.image,
        "imageID": "",
        "started": record.started,
    }
    if record.container_id:
        status["containerID"] = record.container_id
    return status


def pod_phase(records: Sequence[ContainerRecord], restart_policy: str) -> str:
    """The phase, as the kubelet's ``getPhase`` computes it (no init containers)."""
    waiting = running = stopped = succeeded = 0
    for record in records:
        state = record.state
        if isinstance(state, Running):
            running += 1
        elif isinstance(state, Terminated):
            stopped += 1
            if state.exit_code == 0:
                succeeded += 1
        elif record.last_terminated is not None:
            stopped += 1
        else:
            waiting += 1
    if waiting > 0:
        return "Pending"
    if running > 0:
        return "Running"
    if stopped > 0:
        if restart_policy == "Always":
            return "Running"
        if stopped == succeeded:
            return "Succeeded"
        if restart_policy == "Never":
            return "Failed"
        return "Running"
    return "Pending"


def _condition(
    type_: str,
    status: bool,
    now: str,
    previous: Mapping[str, Mapping[str, Any]],
    reason: str | None = None,
    message: str | None = None,
) -> dict[str, Any]:
    text = "True" if status else "False"
    before = previous.get(type_)
    since = now
    if before is not None and before.get("status") == text and before.get("lastTransitionTime"):
        since = str(before["lastTransitionTime"])
    condition: dict[str, Any] = {
        "type": type_,
        "status": text,
        "lastTransitionTime": since,
    }
    if reason and not status:
        condition["reason"] = reason
    if message and not status:
        condition["message"] = message
    return condition


def pod_status(
    records: Sequence[ContainerRecord],
    *,
    restart_policy: str,
    pod_ip: str | None,
    host_ip: str,
    start_time: str,
    now: str,
    previous: Mapping[str, Any] | None = None,
    terminating: bool = False,
) -> dict[str, Any]:
    """The pod's ``status``; ``previous`` (the stored status) keeps transition times."""
    conditions_before = {
        str(c.get("type")): c for c in ((previous or {}).get("conditions") or []) if c
    }
    phase = pod_phase(records, restart_policy)
    finished = phase in ("Succeeded", "Failed")
    unready = [r.name for r in records if not (r.ready and not terminating)]
    containers_ready = not unready
    reason: str | None = None
    message: str | None = None
    if finished:
        reason, message = "PodCompleted", None
        containers_ready = False
    elif unready:
        reason = "ContainersNotReady"
        message = f"containers with unready status: [{' '.join(unready)}]"
    conditions = [
        _condition("PodReadyToStartContainers", True, now, conditions_before),
        _condition("Initialized", True, now, conditions_before),
        _condition(
            "Ready",
            containers_ready,
            now,
            conditions_before,
            reason,
            message,
        ),
        _condition(
            "ContainersReady",
            containers_ready,
            now,
            conditions_before,
            reason,
            message,
        ),
        _condition("PodScheduled", True, now, conditions_before),
    ]
    status: dict[str, Any] = {
        "phase": phase,
        "conditions": conditions,
        "hostIP": host_ip,
        "hostIPs": [{"ip": host_ip}],
        "startTime": start_time,
        "containerStatuses": [container_status(r) for r in records],
        "qosClass": "BestEffort",
    }
    if pod_ip:
        status["podIP"] = pod_ip
        status["podIPs"] = [{"ip": pod_ip}]
    return status
