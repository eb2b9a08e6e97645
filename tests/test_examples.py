"""Every example validates, renders, and renders to manifests Kubernetes itself would accept.

Built-in objects are checked with kubernetes-validate in strict mode against two Kubernetes
versions; shoal's custom objects against the CRD schemas rendered beside them.
"""

from __future__ import annotations

import runpy
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from click.testing import CliRunner

from shoal.cli import main
from shoal.kube.validation import validate_custom_object

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted(p for p in (ROOT / "examples").iterdir() if p.is_dir())
YAML_EXAMPLES = [p for p in EXAMPLES if any(p.glob("*.yaml"))]
KUBERNETES_VERSIONS = ("1.30.0", kubernetes_validate.latest_version())


def test_examples_are_numbered_and_documented() -> None:
    assert len(EXAMPLES) >= 8
    for folder in EXAMPLES:
        assert folder.name[:2].isdigit(), folder.name
        assert folder.name[2] == "-", folder.name
        assert (folder / "README.md").is_file(), folder


@pytest.mark.parametrize("folder", YAML_EXAMPLES, ids=lambda p: p.name)
def test_example_validates(folder: Path) -> None:
    result = CliRunner().invoke(main, ["validate", "-f", str(folder)])
    assert result.exit_code == 0, result.output
    assert "valid" in result.output


def _render(folder: Path) -> list[dict[str, Any]]:
    result = CliRunner().invoke(main, ["render", "-f", str(folder), "--target", "kubernetes"])
    assert result.exit_code == 0, result.output
    return [doc for doc in yaml.safe_load_all(result.output) if doc]


@pytest.mark.parametrize("folder", YAML_EXAMPLES, ids=lambda p: p.name)
@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_rendered_builtin_objects_pass_kubernetes_validate_strict(
    folder: Path, version: str
) -> None:
    builtin = [doc for doc in _render(folder) if not doc["apiVersion"].endswith(".shoal.dev/v1")]
    assert builtin, "every example renders at least one built-in object"
    for doc in builtin:
        kubernetes_validate.validate(doc, version, strict=True)


@pytest.mark.parametrize("folder", YAML_EXAMPLES, ids=lambda p: p.name)
def test_rendered_custom_objects_match_their_crds(folder: Path) -> None:
    docs = _render(folder)
    crds = {
        (doc["spec"]["group"], doc["spec"]["names"]["kind"]): doc
        for doc in docs
        if doc["kind"] == "CustomResourceDefinition"
    }
    custom = [doc for doc in docs if doc["apiVersion"].endswith(".shoal.dev/v1")]
    assert custom
    for doc in custom:
        group = doc["apiVersion"].split("/")[0]
        crd = crds[(group, doc["kind"])]
        assert validate_custom_object(doc, crd) == []


def test_python_api_example_runs_and_renders(capsys: pytest.CaptureFixture[str]) -> None:
    sys.modules.pop("__main__x", None)
    runpy.run_path(str(ROOT / "examples" / "08-python-api" / "talk.py"), run_name="__main__x")
    docs = [doc for doc in yaml.safe_load_all(capsys.readouterr().out) if doc]
    kinds = [(doc["kind"], doc["metadata"]["name"]) for doc in docs]
    assert kinds[0] == ("ReplicatedService", "my-server")
    assert ("ShardedService", "users") in kinds
    assert ("Deployment", "users-shard-3") in kinds
    for doc in docs:
        if not doc["apiVersion"].endswith(".shoal.dev/v1"):
            kubernetes_validate.validate(doc, KUBERNETES_VERSIONS[-1], strict=True)
