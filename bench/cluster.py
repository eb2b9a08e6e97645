"""
The one-machine cluster, measured: pod start to Ready, 0 to N replicas Ready, and requests per
second through a Service against the same pods reached directly (and through nginx).

Run: ``python bench/cluster.py`` (about 5 minutes) or ``python bench/cluster.py --quick`` (about a
minute). Needs Debian's ``wrk`` and ``nginx`` (``apt-get install -y wrk nginx``).

Everything runs on one real cluster started by :func:`shoal.testing.cluster.local_cluster` (the
code path of ``shoal up``: API server, controllers and node in one process, the service proxy in
another), with its default settings. The app is the quickstart's (``python3 -u /app/app.py`` from
the ``users-app`` ConfigMap of ``examples/03-sharded-replicated/users.yaml``, an httpGet readiness
probe on ``/healthz``), deployed as a ReplicatedService ``bench`` of 4 replicas; its compiled
Deployment's pod template is the template of every pod below.

Timing is client-side and observed through a watch, as Kubernetes' pod start-up SLI is ("from pod
creation timestamp to when all its containers are reported as started and observed via watch";
SLO p99 <= 5 s without image pulls). API timestamps have one-second resolution, so they only
serve as a cross-check (the ``server:`` row). One background watch on all Pods stamps, with this
process's monotonic clock, when each pod is first seen (ADDED), when all its containers are
started, and when its Ready condition turns True.

1. **Pod start to Ready, paced** (``--pods`` 50, at ``--rate`` 5 pods/s, ``--start-rounds``
   rounds): bare Pods created one by one at a steady rate, as the SLO's density test does. Start
   is this process sending the POST; also shown from the pod's ADDED event. "Started" is the
   SLO's own end point (all containers started); "Ready" is the goal's (the readiness probe passed).
2. **0 to N replicas Ready** (``--replicas`` 50, ``--scale-rounds`` rounds): a Deployment of that
   template at 0 replicas is patched to N; the clock runs from sending the patch until N of its
   pods are Ready in the watch (the ReplicaSet controller creates them in a burst, so their
   start to Ready in a burst is reported too). Then it is scaled back to 0 and every pod is
   awaited gone before the next round.
3. **Requests per second through a Service** at 4 replicas, with ``wrk -t1 -cC -dDs`` (closed
   loop; ``--connections`` 32, ``--duration`` 10 s; targets interleaved round by round,
   ``--rps-rounds`` rounds, medians):

   * ``direct x4``: the 4 pod IPs at once, one ``wrk -c C/4`` each, summed: the same 4 pods,
     the same C connections in total, no hop. This is the baseline for the goal (a Service hop
     keeps >= 0.9 of direct throughput at 4 replicas): the app is a Python ThreadingHTTPServer,
     one pod is bound by its GIL to about one core, so only the four together show what the
     replicas can serve without a hop;
   * ``direct x1``: one pod with all C connections (the per-pod ceiling, printed for reference);
   * ``service``: the Service's ``clusterIP:port``, through the cluster's service proxy (shoal's
     data plane, one process, least-request over the 4 endpoints);
   * ``nginx``: nginx as a reverse proxy, one worker process, upstream ``keepalive`` 64 to the
     same 4 pod IPs (round robin): a peer hop for the same pods;
   * ``shoal proxy``: the service proxy's engine run standalone (``python -m
     shoal.dataplane.standalone``, least-request over the same 4 pods): a control, so that a
     difference between it and ``service`` would be the cluster's wiring, not the engine.

   The figure that matters is each hop's ratio to ``direct x4`` measured in the same round; on
   2 cores shared by the client, the hop and 4 pods, the hop's CPU is taken from the pods, so
   the hop's and the pods' CPU time per request (from ``/proc``) are printed too, with the hop's
   seconds on a CPU and waiting runnable per second of the run (``/proc/PID/schedstat``).

The cluster process's own use (on a CPU, waiting runnable, CPU per pod started and stopped) is
printed per round of parts 1 and 2; a round of part 1 with p99 over 1 s logs its slowest pods'
timelines. The load average is printed at the start of each part and at the end: other work on
the machine moves these figures. ``--parts 1,3`` runs some parts only; ``--keep DIR`` keeps the
cluster's data directory (its logs) in a new directory. Every process started here (the
cluster, nginx, the standalone proxy, wrk) is stopped on exit, Ctrl-C included; loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import copy
import datetime as dt
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from shoal.client.http import HTTPClient
from shoal.client.protocol import ResourceRef, WatchExpired
from shoal.errors import RetryableError
from shoal.testing.cluster import LocalCluster, local_cluster

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "examples" / "03-sharded-replicated" / "users.yaml"
PODS = ResourceRef("v1", "Pod", "default")
DEPLOYMENTS = ResourceRef("apps/v1", "Deployment", "default")
SERVICES = ResourceRef("v1", "Service", "default")
APP = "bench"
SET_LABEL = "bench.shoal.dev/set"


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')} load {loadavg()}] {message}", file=sys.stderr, flush=True)


def cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    # fields[11], fields[12]: utime, stime (fields 14 and 15 of proc(5), counted from state).
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def schedstat(pid: int) -> tuple[float, float]:
    """Seconds a process has run on a CPU, and waited runnable for one (``/proc/PID/schedstat``)."""
    try:
        on_cpu, waiting, _ = Path(f"/proc/{pid}/schedstat").read_text().split()
    except (OSError, ValueError):
        return 0.0, 0.0
    return int(on_cpu) / 1e9, int(waiting) / 1e9


@dataclass
class Usage:
    """What one process used between :meth:`start` and :meth:`stop`, per second of wall time."""

    pid: int
    on_cpu: float = 0.0
    """Seconds on a CPU per second (1.0: a full core)."""
    waiting: float = 0.0
    """Seconds waited runnable per second (the box's other work in the way)."""
    cpu_seconds: float = 0.0
    _start: tuple[float, float, float] = (0.0, 0.0, 0.0)

    def start(self) -> Usage:
        self._start = (time.monotonic(), *schedstat(self.pid))
        return self

    def stop(self) -> Usage:
        wall = time.monotonic() - self._start[0]
        on_cpu, waiting = schedstat(self.pid)
        self.cpu_seconds = on_cpu - self._start[1]
        self.on_cpu = self.cpu_seconds / wall
        self.waiting = (waiting - self._start[2]) / wall
        return self


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100): p99 of 50 values is the largest."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))
    return ordered[int(rank) - 1]


