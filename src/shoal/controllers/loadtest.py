"""The LoadTest controller and the runner its generator pod runs.

Theory of operation
-------------------
**Controller** (``reconcile(key)``, level-triggered): for each LoadTest it reads the generator
pods it owns (label ``loadtest.shoal.dev/uid``) and then the LoadTest, and :func:`decide` (pure)
says what to do:

* a pod of an older generation is deleted (a changed spec stops the old run);
* no pod for the current generation and no result for it: create the pod (``restartPolicy:
  Never``, an owner reference to the LoadTest), then record ``observedGeneration`` with
  ``Running=False, reason=Pending``. The pod is created first, so "observedGeneration is current
  but the pod is gone" can only mean the pod was deleted: the run ends ``Failed/GeneratorLost``;
* the current pod ended (phase ``Succeeded`` or ``Failed``) without a final status: ``Failed/
  GeneratorFailed`` (pods are read before the LoadTest so a runner that wrote its result and
  exited is never mistaken for one that did not);
* a finished generation is left alone: the result stays until the spec changes.

Deleting the LoadTest deletes its pod through the owner reference (the API server's garbage
collector), and the runner, which reads the object at every status write, stops on its own.

**Runner** (:func:`run_loadtest`, the pod's ``shoal loadtest run``): reads the LoadTest, resolves
``spec.service`` to the Service's ``clusterIP`` and first port (``http`` by name if there is one)
through the API, runs the generator, and writes ``status`` when it starts, every
``status_interval`` seconds, and at the end: figures, threshold verdicts and the conditions
``Running``, ``Succeeded`` and (on failure) ``Failed`` with a reason. A missing Service, one
without an address, or a spec that cannot run ends ``Failed`` with the reason. The runner stops
when the object is deleted, re-created or its generation changes, and on SIGTERM.

**Credentials**: the pod finds the API as Kubernetes clients do (:func:`runner_config`):
``--kubeconfig``, then ``$KUBECONFIG``, then the in-cluster service account files
(``/var/run/secrets/kubernetes.io/serviceaccount/{token,ca.crt,namespace}`` with
``$KUBERNETES_SERVICE_HOST``/``_PORT``), then the default kubeconfig search.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shoal.client import (
    APIConflict,
    APINotFound,
    Controller,
    ControllerSettings,
    Informer,
    InformerSettings,
    KubeConfig,
    ObjectAPI,
    ResourceRef,
    load_kubeconfig,
)
from shoal.errors import InvalidObjectsError, RetryableError
from shoal.loadgen import (
    LoadPlan,
    LoadSettings,
    PlanError,
    RunStats,
    Target,
    plan_for_loadtest,
    run_load,
    run_workers,
    summarize,
)
from shoal.model.loading import object_from_dict
from shoal.model.loadtest import LOADTEST_GROUP, LoadTest

__all__ = [
    "GENERATION_LABEL",
    "LOADTESTS",
    "PODS",
    "SERVICES",
    "UID_LABEL",
    "Decision",
    "LoadTestController",
    "LoadTestSettings",
    "RunnerSettings",
    "decide",
    "generator_pod",
    "pod_name",
    "run_loadtest",
    "runner_config",
    "status_from_summary",
]

log = logging.getLogger("shoal.controllers.loadtest")

LOADTESTS = ResourceRef(f"{LOADTEST_GROUP}/v1", "LoadTest")
PODS = ResourceRef("v1", "Pod")
SERVICES = ResourceRef("v1", "Service")
UID_LABEL = f"{LOADTEST_GROUP}/uid"
NAME_LABEL = f"{LOADTEST_GROUP}/name"
GENERATION_LABEL = f"{LOADTEST_GROUP}/generation"
SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"

Body = dict[str, Any]


@dataclass(frozen=True, slots=True)
class LoadTestSettings:
    """How the controller makes generator pods."""

    command: tuple[str, ...] = ("shoal",)
    """The shoal executable in the pod (the one-machine node may use ``python -m shoal``)."""
    image: str = "shoal:latest"
    """The generator container's image (what Kubernetes pulls; the one-machine node runs the
    command directly)."""
    status_interval: float = 2.0
    """Seconds between the runner's status writes while it runs."""
    namespace: str | None = None
    """Watch only this namespace (None: all)."""
    controller: ControllerSettings = field(default_factory=ControllerSettings)
    """Workers of the reconcile loop."""
    resync_period: float | None = 300.0
    """Seconds between reconciles of every LoadTest even without a change."""


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def pod_name(name: str, generation: int) -> str:
    """``NAME-gen-G``, the name shortened to fit 253 characters."""
    suffix = f"-gen-{generation}"
    return name[: 253 - len(suffix)].rstrip("-.") + suffix


