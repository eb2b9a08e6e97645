"""Status error bodies and server-side Table printing."""

from __future__ import annotations

from typing import Any

import pytest

from shoal.apiserver.status import REASON_CODES, APIError, Cause, status_body, success_status
from shoal.apiserver.tables import evaluate_jsonpath, table_for, table_spec_for
from shoal.model import LoadTest, ShardedService


def test_invalid_status_lists_field_causes() -> None:
    error = APIError(
        "Invalid",
        'ReplicatedService.patterns.shoal.dev "web" is invalid: spec.replicas: must be >= 0, got -1',
        name="web",
        group="patterns.shoal.dev",
        kind="ReplicatedService",
        causes=[Cause("FieldValueInvalid", "must be >= 0, got -1", "spec.replicas")],
    )
    assert error.code == 422
    assert error.to_status() == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": 'ReplicatedService.patterns.shoal.dev "web" is invalid: spec.replicas: must be >= 0, got -1',
        "reason": "Invalid",
        "code": 422,
        "details": {
            "name": "web",
            "group": "patterns.shoal.dev",
            "kind": "ReplicatedService",
            "causes": [
                {
                    "reason": "FieldValueInvalid",
                    "message": "must be >= 0, got -1",
                    "field": "spec.replicas",
                }
            ],
        },
    }


@pytest.mark.parametrize(
    ("reason", "code"),
    [
        ("NotFound", 404),
        ("AlreadyExists", 409),
        ("Conflict", 409),
        ("Expired", 410),
        ("Unauthorized", 401),
    ],
)
def test_reasons_map_to_their_codes(reason: str, code: int) -> None:
    assert REASON_CODES[reason] == code
    assert status_body(reason, "m")["code"] == code


def test_unknown_reasons_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown Status reason"):
        APIError("Nope", "m")


def test_success_status() -> None:
    assert (
        success_status(name="a", group="apps", kind="deployments", uid="u")["status"] == "Success"
    )


BODY: dict[str, Any] = {
    "metadata": {"name": "x"},
    "status": {
        "conditions": [
            {"type": "Available", "status": "False"},
            {"type": "Ready", "status": "True"},
        ],
        "items": [{"n": 1}, {"n": 2}],
    },
}


@pytest.mark.parametrize(
    ("path", "values"),
    [
        (".metadata.name", ["x"]),
        ('.status.conditions[?(@.type=="Ready")].status', ["True"]),
        (".status.conditions[0].type", ["Available"]),
        (".status.conditions[-1].type", ["Ready"]),
        (".status.items[*].n", [1, 2]),
        ("{.metadata.name}", ["x"]),
        (".missing.field", []),
    ],
)
def test_jsonpath_subset(path: str, values: list[Any]) -> None:
    assert evaluate_jsonpath(BODY, path) == values


def test_unsupported_jsonpath_is_an_error() -> None:
    with pytest.raises(ValueError, match="unsupported JSONPath"):
        evaluate_jsonpath(BODY, ".a..b")


def test_pod_table_has_kubectl_columns() -> None:
    pod = {
        "metadata": {"name": "web-1", "creationTimestamp": "2026-01-01T00:00:00Z"},
        "spec": {"containers": [{"name": "a"}, {"name": "b"}]},
        "status": {
            "phase": "Running",
            "podIP": "127.1.0.2",
            "containerStatuses": [
                {"name": "a", "ready": True, "restartCount": 1, "state": {"running": {}}},
                {
                    "name": "b",
                    "ready": False,
                    "restartCount": 3,
                    "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                },
            ],
        },
    }
    table = table_for(table_spec_for("Pod"), [pod], resource_version="7")
    assert [c["name"] for c in table["columnDefinitions"]] == [
        "Name",
        "Ready",
        "Status",
        "Restarts",
        "Age",
        "IP",
    ]
    assert table["rows"][0]["cells"] == [
        "web-1",
        "1/2",
        "CrashLoopBackOff",
        4,
        "2026-01-01T00:00:00Z",
        "127.1.0.2",
    ]
    assert table["rows"][0]["object"]["metadata"]["name"] == "web-1"
    assert table["metadata"]["resourceVersion"] == "7"


def test_custom_kinds_use_their_printer_columns() -> None:
    users = ShardedService(name="users", image="x:v1", ports=[8080], shards=4)
    body = users.to_dict()
    body["status"] = {"readyShards": 3, "conditions": [{"type": "Ready", "status": "False"}]}
    spec = table_spec_for("ShardedService", ShardedService.INFO.printer_columns)
    table = table_for(spec, [body])
    names = [c["name"] for c in table["columnDefinitions"]]
    assert names == ["Name", "Shards", "Per-Shard", "Ready-Shards", "Ready", "URL", "Age"]
    assert table["rows"][0]["cells"][:5] == ["users", 4, 1, 3, "False"]
    loadtest_columns = [
        c.name for c in table_spec_for("LoadTest", LoadTest.INFO.printer_columns).columns
    ]
    assert loadtest_columns[0] == "Name"
    assert "Achieved" in loadtest_columns
