"""The cluster's service proxy: every Service's cluster address served by shoal's proxy engine.

Theory of operation
-------------------
It plays kube-proxy's part on one machine. Two informers cache all Services and EndpointSlices;
any change marks the plan dirty, and one loop recomputes :func:`~shoal.cluster.services.plan_services`
and, when the result differs from what is served, hands the new configuration to the data plane
(:meth:`shoal.dataplane.runtime.Proxy.apply`), which swaps it atomically: new listeners open,
removed ones close, and an endpoint that left a Service drains (no new requests; those in flight
finish). Changes that arrive while a swap runs are folded into the next one, so a burst of
endpoint updates during a rollout costs a few swaps, not one per event.

Between pods, each Service balances with least-request (two random choices), retries idempotent
requests and failed connections on another endpoint within the retry budget, and ejects an
endpoint after consecutive connection failures or 5xx answers: a replica killed with SIGKILL is
avoided before its EndpointSlice catches up. ``sessionAffinity: ClientIP`` hashes on the client's
address instead.

Ports whose ``appProtocol`` or name says they are not HTTP/1.1 (``redis``, ``https``...: see
:func:`~shoal.cluster.services.port_mode`) are forwarded per connection instead, as kube-proxy
forwards every port, by :class:`~shoal.cluster.tcpforward.TcpForwarder`.

It runs in its own process (``shoal cluster service-proxy``), so the data plane has a core's
worth of event loop to itself and never waits behind the API server.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from dataclasses import dataclass
from pathlib import Path

from shoal.client.http import HTTPClient
from shoal.client.informers import Informer, InformerSettings
from shoal.client.kubeconfig import load_kubeconfig
from shoal.client.protocol import ObjectAPI, ResourceRef
from shoal.cluster.services import ServiceListener, ServicePlan, plan_services
from shoal.cluster.tcpforward import TcpForwarder
from shoal.dataplane.config import (
    BackendConfig,
    HashKey,
    ListenerConfig,
    RouteConfig,
    RuntimeConfig,
)
from shoal.dataplane.driver import loop_factory
from shoal.dataplane.runtime import Proxy

__all__ = ["ServiceProxy", "ServiceProxySettings", "run_service_proxy", "runtime_config"]

log = logging.getLogger("shoal.serviceproxy")

SERVICES = ResourceRef("v1", "Service")
ENDPOINT_SLICES = ResourceRef("discovery.k8s.io/v1", "EndpointSlice")


@dataclass(frozen=True, slots=True)
class ServiceProxySettings:
    """How the service proxy serves Services."""

    policy: str = "least-request"
    """How a Service's endpoints share requests (sessionAffinity ClientIP overrides it)."""
    drain_deadline: float = 30.0
    """Seconds in-flight requests get when the service proxy stops."""
    admin: tuple[str, int] | None = None
    """Where to serve the data plane's ``/healthz`` and ``/metrics`` (None: nowhere)."""


def _route(listener: ServiceListener, settings: ServiceProxySettings) -> RouteConfig:
    backends = tuple(BackendConfig(address=f"{host}:{port}") for host, port in listener.endpoints)
    if listener.affinity == "ClientIP":
        return RouteConfig(
            name=listener.name,
            backends=backends,
            policy="hash",
            hash_key=HashKey(source="client-address"),
        )
    return RouteConfig(name=listener.name, backends=backends, policy=settings.policy)


def runtime_config(plan: ServicePlan, settings: ServiceProxySettings) -> RuntimeConfig:
    """The data plane's configuration for a plan: one listener per HTTP Service port."""
    return RuntimeConfig(
        listeners=tuple(
            ListenerConfig(
                name=listener.name,
                host=listener.host,
                port=listener.port,
                routes=(_route(listener, settings),),
            )
            for listener in plan.listeners
            if listener.mode == "http"
        ),
        admin=settings.admin,
    )


class ServiceProxy:
    """Keeps a :class:`Proxy` serving what the API's Services and EndpointSlices say."""

    def __init__(self, api: ObjectAPI, settings: ServiceProxySettings | None = None) -> None:
        self.settings = settings or ServiceProxySettings()
        informer_settings = InformerSettings(resync_period=None)
        self.services = Informer(api, SERVICES, settings=informer_settings)
        self.slices = Informer(api, ENDPOINT_SLICES, settings=informer_settings)
        self.proxy = Proxy(RuntimeConfig(admin=self.settings.admin))
        self.tcp = TcpForwarder()
        """The Service ports forwarded per connection."""
        self.plan = ServicePlan(())
        """What is being served now."""
        self.swaps = 0
        """How many configurations have been applied."""
        self._dirty = asyncio.Event()
        self._stop = asyncio.Event()
        self.services.add_handler(self._changed)
        self.slices.add_handler(self._changed)

    def _changed(self, key: str) -> None:
        self._dirty.set()

    def stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        """Serve until :meth:`stop`; then close the listeners, letting requests finish."""
        await self.proxy.start()
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self.services.run())
                group.create_task(self.slices.run())
                syncer = group.create_task(self._sync_loop())
                await self._stop.wait()
                syncer.cancel()
                self.services.stop()
                self.slices.stop()
        finally:
            await self.tcp.shutdown()
            await self.proxy.shutdown(self.settings.drain_deadline)

    async def _sync_loop(self) -> None:
        await self.services.synced.wait()
        await self.slices.synced.wait()
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            plan = plan_services(self.services.cache.values(), self.slices.cache.values())
            if plan == self.plan:
                continue
            for reason in set(plan.skipped) - set(self.plan.skipped):
                log.warning("not served: %s", reason)
            try:
                tcp = [listener for listener in plan.listeners if listener.mode == "tcp"]
                self.tcp.retain(tcp)  # first: an address it gives up may become an HTTP port
                await self.proxy.apply(runtime_config(plan, self.settings))
                await self.tcp.apply(tcp)
            except (ValueError, OSError) as error:
                # A listener that cannot bind (an address taken by something else) must not stop
                # the other Services from being served: keep the old plan and retry on the next
                # change.
                log.error("could not apply the service configuration: %s", error)
                continue
            self.plan = plan
            self.swaps += 1
            log.info(
                "serving %d service ports (%d endpoints)",
                len(plan.listeners),
                sum(len(listener.endpoints) for listener in plan.listeners),
            )


async def _serve(kubeconfig: Path) -> None:
    loop = asyncio.get_running_loop()
    async with HTTPClient(load_kubeconfig(kubeconfig)) as client:
        service_proxy = ServiceProxy(client)
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, service_proxy.stop)
        await service_proxy.run()


def run_service_proxy(kubeconfig: Path) -> None:
    """Run the service proxy in this process until SIGTERM (uvloop when installed)."""
    with (
        contextlib.suppress(KeyboardInterrupt),
        asyncio.Runner(loop_factory=loop_factory()) as runner,
    ):
        runner.run(_serve(kubeconfig))
