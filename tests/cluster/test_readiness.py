"""The readiness rules shoal up waits with."""

from __future__ import annotations

from typing import Any

from shoal.cluster.readiness import Progress, readiness


def deployment(want: int, generation: int = 2, observed: int = 2, **status: int) -> dict[str, Any]:
    return {
        "kind": "Deployment",
        "metadata": {"name": "web", "generation": generation},
        "spec": {"replicas": want},
        "status": {"observedGeneration": observed, **status},
    }


def test_deployment_follows_kubectl_rollout_status() -> None:
    assert readiness(deployment(2, observed=1)).progress is Progress.WAITING
    waiting = readiness(deployment(3, updatedReplicas=1, replicas=3, availableReplicas=3))
    assert (waiting.progress, waiting.detail) == (Progress.WAITING, "1/3 updated")
    old = readiness(deployment(3, updatedReplicas=3, replicas=4, availableReplicas=3))
    assert old.detail == "1 old replicas pending termination"
    done = readiness(deployment(3, updatedReplicas=3, replicas=3, availableReplicas=3))
    assert (done.progress, done.done, done.total) == (Progress.READY, 3, 3)


def test_pattern_waits_for_its_ready_condition_at_the_latest_generation() -> None:
    pattern: dict[str, Any] = {
        "kind": "ShardedService",
        "metadata": {"generation": 1},
        "spec": {"shards": 4, "replicasPerShard": 2},
        "status": {
            "observedGeneration": 1,
            "replicas": 8,
            "readyReplicas": 5,
            "conditions": [{"type": "Ready", "status": "False", "reason": "ShardsNotReady"}],
        },
    }
    assert readiness(pattern).progress is Progress.WAITING
    assert readiness(pattern).detail.startswith("5/8 replicas ready")
    pattern["status"]["conditions"][0]["status"] = "True"
    assert readiness(pattern).progress is Progress.READY
    pattern["metadata"]["generation"] = 2
    assert readiness(pattern).progress is Progress.WAITING


def test_pod_loadtest_service_and_others() -> None:
    pod = {
        "kind": "Pod",
        "status": {
            "phase": "Pending",
            "containerStatuses": [
                {"name": "app", "state": {"waiting": {"reason": "CrashLoopBackOff"}}}
            ],
        },
    }
    assert readiness(pod).detail == "app: CrashLoopBackOff"
    assert readiness({"kind": "Pod", "status": {"phase": "Failed"}}).progress is Progress.FAILED
    failed = {
        "kind": "LoadTest",
        "status": {
            "conditions": [{"type": "Failed", "status": "True", "message": "p(99)<250 failed"}]
        },
    }
    assert (readiness(failed).progress, readiness(failed).detail) == (
        Progress.FAILED,
        "p(99)<250 failed",
    )
    assert readiness({"kind": "Service", "spec": {}}).progress is Progress.WAITING
    assert (
        readiness({"kind": "Service", "spec": {"clusterIP": "127.2.0.1"}}).progress
        is Progress.READY
    )
    assert readiness({"kind": "ConfigMap"}).progress is Progress.READY