def parse_time(text: str) -> float:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


# --- the app ----------------------------------------------------------------------------------


def manifests() -> list[dict[str, Any]]:
    """The quickstart's ConfigMap and a ReplicatedService of its app, 4 replicas."""
    docs = list(yaml.safe_load_all(QUICKSTART.read_text()))
    config_map = next(doc for doc in docs if doc["kind"] == "ConfigMap")
    return [
        config_map,
        {
            "apiVersion": "patterns.shoal.dev/v1",
            "kind": "ReplicatedService",
            "metadata": {"name": APP},
            "spec": {
                "replicas": 4,
                "image": "python:3.11-slim",
                "command": ["python3", "-u", "/app/app.py"],
                "env": [
                    {"name": "PORT", "value": "8080"},
                    {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                    {"name": "DRAIN_SECONDS", "value": "0"},
                ],
                "ports": [{"name": "http", "port": 8080}],
                "volumes": [{"name": "app", "configMap": {"name": "users-app"}}],
                "volumeMounts": [{"name": "app", "mountPath": "/app", "readOnly": True}],
                "readinessProbe": {
                    "httpGet": {"path": "/healthz", "port": "http"},
                    "periodSeconds": 1,
                },
            },
        },
    ]


def template_for(template: dict[str, Any], set_name: str) -> dict[str, Any]:
    """The ReplicatedService's pod template with labels of its own (so no Service or
    ReplicaSet of the pattern selects these pods)."""
    out = copy.deepcopy(template)
    out["metadata"] = {"labels": {SET_LABEL: set_name}}
    return out


# --- watching pods ----------------------------------------------------------------------------


@dataclass
class PodTimes:
    name: str
    labels: dict[str, str]
    seen: float
    """When the watch first showed the pod (monotonic)."""
    started: float | None = None
    """When the watch first showed all its containers started."""
    ready: float | None = None
    """When the watch first showed its Ready condition True."""
    gone: float | None = None
    """When the watch showed it deleted."""
    terminating: bool = False
    created: str = ""
    ready_transition: str = ""
    ip: str = ""


def _all_started(pod: dict[str, Any]) -> bool:
    spec_containers = (pod.get("spec") or {}).get("containers") or []
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    if not statuses or len(statuses) < len(spec_containers):
        return False
    return all(
        status.get("started") is True or "running" in (status.get("state") or {})
        for status in statuses
    )


def _ready_condition(pod: dict[str, Any]) -> dict[str, Any] | None:
    for condition in (pod.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Ready" and condition.get("status") == "True":
            return dict(condition)
    return None


class PodWatch:
    """Every pod of the namespace as the watch shows it, stamped with this process's clock."""

    def __init__(self, client: HTTPClient) -> None:
        self.client = client
        self.pods: dict[str, PodTimes] = {}
        self.events = 0
        self.synced = asyncio.Event()

    def observe(self, kind: str, pod: dict[str, Any], now: float) -> None:
        meta = pod.get("metadata") or {}
        uid = str(meta.get("uid", ""))
        times = self.pods.get(uid)
        if times is None:
            times = PodTimes(
                name=str(meta.get("name", "")),
                labels=dict(meta.get("labels") or {}),
                seen=now,
                created=str(meta.get("creationTimestamp", "")),
            )
            self.pods[uid] = times
        self.events += 1
        if kind == "DELETED":
            times.gone = times.gone or now
            return
        times.terminating = bool(meta.get("deletionTimestamp"))
        times.ip = str((pod.get("status") or {}).get("podIP") or times.ip)
        if times.started is None and _all_started(pod):
            times.started = now
        ready = _ready_condition(pod)
        if times.ready is None and ready is not None:
            times.ready = now
            times.ready_transition = str(ready.get("lastTransitionTime", ""))

    async def run(self) -> None:
        resource_version = ""
        while True:
            if not resource_version:
                listed = await self.client.list(PODS)
                now = time.monotonic()
                for item in listed.items:
                    self.observe("ADDED", item, now)
                resource_version = listed.resource_version
                self.synced.set()
            try:
                async for event in self.client.watch(PODS, resource_version, timeout_seconds=3600):
                    resource_version = event.resource_version or resource_version
                    if event.type != "BOOKMARK":
                        self.observe(event.type, event.object, time.monotonic())
            except WatchExpired:
                resource_version = ""
            except RetryableError as error:
                log(f"pod watch broke ({error}); watching again")
                await asyncio.sleep(0.2)

    def live(self, set_name: str) -> list[PodTimes]:
        return [
            pod
            for pod in self.pods.values()
            if pod.labels.get(SET_LABEL) == set_name and pod.gone is None
        ]

    async def until(self, what: str, predicate: Callable[[], bool], within: float) -> None:
        """Poll ``predicate`` until it holds (the times come from the watch, not from here)."""
        deadline = time.monotonic() + within
        while not predicate():
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what}: not done after {within:.0f} s")
            await asyncio.sleep(0.01)


# --- part 1: paced pod starts -----------------------------------------------------------------


@dataclass
class StartRound:
    from_post: list[float] = field(default_factory=list)
    from_added: list[float] = field(default_factory=list)
    started_from_post: list[float] = field(default_factory=list)
    server: list[float] = field(default_factory=list)
    cluster: Usage | None = None
    """The cluster process (API server, controllers, node) over the round."""


async def paced_starts(
    client: HTTPClient,
    watch: PodWatch,
    template: dict[str, Any],
    round_index: int,
    count: int,
    rate: float,
) -> StartRound:
    set_name = f"start-{round_index}"
    pod_template = template_for(template, set_name)
    posted: dict[str, float] = {}
    begin = time.monotonic() + 0.05

    async def create(index: int) -> None:
        await asyncio.sleep(max(0.0, begin + index / rate - time.monotonic()))
        name = f"start-{round_index}-{index}"
        body = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "labels": pod_template["metadata"]["labels"]},
            "spec": pod_template["spec"],
        }
        posted[name] = time.monotonic()
        await client.create(PODS, body)

    async with asyncio.TaskGroup() as group:
        for index in range(count):
            group.create_task(create(index))
    await watch.until(
        f"{count} paced pods Ready",
        lambda: sum(1 for pod in watch.live(set_name) if pod.ready is not None) >= count,
        within=120 + count / rate,
    )
    result = StartRound()
    for pod in watch.live(set_name):
        assert pod.ready is not None
        assert pod.started is not None
        result.from_post.append(pod.ready - posted[pod.name])
        result.from_added.append(pod.ready - pod.seen)
        result.started_from_post.append(pod.started - posted[pod.name])
        result.server.append(parse_time(pod.ready_transition) - parse_time(pod.created))
    if percentile(result.from_post, 99) > 1.0:
        worst = sorted(watch.live(set_name), key=lambda pod: posted[pod.name] - (pod.ready or 0))
        for pod in worst[:3]:
            base = posted[pod.name]
            log(
                f"  slow: {pod.name} posted at +{base - begin:.2f} s; then ADDED +"
                f"{pod.seen - base:.2f}, started +{(pod.started or base) - base:.2f}, "
                f"Ready +{(pod.ready or base) - base:.2f} s"
            )
    # Delete them all, and wait until they are gone (the node stops them gracefully).
    async with asyncio.TaskGroup() as group:
        for pod in watch.live(set_name):
            group.create_task(client.delete(PODS, pod.name))
    await watch.until(f"{set_name} pods gone", lambda: not watch.live(set_name), within=120)
    return result


