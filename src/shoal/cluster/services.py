"""What the one-machine service proxy should serve: Services and EndpointSlices in, listeners out.

This is the pure core of the cluster's service proxy (the role kube-proxy plays on a Kubernetes
node). Each Service port with a ``clusterIP`` becomes one listener on ``clusterIP:port`` (a
127.x.y.z loopback address, so no root is needed), balancing over the Service's endpoints:

* an endpoint takes new requests while its slice says it is ``ready`` (a missing ``ready`` counts
  as ready, as the EndpointSlice API defines it);
* when *no* endpoint is ready, endpoints that are ``serving`` while ``terminating`` are used, so a
  Service whose every pod is being replaced keeps answering (kube-proxy does the same since
  Kubernetes 1.28); otherwise the listener answers 503;
* an endpoint that leaves the set drains in the data plane (no new requests; in-flight ones finish).

``sessionAffinity: ClientIP`` hashes on the client's address. Each listener has a ``mode``
(:func:`port_mode`): ``http`` ports are served by the HTTP proxy engine, ``tcp`` ports (Redis,
TLS...) by plain connection forwarding. Only TCP ports are served; ports of other protocols are
reported in :attr:`ServicePlan.skipped` with the reason. Headless Services
(``clusterIP: None``) and Services without a clusterIP get no listener: they have no virtual
address to serve.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

__all__ = [
    "SERVICE_NAME_LABEL",
    "ServiceListener",
    "ServicePlan",
    "plan_services",
    "port_mode",
]

SERVICE_NAME_LABEL = "kubernetes.io/service-name"
"""The label that ties an EndpointSlice to its Service."""

Affinity = Literal["None", "ClientIP"]
Mode = Literal["http", "tcp"]

TCP_PROTOCOLS = frozenset(
    {
        "tcp", "tls", "https", "grpc", "grpcs", "http2", "h2c", "redis", "memcache",
        "memcached", "mongo", "mysql", "postgres", "postgresql", "amqp", "kafka", "zookeeper",
    }
)  # fmt: skip
"""Protocols forwarded as connections: TLS, and what is not HTTP/1.1."""


def port_mode(service_port: Mapping[str, Any]) -> Mode:
    """``tcp`` when a Service port's ``appProtocol`` says it is not plain HTTP/1.1, or, without
    one, when its name does by Istio's ``<protocol>[-<suffix>]`` convention (``redis``,
    ``https``, ``tcp-db``...); else ``http`` (unnamed ports included), served per request."""
    app_protocol = str(service_port.get("appProtocol") or "").lower()
    if app_protocol:
        return "http" if app_protocol == "http" else "tcp"
    protocol = str(service_port.get("name") or "").lower().split("-", 1)[0]
    return "tcp" if protocol in TCP_PROTOCOLS else "http"


@dataclass(frozen=True, slots=True)
class ServiceListener:
    """One Service port served on its cluster address."""

    namespace: str
    service: str
    port_name: str
    """The Service port's name ("" when it has none)."""
    host: str
    """The Service's ``clusterIP``."""
    port: int
    endpoints: tuple[tuple[str, int], ...]
    """Where requests go now, sorted (so equal plans compare equal)."""
    affinity: Affinity = "None"
    mode: Mode = "http"
    """How it is served: per HTTP/1.1 request, or per TCP connection (:func:`port_mode`)."""

    @property
    def name(self) -> str:
        """``namespace/service:port``, unique within a plan."""
        suffix = self.port_name or str(self.port)
        return f"{self.namespace}/{self.service}:{suffix}"


@dataclass(frozen=True, slots=True)
class ServicePlan:
    """Every listener to serve, and what could not be served (with why)."""

    listeners: tuple[ServiceListener, ...]
    skipped: tuple[str, ...] = ()


def _meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    meta = obj.get("metadata")
    return meta if isinstance(meta, Mapping) else {}


def _slice_endpoints(
    slices: Iterable[Mapping[str, Any]], port_name: str
) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    """(ready, serving-but-terminating) addresses for the slice port named ``port_name``."""
    ready: set[tuple[str, int]] = set()
    terminating: set[tuple[str, int]] = set()
    for endpoint_slice in slices:
        if endpoint_slice.get("addressType", "IPv4") not in ("IPv4", "IPv6"):
            continue
        port: int | None = None
        for slice_port in endpoint_slice.get("ports") or ():
            if (slice_port.get("name") or "") == port_name and slice_port.get(
                "protocol", "TCP"
            ) == "TCP":
                value = slice_port.get("port")
                port = value if isinstance(value, int) else None
                break
        if port is None:
            continue
        for endpoint in endpoint_slice.get("endpoints") or ():
            conditions = endpoint.get("conditions") or {}
            is_ready = conditions.get("ready") is not False
            serving = conditions.get("serving")
            serving = is_ready if serving is None else bool(serving)
            is_terminating = bool(conditions.get("terminating"))
            for address in endpoint.get("addresses") or ():
                if is_ready and not is_terminating:
                    ready.add((str(address), port))
                elif serving and is_terminating:
                    terminating.add((str(address), port))
    return sorted(ready), sorted(terminating)


def plan_services(
    services: Iterable[Mapping[str, Any]], endpoint_slices: Iterable[Mapping[str, Any]]
) -> ServicePlan:
    """The listeners for ``services``, with endpoints from ``endpoint_slices`` (as the API serves
    them: plain dicts)."""
    by_service: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for endpoint_slice in endpoint_slices:
        meta = _meta(endpoint_slice)
        owner = (meta.get("labels") or {}).get(SERVICE_NAME_LABEL)
        if owner:
            by_service.setdefault((str(meta.get("namespace") or ""), str(owner)), []).append(
                endpoint_slice
            )
    listeners: list[ServiceListener] = []
    skipped: list[str] = []
    for service in services:
        meta = _meta(service)
        namespace, name = str(meta.get("namespace") or ""), str(meta.get("name") or "")
        spec = service.get("spec") or {}
        cluster_ip = spec.get("clusterIP")
        if not cluster_ip or cluster_ip == "None":
            continue
        affinity: Affinity = "ClientIP" if spec.get("sessionAffinity") == "ClientIP" else "None"
        slices = by_service.get((namespace, name), [])
        for service_port in spec.get("ports") or ():
            port_name = str(service_port.get("name") or "")
            port = service_port.get("port")
            if not isinstance(port, int):
                continue
            protocol = service_port.get("protocol") or "TCP"
            if protocol != "TCP":
                skipped.append(
                    f"{namespace}/{name}:{port_name or port}: protocol {protocol} is not served "
                    "on one machine (TCP only)"
                )
                continue
            ready, terminating = _slice_endpoints(slices, port_name)
            listeners.append(
                ServiceListener(
                    namespace=namespace,
                    service=name,
                    port_name=port_name,
                    host=str(cluster_ip),
                    port=port,
                    endpoints=tuple(ready or terminating),
                    affinity=affinity,
                    mode=port_mode(service_port),
                )
            )
    listeners.sort(key=lambda listener: (listener.host, listener.port))
    return ServicePlan(tuple(listeners), tuple(skipped))
