"""Shared by the node's integration tests: a real API server with a node, tiny apps, polling."""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, cast

from shoal.client import ResourceRef
from shoal.client.http import HTTPClient, NotFoundError
from shoal.node import Node, NodeSettings
from shoal.testing import LocalAPIServer, api_server

PODS = ResourceRef("v1", "Pod", "default")
EVENTS = ResourceRef("v1", "Event", "default")
WAIT = 30.0

T = TypeVar("T")

# An HTTP server on $POD_IP:$PORT answering with its pod's name; MARKER tags its command line.
HTTP_APP = """
import http.server, os, sys
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = os.environ.get("POD_NAME", "").encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
print("serving on", os.environ["POD_IP"], flush=True)
http.server.HTTPServer((os.environ["POD_IP"], int(os.environ.get("PORT", "8080"))), Handler).serve_forever()
"""


def marker() -> str:
    return f"shoal-test-{uuid.uuid4().hex[:12]}"


def node_settings(directory: Path, **overrides: Any) -> NodeSettings:
    values: dict[str, Any] = {
        "data_dir": directory,
        "node_name": "test-node",
        "backoff_base": 0.3,
        "backoff_cap": 2.0,
        "probe_time_scale": 0.1,
        "ready_poll_interval": 0.5,
        "shutdown_grace_cap": 3.0,
    }
    values.update(overrides)
    return NodeSettings(**values)


@dataclass
class Cluster:
    server: LocalAPIServer
    api: HTTPClient
    node: Node


@contextlib.asynccontextmanager
async def running_node(
    directory: Path, *, server: LocalAPIServer | None = None, **overrides: Any
) -> AsyncIterator[Cluster]:
    """A node (in this process) against ``server`` or a fresh in-process API server."""
    async with contextlib.AsyncExitStack() as stack:
        if server is None:
            server = await stack.enter_async_context(api_server(data_dir=directory / "api"))
        api = await stack.enter_async_context(HTTPClient.from_kubeconfig(server.kubeconfig))
        node = Node(api, node_settings(directory / "node", **overrides))
        async with asyncio.TaskGroup() as group:
            task = group.create_task(node.run())
            try:
                async with asyncio.timeout(WAIT):
                    await node.ready.wait()
                yield Cluster(server, api, node)
            finally:
                node.stop()
                await task


async def eventually(
    check: Callable[[], Awaitable[T | None]], *, within: float = WAIT, what: str = "condition"
) -> T:
    """Poll ``check`` until it returns something other than None/False."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    last: Any = None
    while True:
        try:
            last = await check()
        except NotFoundError as error:
            last = error
        if last is not None and last is not False and not isinstance(last, Exception):
            return cast(T, last)
        if loop.time() > deadline:
            raise AssertionError(f"{what} not reached within {within}s; last: {last!r}")
        await asyncio.sleep(0.05)


def pod(name: str, *containers: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"containers": list(containers), **spec},
    }


def python_container(name: str, code: str, *args: str, **fields: Any) -> dict[str, Any]:
    return {"name": name, "command": ["python3", "-c", code, *args], **fields}


def condition(body: dict[str, Any], type_: str) -> str | None:
    for item in (body.get("status") or {}).get("conditions") or []:
        if item.get("type") == type_:
            return str(item.get("status"))
    return None


def container_status(body: dict[str, Any], name: str) -> dict[str, Any]:
    for item in (body.get("status") or {}).get("containerStatuses") or []:
        if item.get("name") == name:
            return dict(item)
    return {}


def processes_with(text: str) -> list[int]:
    """Pids of live processes whose command line contains ``text`` (zombies excluded)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as file:
                cmdline = file.read()
            with open(f"/proc/{entry}/stat") as file:
                state = file.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if text.encode() in cmdline and state != "Z":
            found.append(int(entry))
    return found


async def ready(api: HTTPClient, name: str) -> dict[str, Any] | None:
    body = await api.get(PODS, name)
    return body if condition(body, "Ready") == "True" else None


async def events_for(api: HTTPClient, name: str) -> list[dict[str, Any]]:
    listed = await api.list(EVENTS)
    return [e for e in listed.items if e.get("involvedObject", {}).get("name") == name]
