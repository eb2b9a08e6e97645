"""The copies the write path skips: ``owned=True`` gives the same result, and without it the
caller's object is left as it was."""

from __future__ import annotations

import copy
import uuid
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from shoal.apiserver.applying import record_update
from shoal.apiserver.resources import Registry
from shoal.apiserver.strategy import prepare_create, prepare_update, uuid4_text
from shoal.apiserver.validating import validate
from shoal.model.core import Deployment

NOW = "2026-11-29T20:00:00Z"


def _deployment(replicas: int) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "web",
            "namespace": "default",
            "labels": {"app": "web"},
            "managedFields": [
                {
                    "manager": "other",
                    "operation": "Update",
                    "apiVersion": "apps/v1",
                    "time": NOW,
                    "fieldsType": "FieldsV1",
                    "fieldsV1": {"f:spec": {"f:replicas": {}}},
                }
            ],
        },
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "containers": [
                        {"name": "web", "image": "nginx", "ports": [{"containerPort": 80}]}
                    ]
                },
            },
        },
    }


def test_record_update_owned_gives_the_same_object_and_copies_otherwise() -> None:
    old = _deployment(1)
    new = _deployment(3)
    new["metadata"].pop("managedFields")
    kept = copy.deepcopy(new)
    copied = record_update(old, new, "me", NOW, kind=Deployment)
    assert new == kept  # not owned: untouched
    owned = record_update(old, new, "me", NOW, kind=Deployment, owned=True)
    assert owned is new
    assert owned == copied
    managers = {e["manager"]: e["fieldsV1"] for e in owned["metadata"]["managedFields"]}
    assert managers["me"]["f:spec"]["f:replicas"] == {}
    assert "f:replicas" not in managers.get("other", {}).get("f:spec", {})


def test_validate_leaves_the_body_unless_owned() -> None:
    resource = Registry.builtin().lookup("apps", "v1", "deployments")
    assert resource is not None
    body = _deployment(2)
    body["spec"]["unknownField"] = 1  # dropped with a warning
    kept = copy.deepcopy(body)
    plain = validate(resource, body, "Warn")
    assert body == kept
    owned = validate(resource, body, "Warn", owned=True)
    assert owned.body == plain.body
    assert owned.warnings == plain.warnings == ['unknown field "spec.unknownField"']


def test_prepare_create_and_update_owned_give_the_same_object_and_copy_otherwise() -> None:
    registry = Registry.builtin()
    deployments = registry.lookup("apps", "v1", "deployments")
    assert deployments is not None
    body = _deployment(2)
    kept = copy.deepcopy(body)
    copied = prepare_create(deployments, body, namespace="default", now=NOW)
    assert body == kept  # not owned: untouched
    owned = prepare_create(deployments, body, namespace="default", now=NOW, owned=True)
    assert owned is body
    uids = (copied["metadata"].pop("uid"), owned["metadata"].pop("uid"))
    assert uids[0] != uids[1]
    assert owned == copied

    old = copied
    body = _deployment(4)
    kept = copy.deepcopy(body)
    copied = prepare_update(deployments, old, body)
    assert body == kept
    owned = prepare_update(deployments, old, body, owned=True)
    assert owned is body
    assert owned == copied


@given(raw=st.binary(min_size=16, max_size=16))
def test_uuid4_text_is_what_the_uuid_module_writes(raw: bytes) -> None:
    assert uuid4_text(raw) == str(uuid.UUID(bytes=raw, version=4))
    assert uuid4_text(bytearray(raw)) == uuid4_text(raw)
