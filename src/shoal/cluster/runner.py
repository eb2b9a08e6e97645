"""The cluster process: API server, controllers, node and service proxy, started and stopped in order.

Theory of operation
-------------------
Start-up, in dependency order:

1. the API server (``DATA_DIR/shoal.db``, TLS, the token, ``DATA_DIR/kubeconfig``);
2. the service proxy, in a child process (``shoal cluster service-proxy``) started through the
   node's launcher, so the kernel kills it if this process dies; it is restarted if it exits;
3. the controllers (workloads, endpoints, patterns, load tests) and the node, in this process,
   all clients of the API server like any other;
4. once the node has filled its caches and runs pods, ``DATA_DIR/cluster.json`` is written:
   that is the signal ``shoal up`` waits for.

Pods reach the API with the cluster's kubeconfig (``$KUBECONFIG`` is set for every container:
on one machine that is the pod's service-account credential).

Stopping (SIGTERM, SIGINT, or leaving the ``stop`` event set) goes the other way: the
controllers stop first (so nothing creates pods any more), then the node stops every pod
gracefully, then the service proxy lets its requests finish, then the API server closes the
store. The state file is removed last.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from shoal.apiserver.clusterip import DEFAULT_SERVICE_CIDR
from shoal.apiserver.server import DEFAULT_PORT, ServerSettings, serve
from shoal.client.http import HTTPClient
from shoal.client.kubeconfig import load_kubeconfig
from shoal.cluster.lifecycle import ClusterState, remove_state, write_state
from shoal.controllers import ControllerSettings, all_controllers
from shoal.controllers.loadtest import LoadTestController, LoadTestSettings
from shoal.node import Node, NodeSettings
from shoal.node.processes import spawn
from shoal.node.settings import DEFAULT_INHERITED_ENV

__all__ = ["ClusterSettings", "node_overrides", "run_cluster"]

log = logging.getLogger("shoal.cluster")


@dataclass(frozen=True, slots=True)
class ClusterSettings:
    """How the one-machine cluster runs."""

    data_dir: Path
    """Everything lives here: the database, certificates, kubeconfig, pods' files and logs."""
    address: str = "127.0.0.1"
    """The API server's address."""
    port: int = DEFAULT_PORT
    """The API server's port (0 picks a free one)."""
    service_cidr: str = DEFAULT_SERVICE_CIDR
    """Where Services' cluster addresses come from (a loopback range: no root needed)."""
    node: Mapping[str, Any] = field(default_factory=dict)
    """Overrides of :class:`~shoal.node.NodeSettings` fields (tests shorten back-offs)."""
    service_proxy: bool = True
    """Serve Services on their cluster addresses (a child process)."""
    service_proxy_restart_delay: float = 1.0
    """Seconds before a service proxy that exited is started again."""


def node_overrides(options: Sequence[str]) -> dict[str, Any]:
    """``FIELD=VALUE`` strings as NodeSettings overrides, each VALUE converted to the field's
    type; ValueError names an unknown field or a bad value."""
    defaults = NodeSettings(data_dir=Path())
    known = {f.name for f in fields(NodeSettings)} - {"data_dir", "inherit_env"}
    overrides: dict[str, Any] = {}
    for option in options:
        name, sep, text = option.partition("=")
        if not sep or name not in known:
            raise ValueError(f"{option!r}: expected FIELD=VALUE with FIELD one of {sorted(known)}")
        current = getattr(defaults, name)
        try:
            overrides[name] = text if isinstance(current, str) else type(current)(text)
        except (TypeError, ValueError):
            raise ValueError(
                f"{option!r}: {text!r} is not a valid {type(current).__name__}"
            ) from None
    return overrides


