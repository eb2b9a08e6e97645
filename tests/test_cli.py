"""The command line: `shoal validate` and `shoal render`, exit codes and output shapes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml
from click.testing import CliRunner

from shoal import __version__
from shoal.cli import main

ROOT = Path(__file__).resolve().parent.parent
BAD = """\
apiVersion: patterns.shoal.dev/v1
kind: ReplicatedService
metadata:
  name: web
spec:
  replicas: -1
  imagee: nginx
"""


def test_validate_valid_files_exits_zero(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["validate", "-f", str(ROOT / "examples" / "07-loadtest")])
    assert result.exit_code == 0, result.output
    assert (
        "loadtest.shoal.dev/v1 LoadTest my-cool-loadtest (namespace default): valid"
        in result.stdout
    )
    assert result.stdout.strip().endswith("2 objects valid")


def test_validate_reports_every_problem_with_location_and_exits_one(tmp_path: Path) -> None:
    bad = tmp_path / "web.yaml"
    bad.write_text(BAD)
    result = CliRunner().invoke(main, ["validate", "-f", str(bad)])
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        f"{bad}:6:13: spec.replicas: must be >= 0, got -1",
        f'{bad}:7:3: spec.imagee: unknown field "imagee"; did you mean "image"?',
        "error: 2 problems found",
    ]
    assert result.stdout == ""


def test_validate_reads_standard_input() -> None:
    result = CliRunner().invoke(main, ["validate", "-q", "-f", "-"], input=BAD)
    assert result.exit_code == 1
    assert result.stderr.startswith("<stdin>:6:13: spec.replicas:")


def test_missing_file_is_an_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["validate", "-f", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 1
    assert f"{tmp_path / 'nope.yaml'}: no such file or directory" in result.stderr


def test_render_prints_crds_then_objects(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main,
        [
            "render",
            "-f",
            str(ROOT / "examples" / "02-sharded"),
            "--shoal-image",
            "example.com/shoal:dev",
        ],
    )
    assert result.exit_code == 0, result.output
    docs = list(yaml.safe_load_all(result.stdout))
    kinds = [doc["kind"] for doc in docs]
    assert kinds[0] == "CustomResourceDefinition"
    assert kinds[1:3] == ["ConfigMap", "ShardedService"]
    assert kinds.count("Deployment") == 5
    assert kinds.count("Service") == 5
    router = next(
        d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "users-router"
    )
    assert router["spec"]["template"]["spec"]["containers"][0]["image"] == "example.com/shoal:dev"
    assert all("status" not in doc for doc in docs if doc["kind"] != "CustomResourceDefinition")


def test_render_without_crds(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main, ["render", "--no-crds", "-f", str(ROOT / "examples" / "01-replicated")]
    )
    assert result.exit_code == 0, result.output
    kinds = [doc["kind"] for doc in yaml.safe_load_all(result.stdout)]
    assert kinds == ["ReplicatedService", "Service", "Deployment"]


def test_render_refuses_a_container_without_an_image(tmp_path: Path) -> None:
    manifest = tmp_path / "local.yaml"
    manifest.write_text(
        "apiVersion: patterns.shoal.dev/v1\nkind: ReplicatedService\nmetadata: {name: local}\n"
        "spec: {command: [python3, app.py], ports: [8080]}\n"
    )
    assert CliRunner().invoke(main, ["validate", "-f", str(manifest)]).exit_code == 0
    result = CliRunner().invoke(main, ["render", "-f", str(manifest)])
    assert result.exit_code == 1
    assert (
        "Deployment/local: spec.template.spec.containers[0].image: Required value: Kubernetes runs "
        "images; container 'app' only has a command" in result.stderr
    )


def test_the_installed_command_and_module_run() -> None:
    for command in ([sys.executable, "-m", "shoal", "--version"], ["shoal", "--version"]):
        result = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == f"shoal, version {__version__}"
