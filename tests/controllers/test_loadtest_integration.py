"""The LoadTest controller and runner against a real API server; the test plays the node
(it runs each generator pod's command in-process, or as a subprocess with $KUBECONFIG) until the
one-machine node runs pods itself."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web

from shoal.client import APIError, HTTPClient, ResourceRef, load_kubeconfig
from shoal.controllers.loadtest import (
    UID_LABEL,
    LoadTestController,
    LoadTestSettings,
    RunnerSettings,
    run_loadtest,
)
from shoal.testing import LocalAPIServer, api_server

NS = "default"
LOADTESTS = ResourceRef("loadtest.shoal.dev/v1", "LoadTest", NS)
PODS = ResourceRef("v1", "Pod", NS)
SERVICES = ResourceRef("v1", "Service", NS)
ADDRESS = "127.2.200.7"  # a cluster IP in shoal's range, served here on loopback


def talk_loadtest(rate: str = "50", duration: str = "1s", **spec: Any) -> dict[str, Any]:
    """The talk's YAML, with a low rate and a short duration set for the test."""
    return {
        "apiVersion": "loadtest/v1",
        "kind": "LoadTest",
        "metadata": {"name": "my-cool-loadtest"},
        "spec": {
            "service": "my-cool-service",
            "requestPerSecond": rate,
            "duration": duration,
            "tests": [{"test": ["/some/path", "/some/other/path"]}],
            **spec,
        },
    }


@contextlib.asynccontextmanager
async def service_under_test(api: HTTPClient) -> AsyncIterator[None]:
    """`my-cool-service`: an HTTP server on a cluster IP, and its Service object."""

    async def answer(request: web.Request) -> web.Response:
        return web.Response(text=request.path)

    app = web.Application()
    app.router.add_get("/{tail:.*}", answer)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, ADDRESS, 0)
    await site.start()
    port = runner.addresses[0][1]
    await api.create(
        SERVICES,
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "my-cool-service"},
            "spec": {
                "clusterIP": ADDRESS,
                "selector": {"app": "my-cool-service"},
                "ports": [{"name": "http", "port": port}],
            },
        },
    )
    try:
        yield
    finally:
        await runner.cleanup()


class PlayNode:
    """Runs every generator pod's command in-process, as the node would run its process."""

    def __init__(self, api: HTTPClient, run: Callable[[dict[str, Any]], Awaitable[str]]) -> None:
        self.api = api
        self.run = run
        self.started: list[str] = []
        self.results: dict[str, str] = {}

    async def serve(self, group: asyncio.TaskGroup) -> None:
        while True:
            for pod in (await self.api.list(PODS, label_selector=UID_LABEL)).items:
                name = pod["metadata"]["name"]
                if name not in self.started:
                    self.started.append(name)
                    group.create_task(self._run(pod))
            await asyncio.sleep(0.05)

    async def _run(self, pod: dict[str, Any]) -> None:
        name = pod["metadata"]["name"]
        reason = await self.run(pod)
        self.results[name] = reason
        with contextlib.suppress(Exception):  # the pod may be gone (garbage-collected)
            current = await self.api.get(PODS, name)
            current["status"] = {"phase": "Succeeded" if reason != "Failed" else "Failed"}
            await self.api.update_status(PODS, current)


def in_process(api: HTTPClient) -> Callable[[dict[str, Any]], Awaitable[str]]:
    async def run(pod: dict[str, Any]) -> str:
        command = pod["spec"]["containers"][0]["command"]
        options = dict(zip(command[3::2], command[4::2], strict=False))
        assert command[1:3] == ["loadtest", "run"]
        return await run_loadtest(
            api,
            options["--namespace"],
            options["--name"],
            int(options["--generation"]),
            settings=RunnerSettings(status_interval=float(options["--status-interval"])),
        )

    return run


