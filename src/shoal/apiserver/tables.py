"""Server-side printing: the ``Table`` that ``kubectl get`` asks for.

kubectl sends ``Accept: application/json;as=Table;g=meta.k8s.io;v=v1`` and prints the columns it
gets back. Built-in kinds get the columns kubectl users know (``READY``, ``STATUS``,
``RESTARTS``... for pods); other kinds get ``Name``, their printer columns (the CRD's
``additionalPrinterColumns``: simple JSONPath, evaluated here) and ``Age``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from shoal.model.meta import PrinterColumn

__all__ = ["Column", "TableSpec", "evaluate_jsonpath", "table_for", "table_spec_for"]

Body = Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Column:
    """A column: how to describe it and how to compute its cell from an object."""

    name: str
    type: str
    cell: Callable[[Body], Any]
    format: str = ""
    description: str = ""
    priority: int = 0

    def definition(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.type,
            "format": self.format,
            "description": self.description,
            "priority": self.priority,
        }


@dataclass(frozen=True, slots=True)
class TableSpec:
    columns: tuple[Column, ...]


_TOKEN = re.compile(
    r"""\.(?P<field>[A-Za-z0-9_\-]+)
       |\[(?P<index>-?[0-9]+)\]
       |\[\?\(@\.(?P<ffield>[A-Za-z0-9_.\-]+)\s*==\s*(?P<quote>["'])(?P<fvalue>.*?)(?P=quote)\)\]
       |\[\*\]""",
    re.VERBOSE,
)


def evaluate_jsonpath(body: Any, path: str) -> list[Any]:
    """The values a simple JSONPath selects (``.a.b``, ``[0]``, ``[*]``, ``[?(@.k=="v")]``)."""
    values = [body]
    position = 0
    text = path.strip()
    if text.startswith("{") and text.endswith("}"):
        text = text[1:-1]
    if text.startswith("$"):
        text = text[1:]
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None:
            raise ValueError(f"unsupported JSONPath {path!r} at position {position}")
        position = match.end()
        values = list(_step(values, match))
    return values


def _step(values: Iterable[Any], match: re.Match[str]) -> Iterable[Any]:
    for value in values:
        if match["field"] is not None:
            if isinstance(value, Mapping) and match["field"] in value:
                yield value[match["field"]]
        elif match["index"] is not None:
            index = int(match["index"])
            if isinstance(value, list) and -len(value) <= index < len(value):
                yield value[index]
        elif match["ffield"] is not None:
            if isinstance(value, list):
                for item in value:
                    found = evaluate_jsonpath(item, "." + match["ffield"])
                    if found and str(found[0]) == match["fvalue"]:
                        yield item
        elif isinstance(value, list):
            yield from value


def _first(body: Body, path: str) -> Any:
    values = evaluate_jsonpath(body, path)
    if not values:
        return None
    value = values[0]
    return value if not isinstance(value, Mapping | list) else str(value)


def _name(body: Body) -> Any:
    return body.get("metadata", {}).get("name")


def _age(body: Body) -> Any:
    return body.get("metadata", {}).get("creationTimestamp")


NAME = Column(
    "Name", "string", _name, format="name", description="Name must be unique within a namespace."
)
AGE = Column("Age", "date", _age, description="CreationTimestamp of the object.")


def _pod_ready(body: Body) -> str:
    statuses = body.get("status", {}).get("containerStatuses") or []
    total = len(body.get("spec", {}).get("containers") or [])
    return f"{sum(1 for s in statuses if s.get('ready'))}/{total}"


def _pod_status(body: Body) -> str:
    metadata, status = body.get("metadata", {}), body.get("status", {})
    if metadata.get("deletionTimestamp"):
        return "Terminating"
    for container in status.get("containerStatuses") or []:
        state = container.get("state") or {}
        waiting = state.get("waiting") or {}
        if waiting.get("reason"):
            return str(waiting["reason"])
        terminated = state.get("terminated") or {}
        if terminated.get("reason") and status.get("phase") not in ("Succeeded", "Failed"):
            return str(terminated["reason"])
    return str(status.get("reason") or status.get("phase") or "Pending")


def _pod_restarts(body: Body) -> int:
    return sum(
        int(s.get("restartCount", 0)) for s in body.get("status", {}).get("containerStatuses") or []
    )


def _deployment_ready(body: Body) -> str:
    status = body.get("status", {})
    return f"{status.get('readyReplicas', 0)}/{body.get('spec', {}).get('replicas', 1)}"


def _slice_ports(body: Body) -> str:
    ports = body.get("ports") or []
    return ",".join(str(p.get("port")) for p in ports if p.get("port") is not None) or "<unset>"


def _slice_endpoints(body: Body) -> str:
    # kubectl shows the first three addresses and how many more there are.
    addresses = [a for e in body.get("endpoints") or [] for a in e.get("addresses") or []]
    if not addresses:
        return "<unset>"
    shown = ",".join(addresses[:3])
    return shown + (f" + {len(addresses) - 3} more..." if len(addresses) > 3 else "")


def _service_ports(body: Body) -> str:
    ports = body.get("spec", {}).get("ports") or []
    return ",".join(f"{p.get('port')}/{p.get('protocol', 'TCP')}" for p in ports) or "<none>"


def _event_object(body: Body) -> str:
    involved = body.get("involvedObject", {})
    return f"{str(involved.get('kind', '')).lower()}/{involved.get('name', '')}"


_BUILTIN: dict[str, tuple[Column, ...]] = {
    "Pod": (
        NAME,
        Column("Ready", "string", _pod_ready, description="The number of ready containers."),
        Column("Status", "string", _pod_status, description="The aggregate status of the pod."),
        Column("Restarts", "integer", _pod_restarts, description="Container restarts."),
        AGE,
        Column("IP", "string", lambda b: b.get("status", {}).get("podIP") or "<none>", priority=1),
    ),
    "Deployment": (
        NAME,
        Column("Ready", "string", _deployment_ready),
        Column("Up-to-date", "integer", lambda b: b.get("status", {}).get("updatedReplicas", 0)),
        Column("Available", "integer", lambda b: b.get("status", {}).get("availableReplicas", 0)),
        AGE,
    ),
    "ReplicaSet": (
        NAME,
        Column("Desired", "integer", lambda b: b.get("spec", {}).get("replicas", 1)),
        Column("Current", "integer", lambda b: b.get("status", {}).get("replicas", 0)),
        Column("Ready", "integer", lambda b: b.get("status", {}).get("readyReplicas", 0)),
        AGE,
    ),
    "EndpointSlice": (
        NAME,
        Column("AddressType", "string", lambda b: b.get("addressType")),
        Column("Ports", "string", _slice_ports),
        Column("Endpoints", "string", _slice_endpoints),
        AGE,
    ),
    "Service": (
        NAME,
        Column("Type", "string", lambda b: b.get("spec", {}).get("type", "ClusterIP")),
        Column("Cluster-IP", "string", lambda b: b.get("spec", {}).get("clusterIP") or "<none>"),
        Column("External-IP", "string", lambda b: "<none>"),
        Column("Port(s)", "string", _service_ports),
        AGE,
    ),
    "ConfigMap": (
        NAME,
        Column(
            "Data", "integer", lambda b: len(b.get("data") or {}) + len(b.get("binaryData") or {})
        ),
        AGE,
    ),
    "Secret": (
        NAME,
        Column("Type", "string", lambda b: b.get("type", "Opaque")),
        Column("Data", "integer", lambda b: len(b.get("data") or {})),
        AGE,
    ),
    "Namespace": (
        NAME,
        Column("Status", "string", lambda b: b.get("status", {}).get("phase", "Active")),
        AGE,
    ),
    "Event": (
        Column("Last Seen", "date", lambda b: b.get("lastTimestamp") or b.get("eventTime")),
        Column("Type", "string", lambda b: b.get("type")),
        Column("Reason", "string", lambda b: b.get("reason")),
        Column("Object", "string", _event_object),
        Column("Message", "string", lambda b: b.get("message")),
    ),
}


def table_spec_for(kind: str, printer_columns: Sequence[PrinterColumn] = ()) -> TableSpec:
    """The columns for a kind: kubectl's for built-in kinds, else Name + printer columns (+ Age)."""
    if kind in _BUILTIN:
        return TableSpec(_BUILTIN[kind])
    columns = [NAME]
    for column in printer_columns:
        path = column.json_path

        def cell(body: Body, path: str = path) -> Any:
            return _first(body, path)

        columns.append(
            Column(
                column.name,
                column.type,
                cell,
                description=column.description,
                priority=column.priority,
            )
        )
    if not any(c.json_path == ".metadata.creationTimestamp" for c in printer_columns):
        columns.append(AGE)
    return TableSpec(tuple(columns))


def table_for(
    spec: TableSpec,
    items: Sequence[Body],
    *,
    resource_version: str = "",
    continue_token: str | None = None,
    include_object: str = "Metadata",
) -> dict[str, Any]:
    """A ``meta.k8s.io/v1`` ``Table``; each row carries the object's metadata (or all of it)."""
    rows = []
    for item in items:
        if include_object == "Object":
            embedded: Any = dict(item)
        elif include_object == "None":
            embedded = None
        else:
            embedded = {
                "kind": "PartialObjectMetadata",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": item.get("metadata", {}),
            }
        row: dict[str, Any] = {"cells": [column.cell(item) for column in spec.columns]}
        if embedded is not None:
            row["object"] = embedded
        rows.append(row)
    metadata: dict[str, Any] = {"resourceVersion": resource_version}
    if continue_token:
        metadata["continue"] = continue_token
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": metadata,
        "columnDefinitions": [column.definition() for column in spec.columns],
        "rows": rows,
    }
