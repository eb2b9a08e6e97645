"""Which loopback addresses other processes listen on, read from ``/proc/net/tcp``.

The node's address allocator skips them (see :mod:`shoal.node.addresses`), so two clusters on
one machine with the same pod range never give two pods the same address. Linux only; elsewhere
(or when ``/proc`` is unreadable) nothing is known to be taken.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
from pathlib import Path

__all__ = ["listening_addresses", "parse_proc_net_tcp"]

_LISTEN = "0A"
"""The TCP state code of a listening socket in /proc/net/tcp."""


def parse_proc_net_tcp(text: str) -> frozenset[str]:
    """The local IPv4 addresses of listening sockets in a /proc/net/tcp table."""
    found: set[str] = set()
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 4 or fields[3] != _LISTEN:
            continue
        address_hex = fields[1].partition(":")[0]
        try:
            # The kernel prints the address as a host-order 32-bit number in hex.
            packed = struct.pack("=I", int(address_hex, 16))
        except (ValueError, struct.error):
            continue
        found.add(str(ipaddress.IPv4Address(socket.inet_ntoa(packed))))
    return frozenset(found)


def listening_addresses(path: Path = Path("/proc/net/tcp")) -> frozenset[str]:
    """Addresses with at least one listening TCP socket on this machine now."""
    try:
        return parse_proc_net_tcp(path.read_text())
    except OSError:
        return frozenset()