async def until(check: Callable[[], Awaitable[Any]], within: float = 60.0) -> Any:
    """Poll ``check`` until it returns something truthy (with a deadline, never a fixed sleep)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        result = await check()
        if result:
            return result
        if loop.time() > deadline:
            raise AssertionError(f"condition not met within {within} s")
        await asyncio.sleep(0.05)


def condition(body: dict[str, Any], kind: str) -> dict[str, Any] | None:
    for item in (body.get("status") or {}).get("conditions") or ():
        if item["type"] == kind:
            return dict(item)
    return None


def ended(api: HTTPClient, name: str = "my-cool-loadtest") -> Callable[[], Awaitable[Any]]:
    async def check() -> dict[str, Any] | None:
        body = await api.get(LOADTESTS, name)
        status = condition(body, "Succeeded")
        return body if status is not None and status["status"] != "Unknown" else None

    return check


@contextlib.asynccontextmanager
async def cluster(
    node: Callable[[HTTPClient, LocalAPIServer], Callable[[dict[str, Any]], Awaitable[str]]]
    | None = None,
) -> AsyncIterator[tuple[HTTPClient, PlayNode, LocalAPIServer]]:
    async with api_server() as server, HTTPClient(load_kubeconfig(server.kubeconfig)) as api:
        controller = LoadTestController(api, LoadTestSettings(status_interval=0.3))
        player = PlayNode(api, (node or (lambda a, s: in_process(a)))(api, server))
        async with service_under_test(api), asyncio.TaskGroup() as group:
            running = group.create_task(controller.run())
            serving = group.create_task(player.serve(group))
            try:
                yield api, player, server
            finally:
                controller.stop()
                serving.cancel()
                await running


async def test_the_talks_loadtest_succeeds_with_its_figures() -> None:
    async with cluster() as (api, node, server):
        await api.create(LOADTESTS, talk_loadtest(thresholds=["error_ratio<0.01", "p(99)<5s"]))
        body = await until(ended(api))
        status = body["status"]
        assert condition(body, "Succeeded")["status"] == "True"  # type: ignore[index]
        assert condition(body, "Running")["status"] == "False"  # type: ignore[index]
        assert condition(body, "Failed") is None
        assert status["observedGeneration"] == 1
        assert status["requests"] == 50
        assert status["errorRatio"] == 0
        assert abs(status["achievedRequestsPerSecond"] - 50) <= 0.5  # within 1%
        assert set(status["latency"]) == {"p50", "p90", "p99", "p999"}
        assert [(p["path"], p["requests"]) for p in status["paths"]] == [
            ("/some/path", 25),
            ("/some/other/path", 25),
        ]
        assert [(t["expression"], t["passed"]) for t in status["thresholds"]] == [
            ("error_ratio<0.01", True),
            ("p(99)<5s", True),
        ]
        assert status["startTime"] <= status["completionTime"]
        assert node.started == ["my-cool-loadtest-gen-1"]
        # kubectl get loadtests: the printer columns.
        table = await api.table(
            await api.resource_for("loadtest.shoal.dev/v1", "LoadTest"), namespace=NS
        )
        names = [c["name"] for c in table["columnDefinitions"]]
        row = dict(zip(names, table["rows"][0]["cells"], strict=True))
        assert row["Service"] == "my-cool-service"
        assert row["Achieved"] == status["achievedRequestsPerSecond"]
        assert row["Succeeded"] == "True"
        # shoal loadtest report, as a user runs it.
        report = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "shoal", "loadtest", "report", "my-cool-loadtest",
            "--kubeconfig", str(server.kubeconfig), "-n", NS,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        async with asyncio.timeout(60):
            out, err = await report.communicate()
        assert report.returncode == 0, err.decode()
        text = out.decode()
        for expected in ("my-cool-service", "Succeeded", "GET /some/other/path", "p(99)<5s"):
            assert expected in text
        # Nothing more happens for a finished generation: no second pod.
        assert node.started == ["my-cool-loadtest-gen-1"]


async def test_a_failing_threshold_ends_failed_naming_it() -> None:
    async with cluster() as (api, _, _):
        await api.create(
            LOADTESTS, talk_loadtest(rate="20", thresholds=["p(50)<0.001", "error_ratio<0.5"])
        )
        body = await until(ended(api))
        failed = condition(body, "Failed")
        assert failed is not None
        assert failed["status"] == "True"
        assert failed["reason"] == "ThresholdsFailed"
        assert "p(50)<0.001" in failed["message"]
        assert "error_ratio" not in failed["message"]
        assert condition(body, "Succeeded")["status"] == "False"  # type: ignore[index]
        verdicts = {t["expression"]: t["passed"] for t in body["status"]["thresholds"]}
        assert verdicts == {"p(50)<0.001": False, "error_ratio<0.5": True}


async def test_an_unknown_service_ends_failed_with_the_reason() -> None:
    async with cluster() as (api, _, _):
        await api.create(
            LOADTESTS, talk_loadtest() | {"spec": talk_loadtest()["spec"] | {"service": "nope"}}
        )
        body = await until(ended(api))
        failed = condition(body, "Failed")
        assert failed is not None
        assert failed["reason"] == "ServiceNotFound"
        assert '"nope" not found' in failed["message"]


async def test_a_changed_spec_runs_again_and_a_deleted_loadtest_stops_its_generator() -> None:
    async with cluster() as (api, node, _):
        await api.create(LOADTESTS, talk_loadtest(rate="20", duration="10m"))
        await until(lambda: _running(api))
        # Change the spec: the old run stops (superseded), generation 2 runs to the end.
        body = await api.get(LOADTESTS, "my-cool-loadtest")
        body["spec"]["duration"] = "1s"
        await api.update(LOADTESTS, body)
        done = await until(ended(api))
        assert done["status"]["observedGeneration"] == 2
        assert condition(done, "Succeeded")["status"] == "True"  # type: ignore[index]
        assert node.started == ["my-cool-loadtest-gen-1", "my-cool-loadtest-gen-2"]
        assert await until(lambda: _result(node, "my-cool-loadtest-gen-1")) == "Superseded"
        pods = await until(lambda: _pods(api, lambda names: names == ["my-cool-loadtest-gen-2"]))
        assert pods
        # Change it again to a long run, then delete the object: the generator stops.
        body = await api.get(LOADTESTS, "my-cool-loadtest")
        body["spec"]["duration"] = "10m"
        await api.update(LOADTESTS, body)
        await until(lambda: _running(api, generation=3))
        await api.delete(LOADTESTS, "my-cool-loadtest")
        assert await until(lambda: _result(node, "my-cool-loadtest-gen-3")) == "Superseded"
        # Its pod is garbage-collected through the owner reference.
        assert await until(lambda: _pods(api, lambda names: names == []))


async def test_bad_specs_are_refused_with_field_causes() -> None:
    async with api_server() as server, HTTPClient(load_kubeconfig(server.kubeconfig)) as api:
        for spec, field in (
            ({"requestPerSecond": "0"}, "spec.requestPerSecond"),
            ({"tests": [{"path": "no-slash"}]}, "spec.tests[0].path"),
            ({"thresholds": ["p(99) < soon"]}, "spec.thresholds[0]"),
        ):
            body = talk_loadtest()
            body["spec"] = body["spec"] | spec
            with pytest.raises(APIError) as caught:
                await api.create(LOADTESTS, body)
            assert caught.value.status.code == 422
            assert field in [c.get("field") for c in caught.value.status.causes]


def subprocess_node(
    api: HTTPClient, server: LocalAPIServer
) -> Callable[[dict[str, Any]], Awaitable[str]]:
    """Runs the pod's command as a process with $KUBECONFIG, as the node will."""

    async def run(pod: dict[str, Any]) -> str:
        command = pod["spec"]["containers"][0]["command"]
        assert command[:3] == [sys.executable, "-m", "shoal"]
        process = await asyncio.create_subprocess_exec(
            *command,
            env={**os.environ, "KUBECONFIG": str(server.kubeconfig)},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        try:
            async with asyncio.timeout(120):
                out, _ = await process.communicate()
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
        return out.decode().strip().splitlines()[-1].rpartition(": ")[2]

    return run


async def test_the_runner_as_a_process_finds_the_api_through_kubeconfig() -> None:
    async with api_server() as server, HTTPClient(load_kubeconfig(server.kubeconfig)) as api:
        settings = LoadTestSettings(command=(sys.executable, "-m", "shoal"), status_interval=0.3)
        controller = LoadTestController(api, settings)
        node = PlayNode(api, subprocess_node(api, server))
        async with service_under_test(api), asyncio.TaskGroup() as group:
            running = group.create_task(controller.run())
            serving = group.create_task(node.serve(group))
            try:
                await api.create(LOADTESTS, talk_loadtest(rate="20"))
                body = await until(ended(api), within=120)
                assert condition(body, "Succeeded")["status"] == "True"  # type: ignore[index]
                assert body["status"]["requests"] == 20
                assert await until(lambda: _result(node, "my-cool-loadtest-gen-1")) == "Succeeded"
            finally:
                controller.stop()
                serving.cancel()
                await running


async def _running(api: HTTPClient, generation: int = 1) -> bool:
    body = await api.get(LOADTESTS, "my-cool-loadtest")
    running = condition(body, "Running")
    return bool(
        running
        and running["status"] == "True"
        and body["status"].get("observedGeneration") == generation
    )


async def _result(node: PlayNode, pod: str) -> str | None:
    return node.results.get(pod)


async def _pods(api: HTTPClient, check: Callable[[list[str]], bool]) -> bool:
    names = sorted(p["metadata"]["name"] for p in (await api.list(PODS)).items)
    return check(names)
