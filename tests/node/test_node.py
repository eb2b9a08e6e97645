"""The node against a real API server: pods run, become Ready, crash-loop, stop gracefully, see
their volumes and environment, and a restarted node converges without duplicates."""

from __future__ import annotations

import asyncio
import ipaddress
import json
from pathlib import Path
from typing import Any

import aiohttp

from shoal.client import ResourceRef
from shoal.node.logs import log_dir

from .node_helpers import (
    HTTP_APP,
    PODS,
    condition,
    container_status,
    events_for,
    eventually,
    marker,
    pod,
    processes_with,
    python_container,
    ready,
    running_node,
)

CONFIG_MAPS = ResourceRef("v1", "ConfigMap", "default")
SECRETS = ResourceRef("v1", "Secret", "default")
SERVICES = ResourceRef("v1", "Service", "default")


async def test_a_pod_runs_on_its_own_address_and_becomes_ready(tmp_path: Path) -> None:
    async with running_node(tmp_path) as cluster:
        api = cluster.api
        probe = {"httpGet": {"port": "http", "path": "/"}, "periodSeconds": 1}
        web = python_container(
            "app", HTTP_APP, ports=[{"name": "http", "containerPort": 8080}], readinessProbe=probe
        )
        await api.create(PODS, pod("web-a", web))
        await api.create(PODS, pod("web-b", web))
        bodies = [
            await eventually(lambda n=n: ready(api, n), what=f"{n} Ready")  # type: ignore[misc]
            for n in ("web-a", "web-b")
        ]
        ips = [b["status"]["podIP"] for b in bodies]
        assert len(set(ips)) == 2
        for body, ip in zip(bodies, ips, strict=True):
            assert ipaddress.IPv4Address(ip) in ipaddress.IPv4Network("127.1.0.0/16")
            assert ip != "127.0.0.1"
            assert body["spec"]["nodeName"] == "test-node"
            assert body["status"]["phase"] == "Running"
            assert body["status"]["podIPs"] == [{"ip": ip}]
            assert condition(body, "ContainersReady") == "True"
            status = container_status(body, "app")
            assert status["ready"] is True
            assert status["started"] is True
            assert "running" in status["state"]
        # Both listen on port 8080, each on its own address.
        async with aiohttp.ClientSession() as http:
            for name, ip in zip(("web-a", "web-b"), ips, strict=True):
                async with http.get(f"http://{ip}:8080/") as response:
                    assert await response.text() == name
        reasons = {e["reason"] for e in await events_for(api, "web-a")}
        assert {"Scheduled", "Started"} <= reasons
        # Its output is in its log file.
        uid = bodies[0]["metadata"]["uid"]
        log = log_dir(tmp_path / "node" / "logs", "default", "web-a", uid) / "app.log"
        assert f"serving on {ips[0]}" in log.read_text()


async def test_a_crash_loop_backs_off_is_reported_and_does_not_stall_other_pods(
    tmp_path: Path,
) -> None:
    async with running_node(tmp_path) as cluster:
        api = cluster.api
        crash = {"name": "app", "command": ["sh", "-c", "echo crashing; exit 3"]}
        await api.create(PODS, pod("crasher", crash))

        async def backing_off() -> dict[str, Any] | None:
            body = await api.get(PODS, "crasher")
            status = container_status(body, "app")
            waiting = status.get("state", {}).get("waiting", {})
            if waiting.get("reason") == "CrashLoopBackOff" and status["restartCount"] >= 2:
                return body
            return None

        body = await eventually(backing_off, what="CrashLoopBackOff with restarts")
        status = container_status(body, "app")
        assert status["lastState"]["terminated"]["exitCode"] == 3
        assert status["lastState"]["terminated"]["reason"] == "Error"
        assert body["status"]["phase"] == "Running"  # restartPolicy Always: it restarts
        assert condition(body, "Ready") == "False"
        # Meanwhile another pod starts and becomes Ready.
        web = python_container(
            "app",
            HTTP_APP,
            ports=[{"containerPort": 8080}],
            readinessProbe={"tcpSocket": {"port": 8080}},
        )
        await api.create(PODS, pod("healthy", web))
        await eventually(lambda: ready(api, "healthy"), what="healthy Ready")

        async def back_off_event() -> dict[str, Any] | None:
            for event in await events_for(api, "crasher"):
                if event["reason"] == "BackOff" and event["type"] == "Warning":
                    return event
            return None

        event = await eventually(back_off_event, what="a BackOff event")
        assert "Back-off restarting failed container app" in event["message"]


