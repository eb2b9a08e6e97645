"""examples/11-redis-ambassador: the ambassador in a pod of a pattern, rendered for Kubernetes.

tests/test_examples.py validates and renders every example (kubernetes-validate, CRD schemas);
this checks what is particular to this one: the ambassador container in the rendered pod and the
configuration file it ships, loaded by the ambassador's own loader.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from click.testing import CliRunner

from shoal.cli import main
from shoal.components.ambassadors.config import load_config

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "11-redis-ambassador"


def render() -> list[dict[str, Any]]:
    result = CliRunner().invoke(main, ["render", "-f", str(EXAMPLE), "--target", "kubernetes"])
    assert result.exit_code == 0, result.output
    return [doc for doc in yaml.safe_load_all(result.output) if doc]


def test_the_app_pod_runs_the_ambassador_beside_the_app(tmp_path: Path) -> None:
    docs = render()
    shop = next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "shop")
    pod = shop["spec"]["template"]
    containers = {c["name"]: c for c in pod["spec"]["containers"]}
    ambassador = containers["redis-ambassador"]
    command = [*ambassador.get("command", []), *ambassador.get("args", [])]
    assert command[:3] == ["shoal", "ambassador", "redis"]
    flags = " ".join(command[3:]).replace("--config ", "--config=")
    assert "--config=/etc/shoal/ambassador.yaml" in flags
    assert ambassador["volumeMounts"][0]["mountPath"] == "/etc/shoal"
    assert pod["metadata"]["annotations"]["roles.shoal.dev/redis-ambassador"] == "ambassador"
    assert "app" in containers
    services = {d["metadata"]["name"] for d in docs if d["kind"] == "Service"}
    assert {"redis-shard-0", "redis-shard-1", "redis-shard-2"} <= services
    # The configuration the ConfigMap carries is one the ambassador accepts.
    config_map = next(
        d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "redis-ambassador"
    )
    path = tmp_path / "ambassador.yaml"
    path.write_text(config_map["data"]["ambassador.yaml"])
    config = load_config(path, "redis")
    assert [s.name for s in config.servers] == ["shard-0", "shard-1", "shard-2"]
    assert {s.host for s in config.servers} == {
        f"redis-shard-{i}.default.svc.cluster.local" for i in range(3)
    }
