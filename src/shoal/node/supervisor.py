"""One pod on the node: its volumes, a supervised process group per container, probes, restarts,
and graceful termination.

Theory of operation
-------------------
:meth:`PodWorker.run` sets up the volumes (retrying while a ConfigMap or Secret is missing), then
runs one loop per container, concurrently:

1. work out the environment and command line (:mod:`shoal.node.environment`); a configuration
   error leaves the container ``waiting`` (``CreateContainerConfigError``) and is retried; a
   container with only an ``image`` waits forever with ``CreateContainerError``, since images
   cannot run here;
2. start it (:func:`shoal.node.processes.spawn`), register its group with the reaper, copy its
   output to its log, and run its probes (:class:`~shoal.node.probes.ProbeState`): startup
   first, then readiness and liveness; a failed startup or liveness probe kills the container;
3. when it exits, kill what is left of its group, record ``terminated`` and, if the restart
   policy says so, wait out the back-off (``CrashLoopBackOff``) and go to 1.

:meth:`PodWorker.terminate` (the pod is being deleted, is gone, or the node stops) marks every
container not ready at once, runs the ``preStop`` hooks, sends SIGTERM to every group, waits up
to the grace period (counted from the start of termination, with at least 2 s after the hooks,
as the kubelet gives), then SIGKILLs what is left. ``done`` is set once no process of the pod is
left. Every change calls ``on_change`` so the node writes the pod's status.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from shoal.client.clock import Clock, LoopClock
from shoal.model.core import Container, LifecycleHandler, PodSpec, Probe
from shoal.node import actions
from shoal.node.backoff import RestartBackoff, restart_wanted
from shoal.node.environment import (
    ContainerConfigError,
    Lookup,
    container_command,
    container_env,
    mount_variable,
    rewrite_path,
)
from shoal.node.logs import LogWriter, log_dir
from shoal.node.podstatus import ContainerRecord, Running, Terminated, Waiting, pod_status
from shoal.node.probes import ProbeKind, ProbeState, ProbeTiming
from shoal.node.processes import GroupRegistry, kill_group, spawn
from shoal.node.settings import NodeSettings
from shoal.node.volumes import PodVolumes, VolumeError

__all__ = ["PodContext", "PodWorker", "now_rfc3339"]

log = logging.getLogger("shoal.node")

EventType = Literal["Normal", "Warning"]
MIN_GRACE_AFTER_HOOKS = 2.0


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(slots=True)
class PodContext:
    """What a pod's worker needs from the node."""

    settings: NodeSettings
    registry: GroupRegistry
    config_maps: Lookup
    secrets: Lookup
    services: Callable[[str], list[dict[str, Any]]]
    on_change: Callable[[str], None]
    event: Callable[[Mapping[str, Any], EventType, str, str], None]
    host_ip: str = "127.0.0.1"
    clock: Clock = field(default_factory=LoopClock)


@dataclass(slots=True)
class _Running:
    process: asyncio.subprocess.Process
    env: dict[str, str]
    cwd: str | None