async def test_restart_policies_and_terminal_phases(tmp_path: Path) -> None:
    async with running_node(tmp_path) as cluster:
        api = cluster.api
        await api.create(
            PODS, pod("done", {"name": "c", "command": ["true"]}, restartPolicy="OnFailure")
        )
        await api.create(
            PODS,
            pod("failed", {"name": "c", "command": ["sh", "-c", "exit 7"]}, restartPolicy="Never"),
        )

        async def phase(name: str, wanted: str) -> dict[str, Any] | None:
            body = await api.get(PODS, name)
            return body if body.get("status", {}).get("phase") == wanted else None

        done = await eventually(lambda: phase("done", "Succeeded"), what="Succeeded")
        assert container_status(done, "c")["state"]["terminated"]["reason"] == "Completed"
        assert condition(done, "Ready") == "False"
        failed = await eventually(lambda: phase("failed", "Failed"), what="Failed")
        terminated = container_status(failed, "c")["state"]["terminated"]
        assert terminated["exitCode"] == 7
        assert container_status(failed, "c")["restartCount"] == 0
        # A finished pod is deleted at once (nothing to stop).
        await api.delete(PODS, "done")
        await eventually(lambda: _gone(api, "done"), what="done deleted")


async def _gone(api: Any, name: str) -> bool:
    from shoal.client.http import NotFoundError

    try:
        await api.get(PODS, name)
    except NotFoundError:
        return True
    return False


# SIGTERM is noted in a file and ignored: only SIGKILL ends it, after the grace period.
STUBBORN = """
import os, signal, sys, time
out = sys.argv[1]
def term(*_):
    with open(out, "a") as f:
        f.write("TERM\\n")
signal.signal(signal.SIGTERM, term)
with open(out, "a") as f:
    f.write("started\\n")
while True:
    time.sleep(0.05)
"""


