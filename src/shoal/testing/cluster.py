"""Start a real one-machine cluster for a test, and prove it leaves nothing behind.

::

    with local_cluster() as cluster:                 # `shoal up` in a temporary data dir
        cluster.shoal("apply", "-f", "app.yaml")      # any shoal command against it
        async with cluster.client() as client: ...    # an HTTPClient for it
    # stopped with `shoal down`; no process of it (pods, service proxy) is left

Each cluster gets its own loopback ranges for pods and Services (picked at random among
127.10-250.0.0/16), so clusters of parallel tests, or a developer's own, never share addresses.
Nothing is mocked: this is ``shoal up``'s own code path.
"""

from __future__ import annotations

import contextlib
import os
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from shoal.client.http import HTTPClient
from shoal.client.kubeconfig import load_kubeconfig
from shoal.cluster.lifecycle import process_alive, start_in_background, stop_cluster

__all__ = ["LocalCluster", "cluster_processes", "local_cluster"]


def cluster_processes(kubeconfig: Path) -> list[int]:
    """Pids of the processes a cluster started (pods, the service proxy): they all carry its
    ``KUBECONFIG`` in their environment."""
    marker = f"KUBECONFIG={kubeconfig}".encode()
    found: list[int] = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as environ:
                if marker in environ.read().split(b"\0"):
                    with open(f"/proc/{entry}/stat", encoding="utf-8") as stat:
                        state = stat.read().rsplit(")", 1)[-1].split()[0]
                    if state not in ("Z", "X"):
                        found.append(int(entry))
        except OSError:
            continue
    return found


@dataclass(frozen=True, slots=True)
class LocalCluster:
    """A running cluster: where it keeps its state, and how to reach it."""

    data_dir: Path
    url: str
    kubeconfig: Path
    pid: int
    """The cluster process."""
    pod_cidr: str
    service_cidr: str

    def client(self) -> HTTPClient:
        """A client for the cluster's API server (use it as ``async with``)."""
        return HTTPClient(load_kubeconfig(self.kubeconfig))

    def environment(self) -> dict[str, str]:
        """The environment for commands run against this cluster."""
        return {**os.environ, "KUBECONFIG": str(self.kubeconfig), "SHOAL_HOME": str(self.data_dir)}

    def shoal(
        self, *args: str, check: bool = True, timeout: float = 300.0
    ) -> subprocess.CompletedProcess[str]:
        """Run ``shoal ARGS`` against this cluster (``KUBECONFIG`` and ``SHOAL_HOME`` set)."""
        result = subprocess.run(
            [sys.executable, "-m", "shoal", *args],
            env=self.environment(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"shoal {' '.join(args)} exited {result.returncode}\n"
                f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
            )
        return result

    def processes(self) -> list[int]:
        """Pids of the processes this cluster started that are alive now."""
        return cluster_processes(self.kubeconfig)

    def log(self) -> str:
        """The cluster process's log so far."""
        try:
            return (self.data_dir / "cluster.log").read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""


def _ranges(rng: random.Random) -> tuple[str, str]:
    pods, services = rng.sample(range(10, 251), 2)
    return f"127.{pods}.0.0/16", f"127.{services}.0.0/16"


@contextlib.contextmanager
def local_cluster(
    data_dir: Path | None = None,
    *,
    node_options: Sequence[str] = (),
    start_timeout: float = 120.0,
    stop_timeout: float = 60.0,
) -> Iterator[LocalCluster]:
    """Run ``shoal up`` (no files) in ``data_dir`` (a temporary one by default), yield the
    cluster, and stop it on the way out, checking that no process of it is left (AssertionError
    naming them otherwise, after killing them)."""
    with contextlib.ExitStack() as stack:
        if data_dir is None:
            data_dir = Path(
                stack.enter_context(tempfile.TemporaryDirectory(prefix="shoal-cluster-"))
            )
        pod_cidr, service_cidr = _ranges(random.Random())  # noqa: S311 (not a secret)
        args = [
            "--port",
            "0",
            "--service-cidr",
            service_cidr,
            "--node-option",
            f"pod_cidr={pod_cidr}",
        ]
        for option in node_options:
            args += ["--node-option", option]
        state, _ = start_in_background(data_dir, args, timeout=start_timeout)
        cluster = LocalCluster(
            data_dir=data_dir,
            url=state.url,
            kubeconfig=state.kubeconfig,
            pid=state.pid,
            pod_cidr=pod_cidr,
            service_cidr=service_cidr,
        )
        try:
            yield cluster
        finally:
            stop_cluster(data_dir, timeout=stop_timeout)
            deadline = time.monotonic() + 10.0
            left = cluster.processes()
            while left and time.monotonic() < deadline:
                time.sleep(0.05)
                left = cluster.processes()
            if left or process_alive(state.pid):
                for pid in left:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, 9)
                raise AssertionError(f"the cluster left processes behind: {left}")
