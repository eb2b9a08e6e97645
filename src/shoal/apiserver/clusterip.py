"""Service cluster IPs: allocated at create time from the service range, kept for the Service's life.

Kubernetes gives every Service (except a headless one, ``clusterIP: None``) a virtual address
from the cluster's service CIDR when it is created, refuses an address already taken, and never
changes it afterwards (``field is immutable``). shoal does the same, with a loopback range by
default (``127.2.0.0/16``) so the one-machine service proxy can listen on each address without
root. Pure functions: the caller passes the addresses in use (every stored Service's).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from typing import Any

from shoal.apiserver.resources import Resource
from shoal.apiserver.status import APIError
from shoal.apiserver.strategy import invalid

__all__ = [
    "DEFAULT_SERVICE_CIDR",
    "allocate_cluster_ip",
    "is_service",
    "keep_cluster_ip",
    "used_ips",
]

DEFAULT_SERVICE_CIDR = "127.2.0.0/16"
"""On loopback: every address of 127.0.0.0/8 reaches this machine, no root needed to bind one."""

HEADLESS = "None"


def is_service(resource: Resource) -> bool:
    return resource.kind == "Service" and resource.storage_group == ""


def used_ips(services: Iterable[Mapping[str, Any]]) -> set[str]:
    """The cluster IPs taken by ``services``."""
    used: set[str] = set()
    for service in services:
        spec = service.get("spec") or {}
        for ip in [spec.get("clusterIP"), *(spec.get("clusterIPs") or ())]:
            if isinstance(ip, str) and ip not in ("", HEADLESS):
                used.add(ip)
    return used


def allocate_cluster_ip(
    resource: Resource, service: dict[str, Any], used: set[str], cidr: str = DEFAULT_SERVICE_CIDR
) -> str | None:
    """Give ``service`` its ``clusterIP``/``clusterIPs`` (in place); returns the address taken
    (None for a headless Service). Raises 422 for an address taken or out of the range, or 500
    ``InternalError`` when the range is full."""
    spec = service.setdefault("spec", {})
    name = str(service.get("metadata", {}).get("name", ""))
    network = ipaddress.ip_network(cidr)
    requested = spec.get("clusterIP") or next(iter(spec.get("clusterIPs") or ()), None)
    if requested == HEADLESS:
        spec["clusterIP"] = HEADLESS
        spec["clusterIPs"] = [HEADLESS]
        return None
    if requested:
        address = ipaddress.ip_address(str(requested))
        if address not in network:
            raise invalid(
                resource,
                name,
                [
                    (
                        "spec.clusterIPs",
                        f'Invalid value: ["{requested}"]: failed to allocate IP {requested}: the '
                        f"provided IP ({requested}) is not in the valid range. The range of valid "
                        f"IPs is {cidr}",
                    )
                ],
            )
        if str(address) in used:
            raise invalid(
                resource,
                name,
                [
                    (
                        "spec.clusterIPs",
                        f'Invalid value: ["{requested}"]: failed to allocate IP {requested}: '
                        "provided IP is already allocated",
                    )
                ],
            )
        chosen = str(address)
    else:
        free = next((str(ip) for ip in network.hosts() if str(ip) not in used), None)
        if free is None:
            raise APIError(
                "InternalError",
                f"failed to allocate a serviceIP: range is full ({cidr}): delete unused Services",
            )
        chosen = free
    spec["clusterIP"] = chosen
    spec["clusterIPs"] = [chosen]
    return chosen


def keep_cluster_ip(resource: Resource, old: Mapping[str, Any], new: dict[str, Any]) -> None:
    """An update keeps the stored address: left out, it is filled in; changed, it is refused."""
    old_spec = old.get("spec") or {}
    spec = new.get("spec")
    if not isinstance(spec, dict):
        return
    for field in ("clusterIP", "clusterIPs"):
        before = old_spec.get(field)
        if before is None:
            continue
        given = spec.get(field)
        if given in (None, "", []):
            spec[field] = before
        elif given != before:
            name = str(old.get("metadata", {}).get("name", ""))
            raise invalid(
                resource, name, [(f"spec.{field}", f"Invalid value: {given!r}: field is immutable")]
            )
