"""The one-machine cluster end to end: `shoal up` brings patterns up for real, on loopback.

These start real clusters (API server, controllers, node, service proxy), real pods (the
quickstart's Python app) and real traffic. Nothing waits a fixed time: every wait polls with a
deadline.
"""

from __future__ import annotations

import asyncio
import collections
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from shoal.client.protocol import ResourceRef
from shoal.loadgen import (
    ArrivalSchedule,
    LoadPlan,
    LoadSettings,
    RequestSpec,
    parse_target,
    run_load,
)
from shoal.testing.cluster import LocalCluster, cluster_processes, local_cluster

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "examples" / "03-sharded-replicated"
PODS = ResourceRef("v1", "Pod", "default")

pytestmark = pytest.mark.timeout(600)


def _app_config_map() -> dict[str, Any]:
    docs = list(yaml.safe_load_all((QUICKSTART / "users.yaml").read_text()))
    return next(doc for doc in docs if doc["kind"] == "ConfigMap")


def _replicated(name: str, version: str, replicas: int = 4) -> list[dict[str, Any]]:
    """A ReplicatedService of the quickstart app (its ConfigMap included)."""
    return [
        _app_config_map(),
        {
            "apiVersion": "patterns.shoal.dev/v1",
            "kind": "ReplicatedService",
            "metadata": {"name": name},
            "spec": {
                "replicas": replicas,
                "image": "python:3.11-slim",
                "command": ["python3", "-u", "/app/app.py"],
                "env": [
                    {"name": "PORT", "value": "8080"},
                    {"name": "VERSION", "value": version},
                    {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                    {"name": "DRAIN_SECONDS", "value": "1"},
                ],
                "ports": [{"name": "http", "port": 8080}],
                "volumes": [{"name": "app", "configMap": {"name": "users-app"}}],
                "volumeMounts": [{"name": "app", "mountPath": "/app", "readOnly": True}],
                "readinessProbe": {
                    "httpGet": {"path": "/healthz", "port": "http"},
                    "periodSeconds": 1,
                },
                "strategy": {"rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            },
        },
    ]


def _write(path: Path, docs: list[dict[str, Any]]) -> Path:
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    with local_cluster(node_options=["backoff_base=0.2", "backoff_cap=2.0"]) as running:
        yield running


def _url(output: str, service: str) -> str:
    for line in output.splitlines():
        if line.startswith(f"service {service}: "):
            return line.split(": ", 1)[1].strip()
    raise AssertionError(f"no URL for {service} in:\n{output}")


async def _pods(cluster: LocalCluster, selector: str) -> list[dict[str, Any]]:
    async with cluster.client() as client:
        return (await client.list(PODS, label_selector=selector)).items


def _failed(stats: Any) -> int:
    bad_statuses = sum(count for status, count in stats.statuses.items() if status >= 400)
    return int(stats.errors) + int(stats.dropped) + int(bad_statuses)


def test_sharded_keys_stick_to_one_shard_and_spread_evenly(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    docs = list(yaml.safe_load_all((QUICKSTART / "users.yaml").read_text()))
    manifest = _write(tmp_path / "users.yaml", docs)
    up = cluster.shoal(
        "up", "-f", str(manifest), "--data-dir", str(cluster.data_dir), "--timeout", "180s"
    )
    url = _url(up.stdout, "users")

    async def query() -> tuple[dict[str, str], collections.Counter[str], list[str]]:
        first: dict[str, str] = {}
        counts: collections.Counter[str] = collections.Counter()
        mismatches: list[str] = []
        keys = [f"user-{i}" for i in range(10_000)]
        again = keys[:1_000]
        semaphore = asyncio.Semaphore(32)
        connector = aiohttp.TCPConnector(limit=32)
        timeout = aiohttp.ClientTimeout(total=30)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:

            async def ask(key: str, repeat: bool) -> None:
                async with semaphore, http.get(f"{url}/users/{key}/profile") as response:
                    assert response.status == 200, await response.text()
                    shard = str((await response.json())["shard"])
                if repeat:
                    if first[key] != shard:
                        mismatches.append(key)
                else:
                    first[key] = shard
                    counts[shard] += 1

            async with asyncio.TaskGroup() as group:
                for key in keys:
                    group.create_task(ask(key, False))
            async with asyncio.TaskGroup() as group:
                for key in again:
                    group.create_task(ask(key, True))
        return first, counts, mismatches

    _, counts, mismatches = asyncio.run(query())
    assert mismatches == []
    assert sorted(counts) == ["0", "1", "2", "3"]
    mean = sum(counts.values()) / len(counts)
    assert max(counts.values()) / mean < 1.1, counts
    cluster.shoal("delete", "shardedservice", "users", "--wait=true")


def test_rolling_update_under_steady_load_fails_no_request(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    v1 = _write(tmp_path / "v1.yaml", _replicated("web", "v1"))
    up = cluster.shoal(
        "up", "-f", str(v1), "--data-dir", str(cluster.data_dir), "--timeout", "180s"
    )
    url = _url(up.stdout, "web")
    old = {
        pod["metadata"]["name"] for pod in asyncio.run(_pods(cluster, "app.kubernetes.io/name=web"))
    }
    assert len(old) == 4

    async def roll() -> Any:
        target, path = parse_target(f"{url}/hello")
        plan = LoadPlan(
            target,
            (RequestSpec(path),),
            ArrivalSchedule.constant(50, 40),
            LoadSettings(connections=16, timeout=10.0),
        )
        load = asyncio.get_running_loop().create_future()

        async def generate() -> None:
            load.set_result(await run_load(plan))

        async with asyncio.TaskGroup() as group:
            group.create_task(generate())
            await asyncio.sleep(0)  # the load starts first; the update lands while it runs
            v2 = _write(tmp_path / "v2.yaml", _replicated("web", "v2"))
            rolled = await asyncio.to_thread(
                cluster.shoal,
                "up",
                "-f",
                str(v2),
                "--data-dir",
                str(cluster.data_dir),
                "--timeout",
                "30s",
            )
            assert "service web:" in rolled.stdout
        return load.result()

    stats = asyncio.run(roll())
    assert stats.requests > 1000
    assert _failed(stats) == 0, (stats.statuses, stats.failures, stats.dropped)
    pods = asyncio.run(_pods(cluster, "app.kubernetes.io/name=web"))
    live = [pod for pod in pods if not pod["metadata"].get("deletionTimestamp")]
    assert len(live) == 4
    for pod in live:
        assert pod["metadata"]["name"] not in old
        env = {e["name"]: e.get("value") for e in pod["spec"]["containers"][0]["env"]}
        assert env["VERSION"] == "v2"
    cluster.shoal("delete", "replicatedservice", "web", "--wait=true")


def _pod_pid(cluster: LocalCluster, pod: str) -> int:
    marker = f"POD_NAME={pod}".encode()
    for pid in cluster.processes():
        try:
            with open(f"/proc/{pid}/environ", "rb") as environ:
                if marker in environ.read().split(b"\0"):
                    return pid
        except OSError:
            continue
    raise AssertionError(f"no process of pod {pod}")


def test_a_replica_killed_under_load_is_replaced_and_costs_at_most_its_in_flight_requests(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    manifest = _write(tmp_path / "kill.yaml", _replicated("victim", "v1", replicas=3))
    up = cluster.shoal(
        "up", "-f", str(manifest), "--data-dir", str(cluster.data_dir), "--timeout", "180s"
    )
    url = _url(up.stdout, "victim")
    pods = asyncio.run(_pods(cluster, "app.kubernetes.io/name=victim"))
    victim = pods[0]["metadata"]["name"]
    pid = _pod_pid(cluster, victim)

    async def kill_under_load() -> Any:
        target, path = parse_target(f"{url}/hello")
        plan = LoadPlan(
            target,
            (RequestSpec(path),),
            ArrivalSchedule.constant(50, 12),
            LoadSettings(connections=8),
        )
        load = asyncio.get_running_loop().create_future()

        async def generate() -> None:
            load.set_result(await run_load(plan))

        async with asyncio.TaskGroup() as group:
            group.create_task(generate())
            # Not a readiness wait: the kill must land in the middle of a steady load.
            await asyncio.sleep(2)
            os.kill(pid, signal.SIGKILL)
        return load.result()

    stats = asyncio.run(kill_under_load())
    # At 50 req/s with millisecond answers, at most a couple of requests are ever in flight on one
    # replica; connection failures are retried on another replica by the service proxy.
    assert _failed(stats) <= 8, (stats.statuses, stats.failures)

    async def replaced() -> dict[str, Any]:
        deadline = time.monotonic() + 60
        async with cluster.client() as client:
            while time.monotonic() < deadline:
                pod = await client.get(PODS, victim)
                status = pod.get("status") or {}
                restarts = sum(
                    c.get("restartCount", 0) for c in status.get("containerStatuses") or []
                )
                ready = any(
                    c.get("type") == "Ready" and c.get("status") == "True"
                    for c in status.get("conditions") or []
                )
                if restarts >= 1 and ready:
                    return pod
                await asyncio.sleep(0.1)
        raise AssertionError(f"{victim} was not restarted and Ready within 60s")

    asyncio.run(replaced())
    cluster.shoal("delete", "replicatedservice", "victim", "--wait=true")


def test_a_crash_looping_container_backs_off_without_stalling_the_node(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    crasher = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "crasher"},
        "spec": {
            "containers": [
                {
                    "name": "main",
                    "image": "busybox",
                    "command": ["python3", "-c", "raise SystemExit(3)"],
                }
            ]
        },
    }
    manifest = _write(tmp_path / "crasher.yaml", [crasher])
    cluster.shoal("apply", "-f", str(manifest))
    healthy = _write(tmp_path / "healthy.yaml", _replicated("healthy", "v1", replicas=1))
    cluster.shoal(
        "up", "-f", str(healthy), "--data-dir", str(cluster.data_dir), "--timeout", "120s"
    )

    async def backed_off() -> tuple[dict[str, Any], list[dict[str, Any]]]:
        deadline = time.monotonic() + 60
        async with cluster.client() as client:
            while time.monotonic() < deadline:
                pod = await client.get(PODS, "crasher")
                statuses = (pod.get("status") or {}).get("containerStatuses") or []
                waiting = statuses[0].get("state", {}).get("waiting", {}) if statuses else {}
                events = (await client.list(ResourceRef("v1", "Event", "default"))).items
                backoffs = [
                    event
                    for event in events
                    if event.get("reason") == "BackOff"
                    and (event.get("involvedObject") or {}).get("name") == "crasher"
                ]
                if (
                    waiting.get("reason") == "CrashLoopBackOff"
                    and statuses[0].get("restartCount", 0) >= 2
                    and backoffs
                ):
                    return pod, backoffs
                await asyncio.sleep(0.1)
        raise AssertionError("crasher never reported CrashLoopBackOff with a BackOff event")

    pod, _ = asyncio.run(backed_off())
    terminated = pod["status"]["containerStatuses"][0]["lastState"]["terminated"]
    assert terminated["exitCode"] == 3
    cluster.shoal("delete", "pod", "crasher", "--wait=true")
    cluster.shoal("delete", "replicatedservice", "healthy", "--wait=true")


def test_up_with_a_bad_file_names_file_line_and_field_and_applies_nothing(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    good = _replicated("never", "v1", replicas=1)
    bad = tmp_path / "bad.yaml"
    _write(bad, good)
    text = bad.read_text().replace("replicas: 1", "replicas: -1")
    bad.write_text(text)
    line = next(i for i, row in enumerate(text.splitlines(), 1) if "replicas: -1" in row)
    result = cluster.shoal("up", "-f", str(bad), "--data-dir", str(cluster.data_dir), check=False)
    assert result.returncode == 1
    assert f"{bad}:{line}:" in result.stderr
    assert "spec.replicas" in result.stderr
    assert "nothing applied" in result.stderr
    listed = cluster.shoal("get", "replicatedservices", "-o", "name", check=False)
    assert "never" not in listed.stdout


@pytest.mark.parametrize("how", ["shoal down", "SIGKILL"])
def test_stopping_the_cluster_leaves_no_pod_process(how: str, tmp_path: Path) -> None:
    manifest = _write(tmp_path / "app.yaml", _replicated("app", "v1", replicas=2))
    with local_cluster(tmp_path / "data") as cluster:
        cluster.shoal(
            "up", "-f", str(manifest), "--data-dir", str(cluster.data_dir), "--timeout", "120s"
        )
        assert len(cluster.processes()) >= 3  # two pods and the service proxy
        kubeconfig = cluster.kubeconfig
        if how == "SIGKILL":
            os.kill(cluster.pid, signal.SIGKILL)
            deadline = time.monotonic() + 15
            while cluster_processes(kubeconfig) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert cluster_processes(kubeconfig) == []
        else:
            down = cluster.shoal("down", "--data-dir", str(cluster.data_dir))
            assert "cluster stopped" in down.stdout
            assert cluster_processes(kubeconfig) == []
            status = cluster.shoal("status", "--data-dir", str(cluster.data_dir), check=False)
            assert status.returncode == 3