def generator_pod(loadtest: Mapping[str, Any], settings: LoadTestSettings) -> Body:
    """The pod that runs the current generation of ``loadtest``."""
    metadata = loadtest["metadata"]
    name, namespace, uid = metadata["name"], metadata["namespace"], metadata["uid"]
    generation = int(metadata.get("generation") or 1)
    command = [
        *settings.command,
        "loadtest",
        "run",
        "--name",
        name,
        "--namespace",
        namespace,
        "--generation",
        str(generation),
        "--status-interval",
        f"{settings.status_interval:g}",
    ]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": pod_name(name, generation),
            "namespace": namespace,
            "labels": {
                UID_LABEL: uid,
                GENERATION_LABEL: str(generation),
                "app.kubernetes.io/component": "loadtest-generator",
            },
            "annotations": {NAME_LABEL: name},
            "ownerReferences": [
                {
                    "apiVersion": LOADTESTS.api_version,
                    "kind": "LoadTest",
                    "name": name,
                    "uid": uid,
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": {
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 10,
            "containers": [{"name": "generator", "image": settings.image, "command": command}],
        },
    }


def condition(
    type_: str, status: str, reason: str, message: str, generation: int
) -> dict[str, Any]:
    return {
        "type": type_,
        "status": status,
        "reason": reason,
        "message": message,
        "observedGeneration": generation,
        "lastTransitionTime": _now(),
    }


