"""``shoal load`` as a user runs it: a subprocess against a real server."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from .loadgen_server import serving

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "13-load-generator"


async def shoal(*args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "shoal",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(120):
        out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_load_prints_a_summary_and_writes_json_and_html(tmp_path: Path) -> None:
    async with serving() as base:
        code, out, err = await shoal(
            "load", f"{base}/ok", f"{base}/fail", "--rate", "100", "--duration", "1s",
            "--connections", "8", "--json", str(tmp_path / "r.json"),
            "--html", str(tmp_path / "r.html"), "--threshold", "error_ratio<0.9", "-q",
        )  # fmt: skip
    assert code == 0, err
    assert "achieved req/s" in out
    assert "GET /fail" in out
    summary = json.loads((tmp_path / "r.json").read_text())
    assert summary["requests"] == 100
    assert summary["errors"] == 50
    assert summary["errorRatio"] == 0.5
    assert summary["thresholds"] == [
        {"expression": "error_ratio<0.9", "passed": True, "observed": 0.5}
    ]
    assert [p["path"] for p in summary["paths"]] == ["/ok", "/fail"]
    page = (tmp_path / "r.html").read_text()
    assert page.count("<svg") == 3
    assert "<script" not in page
    assert "Percentile spectrum" in page


async def test_a_failed_threshold_exits_1_and_names_it() -> None:
    async with serving() as base:
        code, _, err = await shoal(
            "load", f"{base}/fail", "--rate", "20", "--duration", "1s",
            "--threshold", "error_ratio<0.01", "--threshold", "p(99)<10s", "-q",
        )  # fmt: skip
    assert code == 1
    assert "thresholds failed: error_ratio<0.01" in err
    assert "p(99)<10s" not in err


async def test_a_loadtest_file_gives_paths_and_weights(tmp_path: Path) -> None:
    spec = tmp_path / "lt.yaml"
    spec.write_text(
        """
apiVersion: loadtest/v1
kind: LoadTest
metadata: {name: t}
spec:
  service: svc
  requestPerSecond: 40
  duration: 1s
  tests:
    - {path: /ok, weight: 3}
    - {path: /echo, method: PUT, body: hi}
  thresholds: ["error_ratio<0.01"]
"""
    )
    async with serving() as base:
        code, _, err = await shoal(
            "load", base, "-f", str(spec), "--json", str(tmp_path / "r.json"), "-q"
        )
    assert code == 0, err
    summary = json.loads((tmp_path / "r.json").read_text())
    assert [(p["method"], p["path"], p["requests"]) for p in summary["paths"]] == [
        ("GET", "/ok", 30),
        ("PUT", "/echo", 10),
    ]
    assert summary["thresholds"][0]["passed"] is True


async def test_bad_input_is_a_usage_error() -> None:
    code, _, err = await shoal("load", "https://example.com/", "--rate", "10")
    assert code == 1
    assert "only http://" in err
    code, _, err = await shoal("load", "http://127.0.0.1:1/", "--rate", "0")
    assert code == 2
    assert "greater than 0" in err
    code, _, err = await shoal("load", "http://127.0.0.1:1/")
    assert code == 2
    assert "--rate is required" in err


async def test_the_example_spec_runs_standalone(tmp_path: Path) -> None:
    example = EXAMPLE
    async with serving() as base:
        code, _, err = await shoal(
            "load", base, "-f", str(example / "loadtest.yaml"), "--rate", "60",
            "--duration", "1s", "--stages", "", "--json", str(tmp_path / "r.json"), "-q",
        )  # fmt: skip
    summary = json.loads((tmp_path / "r.json").read_text())
    # Thresholds on latency may fail on a loaded machine; the exit code says which way it went.
    assert code == (0 if summary["passed"] else 1), err
    assert [(p["method"], p["path"], p["requests"]) for p in summary["paths"]] == [
        ("GET", "/some/path", 10),
        ("GET", "/some/other/path", 10),
        ("GET", "/cart", 30),
        ("POST", "/cart/items", 10),
    ]
    assert summary["errors"] == 0
    assert [t["expression"] for t in summary["thresholds"]] == [
        "error_ratio<0.01",
        "p(95)<50",
        "p(99.9)<0.5s",
    ]