# --- part 2: 0 to N replicas ------------------------------------------------------------------


@dataclass
class ScaleRound:
    all_ready: float
    first_added: float
    all_added: float
    start_to_ready: list[float]
    scale_down: float
    cluster: Usage | None = None
    """The cluster process (API server, controllers, node) over the round."""


async def scale_round(
    client: HTTPClient, watch: PodWatch, set_name: str, replicas: int
) -> ScaleRound:
    before = {id(pod) for pod in watch.pods.values()}
    t0 = time.monotonic()
    await client.patch(DEPLOYMENTS, set_name, {"spec": {"replicas": replicas}})

    def ready_count() -> int:
        return sum(
            1 for pod in watch.live(set_name) if pod.ready is not None and not pod.terminating
        )

    await watch.until(f"{replicas} replicas Ready", lambda: ready_count() >= replicas, within=300)
    all_ready = time.monotonic() - t0
    new = [pod for pod in watch.live(set_name) if id(pod) not in before]
    seen = sorted(pod.seen - t0 for pod in new)
    starts = [pod.ready - pod.seen for pod in new if pod.ready is not None]
    down = time.monotonic()
    await client.patch(DEPLOYMENTS, set_name, {"spec": {"replicas": 0}})
    await watch.until(f"{set_name} scaled to 0", lambda: not watch.live(set_name), within=180)
    return ScaleRound(
        all_ready=all_ready,
        first_added=seen[0],
        all_added=seen[-1],
        start_to_ready=starts,
        scale_down=time.monotonic() - down,
    )