async def test_graceful_delete_runs_pre_stop_then_sigterm_then_sigkill(tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    tag = marker()
    async with running_node(tmp_path) as cluster:
        api = cluster.api
        container = python_container(
            "app",
            STUBBORN,
            str(notes),
            tag,
            lifecycle={"preStop": {"exec": {"command": ["sh", "-c", f"echo preStop >> {notes}"]}}},
        )
        # A child in the same process group must get the signals too.
        child = {"name": "child", "command": ["sh", "-c", f"sleep 300 & wait # {tag}"]}
        await api.create(PODS, pod("stubborn", container, child, terminationGracePeriodSeconds=1))
        await eventually(lambda: ready(api, "stubborn"), what="Ready")
        await eventually(lambda: _text(notes, "started"), what="the app started")
        assert processes_with(tag)
        await api.delete(PODS, "stubborn")
        terminating = await api.get(PODS, "stubborn")
        assert terminating["metadata"]["deletionGracePeriodSeconds"] == 1
        await eventually(lambda: _gone(api, "stubborn"), what="the pod removed by its node")
        assert notes.read_text().splitlines() == ["started", "preStop", "TERM"]
        assert processes_with(tag) == []


async def _text(path: Path, text: str) -> bool:
    return _contains(path, text)


def _contains(path: Path, text: str) -> bool:
    try:
        return text in path.read_text()
    except OSError:
        return False


CHECK_ENV = """
import json, os, sys, pathlib, time
config = pathlib.Path(sys.argv[1])
print(json.dumps({
    "argv": sys.argv[1:],
    "env": {k: v for k, v in os.environ.items() if not k.startswith(("LC_", "PYTHON"))},
    "config": config.read_text(),
    "cwd": os.getcwd(),
}), flush=True)
last = config.read_text()
while True:
    now = config.read_text()
    if now != last:
        print("CHANGED " + now, flush=True)
        last = now
    time.sleep(0.05)
"""


async def test_volumes_environment_and_service_variables(tmp_path: Path) -> None:
    async with running_node(tmp_path) as cluster:
        api = cluster.api
        await api.create(
            CONFIG_MAPS,
            {
                "metadata": {"name": "app-config"},
                "data": {"app.yaml": "mode: one", "LEVEL": "debug"},
            },
        )
        await api.create(
            SECRETS, {"metadata": {"name": "creds"}, "stringData": {"password": "hunter2"}}
        )
        await api.create(
            SERVICES,
            {
                "metadata": {"name": "backend-db"},
                "spec": {"selector": {"app": "db"}, "ports": [{"name": "sql", "port": 5432}]},
            },
        )
        container = python_container(
            "app",
            CHECK_ENV,
            "/etc/app/app.yaml",
            "$(MODE_FROM_CM)",
            workingDir="/scratch",
            env=[
                {
                    "name": "MODE_FROM_CM",
                    "valueFrom": {"configMapKeyRef": {"name": "app-config", "key": "LEVEL"}},
                },
                {
                    "name": "PASSWORD",
                    "valueFrom": {"secretKeyRef": {"name": "creds", "key": "password"}},
                },
                {"name": "MY_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                {"name": "GREETING", "value": "hello $(MY_IP)"},
            ],
            envFrom=[{"configMapRef": {"name": "app-config"}, "prefix": "CM_"}],
            volumeMounts=[
                {"name": "config", "mountPath": "/etc/app"},
                {"name": "scratch", "mountPath": "/scratch"},
            ],
        )
        await api.create(
            PODS,
            pod(
                "env",
                container,
                volumes=[
                    {"name": "config", "configMap": {"name": "app-config"}},
                    {"name": "scratch", "emptyDir": {}},
                ],
            ),
        )
        body = await eventually(lambda: ready(api, "env"), what="Ready")
        uid = body["metadata"]["uid"]
        log = log_dir(tmp_path / "node" / "logs", "default", "env", uid) / "app.log"
        await eventually(lambda: _text(log, "{"), what="the app's report")
        report = json.loads(log.read_text().splitlines()[0])
        env = report["env"]
        volumes = tmp_path / "node" / "pods" / uid / "volumes"
        ip = body["status"]["podIP"]
        assert report["argv"] == [str(volumes / "config" / "app.yaml"), "debug"]
        assert report["config"] == "mode: one"
        assert report["cwd"] == str(volumes / "scratch")
        assert env["POD_IP"] == ip
        assert env["MY_IP"] == ip
        assert env["GREETING"] == f"hello {ip}"
        assert env["PASSWORD"] == "hunter2"
        assert env["CM_LEVEL"] == "debug"
        assert env["POD_NAME"] == env["HOSTNAME"] == "env"
        assert env["SHOAL_MOUNT_CONFIG"] == str(volumes / "config")
        assert env["SHOAL_MOUNT_SCRATCH"] == str(volumes / "scratch")
        service = await api.get(SERVICES, "backend-db")
        cluster_ip = service["spec"].get("clusterIP")
        if cluster_ip and cluster_ip != "None":
            assert env["BACKEND_DB_SERVICE_HOST"] == cluster_ip
            assert env["BACKEND_DB_SERVICE_PORT"] == "5432"
            assert env["BACKEND_DB_SERVICE_PORT_SQL"] == "5432"
        else:
            assert "BACKEND_DB_SERVICE_HOST" not in env
        # The ConfigMap changes: the file changes under the running process.
        config = await api.get(CONFIG_MAPS, "app-config")
        config["data"]["app.yaml"] = "mode: two"
        await api.update(CONFIG_MAPS, config)
        await eventually(lambda: _text(log, "CHANGED mode: two"), what="the volume refreshed")


async def test_a_container_with_only_an_image_gets_a_clear_error(tmp_path: Path) -> None:
    async with running_node(tmp_path) as cluster:
        api = cluster.api
        await api.create(PODS, pod("image-only", {"name": "app", "image": "nginx:1.27"}))

        async def waiting() -> dict[str, Any] | None:
            body = await api.get(PODS, "image-only")
            state = container_status(body, "app").get("state", {})
            return (
                state.get("waiting")
                if "waiting" in state and "message" in state["waiting"]
                else None
            )

        state = await eventually(waiting, what="a waiting reason")
        assert state["reason"] == "CreateContainerError"
        assert "only an image" in state["message"]
        assert "command" in state["message"]
        body = await api.get(PODS, "image-only")
        assert body["status"]["phase"] == "Pending"
        messages = [
            e["message"] for e in await events_for(api, "image-only") if e["type"] == "Warning"
        ]
        assert any("only an image" in m for m in messages)


async def test_a_liveness_failure_restarts_the_container(tmp_path: Path) -> None:
    async with running_node(tmp_path) as cluster:
        api = cluster.api
        # Alive while /tmp-like file exists; it never does, so liveness fails.
        container = {
            "name": "app",
            "command": ["sleep", "300"],
            "livenessProbe": {
                "exec": {"command": ["test", "-e", str(tmp_path / "never")]},
                "periodSeconds": 1,
                "failureThreshold": 2,
            },
        }
        await api.create(PODS, pod("unhealthy", container, terminationGracePeriodSeconds=1))

        async def restarted() -> dict[str, Any] | None:
            status = container_status(await api.get(PODS, "unhealthy"), "app")
            return status if status.get("restartCount", 0) >= 1 else None

        status = await eventually(restarted, what="a restart after liveness failures")
        assert status["lastState"]["terminated"]["exitCode"] == 128 + 15
        reasons = {e["reason"] for e in await events_for(api, "unhealthy")}
        assert {"Unhealthy", "Killing"} <= reasons


async def test_a_restarted_node_converges_without_duplicates(tmp_path: Path) -> None:
    tag = marker()
    from shoal.testing import api_server

    async with api_server(data_dir=tmp_path / "api") as server:
        container = python_container(
            "app",
            HTTP_APP,
            tag,
            ports=[{"containerPort": 8080}],
            readinessProbe={"tcpSocket": {"port": 8080}},
        )
        async with running_node(tmp_path, server=server) as cluster:
            await cluster.api.create(PODS, pod("survivor", container))
            first = await eventually(lambda: ready(cluster.api, "survivor"), what="Ready")
            assert len(processes_with(tag)) == 1
        # The node stopped: no process of the pod is left.
        assert processes_with(tag) == []
        async with running_node(tmp_path, server=server) as cluster:

            async def running_again() -> dict[str, Any] | None:
                body = await ready(cluster.api, "survivor")
                pids = processes_with(tag)
                return body if body is not None and len(pids) == 1 else None

            body = await eventually(running_again, what="the pod running again, once")
            assert body["metadata"]["uid"] == first["metadata"]["uid"]
            assert body["status"]["podIP"] == first["status"]["podIP"]
            for _ in range(5):  # it stays at one copy
                assert len(processes_with(tag)) == 1
                await asyncio.sleep(0.1)
        assert processes_with(tag) == []
