"""The node: the one-machine kubelet. It watches Pods and runs the ones that are its own.

Theory of operation
-------------------
* **Informers** cache Pods, ConfigMaps, Secrets and Services of every namespace. A changed Pod
  key goes to the *pod* controller; a changed ConfigMap or Secret pokes the pods that use it
  (volumes are rewritten, waiting containers look again).
* **Claiming** (``reconcile`` of a pod): a pod with an empty ``spec.nodeName`` is claimed with a
  JSON merge patch of ``spec.nodeName`` carrying the pod's ``resourceVersion`` (so two nodes
  cannot both claim it: the second gets a 409). Kubernetes binds through the ``binding``
  subresource, which shoal's API server does not serve; the result is the same field.
* **Running**: a claimed pod gets an address (:class:`~shoal.node.addresses.AddressAllocator`)
  and a :class:`~shoal.node.supervisor.PodWorker`; a pod already ``Succeeded`` or ``Failed``
  is not run again.
* **Deleting**: a pod with ``deletionTimestamp`` is terminated within its
  ``deletionGracePeriodSeconds``; when its processes are gone the node deletes it with
  ``gracePeriodSeconds=0`` and frees its address and volumes. A pod that vanished (deleted with
  grace 0) is terminated with its own grace period.
* **Status**: every change a worker reports queues the pod key for the *status* controller,
  which writes the computed status with a JSON merge patch of ``/status`` when it differs from
  what it last wrote (the node is the only writer of a pod's status).
* **Never an orphan**: see :mod:`shoal.node.processes`. One node per data dir (a lock file);
  :meth:`Node.stop` terminates every pod (grace capped by ``shutdown_grace_cap``) and returns
  once no pod process is left; the pods stay assigned, and a restarted node runs them again.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
from collections.abc import Mapping
from typing import Any

from shoal.client.clock import Clock, LoopClock
from shoal.client.events import EventRecorder, EventSettings
from shoal.client.http import HTTPClient
from shoal.client.informers import Informer, InformerSettings
from shoal.client.protocol import APIConflict, APINotFound, ResourceRef, object_key
from shoal.client.runtime import Controller, ControllerSettings, Result
from shoal.errors import PermanentError, ShoalError
from shoal.node.addresses import AddressAllocator
from shoal.node.listeners import listening_addresses
from shoal.node.processes import GroupRegistry
from shoal.node.settings import NodeSettings
from shoal.node.supervisor import EventType, PodContext, PodWorker

__all__ = ["Node", "NodeAlreadyRunning"]

log = logging.getLogger("shoal.node")

PODS = ResourceRef("v1", "Pod")
CONFIG_MAPS = ResourceRef("v1", "ConfigMap")
SECRETS = ResourceRef("v1", "Secret")
SERVICES = ResourceRef("v1", "Service")


class NodeAlreadyRunning(PermanentError):
    """Another node uses the same data dir."""


def _pods_in(namespace: str) -> ResourceRef:
    return ResourceRef("v1", "Pod", namespace)


class Node:
    """Runs the pods assigned to ``settings.node_name`` (or unassigned) as process groups.

    ::

        node = Node(client, NodeSettings(data_dir=path))
        async with asyncio.TaskGroup() as group:
            group.create_task(node.run())
            ...
            node.stop()
    """

    def __init__(
        self,
        client: HTTPClient,
        settings: NodeSettings | None = None,
        *,
        clock: Clock | None = None,
    ) -> None:
        self.client = client
        self.settings = settings or NodeSettings()
        self.clock: Clock = clock or LoopClock()
        self.addresses = AddressAllocator(self.settings.pod_cidr, taken=listening_addresses)
        self.registry = GroupRegistry(self.settings.state_file)
        self.workers: dict[str, PodWorker] = {}
        self.ready = asyncio.Event()
        """Set once the caches are filled and the node runs pods."""
        informer_settings = InformerSettings(resync_period=self.settings.heartbeat)
        self.pods = Informer(client, PODS, settings=informer_settings, clock=self.clock)
        self.config_maps = Informer(client, CONFIG_MAPS, settings=informer_settings)
        self.secrets = Informer(client, SECRETS, settings=informer_settings)
        self.services = Informer(client, SERVICES, settings=informer_settings)
        self.pod_controller = Controller(
            "node-pods", self.reconcile, settings=ControllerSettings(workers=2)
        )
        self.status_controller = Controller(
            "node-status",
            self.write_status,
            settings=ControllerSettings(workers=self.settings.status_workers),
        )
        self.recorder = EventRecorder(
            client, EventSettings(component="shoal-node", instance=self.settings.node_name)
        )
        self._events: asyncio.Queue[tuple[Mapping[str, Any], EventType, str, str] | None] = (
            asyncio.Queue()
        )
        self._written: dict[str, dict[str, Any]] = {}
        self._group: asyncio.TaskGroup | None = None
        self._stop = asyncio.Event()
        self._lock: int | None = None
        self._context = PodContext(
            settings=self.settings,
            registry=self.registry,
            config_maps=self._lookup(self.config_maps),
            secrets=self._lookup(self.secrets),
            services=self._services_in,
            on_change=self.status_controller.enqueue,
            event=self._queue_event,
        )

    # -- public -------------------------------------------------------------------------------

    async def run(self) -> None:
        """Run until :meth:`stop`; on the way out no pod process is left."""
        self._take_lock()
        try:
            await self.registry.start()
            try:
                await self._run()
            finally:
                await self.registry.close()
        finally:
            self._release_lock()

    def stop(self) -> None:
        self._stop.set()

    # -- the loop -------------------------------------------------------------------------------

    async def _run(self) -> None:
        self.pods.add_handler(self.pod_controller.enqueue)
        self.config_maps.add_handler(lambda key: self._poke("ConfigMap", key))
        self.secrets.add_handler(lambda key: self._poke("Secret", key))
        informers = (self.config_maps, self.secrets, self.services, self.pods)
        try:
            async with asyncio.TaskGroup() as group:
                self._group = group
                tasks = [group.create_task(i.run()) for i in informers]
                events = group.create_task(self._event_pump())
                status = group.create_task(self.status_controller.run())
                # Pods start only once the other caches are filled (service variables, volumes).
                for informer in informers[:3]:
                    await self._until_synced(informer)
                pods = None
                if not self._stop.is_set():
                    pods = group.create_task(self.pod_controller.run())
                    self.ready.set()
                    log.info("node %s: running pods", self.settings.node_name)
                await self._stop.wait()
                self.pod_controller.stop()
                if pods is not None:
                    await pods
                await self._shutdown_pods()
                self.status_controller.stop()
                await status
                self._events.put_nowait(None)
                await events
                for informer in informers:
                    informer.stop()
                del tasks
        finally:
            self._group = None

    async def _until_synced(self, informer: Informer) -> None:
        """Wait for the informer's first list, unless the node is stopped first."""
        while not informer.synced.is_set() and not self._stop.is_set():
            await self.clock.wait(self._stop, self.clock.time() + 0.01)

    async def _shutdown_pods(self) -> None:
        cap = self.settings.shutdown_grace_cap
        for worker in self.workers.values():
            grace = worker.grace if worker.grace is not None else _grace(worker.pod)
            worker.terminate(min(grace, cap))
        for worker in list(self.workers.values()):
            await worker.done.wait()

    # -- pods -----------------------------------------------------------------------------------

    async def reconcile(self, key: str) -> Result | None:
        if self._stop.is_set():
            return None  # shutting down: start nothing, delete nothing
        pod = self.pods.get(key)
        worker = self.workers.get(key)
        uid = str((pod or {}).get("metadata", {}).get("uid", ""))
        if worker is not None and (pod is None or uid != worker.uid):
            return await self._retire(worker, pod)
        if pod is None:
            return None
        metadata = pod.get("metadata") or {}
        node_name = (pod.get("spec") or {}).get("nodeName")
        if not node_name:
            if not metadata.get("deletionTimestamp"):
                await self._claim(pod)
            return None
        if node_name != self.settings.node_name:
            return None
        if metadata.get("deletionTimestamp"):
            grace = float(metadata.get("deletionGracePeriodSeconds") or 0)
            if worker is not None and not worker.done.is_set():
                worker.terminate(grace)
                return None  # the worker's end queues the key again
            await self._delete_now(pod)
            return None
        if worker is None:
            phase = (pod.get("status") or {}).get("phase")
            if phase in ("Succeeded", "Failed"):
                return None
            self._start(pod)
        else:
            worker.update(pod)
        return None

    async def _retire(self, worker: PodWorker, pod: Mapping[str, Any] | None) -> Result | None:
        """The worker's pod is gone (or replaced by a new one of the same name)."""
        if not worker.done.is_set():
            worker.terminate(worker.grace if worker.grace is not None else _grace(worker.pod))
            return None
        self._forget(worker)
        if pod is not None:
            self.pod_controller.enqueue(worker.key)  # now the new pod of that name
        return None

    def _forget(self, worker: PodWorker) -> None:
        if self.workers.get(worker.key) is worker:
            del self.workers[worker.key]
        self._written.pop(worker.key, None)
        self.addresses.release(worker.uid)
        worker.remove_files()

    async def _claim(self, pod: Mapping[str, Any]) -> None:
        metadata = pod.get("metadata") or {}
        patch = {
            "metadata": {"resourceVersion": metadata.get("resourceVersion")},
            "spec": {"nodeName": self.settings.node_name},
        }
        try:
            await self.client.patch(
                _pods_in(str(metadata.get("namespace"))), str(metadata.get("name")), patch
            )
        except (APIConflict, APINotFound):
            return  # changed or gone meanwhile: its next event brings it back
        self._queue_event(
            pod,
            "Normal",
            "Scheduled",
            f"Successfully assigned {metadata.get('namespace')}/{metadata.get('name')} to "
            f"{self.settings.node_name}",
        )

    def _start(self, pod: Mapping[str, Any]) -> None:
        metadata = pod.get("metadata") or {}
        uid = str(metadata.get("uid"))
        known = (pod.get("status") or {}).get("podIP")
        if not (known and self.addresses.reserve(uid, str(known))):
            address = self.addresses.allocate(uid)
        else:
            address = str(known)
        try:
            worker = PodWorker(self._context, pod, address)
        except (ShoalError, ValueError) as error:
            self.addresses.release(uid)
            self._queue_event(pod, "Warning", "FailedCreatePodSandBox", str(error))
            return
        self.workers[worker.key] = worker
        assert self._group is not None
        self._group.create_task(self._supervise(worker))
        self.status_controller.enqueue(worker.key)

    async def _supervise(self, worker: PodWorker) -> None:
        try:
            await worker.run()
        except Exception:
            log.exception("%s: the pod's supervisor failed", worker.key)
        finally:
            self.pod_controller.enqueue(worker.key)

    async def _delete_now(self, pod: Mapping[str, Any]) -> None:
        metadata = pod.get("metadata") or {}
        key = object_key(pod)
        worker = self.workers.get(key)
        if worker is not None:
            await self.write_status(key)
        with contextlib.suppress(APINotFound):
            await self.client.delete(
                _pods_in(str(metadata.get("namespace"))),
                str(metadata.get("name")),
                grace_period_seconds=0,
            )
        if worker is not None:
            self._forget(worker)

    # -- status ---------------------------------------------------------------------------------

    async def write_status(self, key: str) -> Result | None:
        worker = self.workers.get(key)
        pod = self.pods.get(key)
        if worker is None or pod is None or self._stop.is_set():
            return None
        if str(pod.get("metadata", {}).get("uid")) != worker.uid:
            return None
        previous = self._written.get(key) or pod.get("status")
        status = worker.status(previous)
        if status == self._written.get(key):
            return None
        patch = {"status": {"message": None, "reason": None, **status}}
        try:
            await self.client.patch(
                _pods_in(worker.namespace), worker.name, patch, subresource="status"
            )
        except APINotFound:
            return None
        self._written[key] = status
        return None

    # -- caches, events -------------------------------------------------------------------------

    @staticmethod
    def _lookup(informer: Informer) -> Any:
        def lookup(namespace: str, name: str) -> Mapping[str, Any] | None:
            return informer.get(f"{namespace}/{name}")

        return lookup

    def _services_in(self, namespace: str) -> list[dict[str, Any]]:
        prefix = f"{namespace}/"
        return [s for k, s in self.services.cache.items() if k.startswith(prefix)]

    def _poke(self, kind: str, key: str) -> None:
        namespace = key.partition("/")[0]
        for worker in self.workers.values():
            if worker.namespace == namespace and not worker.done.is_set():
                worker.poke()

    def _queue_event(
        self, obj: Mapping[str, Any], type_: EventType, reason: str, message: str
    ) -> None:
        self._events.put_nowait((obj, type_, reason, message))

    async def _event_pump(self) -> None:
        while True:
            item = await self._events.get()
            if item is None:
                return
            obj, type_, reason, message = item
            await self.recorder.record(
                {"apiVersion": "v1", "kind": "Pod", **obj}, type_, reason, message
            )

    # -- one node per data dir ------------------------------------------------------------------

    def _take_lock(self) -> None:
        self.settings.data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.settings.data_dir / "node.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise NodeAlreadyRunning(
                f"another node runs with the data dir {self.settings.data_dir}: stop it first, "
                "or give this one another --data-dir"
            ) from None
        self._lock = fd

    def _release_lock(self) -> None:
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None


def _grace(pod: Mapping[str, Any]) -> float:
    metadata = pod.get("metadata") or {}
    if metadata.get("deletionGracePeriodSeconds") is not None:
        return float(metadata["deletionGracePeriodSeconds"])
    return float((pod.get("spec") or {}).get("terminationGracePeriodSeconds", 30))