# --- part 3: requests per second --------------------------------------------------------------

NGINX = """
daemon off;
master_process off;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx.error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    keepalive_requests 1000000;
    keepalive_timeout 60s;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    upstream pods {{
{servers}
        keepalive 64;
        keepalive_requests 1000000;
    }}
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location / {{
            proxy_pass http://pods;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        }}
    }}
}}
"""


@dataclass(frozen=True)
class WrkResult:
    rps: float
    requests: int
    p50_ms: float
    p99_ms: float
    errors: int
    error_kinds: tuple[str, ...] = ()
    """What the errors were, as wrk names them ("timeout 7", "non-2xx 3")."""


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if not match:
        raise ValueError(f"not a wrk duration: {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def parse_wrk(output: str) -> WrkResult:
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    requests = int(re.search(r"(\d+) requests in", output).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"^\s+50%\s+(\S+)", output, re.M).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"^\s+99%\s+(\S+)", output, re.M).group(1))  # type: ignore[union-attr]
    kinds: list[tuple[str, int]] = []
    socket_errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    if socket_errors:
        names = ("connect", "read", "write", "timeout")
        kinds += [(n, int(v)) for n, v in zip(names, socket_errors.groups(), strict=True)]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if non2xx:
        kinds.append(("non-2xx", int(non2xx.group(1))))
    kinds = [(name, count) for name, count in kinds if count]
    errors = sum(count for _, count in kinds)
    return WrkResult(rps, requests, p50, p99, errors, tuple(f"{n} {c}" for n, c in kinds))


