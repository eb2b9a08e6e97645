"""The node's settings: one frozen dataclass, every field with a default."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["DEFAULT_INHERITED_ENV", "NodeSettings", "default_node_dir"]

DEFAULT_INHERITED_ENV = (
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "LANG",
    "LC_ALL",
    "LC_CTYPE",
    "TZ",
    "TMPDIR",
    "VIRTUAL_ENV",
    "PYTHONPATH",
)
"""Variables a container inherits from the node (a process needs PATH and HOME to run at all;
Kubernetes gets them from the image instead)."""


def default_node_dir() -> Path:
    """``$SHOAL_HOME/node`` when ``SHOAL_HOME`` is set, else ``~/.shoal/node`` (beside the API
    server's default data dir)."""
    home = os.environ.get("SHOAL_HOME")
    return (Path(home) if home else Path.home() / ".shoal") / "node"


@dataclass(frozen=True, slots=True)
class NodeSettings:
    """How the node runs pods."""

    data_dir: Path = field(default_factory=default_node_dir)
    """Pods' volumes and logs, and the node's state file, live here."""
    node_name: str = field(default_factory=lambda: socket.gethostname().split(".")[0].lower())
    """The name written to ``spec.nodeName`` of the pods this node runs."""
    pod_cidr: str = "127.1.0.0/16"
    """Loopback range pod addresses come from (127.0.0.1 is never handed out)."""
    backoff_base: float = 10.0
    """Seconds before the first restart of a container that exited (Kubernetes: 10 s)."""
    backoff_cap: float = 300.0
    """The restart back-off doubles up to this many seconds (Kubernetes: 5 min)."""
    backoff_reset: float = 600.0
    """A container that ran this long before exiting restarts with the base back-off again."""
    probe_time_scale: float = 1.0
    """Multiplies every probe's delays, periods and timeouts (below 1 makes tests fast)."""
    ready_poll_interval: float = 0.1
    """Until a readiness probe first succeeds it runs this often (seconds, before scaling), so a
    pod is Ready soon after it listens instead of one whole period later."""
    shutdown_grace_cap: float = 10.0
    """When the node itself stops, each pod gets at most this many seconds between SIGTERM and
    SIGKILL."""
    log_max_bytes: int = 10 * 1024 * 1024
    """A container's log file is rotated when it reaches this size."""
    log_backups: int = 1
    """Rotated log files kept per container (``NAME.log.1`` ...)."""
    inherit_env: tuple[str, ...] = DEFAULT_INHERITED_ENV
    """Variables passed from the node's environment to every container."""
    status_workers: int = 4
    """Pods whose status is written concurrently."""
    heartbeat: float = 30.0
    """Seconds between resyncs of every pod (repairs any missed change)."""

    @property
    def pods_dir(self) -> Path:
        return self.data_dir / "pods"

    @property
    def logs_dir(self) -> Path:
        return self.data_dir / "logs"

    @property
    def state_file(self) -> Path:
        return self.data_dir / "node-state.json"