def _conditions(status: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    return {c.get("type", ""): c for c in status.get("conditions") or () if isinstance(c, dict)}


def finished(status: Mapping[str, Any], generation: int) -> bool:
    """The status holds the final result of ``generation``."""
    if status.get("observedGeneration") != generation:
        return False
    conditions = _conditions(status)
    return (
        conditions.get("Succeeded", {}).get("status") == "True"
        or conditions.get("Failed", {}).get("status") == "True"
    )


def failed_status(
    status: Mapping[str, Any], generation: int, reason: str, message: str
) -> dict[str, Any]:
    """``status`` ended Failed (figures kept)."""
    result = dict(status)
    result["observedGeneration"] = generation
    result["completionTime"] = _now()
    result["conditions"] = [
        condition("Running", "False", reason, message, generation),
        condition("Succeeded", "False", reason, message, generation),
        condition("Failed", "True", reason, message, generation),
    ]
    return result


@dataclass(frozen=True, slots=True)
class Decision:
    """What reconcile does for one LoadTest."""

    delete: tuple[str, ...] = ()
    """Pods (of older generations) to delete."""
    create: Body | None = None
    """The pod to create."""
    status: Body | None = None
    """The status to write (None: leave it)."""


def decide(
    loadtest: Mapping[str, Any], pods: Sequence[Mapping[str, Any]], settings: LoadTestSettings
) -> Decision:
    """The pure core of reconcile (see the module docstring)."""
    metadata = loadtest["metadata"]
    generation = int(metadata.get("generation") or 1)
    status: Mapping[str, Any] = loadtest.get("status") or {}
    mine = [p for p in pods if p["metadata"].get("labels", {}).get(UID_LABEL) == metadata["uid"]]
    wanted = pod_name(metadata["name"], generation)
    stale = tuple(
        p["metadata"]["name"]
        for p in mine
        if p["metadata"]["name"] != wanted and not p["metadata"].get("deletionTimestamp")
    )
    current = next((p for p in mine if p["metadata"]["name"] == wanted), None)
    if finished(status, generation):
        return Decision(delete=stale)
    if current is None:
        if status.get("observedGeneration") == generation:
            message = f"the generator pod {wanted} was deleted before the run finished"
            return Decision(
                delete=stale, status=failed_status(status, generation, "GeneratorLost", message)
            )
        pending = {
            "observedGeneration": generation,
            "conditions": [
                condition("Running", "False", "Pending", f"starting pod {wanted}", generation),
                condition("Succeeded", "Unknown", "Pending", f"starting pod {wanted}", generation),
            ],
        }
        return Decision(delete=stale, create=generator_pod(loadtest, settings), status=pending)
    phase = (current.get("status") or {}).get("phase")
    if phase in ("Succeeded", "Failed"):
        message = f"the generator pod {wanted} ended ({phase}) without reporting a result"
        for container in (current.get("status") or {}).get("containerStatuses") or ():
            terminated = (container.get("state") or {}).get("terminated") or {}
            if terminated:
                message += f"; exit code {terminated.get('exitCode')}"
                if terminated.get("message"):
                    message += f": {terminated['message']}"
        return Decision(
            delete=stale, status=failed_status(status, generation, "GeneratorFailed", message)
        )
    if status.get("observedGeneration") != generation:
        pending = {
            "observedGeneration": generation,
            "conditions": [
                condition("Running", "False", "Pending", f"pod {wanted} created", generation),
                condition("Succeeded", "Unknown", "Pending", f"pod {wanted} created", generation),
            ],
        }
        return Decision(delete=stale, status=pending)
    return Decision(delete=stale)


class LoadTestController:
    """Informers on LoadTests and their generator pods, and the reconcile loop.

    ::

        controller = LoadTestController(api)
        async with asyncio.TaskGroup() as group:
            group.create_task(controller.run())
            ...
            controller.stop()
    """

    def __init__(self, api: ObjectAPI, settings: LoadTestSettings | None = None) -> None:
        self.api = api
        self.settings = settings or LoadTestSettings()
        namespace = self.settings.namespace
        self.loadtests = Informer(
            api,
            ResourceRef(LOADTESTS.api_version, LOADTESTS.kind, namespace),
            settings=InformerSettings(resync_period=self.settings.resync_period),
        )
        self.pods = Informer(
            api,
            ResourceRef(PODS.api_version, PODS.kind, namespace),
            settings=InformerSettings(resync_period=None, label_selector=UID_LABEL),
        )
        self.controller = Controller("loadtest", self.reconcile, settings=self.settings.controller)
        self.loadtests.add_handler(self.controller.enqueue)
        self.pods.add_handler(self._pod_changed)

    def _pod_changed(self, key: str) -> None:
        pod = self.pods.get(key)
        if pod is None:
            # Deleted: the informer no longer has it; its owner is found by the name annotation
            # at the next resync. Reconcile every LoadTest of the namespace (few) to be prompt.
            namespace = key.partition("/")[0]
            for owner in list(self.loadtests.cache):
                if owner.startswith(f"{namespace}/"):
                    self.controller.enqueue(owner)
            return
        name = (pod["metadata"].get("annotations") or {}).get(NAME_LABEL)
        if name:
            self.controller.enqueue(f"{pod['metadata']['namespace']}/{name}")

    async def run(self) -> None:
        """Run until :meth:`stop`."""
        async with asyncio.TaskGroup() as group:
            group.create_task(self.loadtests.run())
            group.create_task(self.pods.run())
            group.create_task(self.controller.run())

    def stop(self) -> None:
        self.loadtests.stop()
        self.pods.stop()
        self.controller.stop()

    async def reconcile(self, key: str) -> None:
        namespace, _, name = key.rpartition("/")
        pods_ref = ResourceRef(PODS.api_version, PODS.kind, namespace)
        ref = ResourceRef(LOADTESTS.api_version, LOADTESTS.kind, namespace)
        # Pods first, then the LoadTest: see the module docstring.
        pods = (await self.api.list(pods_ref, label_selector=UID_LABEL)).items
        try:
            loadtest = await self.api.get(ref, name)
        except APINotFound:
            # Gone: its pods go with it (owner references); delete any left for substrates
            # without a garbage collector.
            for pod in pods:
                if (pod["metadata"].get("annotations") or {}).get(NAME_LABEL) == name:
                    with contextlib.suppress(APINotFound):
                        await self.api.delete(pods_ref, pod["metadata"]["name"])
            return
        decision = decide(loadtest, pods, self.settings)
        for stale in decision.delete:
            log.info("loadtest %s: deleting the generator pod %s of an older spec", key, stale)
            with contextlib.suppress(APINotFound):
                await self.api.delete(pods_ref, stale)
        if decision.create is not None:
            log.info("loadtest %s: creating the generator pod", key)
            with contextlib.suppress(APIConflict):  # already exists: created earlier
                await self.api.create(pods_ref, decision.create)
        if decision.status is not None:
            body = dict(loadtest)
            body["status"] = decision.status
            await self.api.update_status(ref, body)


# -- the runner -------------------------------------------------------------------------------


def runner_config(kubeconfig: str | None = None) -> KubeConfig:
    """Where a generator pod finds the API (see the module docstring)."""
    if kubeconfig or os.environ.get("KUBECONFIG"):
        return load_kubeconfig(kubeconfig)
    account = Path(os.environ.get("SHOAL_SERVICEACCOUNT_DIR", SERVICE_ACCOUNT_DIR))
    host = os.environ.get("KUBERNETES_SERVICE_HOST")
    if host and (account / "token").is_file():
        port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
        server = f"https://[{host}]:{port}" if ":" in host else f"https://{host}:{port}"
        ca = account / "ca.crt"
        namespace = account / "namespace"
        return KubeConfig(
            path=account / "token",
            context="in-cluster",
            server=server,
            namespace=namespace.read_text().strip() if namespace.is_file() else "default",
            ca_data=ca.read_bytes() if ca.is_file() else None,
            token=(account / "token").read_text().strip(),
        )
    return load_kubeconfig(None)


@dataclass(frozen=True, slots=True)
class RunnerSettings:
    """How the runner runs a LoadTest."""

    status_interval: float = 2.0
    """Seconds between status writes while running (each also checks the object still wants
    this run)."""
    target: Target | None = None
    """Send to this address instead of the Service's (tests, or a substrate without Service
    addresses)."""
    workers: int = 1
    """Generator processes."""
    load: LoadSettings = field(default_factory=LoadSettings)
    """Generator settings (``connections`` comes from the spec)."""


def _merged(
    base: Callable[[dict[str, Any]], dict[str, Any]], figures: Mapping[str, Any]
) -> Callable[[dict[str, Any]], dict[str, Any]]:
    def change(status: dict[str, Any]) -> dict[str, Any]:
        return {**base(status), **figures}

    return change


class _Superseded(Exception):
    """The object was deleted, re-created or changed: this run is no longer wanted."""


def status_from_summary(summary: Mapping[str, Any]) -> dict[str, Any]:
    """The figures of a summary, in the LoadTest status' shape."""

    def latency(values: Mapping[str, Any]) -> dict[str, Any]:
        return {
            k: values.get(k) for k in ("p50", "p90", "p99", "p999") if values.get(k) is not None
        }

    return {
        "requests": summary["requests"],
        "achievedRequestsPerSecond": summary["achievedRequestsPerSecond"],
        "errorRatio": summary["errorRatio"],
        "latency": latency(summary["latency"]),
        "paths": [
            {
                "path": p["path"],
                "method": p["method"],
                "requests": p["requests"],
                "errors": p["errors"],
                "latency": latency(p["latency"]),
            }
            for p in summary["paths"]
        ],
        "thresholds": [
            {
                "expression": t["expression"],
                "passed": t["passed"],
                **({"observed": t["observed"]} if t["observed"] is not None else {}),
            }
            for t in summary["thresholds"]
        ],
    }


class _Writer:
    """Writes the LoadTest's status, checking each time that this run is still wanted."""

    def __init__(self, api: ObjectAPI, ref: ResourceRef, name: str, uid: str, generation: int):
        self.api, self.ref, self.name, self.uid, self.generation = api, ref, name, uid, generation

    async def write(self, change: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
        for _ in range(10):
            try:
                body = await self.api.get(self.ref, self.name)
            except APINotFound:
                raise _Superseded("the LoadTest was deleted") from None
            metadata = body["metadata"]
            if metadata.get("uid") != self.uid:
                raise _Superseded("the LoadTest was deleted and created again")
            if int(metadata.get("generation") or 1) != self.generation:
                raise _Superseded("the LoadTest's spec changed; a new run replaces this one")
            body["status"] = change(dict(body.get("status") or {}))
            try:
                await self.api.update_status(self.ref, body)
                return
            except APIConflict:
                continue
            except APINotFound:
                raise _Superseded("the LoadTest was deleted") from None
        raise RetryableError("the LoadTest's status kept conflicting; giving up this write")


async def resolve_service(api: ObjectAPI, namespace: str, service: str) -> Target:
    """The Service's clusterIP and port; PlanError with the reason when it has none."""
    try:
        body = await api.get(ResourceRef("v1", "Service", namespace), service)
    except APINotFound:
        raise PlanError(f'service "{service}" not found in namespace "{namespace}"') from None
    spec = body.get("spec") or {}
    address = spec.get("clusterIP")
    if not address or address == "None":
        raise PlanError(
            f'service "{service}" has no cluster IP (headless or not yet assigned): '
            "a LoadTest needs a ClusterIP Service"
        )
    ports = spec.get("ports") or []
    if not ports:
        raise PlanError(f'service "{service}" has no ports')
    port = next((p for p in ports if p.get("name") == "http"), ports[0])
    number = int(port["port"])
    authority = f"[{address}]:{number}" if ":" in address else f"{address}:{number}"
    return Target(address, number, authority)


async def run_loadtest(
    api: ObjectAPI,
    namespace: str,
    name: str,
    generation: int | None = None,
    *,
    settings: RunnerSettings | None = None,
    stop: asyncio.Event | None = None,
) -> str:
    """Run the LoadTest ``namespace/name`` (generation ``generation``, if given) and write its
    status; returns the final reason (``Succeeded``, ``ThresholdsFailed``, ``ServiceNotFound``,
    ``Superseded``, ``Stopped``, ...)."""
    settings = settings or RunnerSettings()
    ref = ResourceRef(LOADTESTS.api_version, LOADTESTS.kind, namespace)
    try:
        body = await api.get(ref, name)
    except APINotFound:
        log.warning("loadtest %s/%s does not exist; nothing to run", namespace, name)
        return "NotFound"
    metadata = body["metadata"]
    current = int(metadata.get("generation") or 1)
    if generation is not None and generation != current:
        log.warning(
            "loadtest %s/%s is at generation %d, not %d", namespace, name, current, generation
        )
        return "Superseded"
    writer = _Writer(api, ref, name, str(metadata.get("uid")), current)
    try:
        return await _run(api, writer, body, namespace, settings, stop or asyncio.Event())
    except _Superseded as reason:
        log.info("loadtest %s/%s: stopping: %s", namespace, name, reason)
        return "Superseded"


async def _run(
    api: ObjectAPI,
    writer: _Writer,
    body: Mapping[str, Any],
    namespace: str,
    settings: RunnerSettings,
    stop: asyncio.Event,
) -> str:
    generation = writer.generation

    async def fail(reason: str, message: str) -> str:
        await writer.write(lambda status: failed_status(status, generation, reason, message))
        return reason

    try:
        loadtest = object_from_dict(dict(body))
    except InvalidObjectsError as error:
        return await fail("InvalidSpec", str(error))
    assert isinstance(loadtest, LoadTest)
    try:
        target = settings.target or await resolve_service(api, namespace, loadtest.spec.service)
    except PlanError as error:
        reason = "ServiceNotFound" if "not found" in str(error) else "ServiceHasNoAddress"
        return await fail(reason, str(error))
    plan: LoadPlan = plan_for_loadtest(loadtest.spec, target, settings=settings.load)
    thresholds = loadtest.spec.parsed_thresholds()
    started = _now()
    message = f"sending {plan.requested_rate:,.0f} req/s to {target} for {plan.duration:g}s"

    def running(status: dict[str, Any]) -> dict[str, Any]:
        return {
            "observedGeneration": generation,
            "startTime": started,
            "conditions": [
                condition("Running", "True", "Running", message, generation),
                condition("Succeeded", "Unknown", "Running", message, generation),
            ],
        }

    await writer.write(running)
    latest: list[RunStats] = []
    superseded: list[_Superseded] = []

    def progress(stats: RunStats, now: float) -> None:
        latest[:] = [stats]

    async def report() -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), settings.status_interval)
            if stop.is_set():
                return
            figures = status_from_summary(summarize(plan, latest[0])) if latest else {}
            try:
                await writer.write(_merged(running, figures))
            except _Superseded as reason:
                superseded.append(reason)
                stop.set()
            except RetryableError as error:  # a failed progress write is not fatal
                log.warning("status write failed: %s", error)

    async with asyncio.TaskGroup() as group:
        reporter = group.create_task(report())
        try:
            if settings.workers > 1:
                stats = await run_workers(plan, settings.workers, stop=stop)
            else:
                stats = await run_load(plan, stop=stop, on_progress=progress)
        finally:
            reporter.cancel()
    if superseded:
        raise superseded[0]
    summary = summarize(plan, stats, thresholds)
    figures = status_from_summary(summary)
    failed = [t for t in summary["thresholds"] if not t["passed"]]
    if stats.stopped:
        reason, text = "Stopped", "the run was stopped before its end"
    elif failed:
        reason = "ThresholdsFailed"
        text = "thresholds failed: " + ", ".join(
            f"{t['expression']} (observed {t['observed']})" for t in failed
        )
    else:
        reason = "Succeeded"
        text = (
            f"{summary['requests']:,} requests at {summary['achievedRequestsPerSecond']:,.1f} "
            f"req/s; p99 {summary['latency']['p99']} ms; error ratio {summary['errorRatio']}"
        )
    ok = reason == "Succeeded"

    def final(status: dict[str, Any]) -> dict[str, Any]:
        result = {
            "observedGeneration": generation,
            "startTime": started,
            "completionTime": _now(),
            **figures,
            "conditions": [
                condition("Running", "False", "Finished", text, generation),
                condition("Succeeded", "True" if ok else "False", reason, text, generation),
            ],
        }
        if not ok:
            result["conditions"].append(condition("Failed", "True", reason, text, generation))
        return result

    await writer.write(final)
    return reason
