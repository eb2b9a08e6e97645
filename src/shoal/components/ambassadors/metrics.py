"""
The ambassadors' counters and their Prometheus text exposition (``--admin ADDR`` serves it).

Plain counters bumped by the driver; :meth:`AmbassadorMetrics.render` writes the text format
(version 0.0.4) that Prometheus scrapes. Metric names start ``shoal_ambassador_``.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

__all__ = ["AmbassadorMetrics"]


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


@dataclass(slots=True)
class AmbassadorMetrics:
    """What the driver counts; servers are keyed by name."""

    protocol: str
    """``redis`` or ``memcached`` (a label on every series)."""
    servers: dict[str, str]
    """Server name to address."""
    clients_total: int = 0
    """Client connections accepted."""
    requests: int = 0
    """Requests parsed from clients (bad ones included)."""
    bad_requests: int = 0
    """Requests answered with a protocol error by the parser (malformed, too large)."""
    answered: int = 0
    """Requests the ambassador answered itself (PING, refusals, unavailable servers...)."""
    splits: int = 0
    """Multi-key requests split over several servers."""
    server_requests: Counter[str] = field(default_factory=Counter)
    """Requests (or parts of split requests) sent to each server (filled in by the driver's
    ``render_metrics``)."""
    server_errors: Counter[str] = field(default_factory=Counter)
    """Requests failed because their server connection failed."""
    server_failures: Counter[str] = field(default_factory=Counter)
    """Failed exchanges (connect refused, connection lost, timeouts) per server."""
    server_downs: Counter[str] = field(default_factory=Counter)
    """Times each server was marked down."""
    server_up: dict[str, int] = field(default_factory=dict)
    """1 while a server is up, 0 while it is down."""

    def render(self, clients_now: int) -> str:
        """The Prometheus text exposition of every counter."""
        proto = f'protocol="{_label(self.protocol)}"'
        lines: list[str] = []

        def metric(name: str, kind: str, help_text: str, samples: list[tuple[str, int]]) -> None:
            lines.append(f"# HELP shoal_ambassador_{name} {help_text}")
            lines.append(f"# TYPE shoal_ambassador_{name} {kind}")
            for labels, value in samples:
                lines.append(f"shoal_ambassador_{name}{{{labels}}} {value}")

        metric("client_connections", "gauge", "Client connections open.", [(proto, clients_now)])
        metric(
            "client_connections_total",
            "counter",
            "Client connections accepted.",
            [(proto, self.clients_total)],
        )
        metric(
            "requests_total", "counter", "Requests received from clients.", [(proto, self.requests)]
        )
        metric(
            "bad_requests_total",
            "counter",
            "Requests refused by the parser.",
            [(proto, self.bad_requests)],
        )
        metric(
            "answered_total",
            "counter",
            "Requests answered by the ambassador itself.",
            [(proto, self.answered)],
        )
        metric(
            "split_requests_total",
            "counter",
            "Multi-key requests split over servers.",
            [(proto, self.splits)],
        )

        def per_server(values: dict[str, int]) -> list[tuple[str, int]]:
            return [
                (
                    f'{proto},server="{_label(name)}",address="{_label(address)}"',
                    values.get(name, 0),
                )
                for name, address in sorted(self.servers.items())
            ]

        metric(
            "server_requests_total",
            "counter",
            "Requests sent to a server.",
            per_server(self.server_requests),
        )
        metric(
            "server_errors_total",
            "counter",
            "Requests failed with their server connection.",
            per_server(self.server_errors),
        )
        metric(
            "server_failures_total",
            "counter",
            "Failed exchanges with a server.",
            per_server(self.server_failures),
        )
        metric(
            "server_down_total",
            "counter",
            "Times a server was marked down.",
            per_server(self.server_downs),
        )
        up = {name: self.server_up.get(name, 1) for name in self.servers}
        metric(
            "server_up",
            "gauge",
            "1 if the server is up, 0 while it is marked down.",
            per_server(up),
        )
        return "\n".join(lines) + "\n"
