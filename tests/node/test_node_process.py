"""``shoal node`` as a process: a SIGKILL of the node leaves no pod process (the grandchildren
included), a restarted node runs its pods again exactly once, and ``shoal logs`` reads them."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

from shoal.client.http import HTTPClient
from shoal.testing import LocalAPIServer, api_server

from .node_helpers import (
    HTTP_APP,
    PODS,
    eventually,
    marker,
    pod,
    processes_with,
    python_container,
    ready,
)


def _open_log(data_dir: Path) -> int:
    data_dir.mkdir(parents=True, exist_ok=True)
    return os.open(data_dir.parent / "node-output.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND)


@contextlib.asynccontextmanager
async def node_process(
    server: LocalAPIServer, data_dir: Path
) -> AsyncIterator[asyncio.subprocess.Process]:
    output = _open_log(data_dir)
    try:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "shoal",
            "node",
            "--kubeconfig",
            str(server.kubeconfig),
            "--data-dir",
            str(data_dir),
            "--name",
            "test-node",
            "--backoff-base",
            "0.3",
            "--probe-time-scale",
            "0.1",
            stdout=output,
            stderr=asyncio.subprocess.STDOUT,
        )
    finally:
        os.close(output)
    try:
        yield process
    finally:
        if process.returncode is None:
            process.terminate()
            try:
                async with asyncio.timeout(20):
                    await process.wait()
            except TimeoutError:
                process.kill()
                await process.wait()


async def _shoal(*args: str, server: LocalAPIServer, node_dir: Path) -> tuple[int, str, str]:
    """Run a shoal command (the in-process server keeps serving meanwhile)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "shoal",
        *args,
        "--kubeconfig",
        str(server.kubeconfig),
        "--node-dir",
        str(node_dir),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(60):
        out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_sigkill_of_the_node_leaves_no_pod_process_and_a_restart_converges(
    tmp_path: Path,
) -> None:
    tag = marker()
    node_dir = tmp_path / "node"
    app = python_container(
        "app",
        HTTP_APP,
        tag,
        ports=[{"containerPort": 8080}],
        readinessProbe={"tcpSocket": {"port": 8080}},
    )
    # A grandchild that has no death signal of its own: only the reaper's killpg reaches it.
    helper = {
        "name": "helper",
        "command": ["sh", "-c", f"python3 -c 'import time; time.sleep(600)' {tag} & wait"],
    }
    async with (
        api_server(data_dir=tmp_path / "api") as server,
        HTTPClient.from_kubeconfig(server.kubeconfig) as api,
    ):
        async with node_process(server, node_dir) as node:
            await api.create(PODS, pod("survivor", app, helper))
            first = await eventually(lambda: ready(api, "survivor"), what="Ready")
            await eventually(
                lambda: _count(tag, 3), what="the app, the helper shell and its grandchild running"
            )
            os.kill(node.pid, signal.SIGKILL)
            await node.wait()
            await eventually(lambda: _count(tag, 0), within=15, what="every pod process gone")

        # shoal logs reads the log the node wrote (the pod still exists in the API).
        code, out, err = await _shoal(
            "logs", "survivor", "-c", "app", server=server, node_dir=node_dir
        )
        assert code == 0, err
        assert f"serving on {first['status']['podIP']}" in out
        code, out, err = await _shoal("logs", "survivor", server=server, node_dir=node_dir)
        assert code == 1
        assert "choose one of: [app helper]" in err
        code, out, err = await _shoal("logs", "nope", server=server, node_dir=node_dir)
        assert code == 1
        assert 'pods "nope" not found' in err

        async with node_process(server, node_dir) as node:

            async def converged() -> bool:
                body = await ready(api, "survivor")
                return body is not None and len(processes_with(tag)) == 3

            await eventually(converged, what="the pod running again, once")
            for _ in range(5):
                assert len(processes_with(tag)) == 3
                await asyncio.sleep(0.1)
            code, out, _ = await _shoal(
                "logs", "survivor", "-c", "app", "--tail", "1", server=server, node_dir=node_dir
            )
            assert code == 0
            assert out.count("serving on") == 1
            # A clean stop (SIGTERM) also leaves nothing.
            node.terminate()
            async with asyncio.timeout(30):
                assert await node.wait() == 0
            assert processes_with(tag) == []


async def _count(tag: str, wanted: int) -> bool:
    return len(processes_with(tag)) == wanted
