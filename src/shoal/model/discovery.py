"""``EndpointSlice`` (``discovery.k8s.io/v1``): the addresses behind a Service, as Kubernetes has them.

The EndpointSlice controller writes one or more slices per Service with a selector (label
``kubernetes.io/service-name``): each endpoint is a ready-or-not pod address with the conditions
``ready``, ``serving`` and ``terminating``; the slice's ports are the Service's target ports
resolved for those pods. The cluster's service proxy watches them to configure the data plane.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import ClassVar, Literal

from pydantic import Field

from shoal.model import _syntax
from shoal.model._base import Check, ShoalModel
from shoal.model.meta import KindInfo, KubeObject, ObjectReference

__all__ = ["Endpoint", "EndpointConditions", "EndpointPort", "EndpointSlice"]


class EndpointConditions(ShoalModel):
    """The state of one endpoint; a missing value means "unknown" (consumers take ``ready``)."""

    ready: bool | None = None
    """Ready for new connections (the pod is Ready and not terminating)."""
    serving: bool | None = None
    """The pod reports Ready, whether or not it is terminating."""
    terminating: bool | None = None
    """The pod is being deleted."""


class Endpoint(ShoalModel):
    """One backend: its address(es) and conditions, and the pod it stands for."""

    addresses: list[str] = Field(min_length=1, max_length=100)
    conditions: EndpointConditions = Field(default_factory=EndpointConditions)
    hostname: str | None = None
    target_ref: ObjectReference | None = None
    node_name: str | None = None
    zone: str | None = None

    k8s_unsupported: ClassVar[frozenset[str]] = frozenset({"hints", "deprecatedTopology"})


class EndpointPort(ShoalModel):
    """A port every endpoint of the slice serves on (the Service port's resolved target)."""

    name: str | None = None
    """The Service port's name ("" or left out for a single unnamed port)."""
    protocol: Literal["TCP", "UDP", "SCTP"] = "TCP"
    port: int | None = Field(default=None, ge=1, le=65535)
    app_protocol: str | None = None


class EndpointSlice(KubeObject):
    """A set of endpoints of a Service (at most 1000, as in Kubernetes)."""

    INFO: ClassVar[KindInfo] = KindInfo(
        group="discovery.k8s.io",
        version="v1",
        kind="EndpointSlice",
        plural="endpointslices",
    )

    address_type: Literal["IPv4", "IPv6", "FQDN"]
    endpoints: list[Endpoint] = Field(default_factory=list, max_length=1000)
    ports: list[EndpointPort] | None = Field(default=None, max_length=100)

    def _checks(self) -> Iterator[Check]:
        yield from super()._checks()
        if self.address_type == "FQDN":
            return
        for index, endpoint in enumerate(self.endpoints):
            for a_index, address in enumerate(endpoint.addresses):
                for message in _syntax.ip_address(address):
                    yield (
                        ("endpoints", index, "addresses", a_index),
                        f"Invalid value: {address!r}: {message}",
                    )