class _ServiceProxyProcess:
    """The service proxy child: started, restarted if it exits, stopped with SIGTERM."""

    def __init__(self, kubeconfig: Path, log_path: Path, restart_delay: float) -> None:
        self.kubeconfig = kubeconfig
        self.log_path = log_path
        self.restart_delay = restart_delay
        self.process: asyncio.subprocess.Process | None = None
        self.starts = 0
        self._stop = asyncio.Event()

    async def run(self) -> None:
        argv = [sys.executable, "-m", "shoal", "cluster", "service-proxy"]
        argv += ["--kubeconfig", str(self.kubeconfig)]
        while not self._stop.is_set():
            output = os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            try:
                self.process = await spawn(argv, env=dict(os.environ), cwd=None, output=output)
            finally:
                os.close(output)
            self.starts += 1
            await self._exit_or_stop(self.process)
            if self._stop.is_set():
                with contextlib.suppress(ProcessLookupError):
                    self.process.send_signal(signal.SIGTERM)
                try:
                    await asyncio.wait_for(self.process.wait(), 35.0)
                except TimeoutError:
                    with contextlib.suppress(ProcessLookupError):
                        self.process.kill()
                    await self.process.wait()
                return
            log.warning(
                "the service proxy exited with code %s; restarting in %.1fs (see %s)",
                self.process.returncode,
                self.restart_delay,
                self.log_path,
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.restart_delay)

    async def _exit_or_stop(self, process: asyncio.subprocess.Process) -> None:
        """Return when the process exits or stop is asked, whichever comes first."""
        either = asyncio.Event()
        async with asyncio.TaskGroup() as group:
            waits = [group.create_task(self._stop.wait()), group.create_task(process.wait())]
            for task in waits:
                task.add_done_callback(lambda _: either.set())
            await either.wait()
            for task in waits:
                task.cancel()

    def stop(self) -> None:
        self._stop.set()


async def run_cluster(
    settings: ClusterSettings,
    *,
    stop: asyncio.Event | None = None,
    stop_signals: Sequence[signal.Signals] = (),
) -> None:
    """Run the cluster until ``stop`` is set or one of ``stop_signals`` arrives."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in stop_signals:
        loop.add_signal_handler(signum, stop.set)
    data_dir = settings.data_dir
    logs = data_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True, mode=0o700)
    server_settings = ServerSettings(
        data_dir, address=settings.address, port=settings.port, service_cidr=settings.service_cidr
    )
    async with serve(server_settings) as server:
        log.info("API server listening on %s", server.url)
        # Every container inherits the cluster's credential, as a pod gets a service account.
        os.environ["KUBECONFIG"] = str(server.kubeconfig)
        node_settings = replace(
            NodeSettings(
                data_dir=data_dir / "node",
                inherit_env=(*DEFAULT_INHERITED_ENV, "KUBECONFIG"),
            ),
            **dict(settings.node),
        )
        async with HTTPClient(load_kubeconfig(server.kubeconfig)) as client:
            node = Node(client, node_settings)
            controllers = all_controllers(client, ControllerSettings())
            loadtests = LoadTestController(
                client, LoadTestSettings(command=(sys.executable, "-m", "shoal"))
            )
            proxy = _ServiceProxyProcess(
                server.kubeconfig, logs / "service-proxy.log", settings.service_proxy_restart_delay
            )
            async with asyncio.TaskGroup() as group:
                if settings.service_proxy:
                    group.create_task(proxy.run())
                group.create_task(controllers.run())
                group.create_task(loadtests.run())
                node_task = group.create_task(node.run())
                ready = group.create_task(node.ready.wait())
                stopping = group.create_task(stop.wait())
                await asyncio.wait(
                    {ready, stopping, node_task}, return_when=asyncio.FIRST_COMPLETED
                )
                if ready.done() and not stop.is_set():
                    write_state(
                        ClusterState(
                            pid=os.getpid(),
                            url=server.url,
                            kubeconfig=server.kubeconfig,
                            data_dir=data_dir,
                            started=time.time(),
                        )
                    )
                    log.info("cluster ready: API %s, kubeconfig %s", server.url, server.kubeconfig)
                await stopping
                ready.cancel()
                log.info("stopping: controllers, then pods, then the service proxy")
                controllers.stop()
                loadtests.stop()
                node.stop()
                with contextlib.suppress(Exception):
                    await node_task
                proxy.stop()
            remove_state(data_dir, os.getpid())
    log.info("cluster stopped")
