"""The LoadTest controller's pure core: what reconcile decides for each state."""

from __future__ import annotations

from typing import Any

from shoal.controllers.loadtest import (
    GENERATION_LABEL,
    UID_LABEL,
    LoadTestSettings,
    decide,
    generator_pod,
    pod_name,
    status_from_summary,
)

SETTINGS = LoadTestSettings(command=("python3", "-m", "shoal"), status_interval=0.5)


def loadtest(generation: int = 1, status: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "loadtest.shoal.dev/v1",
        "kind": "LoadTest",
        "metadata": {"name": "lt", "namespace": "ns", "uid": "u-1", "generation": generation},
        "spec": {"service": "svc", "requestPerSecond": "10", "tests": [{"path": "/"}]},
        **({"status": status} if status is not None else {}),
    }


def pod(generation: int, phase: str | None = None, uid: str = "u-1") -> dict[str, Any]:
    body = generator_pod(loadtest(generation), SETTINGS)
    body["metadata"]["labels"][UID_LABEL] = uid
    if phase is not None:
        body["status"] = {
            "phase": phase,
            "containerStatuses": [{"state": {"terminated": {"exitCode": 3, "message": "boom"}}}],
        }
    return body


def reasons(status: dict[str, Any] | None) -> dict[str, tuple[str, str]]:
    assert status is not None
    return {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]}


def finished(generation: int, ok: bool = True) -> dict[str, Any]:
    conditions = [{"type": "Succeeded", "status": "True" if ok else "False"}]
    if not ok:
        conditions.append({"type": "Failed", "status": "True"})
    return {"observedGeneration": generation, "conditions": conditions}


def test_the_generator_pod() -> None:
    body = generator_pod(loadtest(3), SETTINGS)
    assert body["metadata"]["name"] == "lt-gen-3"
    assert body["metadata"]["labels"] == {
        UID_LABEL: "u-1",
        GENERATION_LABEL: "3",
        "app.kubernetes.io/component": "loadtest-generator",
    }
    (owner,) = body["metadata"]["ownerReferences"]
    assert owner == {
        "apiVersion": "loadtest.shoal.dev/v1",
        "kind": "LoadTest",
        "name": "lt",
        "uid": "u-1",
        "controller": True,
        "blockOwnerDeletion": True,
    }
    assert body["spec"]["restartPolicy"] == "Never"
    (container,) = body["spec"]["containers"]
    assert container["command"] == [
        "python3", "-m", "shoal", "loadtest", "run", "--name", "lt", "--namespace", "ns",
        "--generation", "3", "--status-interval", "0.5",
    ]  # fmt: skip
    assert len(pod_name("x" * 300, 12)) == 253


def test_a_new_loadtest_gets_a_pod_and_a_pending_status() -> None:
    decision = decide(loadtest(), [], SETTINGS)
    assert decision.create is not None
    assert decision.create["metadata"]["name"] == "lt-gen-1"
    assert decision.delete == ()
    assert decision.status is not None
    assert decision.status["observedGeneration"] == 1
    assert reasons(decision.status) == {
        "Running": ("False", "Pending"),
        "Succeeded": ("Unknown", "Pending"),
    }


def test_a_running_pod_is_left_alone() -> None:
    running = loadtest(status={"observedGeneration": 1, "conditions": []})
    assert decide(running, [pod(1, "Running")], SETTINGS) == decide(running, [pod(1)], SETTINGS)
    decision = decide(running, [pod(1, "Running")], SETTINGS)
    assert (decision.create, decision.status, decision.delete) == (None, None, ())


def test_a_pod_created_before_its_status_was_written_gets_the_status() -> None:
    decision = decide(loadtest(), [pod(1)], SETTINGS)
    assert decision.create is None
    assert reasons(decision.status)["Running"] == ("False", "Pending")


def test_a_finished_generation_is_left_alone() -> None:
    for ok in (True, False):
        decision = decide(loadtest(status=finished(1, ok)), [pod(1, "Succeeded")], SETTINGS)
        assert (decision.create, decision.status, decision.delete) == (None, None, ())


def test_a_changed_spec_stops_the_old_run_and_starts_a_new_one() -> None:
    decision = decide(loadtest(2, finished(1)), [pod(1, "Running")], SETTINGS)
    assert decision.delete == ("lt-gen-1",)
    assert decision.create is not None
    assert decision.create["metadata"]["name"] == "lt-gen-2"
    assert decision.status is not None
    assert decision.status["observedGeneration"] == 2


def test_pods_of_another_object_with_the_same_name_are_not_ours() -> None:
    decision = decide(loadtest(), [pod(1, uid="u-old")], SETTINGS)
    assert decision.create is not None
    assert decision.delete == ()


def test_a_deleted_pod_ends_the_run_failed() -> None:
    status = {"observedGeneration": 1, "requests": 5}
    decision = decide(loadtest(status=status), [], SETTINGS)
    assert decision.create is None
    assert reasons(decision.status)["Failed"] == ("True", "GeneratorLost")
    assert decision.status is not None
    assert decision.status["requests"] == 5


def test_a_pod_that_ended_without_a_result_ends_the_run_failed() -> None:
    decision = decide(loadtest(status={"observedGeneration": 1}), [pod(1, "Failed")], SETTINGS)
    assert decision.status is not None
    assert reasons(decision.status)["Failed"] == ("True", "GeneratorFailed")
    failed = next(c for c in decision.status["conditions"] if c["type"] == "Failed")
    assert "exit code 3: boom" in failed["message"]


def test_status_from_a_summary() -> None:
    summary = {
        "requests": 10,
        "achievedRequestsPerSecond": 10.0,
        "errorRatio": 0.0,
        "latency": {"p50": 1.0, "p90": 2.0, "p95": 2.5, "p99": 3.0, "p999": None, "max": 4.0},
        "paths": [
            {"path": "/", "method": "GET", "requests": 10, "errors": 0, "latency": {"p50": 1.0}}
        ],
        "thresholds": [{"expression": "p(99)<1", "passed": False, "observed": 3.0}],
    }
    assert status_from_summary(summary) == {
        "requests": 10,
        "achievedRequestsPerSecond": 10.0,
        "errorRatio": 0.0,
        "latency": {"p50": 1.0, "p90": 2.0, "p99": 3.0},
        "paths": [
            {"path": "/", "method": "GET", "requests": 10, "errors": 0, "latency": {"p50": 1.0}}
        ],
        "thresholds": [{"expression": "p(99)<1", "passed": False, "observed": 3.0}],
    }
