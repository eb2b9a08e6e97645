"""The EndpointSlice controller: every Service with a selector gets slices of its pods' addresses.

Theory of operation
-------------------
:func:`plan_slices` is the pure core. For a Service with a ``selector`` it takes the pods of the
namespace that the selector matches and that have an address (``status.podIP``) and are not
finished, resolves every Service port's ``targetPort`` for each pod (a number as is; a name
through the pod's container ports, the pod left out of that port when none has the name; none
given: the Service port), and groups the pods by the ports they resolve to. Each group becomes
slices of at most ``max_endpoints`` endpoints named ``<service>-<n>``, labelled
``kubernetes.io/service-name`` and owned by the Service. An endpoint's conditions are those of
Kubernetes:

* ``serving``: the pod's ``Ready`` condition is True;
* ``terminating``: the pod has a ``deletionTimestamp``;
* ``ready``: serving and not terminating: a pod being deleted leaves the ready set at once, so
  the service proxy stops sending it new requests while it drains.

The plan lists slices to create, to update (the stored ones whose content differs) and to
delete (ours, no longer needed). A Service without a selector is left alone (its slices are the
user's), and the slices of a deleted Service go with it.
"""

from __future__ import annotations

import copy
import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from shoal.client import APINotFound, Result
from shoal.controllers._objects import (
    ENDPOINT_SLICE,
    POD,
    SERVICE,
    Body,
    in_namespace,
    is_deleting,
    labels_of,
    meta,
    name_of,
    namespace_of,
    owner_reference,
    pod_ready,
    split_key,
    uid_of,
)
from shoal.controllers._runtime import Context

__all__ = [
    "MANAGED_BY",
    "MANAGED_BY_LABEL",
    "SERVICE_NAME_LABEL",
    "EndpointSliceController",
    "SlicePlan",
    "plan_slices",
]

SERVICE_NAME_LABEL = "kubernetes.io/service-name"
MANAGED_BY_LABEL = "endpointslice.kubernetes.io/managed-by"
MANAGED_BY = "endpointslice-controller.shoal.dev"
MAX_ENDPOINTS = 100
"""Endpoints per slice (Kubernetes' default ``--max-endpoints-per-slice``)."""


@dataclass(frozen=True, slots=True)
class SlicePlan:
    create: tuple[Body, ...] = ()
    update: tuple[Body, ...] = ()
    delete: tuple[str, ...] = ()


def _container_port(pod: Mapping[str, Any], name: str, protocol: str) -> int | None:
    for container in (pod.get("spec") or {}).get("containers") or ():
        for port in container.get("ports") or ():
            if port.get("name") == name and port.get("protocol", "TCP") == protocol:
                return int(port["containerPort"])
    return None


def _ports_for(service: Mapping[str, Any], pod: Mapping[str, Any]) -> tuple[Body, ...]:
    out: list[Body] = []
    for port in (service.get("spec") or {}).get("ports") or ():
        protocol = port.get("protocol", "TCP")
        target = port.get("targetPort")
        number: int | None
        if target is None or target == "":
            number = int(port["port"])
        elif isinstance(target, int) or str(target).isdigit():
            number = int(target)
        else:
            number = _container_port(pod, str(target), protocol)
        if number is None:
            continue  # this pod has no port of that name: it serves the others only
        entry: Body = {"name": port.get("name") or "", "port": number, "protocol": protocol}
        if port.get("appProtocol"):
            entry["appProtocol"] = port["appProtocol"]
        out.append(entry)
    return tuple(out)


def _endpoint(pod: Mapping[str, Any]) -> Body:
    serving = pod_ready(pod)
    terminating = is_deleting(pod)
    endpoint: Body = {
        "addresses": [str((pod.get("status") or {})["podIP"])],
        "conditions": {
            "ready": serving and not terminating,
            "serving": serving,
            "terminating": terminating,
        },
        "targetRef": {
            "kind": "Pod",
            "namespace": namespace_of(pod),
            "name": name_of(pod),
            "uid": uid_of(pod),
        },
    }
    node = (pod.get("spec") or {}).get("nodeName")
    if node:
        endpoint["nodeName"] = node
    return endpoint


def _selected(
    service: Mapping[str, Any], pods: Iterable[Mapping[str, Any]]
) -> list[Mapping[str, Any]]:
    selector = (service.get("spec") or {}).get("selector") or {}
    namespace = namespace_of(service)
    out = []
    for pod in pods:
        labels = labels_of(pod)
        status = pod.get("status") or {}
        if (
            namespace_of(pod) == namespace
            and all(labels.get(k) == v for k, v in selector.items())
            and status.get("podIP")
            and status.get("phase") not in ("Succeeded", "Failed")
        ):
            out.append(pod)
    return sorted(out, key=name_of)