async def wrk(urls: Sequence[str], connections: int, duration: float) -> WrkResult:
    """``wrk`` against each URL at once (``connections`` shared between them), summed."""
    per = connections // len(urls)
    procs = [
        await asyncio.create_subprocess_exec(
            "wrk",
            "-t1",
            f"-c{per}",
            f"-d{duration:g}s",
            "--latency",
            url,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for url in urls
    ]
    try:
        outputs = [(await proc.communicate())[0].decode() for proc in procs]
    finally:
        for proc in procs:
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
    for proc, output in zip(procs, outputs, strict=True):
        if proc.returncode != 0:
            raise RuntimeError(f"wrk exited {proc.returncode}:\n{output}")
    results = [parse_wrk(output) for output in outputs]
    return WrkResult(
        rps=sum(r.rps for r in results),
        requests=sum(r.requests for r in results),
        p50_ms=statistics.median(r.p50_ms for r in results),
        p99_ms=max(r.p99_ms for r in results),
        errors=sum(r.errors for r in results),
        error_kinds=tuple(kind for r in results for kind in r.error_kinds),
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def nginx_proxy(pod_ips: Sequence[str], port: int) -> Iterator[tuple[str, int]]:
    """nginx, one process, reverse proxy over the pods; yields (URL, pid)."""
    with tempfile.TemporaryDirectory(prefix="bench-nginx-") as tmp:
        for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
            Path(tmp, sub).mkdir()
        listen = free_port()
        servers = "\n".join(f"        server {ip}:{port};" for ip in pod_ips)
        conf = Path(tmp, "nginx.conf")
        conf.write_text(NGINX.format(tmp=tmp, servers=servers, port=listen))
        proc = subprocess.Popen(
            ["nginx", "-p", tmp, "-c", str(conf)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=open(Path(tmp, "stderr"), "wb"),  # noqa: SIM115
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + 10
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"nginx exited: {Path(tmp, 'stderr').read_text()}")
                try:
                    socket.create_connection(("127.0.0.1", listen), 0.2).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
            yield f"http://127.0.0.1:{listen}/hello", proc.pid
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@contextlib.contextmanager
def shoal_proxy(pod_ips: Sequence[str], port: int) -> Iterator[tuple[str, int]]:
    """shoal's proxy engine outside the cluster (``python -m shoal.dataplane.standalone``, the
    code of ``shoal proxy``), least-request over the pods; yields (URL, pid). The same engine as
    the service proxy: if the two differ, the cluster's wiring costs something."""
    listen = free_port()
    argv = [sys.executable, "-m", "shoal.dataplane.standalone", "--listen", f"127.0.0.1:{listen}"]
    for ip in pod_ips:
        argv += ["--backend", f"{ip}:{port}"]
    argv += ["--policy", "least-request"]
    with tempfile.TemporaryFile() as stderr:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + 30
            while True:
                if proc.poll() is not None:
                    stderr.seek(0)
                    raise RuntimeError(f"shoal proxy exited: {stderr.read().decode()}")
                try:
                    socket.create_connection(("127.0.0.1", listen), 0.2).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
            yield f"http://127.0.0.1:{listen}/hello", proc.pid
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def pids_matching(cluster: LocalCluster, needle: bytes) -> list[int]:
    found = []
    for pid in cluster.processes():
        with contextlib.suppress(OSError):
            if needle in Path(f"/proc/{pid}/cmdline").read_bytes():
                found.append(pid)
    return found


def pod_pids(cluster: LocalCluster, ips: Sequence[str]) -> list[int]:
    wanted = {f"POD_IP={ip}".encode() for ip in ips}
    found = []
    for pid in pids_matching(cluster, b"app.py"):
        with contextlib.suppress(OSError):
            if wanted & set(Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")):
                found.append(pid)
    return found


async def service_serves_all(url: str, pods: set[str], within: float = 60) -> None:
    """Wait until the Service's address answers from every one of ``pods``."""
    seen: set[str] = set()
    deadline = time.monotonic() + within
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as http:
        while seen != pods:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url} answered only from {sorted(seen)} of {sorted(pods)}")
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                for _ in range(20):
                    async with http.get(url) as response:
                        if response.status == 200:
                            seen.add(str((await response.json())["pod"]))
            await asyncio.sleep(0.05)


@dataclass
class Throughput:
    results: dict[str, list[WrkResult]] = field(default_factory=dict)
    ratios: dict[str, list[float]] = field(default_factory=dict)
    cpu_us: dict[str, list[float]] = field(default_factory=dict)
    pods_cpu_us: dict[str, list[float]] = field(default_factory=dict)
    hop_waiting: dict[str, list[float]] = field(default_factory=dict)
    """Per hop: seconds waited runnable per second of the run (the machine's other work)."""
    hop_running: dict[str, list[float]] = field(default_factory=dict)
    """Per hop: seconds on a CPU per second of the run (1.0: a full core)."""


async def throughput(
    cluster: LocalCluster,
    client: HTTPClient,
    watch: PodWatch,
    rounds: int,
    connections: int,
    duration: float,
) -> Throughput:
    service = await client.get(SERVICES, APP)
    cluster_ip = service["spec"]["clusterIP"]
    port = int(service["spec"]["ports"][0]["port"])
    pods = [
        pod
        for pod in watch.pods.values()
        if pod.labels.get("app.kubernetes.io/name") == APP and pod.gone is None and pod.ready
    ]
    if len(pods) != 4:
        raise RuntimeError(f"expected 4 Ready pods of {APP}, found {len(pods)}")
    ips = sorted(pod.ip for pod in pods)
    service_url = f"http://{cluster_ip}:{port}/hello"
    await service_serves_all(service_url, {pod.name for pod in pods})
    proxy_pids = pids_matching(cluster, b"service-proxy")
    app_pids = pod_pids(cluster, ips)
    if len(proxy_pids) != 1 or len(app_pids) != 4:
        raise RuntimeError(f"service proxy pids {proxy_pids}, app pids {app_pids}")
    out = Throughput()
    with (
        nginx_proxy(ips, port) as (nginx_url, nginx_pid),
        shoal_proxy(ips, port) as (shoal_url, shoal_pid),
    ):
        targets: dict[str, tuple[list[str], int | None]] = {
            "direct x4": ([f"http://{ip}:{port}/hello" for ip in ips], None),
            "direct x1": ([f"http://{ips[0]}:{port}/hello"], None),
            "service": ([service_url], proxy_pids[0]),
            "nginx": ([nginx_url], nginx_pid),
            "shoal proxy": ([shoal_url], shoal_pid),
        }
        # Warm up each (connections opened, the proxy's pools filled).
        for urls, _ in targets.values():
            await wrk(urls, connections, 1)
        names = list(targets)
        for round_index in range(rounds):
            log(f"throughput round {round_index + 1}/{rounds}")
            order = names[round_index % len(names) :] + names[: round_index % len(names)]
            this_round: dict[str, WrkResult] = {}
            for name in order:
                urls, pid = targets[name]
                cpu_before = cpu_seconds(pid) if pid else 0.0
                sched_before = schedstat(pid) if pid else (0.0, 0.0)
                pods_before = sum(cpu_seconds(p) for p in app_pids)
                wall = time.monotonic()
                result = await wrk(urls, connections, duration)
                wall = time.monotonic() - wall
                pods_cpu = sum(cpu_seconds(p) for p in app_pids) - pods_before
                this_round[name] = result
                out.results.setdefault(name, []).append(result)
                out.pods_cpu_us.setdefault(name, []).append(1e6 * pods_cpu / result.requests)
                if pid:
                    cpu = cpu_seconds(pid) - cpu_before
                    out.cpu_us.setdefault(name, []).append(1e6 * cpu / result.requests)
                    running, waiting = schedstat(pid)
                    out.hop_running.setdefault(name, []).append((running - sched_before[0]) / wall)
                    out.hop_waiting.setdefault(name, []).append((waiting - sched_before[1]) / wall)
            for name, result in this_round.items():
                out.ratios.setdefault(f"{name}/direct x4", []).append(
                    result.rps / this_round["direct x4"].rps
                )
                out.ratios.setdefault(f"{name}/direct x1", []).append(
                    result.rps / this_round["direct x1"].rps
                )
    return out


# --- the run ----------------------------------------------------------------------------------


@dataclass
class Report:
    loads: list[tuple[str, str]] = field(default_factory=list)
    starts: list[StartRound] = field(default_factory=list)
    scales: list[ScaleRound] = field(default_factory=list)
    rps: Throughput | None = None
    watch_events: int = 0


async def run_bench(cluster: LocalCluster, args: argparse.Namespace, report: Report) -> None:
    async with cluster.client() as client:
        watch = PodWatch(client)
        async with asyncio.TaskGroup() as group:
            watcher = group.create_task(watch.run())
            try:
                await asyncio.wait_for(watch.synced.wait(), 30)
                await _parts(cluster, client, watch, args, report)
            finally:
                report.watch_events = watch.events
                watcher.cancel()


async def _parts(
    cluster: LocalCluster,
    client: HTTPClient,
    watch: PodWatch,
    args: argparse.Namespace,
    report: Report,
) -> None:
    for doc in manifests():
        await client.apply(doc, field_manager="bench")

    def app_ready() -> bool:
        return (
            sum(
                1
                for pod in watch.pods.values()
                if pod.labels.get("app.kubernetes.io/name") == APP
                and pod.gone is None
                and pod.ready
            )
            >= 4
        )

    await watch.until("the ReplicatedService's 4 pods Ready", app_ready, within=120)
    deployment = await client.get(DEPLOYMENTS, APP)
    template = deployment["spec"]["template"]

    if 1 in args.parts:
        report.loads.append(("pod starts", loadavg()))
        log(f"part 1: {args.start_rounds} x {args.pods} pods at {args.rate:g}/s")
    for round_index in range(args.start_rounds if 1 in args.parts else 0):
        usage = Usage(cluster.pid).start()
        report.starts.append(
            await paced_starts(client, watch, template, round_index, args.pods, args.rate)
        )
        report.starts[-1].cluster = usage.stop()
        log(f"  round {round_index + 1}: p99 {percentile(report.starts[-1].from_post, 99):.3f} s")

    if 2 in args.parts:
        report.loads.append(("0 to N", loadavg()))
        log(f"part 2: {args.scale_rounds} x 0 to {args.replicas} replicas")
        scale_template = template_for(template, "scale")
        await client.create(
            DEPLOYMENTS,
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": "scale"},
                "spec": {
                    "replicas": 0,
                    "selector": {"matchLabels": {SET_LABEL: "scale"}},
                    "template": scale_template,
                },
            },
        )
        for round_index in range(args.scale_rounds):
            usage = Usage(cluster.pid).start()
            report.scales.append(await scale_round(client, watch, "scale", args.replicas))
            report.scales[-1].cluster = usage.stop()
            log(f"  round {round_index + 1}: {report.scales[-1].all_ready:.2f} s")
        await client.delete(DEPLOYMENTS, "scale")

    if 3 in args.parts:
        report.loads.append(("throughput", loadavg()))
        log(f"part 3: {args.rps_rounds} rounds of wrk -c{args.connections} -d{args.duration:g}s")
        report.rps = await throughput(
            cluster, client, watch, args.rps_rounds, args.connections, args.duration
        )
    report.loads.append(("end", loadavg()))


def _errors(results: Sequence[WrkResult]) -> str:
    total = sum(r.errors for r in results)
    kinds = [kind for r in results for kind in r.error_kinds]
    return f"{total} ({', '.join(kinds)})" if kinds else str(total)


def _row(cells: Sequence[object]) -> str:
    return "| " + " | ".join(str(cell) for cell in cells) + " |"


def _usage_rows(what: str, usages: Sequence[Usage | None], pods: int) -> list[str]:
    found = [usage for usage in usages if usage is not None]
    if not found:
        return []
    return [
        _row(
            [
                f"cluster process, {what}",
                ", ".join(f"{u.on_cpu:.2f}" for u in found),
                ", ".join(f"{u.waiting:.2f}" for u in found),
                ", ".join(f"{1000 * u.cpu_seconds / pods:.0f}" for u in found),
            ]
        )
    ]


def render(report: Report, args: argparse.Namespace, elapsed: float) -> str:
    lines: list[str] = []
    median = statistics.median
    lines.append(
        f"python bench/cluster.py {' '.join(sys.argv[1:])}".rstrip()
        + f"  ({dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, {elapsed:.0f} s; Python "
        + f"{platform.python_version()}, {os.cpu_count()} CPUs)"
    )
    lines.append("load average (1, 5, 15 min): " + "; ".join(f"{k} {v}" for k, v in report.loads))
    lines.append("")

    if report.starts:
        lines.append(
            f"Pod start to Ready, {args.pods} pods x {len(report.starts)} rounds created at "
            f"{args.rate:g}/s (seconds; p99 is nearest-rank; goal p99 < 1 s, SLO anchor "
            "p99 <= 5 s):"
        )
        lines.append("")
        lines.append(_row(["measure", "p50", "p90", "p99", "max", "rounds' p99"]))
        lines.append(_row(["---", "---:", "---:", "---:", "---:", "---"]))

        def dist(name: str, per_round: list[list[float]]) -> None:
            pooled = [value for values in per_round for value in values]
            lines.append(
                _row(
                    [
                        name,
                        f"{percentile(pooled, 50):.3f}",
                        f"{percentile(pooled, 90):.3f}",
                        f"{percentile(pooled, 99):.3f}",
                        f"{max(pooled):.3f}",
                        ", ".join(f"{percentile(values, 99):.3f}" for values in per_round),
                    ]
                )
            )

        dist("POST to Ready (watch)", [r.from_post for r in report.starts])
        dist("ADDED to Ready (watch)", [r.from_added for r in report.starts])
        dist("POST to all started (watch; the SLI)", [r.started_from_post for r in report.starts])
        dist(
            "server: creation to Ready transition (1 s resolution)",
            [r.server for r in report.starts],
        )
        lines.append("")

    if report.scales:
        lines.append(
            f"0 to {args.replicas} replicas Ready, {len(report.scales)} rounds (seconds; "
            "goal < 15 s):"
        )
        lines.append("")
        lines.append(_row(["measure", "median", "rounds"]))
        lines.append(_row(["---", "---:", "---"]))
        for label, values in (
            (f"patch to {args.replicas} Ready", [s.all_ready for s in report.scales]),
            ("patch to first pod ADDED", [s.first_added for s in report.scales]),
            (f"patch to {args.replicas}th pod ADDED", [s.all_added for s in report.scales]),
            (
                "a pod's ADDED to Ready in the burst, p50",
                [percentile(s.start_to_ready, 50) for s in report.scales],
            ),
            (
                "a pod's ADDED to Ready in the burst, p99",
                [percentile(s.start_to_ready, 99) for s in report.scales],
            ),
            (f"{args.replicas} to 0 (every pod gone)", [s.scale_down for s in report.scales]),
        ):
            lines.append(
                _row([label, f"{median(values):.2f}", ", ".join(f"{v:.2f}" for v in values)])
            )
        lines.append("")

    usage_rows = _usage_rows(
        "paced starts", [r.cluster for r in report.starts], args.pods
    ) + _usage_rows("0 to N and back", [s.cluster for s in report.scales], args.replicas)
    if usage_rows:
        lines.append(
            "The cluster process (API server, controllers, node: one Python process) per round "
            "(start and stop of every pod):"
        )
        lines.append("")
        lines.append(_row(["process, part", "on CPU s/s", "runnable, waiting s/s", "CPU ms/pod"]))
        lines.append(_row(["---", "---", "---", "---"]))
        lines.extend(usage_rows)
        lines.append("")

    rps = report.rps
    if rps is not None:
        lines.append(
            f"Requests/s at 4 replicas, wrk -t1 -c{args.connections} -d{args.duration:g}s, "
            f"{args.rps_rounds} rounds interleaved, medians (goal: service/direct x4 >= 0.9):"
        )
        lines.append("")
        lines.append(
            _row(
                [
                    "target",
                    "req/s",
                    "p50 ms",
                    "p99 ms",
                    "errors",
                    "/ direct x4",
                    "/ direct x1",
                    "hop CPU µs/req",
                    "hop on CPU s/s",
                    "hop runnable, waiting s/s",
                    "pods CPU µs/req",
                    "rounds req/s",
                ]
            )
        )
        lines.append(_row(["---", *["---:"] * 10, "---"]))
        for name, results in rps.results.items():
            cpu = rps.cpu_us.get(name)
            lines.append(
                _row(
                    [
                        name,
                        f"{median(r.rps for r in results):,.0f}",
                        f"{median(r.p50_ms for r in results):.2f}",
                        f"{median(r.p99_ms for r in results):.2f}",
                        _errors(results),
                        f"{median(rps.ratios[f'{name}/direct x4']):.2f}",
                        f"{median(rps.ratios[f'{name}/direct x1']):.2f}",
                        f"{median(cpu):.0f}" if cpu else "",
                        f"{median(rps.hop_running[name]):.2f}" if cpu else "",
                        f"{median(rps.hop_waiting[name]):.2f}" if cpu else "",
                        f"{median(rps.pods_cpu_us[name]):.0f}",
                        ", ".join(f"{r.rps:,.0f}" for r in results),
                    ]
                )
            )
        lines.append("")
    lines.append(f"watch events observed: {report.watch_events}")
    return "\n".join(lines)


def suspicious_log_lines(cluster: LocalCluster) -> list[str]:
    """Warnings and errors the cluster and its service proxy logged during the run."""
    texts = [cluster.log()]
    with contextlib.suppress(OSError):
        texts.append((cluster.data_dir / "logs" / "service-proxy.log").read_text(errors="replace"))
    found = []
    for text in texts:
        for line in text.splitlines():
            if re.search(r"ERROR|WARNING|Traceback|CRITICAL", line):
                found.append(line[:240])
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="a fast check: fewer pods, rounds")
    parser.add_argument("--pods", type=int, default=50, help="pods per paced round")
    parser.add_argument("--rate", type=float, default=5.0, help="paced pod creations per second")
    parser.add_argument("--start-rounds", type=int, default=3)
    parser.add_argument("--replicas", type=int, default=50, help="replicas to scale 0 to")
    parser.add_argument("--scale-rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=32, help="wrk connections (x4)")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per wrk run")
    parser.add_argument("--rps-rounds", type=int, default=3)
    parser.add_argument(
        "--parts", default="1,2,3", help="which parts to run: 1 starts, 2 scaling, 3 req/s"
    )
    parser.add_argument(
        "--keep", type=Path, help="keep the cluster's data (logs) in this new directory"
    )
    args = parser.parse_args()
    if args.quick:
        args.pods, args.start_rounds = 20, 1
        args.replicas, args.scale_rounds = 20, 1
        args.duration, args.rps_rounds = 3.0, 1
    args.parts = {int(part) for part in args.parts.split(",") if part.strip()}
    if args.keep is not None:
        args.keep.mkdir(parents=True)
    if args.connections % 4:
        parser.error("--connections must be a multiple of 4 (shared by the 4 direct runs)")
    for tool in ("wrk", "nginx"):
        if shutil.which(tool) is None and not Path("/usr/sbin", tool).exists():
            parser.error(f"{tool} is needed: apt-get install -y {tool}")
    if shutil.which("nginx") is None:
        os.environ["PATH"] += os.pathsep + "/usr/sbin"

    report = Report()
    started = time.monotonic()
    # SIGTERM ends the run through the same clean-up as Ctrl-C.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    log("starting the cluster")
    with local_cluster(args.keep) as cluster:
        log(f"cluster up: {cluster.url}, data in {cluster.data_dir}")
        try:
            asyncio.run(run_bench(cluster, args, report))
        finally:
            suspicious = suspicious_log_lines(cluster)
    print(render(report, args, time.monotonic() - started))
    if suspicious:
        print(f"\n{len(suspicious)} warning/error lines in the cluster's logs (first 20):")
        for line in suspicious[:20]:
            print("  " + line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
