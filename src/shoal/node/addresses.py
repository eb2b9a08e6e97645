"""Pod addresses: one loopback address per pod, handed out from a range, reused only when free.

On Linux the whole of 127.0.0.0/8 is routed to the loopback interface, so a process can bind
``127.1.0.7:8080`` without root or any setup; each pod gets its own address, and every replica
of a service can listen on the same port, as in Kubernetes.

Theory of operation: addresses are handed out in order, wrapping around, skipping those in use
(so a just-released address is the last to be reused, which keeps stale clients from reaching a
new pod by accident). "In use" is ours (an owner holds it) or, through the optional ``taken``
predicate, someone else's: another node on the same machine with the same range (a second
cluster with its own ``SHOAL_HOME``) must not give its pods an address whose ports a pod of the
first one already listens on, or a client of one pod would reach the other. The network address, the broadcast address and 127.0.0.1 are never handed
out. ``reserve`` takes a given address back (a restarted node re-adopting its pods).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable

from shoal.errors import PermanentError, RetryableError

__all__ = ["AddressAllocator", "AddressesExhausted"]

_LOCALHOST = ipaddress.IPv4Address("127.0.0.1")


class AddressesExhausted(RetryableError):
    """Every address of the range is in use; one is free again when a pod is gone."""


class AddressAllocator:
    """Loopback addresses for pods, keyed by pod uid."""

    def __init__(self, cidr: str, taken: Callable[[], frozenset[str]] | None = None) -> None:
        """``taken`` returns the addresses other processes use now (checked at each allocation,
        not at ``reserve``: a re-adopted pod keeps its own address)."""
        try:
            network = ipaddress.IPv4Network(cidr, strict=False)
        except ValueError as error:
            raise PermanentError(f"pod CIDR {cidr!r} is not an IPv4 network: {error}") from None
        if not network.subnet_of(ipaddress.IPv4Network("127.0.0.0/8")):
            raise PermanentError(
                f"pod CIDR {cidr} must be inside 127.0.0.0/8 (loopback), e.g. 127.1.0.0/16"
            )
        self.network = network
        hosts = [h for h in network.hosts() if h != _LOCALHOST]
        if not hosts:
            raise PermanentError(f"pod CIDR {cidr} has no usable address")
        self._hosts = hosts
        self._usable = frozenset(hosts)
        self._next = 0
        self._by_owner: dict[str, str] = {}
        self._owners: dict[str, str] = {}
        self._taken = taken

    def __len__(self) -> int:
        return len(self._by_owner)

    def get(self, owner: str) -> str | None:
        return self._by_owner.get(owner)

    def allocate(self, owner: str) -> str:
        """The address of ``owner``: its own if it has one, else the next free one."""
        known = self._by_owner.get(owner)
        if known is not None:
            return known
        foreign = self._taken() if self._taken is not None else frozenset()
        for step in range(len(self._hosts)):
            candidate = str(self._hosts[(self._next + step) % len(self._hosts)])
            if candidate not in self._owners and candidate not in foreign:
                self._next = (self._next + step + 1) % len(self._hosts)
                self._take(owner, candidate)
                return candidate
        raise AddressesExhausted(
            f"all {len(self._hosts)} addresses of {self.network} are in use (by this node's "
            "pods or other processes): delete pods or give the node a larger pod CIDR",
            retry_after=1.0,
        )

    def reserve(self, owner: str, address: str) -> bool:
        """Give ``owner`` exactly ``address`` (re-adoption); False if it is taken or not ours."""
        try:
            parsed = ipaddress.IPv4Address(address)
        except ValueError:
            return False
        if parsed not in self.network or parsed == _LOCALHOST or parsed not in self._usable:
            return False
        holder = self._owners.get(address)
        if holder is not None:
            return holder == owner
        if owner in self._by_owner:
            return False
        self._take(owner, address)
        return True

    def release(self, owner: str) -> None:
        address = self._by_owner.pop(owner, None)
        if address is not None:
            del self._owners[address]

    def _take(self, owner: str, address: str) -> None:
        self._by_owner[owner] = address
        self._owners[address] = owner