def desired_slices(
    service: Mapping[str, Any],
    pods: Iterable[Mapping[str, Any]],
    *,
    max_endpoints: int = MAX_ENDPOINTS,
) -> list[Body]:
    """The slices ``service`` should have (empty for a Service without a selector)."""
    if not (service.get("spec") or {}).get("selector") or is_deleting(service):
        return []
    groups: dict[tuple[tuple[tuple[str, Any], ...], ...], list[Mapping[str, Any]]] = {}
    for pod in _selected(service, pods):
        resolved = _ports_for(service, pod)
        groups.setdefault(tuple(tuple(sorted(p.items())) for p in resolved), []).append(pod)
    if not groups:
        # No endpoints: one empty placeholder slice, as Kubernetes keeps.
        groups[()] = []
    service_name = name_of(service)
    labels = {
        **labels_of(service),
        SERVICE_NAME_LABEL: service_name,
        MANAGED_BY_LABEL: MANAGED_BY,
    }
    slices: list[Body] = []
    for ports_key in sorted(groups, key=repr):
        members = groups[ports_key]
        ports: list[Body] = [dict(p) for p in ports_key]
        chunks = [members[i : i + max_endpoints] for i in range(0, len(members), max_endpoints)]
        for chunk in chunks or [[]]:
            ipv6 = any(
                isinstance(ipaddress.ip_address(str(p["status"]["podIP"])), ipaddress.IPv6Address)
                for p in chunk
            )
            slices.append(
                {
                    "apiVersion": "discovery.k8s.io/v1",
                    "kind": "EndpointSlice",
                    "metadata": {
                        "name": f"{service_name}-{len(slices)}",
                        "namespace": namespace_of(service),
                        "labels": dict(labels),
                        "ownerReferences": [owner_reference(service)],
                    },
                    "addressType": "IPv6" if ipv6 else "IPv4",
                    "endpoints": [_endpoint(pod) for pod in chunk],
                    "ports": ports,
                }
            )
    return slices


def _content(body: Mapping[str, Any]) -> tuple[Any, ...]:
    metadata = meta(body)
    return (
        body.get("addressType"),
        body.get("endpoints") or [],
        body.get("ports") or [],
        metadata.get("labels") or {},
        [
            {k: r.get(k) for k in ("kind", "name", "uid", "controller")}
            for r in metadata.get("ownerReferences") or ()
        ],
    )


def plan_slices(
    service: Mapping[str, Any] | None,
    service_name: str,
    pods: Iterable[Mapping[str, Any]],
    existing: Sequence[Mapping[str, Any]],
) -> SlicePlan:
    """What to write for the Service named ``service_name`` (``service`` None: it is gone)."""
    ours = [
        s
        for s in existing
        if labels_of(s).get(SERVICE_NAME_LABEL) == service_name
        and labels_of(s).get(MANAGED_BY_LABEL) == MANAGED_BY
    ]
    if service is not None and not (service.get("spec") or {}).get("selector"):
        return SlicePlan()  # the user manages this Service's endpoints
    wanted = desired_slices(service, pods) if service is not None else []
    by_name = {name_of(s): s for s in ours}
    create: list[Body] = []
    update: list[Body] = []
    for body in wanted:
        current = by_name.pop(name_of(body), None)
        if current is None:
            create.append(body)
        elif _content(current) != _content(body):
            merged = copy.deepcopy(dict(current))
            merged["metadata"]["labels"] = body["metadata"]["labels"]
            merged["metadata"]["ownerReferences"] = body["metadata"]["ownerReferences"]
            for key in ("addressType", "endpoints", "ports"):
                merged[key] = body[key]
            update.append(merged)
    return SlicePlan(tuple(create), tuple(update), tuple(sorted(by_name)))


class EndpointSliceController:
    """Reconciles the slices of one Service per key (``namespace/name``)."""

    name = "endpointslice"

    def __init__(self, context: Context) -> None:
        self.context = context

    async def reconcile(self, key: str) -> Result | None:
        context = self.context
        namespace, name = split_key(key)
        service = context.caches.get(SERVICE, key)
        plan = plan_slices(
            service,
            name,
            context.caches.list(POD, namespace),
            context.caches.list(ENDPOINT_SLICE, namespace),
        )
        api = in_namespace(ENDPOINT_SLICE, namespace)
        for body in plan.update:
            await context.api.update(api, body)
        for body in plan.create:
            await context.api.create(api, body)
        for slice_name in plan.delete:
            try:
                await context.api.delete(api, slice_name)
            except APINotFound:
                continue
        return None
