"""All the controllers of the one-machine cluster, on shared informers: :func:`all_controllers`.

Theory of operation
-------------------
One informer per kind (Pods, ReplicaSets, Deployments, Services, EndpointSlices, ConfigMaps and
the two pattern kinds) keeps a cache; every controller reads those caches. Each informer's
handler maps a changed key to the keys of the controllers that care, as controller-runtime's
``Owns``/``Watches`` do:

=================  ===========================================================================
a change of        queues
=================  ===========================================================================
Pod                its ReplicaSet (or, for an orphan, every ReplicaSet selecting it); every
                   Service selecting it, before and after the change (EndpointSlices)
ReplicaSet         itself; its Deployment (or, for an orphan, every Deployment selecting it)
Deployment         itself; its pattern
Service            its EndpointSlices; its pattern
EndpointSlice      its Service (a slice changed or deleted by someone else is repaired)
ConfigMap          its pattern
pattern            itself
=================  ===========================================================================

A deleted object is gone from the cache when its handler runs, so the manager remembers the last
version of every key to map a deletion too. No controller reconciles before every cache has
listed once (a ReplicaSet controller reading an empty pod cache would create every pod again).
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Protocol

from shoal.client import (
    Clock,
    Controller,
    EventRecorder,
    EventSettings,
    Informer,
    InformerSettings,
    LoopClock,
    ObjectAPI,
    ResourceRef,
    Result,
    WorkQueue,
)
from shoal.client import ControllerSettings as RunSettings
from shoal.controllers._objects import (
    CONFIG_MAP,
    DEPLOYMENT,
    ENDPOINT_SLICE,
    POD,
    REPLICA_SET,
    REPLICATED_SERVICE,
    SERVICE,
    SHARDED_SERVICE,
    Body,
    controller_ref,
    labels_of,
    name_of,
    namespace_of,
    selector_of,
)
from shoal.controllers._runtime import Caches, Context, ControllerSettings
from shoal.controllers.deployment import DeploymentController
from shoal.controllers.endpointslice import SERVICE_NAME_LABEL, EndpointSliceController
from shoal.controllers.patterns import PATTERN_KINDS, PatternController, pattern_key
from shoal.controllers.replicaset import ReplicaSetController

__all__ = ["ControllerManager", "Runnable", "all_controllers"]

KINDS: tuple[ResourceRef, ...] = (
    POD,
    REPLICA_SET,
    DEPLOYMENT,
    SERVICE,
    ENDPOINT_SLICE,
    CONFIG_MAP,
    REPLICATED_SERVICE,
    SHARDED_SERVICE,
)


class Runnable(Protocol):
    """Something a TaskGroup runs until told to stop."""

    async def run(self) -> None: ...

    def stop(self) -> None: ...


class _Reconciler(Protocol):
    name: str

    async def reconcile(self, key: str) -> Result | None: ...


class ControllerManager:
    """The informers and controllers; iterate it for the runnables, or ``await run()``."""

    def __init__(
        self,
        api: ObjectAPI,
        settings: ControllerSettings | None = None,
        *,
        clock: Clock | None = None,
        now: Callable[[], dt.datetime] | None = None,
    ) -> None:
        self.settings = settings or ControllerSettings()
        self.clock: Clock = clock or LoopClock()
        informer_settings = InformerSettings(resync_period=self.settings.resync_period)
        self.informers: dict[str, Informer] = {
            ref.kind: Informer(
                api,
                ResourceRef(ref.api_version, ref.kind, self.settings.namespace),
                settings=informer_settings,
                clock=self.clock,
            )
            for ref in KINDS
        }
        recorder = EventRecorder(api, EventSettings(component=self.settings.component))
        self.context = Context(
            api=api,
            caches=Caches(self.informers),
            recorder=recorder,
            clock=self.clock,
            settings=self.settings,
        )
        if now is not None:
            self.context.now = now
        self.replicasets = ReplicaSetController(self.context)
        self.deployments = DeploymentController(self.context)
        self.endpoints = EndpointSliceController(self.context)
        self.patterns = PatternController(self.context)
        self.controllers: dict[str, Controller] = {
            reconciler.name: self._controller(reconciler)
            for reconciler in (self.replicasets, self.deployments, self.endpoints, self.patterns)
        }
        self._last: dict[str, dict[str, Body]] = {ref.kind: {} for ref in KINDS}
        for ref in KINDS:
            self.informers[ref.kind].add_handler(self._handler(ref.kind))

    # -- running ----------------------------------------------------------------------------

    def __iter__(self) -> Iterator[Runnable]:
        yield from self.informers.values()
        yield from self.controllers.values()

    async def run(self) -> None:
        """Run every informer and controller until :meth:`stop`."""
        async with asyncio.TaskGroup() as group:
            for runnable in self:
                group.create_task(runnable.run())

    def stop(self) -> None:
        for runnable in self:
            runnable.stop()

    async def synced(self) -> None:
        """Return once every informer has listed."""
        await asyncio.gather(*(informer.synced.wait() for informer in self.informers.values()))

    def _controller(self, reconciler: _Reconciler) -> Controller:
        async def reconcile(key: str) -> Result | None:
            await self.synced()
            return await reconciler.reconcile(key)

        return Controller(
            reconciler.name,
            reconcile,
            queue=WorkQueue(clock=self.clock),
            settings=RunSettings(workers=self.settings.workers),
        )

    # -- what a change queues -----------------------------------------------------------------

    def _handler(self, kind: str) -> Callable[[str], None]:
        informer = self.informers[kind]
        last = self._last[kind]
        route = self._routes()[kind]

        def handle(key: str) -> None:
            before = last.get(key)
            now = informer.cache.get(key)  # read each time: a re-list replaces the dict
            if now is None:
                last.pop(key, None)
            else:
                last[key] = now
            for body in (before, now):
                if body is not None:
                    route(key, body)

        return handle

    def _routes(self) -> dict[str, Callable[[str, Body], None]]:
        return {
            "Pod": self._pod_changed,
            "ReplicaSet": self._replicaset_changed,
            "Deployment": self._deployment_changed,
            "Service": self._service_changed,
            "EndpointSlice": self._slice_changed,
            "ConfigMap": lambda key, body: self._owner_pattern(body),
            "ReplicatedService": self._pattern_changed,
            "ShardedService": self._pattern_changed,
        }

    def _enqueue(self, controller: str, key: str) -> None:
        self.controllers[controller].enqueue(key)

    def _owner_or_selecting(
        self, body: Body, owner_kind: str, owners: ResourceRef, controller: str
    ) -> None:
        namespace = namespace_of(body)
        ref = controller_ref(body)
        if ref is not None:
            if ref.get("kind") == owner_kind:
                self._enqueue(controller, f"{namespace}/{ref.get('name')}")
            return
        labels = labels_of(body)
        for owner in self.context.caches.list(owners, namespace):
            if selector_of(owner).matches(labels):
                self._enqueue(controller, f"{namespace}/{name_of(owner)}")

    def _pod_changed(self, key: str, pod: Body) -> None:
        self._owner_or_selecting(pod, "ReplicaSet", REPLICA_SET, "replicaset")
        namespace = namespace_of(pod)
        labels = labels_of(pod)
        for service in self.context.caches.list(SERVICE, namespace):
            selector = (service.get("spec") or {}).get("selector") or {}
            if selector and all(labels.get(k) == v for k, v in selector.items()):
                self._enqueue("endpointslice", f"{namespace}/{name_of(service)}")

    def _replicaset_changed(self, key: str, rs: Body) -> None:
        self._enqueue("replicaset", key)
        self._owner_or_selecting(rs, "Deployment", DEPLOYMENT, "deployment")

    def _deployment_changed(self, key: str, deployment: Body) -> None:
        self._enqueue("deployment", key)
        self._owner_pattern(deployment)

    def _service_changed(self, key: str, service: Body) -> None:
        self._enqueue("endpointslice", key)
        self._owner_pattern(service)

    def _slice_changed(self, key: str, endpoint_slice: Body) -> None:
        service = labels_of(endpoint_slice).get(SERVICE_NAME_LABEL)
        if service:
            self._enqueue("endpointslice", f"{namespace_of(endpoint_slice)}/{service}")

    def _pattern_changed(self, key: str, pattern: Body) -> None:
        self._enqueue("pattern", pattern_key(str(pattern.get("kind")), key))

    def _owner_pattern(self, body: Mapping[str, Any]) -> None:
        ref = controller_ref(body)
        if ref is not None and ref.get("kind") in PATTERN_KINDS:
            key = f"{namespace_of(body)}/{ref.get('name')}"
            self._enqueue("pattern", pattern_key(str(ref.get("kind")), key))


def all_controllers(
    api: ObjectAPI,
    settings: ControllerSettings | None = None,
    *,
    clock: Clock | None = None,
    now: Callable[[], dt.datetime] | None = None,
) -> ControllerManager:
    """Every controller of the one-machine cluster for ``api``: iterate the result for the
    runnables to start in a TaskGroup (or ``await manager.run()``), ``manager.stop()`` to end."""
    return ControllerManager(api, settings, clock=clock, now=now)