class PodWorker:
    """Runs one pod; see the module docstring."""

    def __init__(self, context: PodContext, pod: Mapping[str, Any], pod_ip: str) -> None:
        self.context = context
        self.pod: dict[str, Any] = dict(pod)
        metadata = pod.get("metadata") or {}
        self.namespace = str(metadata.get("namespace") or "default")
        self.name = str(metadata.get("name"))
        self.uid = str(metadata.get("uid"))
        self.key = f"{self.namespace}/{self.name}"
        self.spec = PodSpec.model_validate(pod.get("spec") or {})
        self.pod_ip = pod_ip
        settings = context.settings
        self.volumes = PodVolumes(settings.pods_dir / self.uid / "volumes", self.spec.volumes)
        self.logs = log_dir(settings.logs_dir, self.namespace, self.name, self.uid)
        previous = {
            str(s.get("name")): s
            for s in ((pod.get("status") or {}).get("containerStatuses") or [])
            if isinstance(s, Mapping)
        }
        self.records = {
            c.name: ContainerRecord(
                name=c.name,
                image=c.image or "",
                restart_count=int(previous.get(c.name, {}).get("restartCount") or 0),
            )
            for c in self.spec.containers
        }
        self.start_time = str((pod.get("status") or {}).get("startTime") or now_rfc3339())
        self.terminating = False
        self.grace: float | None = None
        self.done = asyncio.Event()
        """Set when no process of the pod is left (finished, or terminated)."""
        self._stop = asyncio.Event()
        self._poke = asyncio.Event()
        self._running: dict[str, _Running] = {}
        self._terminate_started: float | None = None

    # -- what the node calls ------------------------------------------------------------------

    def update(self, pod: Mapping[str, Any]) -> None:
        """The pod object changed (labels, annotations, status); the spec is not re-read."""
        self.pod = dict(pod)

    def poke(self) -> None:
        """Something the pod waits for may have appeared (a ConfigMap, a Secret): look again."""
        self._poke.set()
        with contextlib.suppress(VolumeError):
            if self.volumes.sync(self.namespace, self.context.config_maps, self.context.secrets):
                log.info("%s: volumes updated", self.key)

    def terminate(self, grace: float) -> None:
        """Stop the pod within ``grace`` seconds (a later, shorter grace shortens it)."""
        grace = max(grace, 0.0)
        if self.grace is None or grace < self.grace:
            self.grace = grace
        if not self.terminating:
            self.terminating = True
            self._terminate_started = self.context.clock.time()
            for record in self.records.values():
                record.ready = False
            self._changed()
        self._stop.set()

    def status(self, previous: Mapping[str, Any] | None) -> dict[str, Any]:
        return pod_status(
            list(self.records.values()),
            restart_policy=self.spec.restart_policy,
            pod_ip=self.pod_ip,
            host_ip=self.context.host_ip,
            start_time=self.start_time,
            now=now_rfc3339(),
            previous=previous,
            terminating=self.terminating,
        )

    async def run(self) -> None:
        try:
            if await self._setup_volumes():
                async with asyncio.TaskGroup() as group:
                    for container in self.spec.containers:
                        group.create_task(self._container_loop(container))
                    group.create_task(self._terminator())
        finally:
            self.done.set()
            self._changed()

    def remove_files(self) -> None:
        """The pod is gone: remove its volumes (its logs stay, for ``shoal logs``)."""
        self.volumes.remove()
        shutil.rmtree(self.context.settings.pods_dir / self.uid, ignore_errors=True)

    # -- internals ------------------------------------------------------------------------------

    def _changed(self) -> None:
        self.context.on_change(self.key)

    def _event(self, type_: EventType, reason: str, message: str) -> None:
        self.context.event(self.pod, type_, reason, message)

    async def _sleep(self, seconds: float, *, wake_on_poke: bool = False) -> None:
        """Wait ``seconds`` or until the pod stops (or is poked)."""
        clock = self.context.clock
        deadline = clock.time() + max(seconds, 0.0)
        if wake_on_poke:
            self._poke.clear()
            waits = [self._stop, self._poke]
            event = asyncio.Event()

            async def relay(source: asyncio.Event) -> None:
                await source.wait()
                event.set()

            async with asyncio.TaskGroup() as group:
                relays = [group.create_task(relay(w)) for w in waits]
                await clock.wait(event, deadline)
                for task in relays:
                    task.cancel()
            return
        await clock.wait(self._stop, deadline)

    async def _setup_volumes(self) -> bool:
        failures = 0
        while not self._stop.is_set():
            try:
                self.volumes.root.mkdir(parents=True, exist_ok=True)
                self.volumes.sync(self.namespace, self.context.config_maps, self.context.secrets)
                return True
            except VolumeError as error:
                if failures == 0:
                    self._event("Warning", "FailedMount", str(error))
                failures += 1
                await self._sleep(min(0.5 * failures, 5.0), wake_on_poke=True)
        return False

    def _node_vars(self, container: Container) -> dict[str, str]:
        variables = {
            "POD_IP": self.pod_ip,
            "POD_NAME": self.name,
            "POD_NAMESPACE": self.namespace,
            "HOSTNAME": self.name,
        }
        for mount in container.volume_mounts or ():
            variables[mount_variable(mount.name)] = self.volumes.mounts(container)[mount.mount_path]
        return variables

    def _pod_view(self) -> dict[str, Any]:
        """The pod as its containers' ``fieldRef``\\ s see it (its address already assigned)."""
        view = dict(self.pod)
        status = dict(view.get("status") or {})
        status.update(podIP=self.pod_ip, podIPs=[{"ip": self.pod_ip}], hostIP=self.context.host_ip)
        view["status"] = status
        return view

    def _prepare(self, container: Container) -> tuple[list[str], dict[str, str], str | None]:
        settings = self.context.settings
        mounts = self.volumes.mounts(container)
        base = {k: os.environ[k] for k in settings.inherit_env if k in os.environ}
        env = container_env(
            self._pod_view(),
            container,
            base=base,
            node_vars=self._node_vars(container),
            services=self.context.services(self.namespace),
            config_maps=self.context.config_maps,
            secrets=self.context.secrets,
            mounts=mounts,
        )
        argv = container_command(container, env, mounts, python=[sys.executable])
        cwd = rewrite_path(container.working_dir, mounts) if container.working_dir else None
        if cwd is not None and not os.path.isdir(cwd):
            raise ContainerConfigError(f"working directory {cwd!r} does not exist on this node")
        if shutil.which(argv[0], path=env.get("PATH")) is None:
            raise ContainerConfigError(
                f'exec: "{argv[0]}": executable file not found in $PATH ({env.get("PATH", "")})'
            )
        return argv, env, cwd

    async def _container_loop(self, container: Container) -> None:
        record = self.records[container.name]
        settings = self.context.settings
        clock = self.context.clock
        backoff = RestartBackoff(
            settings.backoff_base, settings.backoff_cap, settings.backoff_reset
        )
        if not container.command:
            message = (
                f"container {container.name!r} has only an image ({container.image}): shoal's "
                "node runs processes, not images; give the container a `command` (and `args`) "
                "that runs on this machine"
            )
            record.state = Waiting("CreateContainerError", message)
            self._changed()
            self._event("Warning", "Failed", f"Error: {message}")
            await self._stop.wait()
            return
        config_failures = 0
        while not self._stop.is_set():
            try:
                argv, env, cwd = self._prepare(container)
            except ContainerConfigError as error:
                message = str(error)
                if not isinstance(record.state, Waiting) or record.state.message != message:
                    record.state = Waiting("CreateContainerConfigError", message)
                    self._changed()
                    self._event("Warning", "Failed", f"Error: {message}")
                config_failures += 1
                await self._sleep(min(0.5 * config_failures, 5.0), wake_on_poke=True)
                continue
            config_failures = 0
            if self._stop.is_set():
                return
            started = clock.time()
            exit_code, signal_number, reason = await self._run_once(container, argv, env, cwd)
            finished_at = now_rfc3339()
            started_at = record.state.started_at if isinstance(record.state, Running) else None
            terminated = Terminated(
                exit_code=exit_code,
                reason=reason,
                started_at=started_at,
                finished_at=finished_at,
                signal=signal_number,
            )
            record.state = terminated
            record.ready = False
            record.started = False
            if self._stop.is_set() or not restart_wanted(self.spec.restart_policy, exit_code):
                self._changed()
                return
            delay = backoff.after_exit(clock.time() - started)
            record.last_terminated = terminated
            record.state = Waiting(
                "CrashLoopBackOff",
                f"back-off {delay:g}s restarting failed container={container.name} "
                f"pod={self.name}_{self.namespace}({self.uid})",
            )
            self._changed()
            self._event(
                "Warning",
                "BackOff",
                f"Back-off restarting failed container {container.name} in pod "
                f"{self.name}_{self.namespace}({self.uid})",
            )
            await self._sleep(delay)
            if self._stop.is_set():
                # Stopped during the back-off: it stays terminated.
                record.state, record.last_terminated = terminated, None
                self._changed()
                return
            record.restart_count += 1

    async def _run_once(
        self, container: Container, argv: list[str], env: dict[str, str], cwd: str | None
    ) -> tuple[int, int | None, str]:
        record = self.records[container.name]
        settings = self.context.settings
        writer = LogWriter(
            self.logs / f"{container.name}.log",
            max_bytes=settings.log_max_bytes,
            backups=settings.log_backups,
        )
        try:
            process = await spawn(argv, env=env, cwd=cwd)
        except OSError as error:
            writer.close()
            self._event("Warning", "Failed", f"Error: {error}")
            return 128, None, "StartError"
        pgid = process.pid
        try:
            await self.context.registry.add(pgid, f"{self.key}/{container.name}")
            self._running[container.name] = _Running(process, env, cwd)
            if self.terminating:  # terminate() came while it was starting
                kill_group(pgid, signal.SIGTERM)
            record.state = Running(now_rfc3339())
            record.container_id = f"shoal://{self.uid}/{container.name}/{pgid}"
            if container.startup_probe is None:
                record.started = True
            if container.startup_probe is None and container.readiness_probe is None:
                record.ready = not self.terminating
            self._changed()
            self._event("Normal", "Started", f"Started container {container.name}")
            assert process.stdout is not None
            async with asyncio.TaskGroup() as group:
                group.create_task(writer.pump(process.stdout))
                prober = group.create_task(self._probe(container, process))
                await process.wait()
                prober.cancel()
        finally:
            self._running.pop(container.name, None)
            if process.returncode is None:  # cancelled: never leave it running
                kill_group(pgid, signal.SIGKILL)
                await process.wait()
            kill_group(pgid, signal.SIGKILL)  # what the leader left behind
            await self.context.registry.remove(pgid)
            writer.close()
        code = process.returncode
        assert code is not None
        if code < 0:
            return 128 - code, -code, "Error"
        return code, None, "Completed" if code == 0 else "Error"

    # -- probes ---------------------------------------------------------------------------------

    def _timing(self, probe: Probe) -> ProbeTiming:
        scale = self.context.settings.probe_time_scale
        return ProbeTiming(
            initial_delay=probe.initial_delay_seconds * scale,
            period=probe.period_seconds * scale,
            timeout=probe.timeout_seconds * scale,
            success_threshold=probe.success_threshold,
            failure_threshold=probe.failure_threshold,
        )

    async def _run_action(
        self, container: Container, handler: Probe | LifecycleHandler, limit: float
    ) -> tuple[bool, str]:
        running = self._running.get(container.name)
        if handler.http_get is not None:
            action = handler.http_get
            port = container.port_number(action.port)
            if port is None:
                return False, f"no port named {action.port!r}"
            headers = [(h.name, h.value) for h in action.http_headers or ()]
            return await actions.http_get(
                action.host or self.pod_ip,
                port,
                action.path or "/",
                scheme=action.scheme,
                headers=headers,
                limit=limit,
            )
        if handler.tcp_socket is not None:
            tcp = handler.tcp_socket
            port = container.port_number(tcp.port)
            if port is None:
                return False, f"no port named {tcp.port!r}"
            return await actions.tcp_connect(tcp.host or self.pod_ip, port, limit=limit)
        if handler.exec is not None:
            env = running.env if running else {}
            mounts = self.volumes.mounts(container)
            argv = container_command(
                Container(name=container.name, command=handler.exec.command),
                env,
                mounts,
                python=[sys.executable],
            )
            return await actions.exec_action(
                argv, env=env, cwd=running.cwd if running else None, limit=limit
            )
        if isinstance(handler, LifecycleHandler) and handler.sleep is not None:
            await asyncio.sleep(handler.sleep.seconds * self.context.settings.probe_time_scale)
            return True, ""
        return False, "no handler"

    async def _probe(self, container: Container, process: asyncio.subprocess.Process) -> None:
        record = self.records[container.name]
        clock = self.context.clock
        started = clock.time()
        fast = self.context.settings.ready_poll_interval * self.context.settings.probe_time_scale

        def state(kind: ProbeKind, probe: Probe | None) -> ProbeState | None:
            if probe is None:
                return None
            return ProbeState(kind, self._timing(probe), started, fast_interval=fast)

        probes: dict[ProbeKind, tuple[Probe, ProbeState]] = {}
        declared: list[tuple[ProbeKind, Probe | None]] = [
            ("startup", container.startup_probe),
            ("readiness", container.readiness_probe),
            ("liveness", container.liveness_probe),
        ]
        for kind, probe in declared:
            made = state(kind, probe)
            if probe is not None and made is not None:
                probes[kind] = (probe, made)
        if not probes:
            return
        while process.returncode is None:
            active = [
                kind
                for kind in probes
                if (kind == "startup") == (not record.started) and not self.terminating
            ]
            if not active:
                await self._stop.wait()
                return
            when = min(probes[kind][1].next_run() for kind in active)
            await clock.wait(self._stop, when)
            if self.terminating:
                return
            now = clock.time()
            for kind in active:
                probe, probe_state = probes[kind]
                if probe_state.next_run() > now or process.returncode is not None:
                    continue
                ok, detail = await self._run_action(container, probe, probe_state.timing.timeout)
                flipped = probe_state.record(ok, clock.time())
                if not ok and (kind != "readiness" or probe_state.ever_succeeded):
                    self._event(
                        "Warning", "Unhealthy", f"{kind.capitalize()} probe failed: {detail}"
                    )
                if flipped is None:
                    continue
                if kind == "startup" and flipped:
                    record.started = True
                    # Readiness is only probed from now on; without one, started means ready.
                    if "readiness" not in probes:
                        record.ready = not self.terminating
                    self._changed()
                elif kind == "readiness":
                    record.ready = flipped and not self.terminating
                    self._changed()
                elif not flipped:  # startup or liveness failed: restart the container
                    self._event(
                        "Normal",
                        "Killing",
                        f"Container {container.name} failed {kind} probe, will be restarted",
                    )
                    grace = probe.termination_grace_period_seconds
                    await self._kill(
                        container,
                        process,
                        float(
                            grace
                            if grace is not None
                            else self.spec.termination_grace_period_seconds
                        ),
                    )
                    return

    async def _kill(
        self, container: Container, process: asyncio.subprocess.Process, grace: float
    ) -> None:
        """SIGTERM the container's group, SIGKILL it after ``grace`` seconds."""
        if process.returncode is not None:
            return
        kill_group(process.pid, signal.SIGTERM)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(grace):
                await process.wait()
        if process.returncode is None:
            kill_group(process.pid, signal.SIGKILL)

    # -- termination ----------------------------------------------------------------------------

    async def _terminator(self) -> None:
        await self._stop.wait()
        if not self.terminating:
            return  # stopped without terminate (cannot happen: terminate sets both)
        clock = self.context.clock
        began = self._terminate_started if self._terminate_started is not None else clock.time()
        grace = self.grace if self.grace is not None else 0.0
        deadline = began + grace
        hooks = [
            (c, c.lifecycle.pre_stop)
            for c in self.spec.containers
            if c.lifecycle is not None
            and c.lifecycle.pre_stop is not None
            and c.name in self._running
        ]
        if hooks and grace > 0:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(deadline - clock.time(), 0.0)):
                    async with asyncio.TaskGroup() as group:
                        for container, hook in hooks:
                            group.create_task(self._run_action(container, hook, max(grace, 1.0)))
        for name, running in list(self._running.items()):
            log.debug("%s: SIGTERM to container %s", self.key, name)
            kill_group(running.process.pid, signal.SIGTERM)
        # A shorter grace (a second DELETE) may arrive while waiting; hooks still get their 2 s.
        floor = clock.time() + MIN_GRACE_AFTER_HOOKS if hooks and grace > 0 else began
        while self._running:
            limit = max(began + (self.grace or 0.0), floor)
            remaining = limit - clock.time()
            if remaining <= 0:
                break
            waits = [r.process.wait() for r in self._running.values()]
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(remaining, 0.2)):
                    await asyncio.gather(*waits)
        for name, running in list(self._running.items()):
            log.info(
                "%s: container %s did not stop within the grace period: SIGKILL", self.key, name
            )
            kill_group(running.process.pid, signal.SIGKILL)
