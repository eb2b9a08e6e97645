"""The generated CRDs: valid for Kubernetes, structural, and accepting exactly the objects shoal emits."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

import jsonschema
import kubernetes_validate
import pytest
from pydantic import Field

from shoal.kube.crds import (
    QUANTITY_PATTERN,
    all_crds,
    check_crd,
    check_structural,
    crd_for,
    custom_kinds,
    openapi_schema,
)
from shoal.kube.validation import (
    apply_defaults,
    draft4_schema,
    newest_kubernetes_version,
    prune,
    validate_builtin,
    validate_custom_object,
)
from shoal.model import (
    KubeObject,
    LoadTest,
    ReplicatedService,
    ShardedService,
    load_manifests,
    load_text,
)
from shoal.model._base import ShoalModel
from shoal.model.core import Deployment, Service
from shoal.model.meta import Condition, KindInfo
from shoal.model.patterns import PatternStatus

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
KUBERNETES_VERSIONS = ("1.30", newest_kubernetes_version())

TALK_LOADTEST = """\
apiVersion: loadtest/v1
kind: LoadTest
metadata:
  name: my-cool-loadtest
spec:
  service: my-cool-service
  requestPerSecond: 10k
  tests:
    - test:
      - /some/path
      - /some/other/path
"""

FULL_REPLICATED = """\
apiVersion: patterns.shoal.dev/v1
kind: ReplicatedService
metadata:
  name: web
  labels: {app: web}
spec:
  replicas: 3
  strategy:
    type: RollingUpdate
    rollingUpdate: {maxSurge: 1, maxUnavailable: "25%"}
  template:
    metadata:
      labels: {app: web}
      annotations: {example.com/note: hi}
    spec:
      containers:
        - name: app
          image: acr.io/brendan/web:v2
          ports: [{containerPort: 8080, name: http}]
          env:
            - {name: MODE, value: fast}
            - name: POD
              valueFrom: {fieldRef: {fieldPath: metadata.name}}
          resources:
            requests: {cpu: 500m, memory: 1Gi}
            limits: {cpu: 2, memory: 2Gi}
          readinessProbe:
            httpGet: {port: http, path: /healthz}
          livenessProbe:
            tcpSocket: {port: 8080}
          lifecycle:
            preStop: {sleep: {seconds: 5}}
          volumeMounts: [{name: scratch, mountPath: /scratch}]
      volumes:
        - name: scratch
          emptyDir: {sizeLimit: 64Mi}
  sidecars:
    - name: tls
      image: ghcr.io/example/tls-proxy:1
      ports: [{containerPort: 8443}]
"""


def _schema(crd: dict[str, Any]) -> dict[str, Any]:
    schema: dict[str, Any] = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def _crd(cls: type[KubeObject]) -> dict[str, Any]:
    return crd_for(cls)


def _walk(node: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    yield path, node
    for name, sub in node.get("properties", {}).items():
        yield from _walk(sub, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        yield from _walk(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from _walk(node["additionalProperties"], f"{path}{{}}")


def _at(schema: dict[str, Any], dotted: str) -> dict[str, Any]:
    node = schema
    for part in dotted.split("."):
        if part == "[]":
            node = node["items"]
        elif part == "{}":
            node = node["additionalProperties"]
        else:
            node = node["properties"][part]
    return node


# --------------------------------------------------------------------------------------------------
# The CRDs themselves


def test_custom_kinds_are_the_shoal_dev_kinds_in_registry_order() -> None:
    assert custom_kinds() == [ReplicatedService, ShardedService, LoadTest]
    assert [crd["metadata"]["name"] for crd in all_crds()] == [
        "replicatedservices.patterns.shoal.dev",
        "shardedservices.patterns.shoal.dev",
        "loadtests.loadtest.shoal.dev",
    ]
    assert all_crds() == all_crds()  # deterministic


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("cls", custom_kinds(), ids=lambda c: c.__name__)
def test_crd_passes_kubernetes_validate_strict(cls: type[KubeObject], version: str) -> None:
    crd = crd_for(cls)
    # kubernetes_validate returns the schema version it used; errors raise.
    assert kubernetes_validate.validate(crd, version, strict=True) == version
    assert validate_builtin(crd, version) == []


def test_newest_version_is_what_kubernetes_validate_ships() -> None:
    newest = newest_kubernetes_version()
    assert kubernetes_validate.latest_version().startswith(newest)
    assert tuple(int(p) for p in newest.split(".")) >= (1, 37)


@pytest.mark.parametrize("cls", custom_kinds(), ids=lambda c: c.__name__)
def test_crd_is_structural_and_consistent(cls: type[KubeObject]) -> None:
    crd = crd_for(cls)
    assert check_structural(_schema(crd)) == []
    assert check_crd(crd) == []


def test_crd_skeleton_for_replicated_service() -> None:
    crd = crd_for(ReplicatedService)
    assert crd["apiVersion"] == "apiextensions.k8s.io/v1"
    assert crd["kind"] == "CustomResourceDefinition"
    spec = crd["spec"]
    assert spec["group"] == "patterns.shoal.dev"
    assert spec["scope"] == "Namespaced"
    assert spec["names"] == {
        "plural": "replicatedservices",
        "singular": "replicatedservice",
        "kind": "ReplicatedService",
        "listKind": "ReplicatedServiceList",
        "shortNames": ["rsvc"],
        "categories": ["all", "shoal"],
    }
    (version,) = spec["versions"]
    assert (version["name"], version["served"], version["storage"]) == ("v1", True, True)
    assert version["subresources"] == {"status": {}}
    assert version["additionalPrinterColumns"][0] == {
        "name": "Replicas",
        "type": "integer",
        "jsonPath": ".spec.replicas",
    }
    ready = version["additionalPrinterColumns"][2]
    assert ready["jsonPath"] == '.status.conditions[?(@.type=="Ready")].status'


def test_loadtest_crd_columns_and_group() -> None:
    crd = crd_for(LoadTest)
    assert crd["metadata"]["name"] == "loadtests.loadtest.shoal.dev"
    columns = {c["name"]: c for c in crd["spec"]["versions"][0]["additionalPrinterColumns"]}
    assert columns["Rate"]["jsonPath"] == ".spec.requestPerSecond"
    assert columns["Age"]["type"] == "date"


def test_root_schema_shape() -> None:
    schema = openapi_schema(ReplicatedService)
    assert schema["type"] == "object"
    assert list(schema["properties"]) == ["apiVersion", "kind", "metadata", "spec", "status"]
    assert schema["properties"]["metadata"] == {"type": "object"}
    assert schema["properties"]["apiVersion"]["type"] == "string"
    assert schema["properties"]["kind"]["type"] == "string"
    assert schema["required"] == ["spec"]
    assert "additionalProperties" not in schema


def test_no_pydantic_leftovers_anywhere() -> None:
    for crd in all_crds():
        for path, node in _walk(_schema(crd)):
            assert "title" not in node, path
            assert "$ref" not in node, path
            assert "$defs" not in node, path
            assert node.get("additionalProperties") is not False, path
            assert "const" not in node, path
            assert node.get("default", "absent") is not None, path
            if "anyOf" in node:
                assert node["anyOf"] == [{"type": "integer"}, {"type": "string"}], path
                assert node["x-kubernetes-int-or-string"] is True, path


def test_tricky_types() -> None:
    rs = openapi_schema(ReplicatedService)
    lt = openapi_schema(LoadTest)
    ss = openapi_schema(ShardedService)
    # Quantity: int-or-string with Kubernetes' quantity pattern.
    rate = _at(lt, "spec.requestPerSecond")
    assert rate["x-kubernetes-int-or-string"] is True
    assert rate["pattern"] == QUANTITY_PATTERN
    assert "type" not in rate
    # dict[str, Quantity]: additionalProperties with the quantity schema.
    cpu = _at(rs, "spec.resources.requests.{}")
    assert cpu["x-kubernetes-int-or-string"] is True
    assert cpu["pattern"] == QUANTITY_PATTERN
    # Quantity | None: the same, the null branch gone.
    size = _at(rs, "spec.volumes.[].emptyDir.sizeLimit")
    assert size["x-kubernetes-int-or-string"] is True
    assert size["pattern"] == QUANTITY_PATTERN
    # int | str ports and maxSurge: int-or-string without a pattern, default kept.
    port = _at(rs, "spec.readinessProbe.httpGet.port")
    assert port["x-kubernetes-int-or-string"] is True
    assert "pattern" not in port
    surge = _at(rs, "spec.strategy.rollingUpdate.maxSurge")
    assert surge["x-kubernetes-int-or-string"] is True
    assert surge["default"] == "25%"
    # dict[str, str] labels in a pod template: a typed map.
    labels = _at(rs, "spec.template.metadata.labels")
    assert labels == {"type": "object", "additionalProperties": {"type": "string"}}
    # dict[str, Any] (managedFields' fieldsV1): preserve unknown fields, no additionalProperties.
    fields_v1 = _at(rs, "spec.template.metadata.managedFields.[].fieldsV1")
    assert fields_v1 == {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    # datetime: date-time format.
    when = _at(rs, "status.conditions.[].lastTransitionTime")
    assert (when["type"], when["format"]) == ("string", "date-time")
    # Literal["TCP"] (pydantic's const): a one-value enum with its default.
    protocol = _at(rs, "spec.ports.[].protocol")
    assert protocol == {"type": "string", "enum": ["TCP"], "default": "TCP"}
    # StrEnum behind a $ref, with the default written beside the reference.
    algorithm = _at(ss, "spec.hashing.algorithm")
    assert algorithm["enum"] == ["maglev", "rendezvous", "ring"]
    assert algorithm["default"] == "maglev"
    assert "description" in algorithm  # the enum's docstring, inlined
    # Literal of several values; min/max constraints.
    assert _at(rs, "spec.sidecars.[].imagePullPolicy")["enum"] == [
        "Always",
        "IfNotPresent",
        "Never",
    ]
    shards = _at(ss, "spec.shards")
    assert (shards["minimum"], shards["maximum"], shards["default"]) == (1, 1024, 1)
    assert _at(rs, "spec.ports.[].port")["maximum"] == 65535
    assert _at(lt, "spec.tests")["minItems"] == 1
    # Descriptions come from docstrings, trimmed, reST quoting made plain.
    regexp = _at(ss, "spec.shardRegexp")["description"]
    assert regexp.startswith("Applied to the request path")
    assert "``" not in regexp
    assert regexp == regexp.strip()


def test_every_kept_default_is_valid_for_its_field() -> None:
    count = 0
    for crd in all_crds():
        for path, node in _walk(_schema(crd)):
            if "default" in node:
                count += 1
                errors = list(
                    jsonschema.Draft4Validator(draft4_schema(node)).iter_errors(node["default"])
                )
                assert errors == [], (path, errors)
    assert count >= 10


def test_every_printer_column_names_a_schema_field() -> None:
    for crd in all_crds():
        schema = _schema(crd)
        for column in crd["spec"]["versions"][0]["additionalPrinterColumns"]:
            simple = column["jsonPath"].split("[")[0].strip(".").split(".")
            if simple[0] == "metadata":
                continue
            node = schema
            for part in simple:
                node = node["properties"][part]
            assert node.get("type") or node.get("x-kubernetes-int-or-string"), column


# --------------------------------------------------------------------------------------------------
# Objects against their CRDs


def _samples() -> list[tuple[str, KubeObject]]:
    replicated = ReplicatedService(image="acr.io/brendan/my-server:v1", ports=[8080], replicas=4)
    sharded = ShardedService(
        image="x:v1", shard_regexp="/users/(.*)/.*", ports=[8080], shards=4, replicas_per_shard=2
    )
    (talk,) = load_text(TALK_LOADTEST)
    (full,) = load_text(FULL_REPLICATED)
    # Built by validation, not by assigning ``status``: see the report on validate_assignment.
    status = PatternStatus(
        observed_generation=1,
        replicas=4,
        ready_replicas=3,
        url="http://my-server.default.svc:8080",
        conditions=[
            Condition(
                type="Ready",
                status="False",
                reason="MinimumReplicasUnavailable",
                message="3 of 4 ready",
                last_transition_time=datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC),
            )
        ],
    )
    with_status = ReplicatedService.model_validate(
        {**replicated.to_dict(), "status": status.to_dict()}
    )
    (loadtest_with_status,) = load_text(
        TALK_LOADTEST
        + """\
status:
  observedGeneration: 1
  requests: 300000
  achievedRequestsPerSecond: 9998.5
  errorRatio: 0.001
  latency: {p50: 1.5, p99: 12.25}
  paths: [{path: /some/path, requests: 150000, errors: 3, latency: {p90: 3.0}}]
  thresholds: [{expression: "p(99)<200", passed: true, observed: 12.25}]
  conditions: [{type: Succeeded, status: "True", reason: ThresholdsPassed}]
"""
    )
    return [
        ("replicated", replicated),
        ("sharded", sharded),
        ("talk-loadtest", talk),
        ("full-replicated", full),
        ("replicated-with-status", with_status),
        ("loadtest-with-status", loadtest_with_status),
    ]


@pytest.mark.parametrize(("name", "obj"), _samples(), ids=[n for n, _ in _samples()])
def test_model_objects_validate_against_their_crd(name: str, obj: KubeObject) -> None:
    data = obj.to_dict()
    crd = crd_for(type(obj))
    assert validate_custom_object(data, crd) == []
    # What the API server stores is what shoal sent: nothing pruned, and no default changes it.
    stored = copy.deepcopy(data)
    assert prune(stored, _schema(crd)) == []
    apply_defaults(stored, _schema(crd))
    assert stored == data, name


def test_talk_loadtest_renders_with_the_full_group() -> None:
    (talk,) = load_text(TALK_LOADTEST)
    data = talk.to_dict()
    assert data["apiVersion"] == "loadtest.shoal.dev/v1"
    assert data["spec"]["requestPerSecond"] == "10k"
    assert data["spec"]["tests"][0]["test"][0]["path"] == "/some/path"
    crd = crd_for(LoadTest)
    assert validate_custom_object(data, crd) == []
    # The short group is shoal's spelling only: the API server serves the CRD's group.
    assert validate_custom_object({**data, "apiVersion": "loadtest/v1"}, crd) == [
        "apiVersion: Invalid value: 'loadtest/v1': must be 'loadtest.shoal.dev/v1'"
    ]


def test_examples_custom_objects_validate() -> None:
    objects = load_manifests([EXAMPLES])
    custom = [obj for obj in objects if type(obj).INFO.custom]
    assert {type(obj) for obj in custom} == {ReplicatedService, ShardedService, LoadTest}
    for obj in custom:
        assert validate_custom_object(obj.to_dict(), crd_for(type(obj))) == [], obj.name


def _replicated() -> dict[str, Any]:
    return ReplicatedService(
        image="acr.io/brendan/my-server:v1", ports=[8080], replicas=4
    ).to_dict()


def _corrupt(mutate: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    data = _replicated()
    mutate(data)
    return data


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (
            lambda d: d["spec"].__setitem__("replicas", "4"),
            "spec.replicas: '4' is not of type 'integer'",
        ),
        (
            lambda d: d["spec"].__setitem__("replicas", -1),
            "spec.replicas: -1 is less than the minimum of 0",
        ),
        (
            lambda d: d["spec"]["ports"][0].__setitem__("port", 70000),
            "spec.ports[0].port: 70000 is greater than the maximum of 65535",
        ),
        (
            lambda d: d["spec"]["ports"][0].__setitem__("protocol", "UDP"),
            "spec.ports[0].protocol: 'UDP' is not one of ['TCP']",
        ),
        (
            lambda d: d["spec"]["ports"][0].pop("port"),
            "spec.ports[0]: 'port' is a required property",
        ),
        (
            lambda d: d["spec"].__setitem__("strategy", {"type": "Rolling"}),
            "spec.strategy.type: 'Rolling' is not one of ['RollingUpdate', 'Recreate']",
        ),
        (
            lambda d: d["spec"].__setitem__("resources", {"limits": {"cpu": "lots"}}),
            f"spec.resources.limits.cpu: 'lots' does not match {QUANTITY_PATTERN!r}",
        ),
        (
            lambda d: d["spec"].__setitem__("resources", {"limits": {"cpu": 1.5}}),
            "spec.resources.limits.cpu: 1.5 is not valid under any of the given schemas",
        ),
        (lambda d: d.pop("spec"), "<root>: 'spec' is a required property"),
        (
            lambda d: d["metadata"].__setitem__("name", "Not_A_Name"),
            "metadata.name: Invalid value: 'Not_A_Name': "
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, "
            "'-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com')",
        ),
        (
            lambda d: d.__setitem__("kind", "Replicated"),
            "kind: Invalid value: 'Replicated': must be 'ReplicatedService'",
        ),
    ],
    ids=[
        "replicas-string",
        "replicas-negative",
        "port-range",
        "protocol-enum",
        "port-required",
        "strategy-enum",
        "quantity-pattern",
        "quantity-float",
        "spec-required",
        "metadata-name",
        "kind",
    ],
)
def test_corrupted_objects_are_refused(
    mutate: Callable[[dict[str, Any]], None], expected: str
) -> None:
    problems = validate_custom_object(_corrupt(mutate), crd_for(ReplicatedService))
    assert problems == [expected]


def test_bad_status_date_is_refused() -> None:
    data = _replicated()
    data["status"] = {
        "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "yesterday"}]
    }
    assert validate_custom_object(data, crd_for(ReplicatedService)) == [
        "status.conditions[0].lastTransitionTime: 'yesterday' is not a 'date-time'"
    ]


def test_unknown_fields_strict_versus_pruned() -> None:
    crd = crd_for(ReplicatedService)
    data = _replicated()
    data["spec"]["replica"] = 3
    data["spec"]["ports"][0]["hostPort"] = 80
    data["spec"]["strategy"]["rollingUpdate"] = {"maxSurge": 1, "surge": 2}
    # kubectl's default (fieldValidation=Strict): refused, every unknown field named.
    assert validate_custom_object(data, crd) == [
        "spec.ports[0].hostPort: unknown field",
        "spec.strategy.rollingUpdate.surge: unknown field",
        "spec.replica: unknown field",
    ]
    # fieldValidation=Ignore: accepted, and the unknown fields are pruned from what is stored.
    assert validate_custom_object(data, crd, field_validation="Ignore") == []
    stored = copy.deepcopy(data)
    dropped = prune(stored, _schema(crd))
    assert dropped == [
        "spec.ports[0].hostPort",
        "spec.strategy.rollingUpdate.surge",
        "spec.replica",
    ]
    assert "replica" not in stored["spec"]
    assert stored["spec"]["ports"][0] == {"port": 8080, "protocol": "TCP"}
    assert stored["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 1}


def test_pruning_keeps_metadata_and_preserve_unknown_subtrees() -> None:
    schema = _schema(crd_for(ReplicatedService))
    data = _replicated()
    data["metadata"]["anything"] = "the API server validates metadata itself"
    data["spec"]["template"] = {
        "metadata": {"managedFields": [{"fieldsV1": {"f:spec": {"f:x": {}}}}]},
        "spec": {"containers": [{"name": "a", "image": "a:1"}]},
    }
    stored = copy.deepcopy(data)
    assert prune(stored, schema) == []
    assert stored == data


def test_defaults_fill_in_what_the_model_would() -> None:
    crd = crd_for(ShardedService)
    minimal: dict[str, Any] = {
        "apiVersion": "patterns.shoal.dev/v1",
        "kind": "ShardedService",
        "metadata": {"name": "users"},
        "spec": {"image": "x:v1", "ports": [{"port": 8080}], "hashing": {}, "router": {}},
    }
    assert validate_custom_object(minimal, crd) == []
    stored = copy.deepcopy(minimal)
    apply_defaults(stored, _schema(crd))
    model = ShardedService.model_validate(minimal).to_dict()
    for field in ("shards", "replicasPerShard", "minReadySeconds", "hashing", "router", "ports"):
        assert stored["spec"][field] == model["spec"][field], field


def test_null_in_an_optional_field_is_dropped_not_refused() -> None:
    data = _replicated()
    data["spec"]["command"] = None
    data["spec"]["replicas"] = None  # has a default: null becomes the default
    assert validate_custom_object(data, crd_for(ReplicatedService)) == []


def test_builtin_validation_reports_problems() -> None:
    bad = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "x"},
        "spec": {"ports": [{"port": "eighty"}]},
    }
    problems = validate_builtin(bad, "1.30")
    assert len(problems) == 1
    assert problems[0].startswith("spec.ports[0].port:")
    good = Service.model_validate(
        {"metadata": {"name": "web"}, "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}}
    ).to_dict()
    assert validate_builtin(good, "1.30") == []
    with pytest.raises(kubernetes_validate.SchemaNotFoundError):
        validate_builtin(_replicated(), "1.30")
    assert Deployment.INFO.custom is False


# --------------------------------------------------------------------------------------------------
# check_structural catches each rule


def _ok() -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": {
                "type": "object",
                "properties": {
                    "replicas": {"type": "integer", "minimum": 0},
                    "port": {
                        "x-kubernetes-int-or-string": True,
                        "anyOf": [{"type": "integer"}, {"type": "string"}],
                    },
                    "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                    "free": {"x-kubernetes-preserve-unknown-fields": True},
                    "mode": {
                        "type": "string",
                        "anyOf": [{"enum": ["a"]}, {"pattern": "^b"}],
                    },
                },
            },
        },
    }


def test_a_good_hand_written_schema_passes() -> None:
    assert check_structural(_ok()) == []
    named = _ok()
    named["properties"]["metadata"] = {
        "type": "object",
        "properties": {"name": {"type": "string", "maxLength": 20}},
    }
    assert check_structural(named) == []


def _mutated(mutate: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    schema = _ok()
    mutate(schema)
    return schema


SPEC = "openAPIV3Schema.properties[spec]"


def _map_at_root(schema: dict[str, Any]) -> None:
    del schema["properties"]
    schema["additionalProperties"] = {"type": "string"}


STRUCTURAL_CASES: list[tuple[str, Callable[[dict[str, Any]], None], str]] = [
    (
        "missing-type-field",
        lambda s: s["properties"]["spec"]["properties"]["replicas"].pop("type"),
        f"{SPEC}.properties[replicas].type: Required value: must not be empty for specified object fields",
    ),
    (
        "missing-type-root",
        lambda s: s.pop("type"),
        "openAPIV3Schema.type: Required value: must not be empty at the root",
    ),
    (
        "missing-type-items",
        lambda s: s["properties"]["spec"]["properties"].__setitem__(
            "xs", {"type": "array", "items": {}}
        ),
        f"{SPEC}.properties[xs].items.type: Required value: must not be empty for specified array items",
    ),
    (
        "array-without-items",
        lambda s: s["properties"]["spec"]["properties"].__setitem__("xs", {"type": "array"}),
        f"{SPEC}.properties[xs].items: Required value: must be specified",
    ),
    (
        "root-not-object",
        lambda s: s.update(type="array", items={"type": "string"}),
        "openAPIV3Schema.type: Invalid value: 'array': must be object at the root",
    ),
    (
        "ref",
        lambda s: s["properties"]["spec"].__setitem__("$ref", "#/definitions/Spec"),
        f"{SPEC}.$ref: Forbidden: $ref is not supported",
    ),
    (
        "additional-properties-false",
        lambda s: s["properties"]["spec"].__setitem__("additionalProperties", False),
        f"{SPEC}.additionalProperties: Forbidden: additionalProperties cannot be set to false",
    ),
    (
        "additional-properties-with-properties",
        lambda s: s["properties"]["spec"].__setitem__("additionalProperties", {"type": "string"}),
        f"{SPEC}.additionalProperties: Forbidden: additionalProperties and properties are mutual exclusive",
    ),
    (
        "additional-properties-at-root",
        _map_at_root,
        "openAPIV3Schema.additionalProperties: Forbidden: must not be used at the root",
    ),
    (
        "definitions",
        lambda s: s.__setitem__("definitions", {"Spec": {"type": "object"}}),
        "openAPIV3Schema.definitions: Forbidden: definitions is not supported",
    ),
    (
        "dependencies",
        lambda s: s["properties"]["spec"].__setitem__("dependencies", {"a": ["b"]}),
        f"{SPEC}.dependencies: Forbidden: dependencies is not supported",
    ),
    (
        "id",
        lambda s: s.__setitem__("id", "urn:x"),
        "openAPIV3Schema.id: Forbidden: id is not supported",
    ),
    (
        "pattern-properties",
        lambda s: s["properties"]["spec"].__setitem__(
            "patternProperties", {"^x": {"type": "string"}}
        ),
        f"{SPEC}.patternProperties: Forbidden: patternProperties is not supported",
    ),
    (
        "additional-items",
        lambda s: s["properties"]["spec"].__setitem__("additionalItems", False),
        f"{SPEC}.additionalItems: Forbidden: additionalItems is not supported",
    ),
    (
        "unique-items",
        lambda s: s["properties"]["spec"]["properties"].__setitem__(
            "xs", {"type": "array", "items": {"type": "string"}, "uniqueItems": True}
        ),
        f"{SPEC}.properties[xs].uniqueItems: Forbidden: uniqueItems cannot be set to true since "
        "the runtime complexity becomes quadratic",
    ),
    *[
        (
            keyword,
            (
                lambda k: (
                    lambda s: s["properties"]["spec"]["properties"]["replicas"].__setitem__(k, True)
                )
            )(keyword),
            f"{SPEC}.properties[replicas].{keyword}: Forbidden: not a field of JSONSchemaProps "
            "(a CRD's schema cannot carry it)",
        )
        for keyword in (
            "deprecated",
            "discriminator",
            "readOnly",
            "writeOnly",
            "xml",
            "const",
            "$defs",
        )
    ],
    (
        "type-null",
        lambda s: s["properties"]["spec"]["properties"].__setitem__("n", {"type": "null"}),
        f"{SPEC}.properties[n].type: Forbidden: type cannot be set to null, use nullable as an alternative",
    ),
    (
        "numeric-exclusive-minimum",
        lambda s: s["properties"]["spec"]["properties"]["replicas"].__setitem__(
            "exclusiveMinimum", 0
        ),
        f"{SPEC}.properties[replicas].exclusiveMinimum: Invalid value: 0: must be a boolean in OpenAPI v3.0",
    ),
    (
        "junctor-with-type",
        lambda s: s["properties"]["spec"]["properties"]["mode"]["anyOf"][0].__setitem__(
            "type", "string"
        ),
        f"{SPEC}.properties[mode].anyOf[0].type: Forbidden: must be empty to be structural",
    ),
    (
        "junctor-with-description",
        lambda s: s["properties"]["spec"]["properties"]["mode"]["anyOf"][1].__setitem__(
            "description", "b"
        ),
        f"{SPEC}.properties[mode].anyOf[1].description: Forbidden: must be empty to be structural",
    ),
    (
        "junctor-with-default",
        lambda s: s["properties"]["spec"].__setitem__("allOf", [{"default": {}}]),
        f"{SPEC}.allOf[0].default: Forbidden: must be undefined to be structural",
    ),
    (
        "junctor-with-nullable",
        lambda s: s["properties"]["spec"].__setitem__("oneOf", [{"nullable": True}]),
        f"{SPEC}.oneOf[0].nullable: Forbidden: must be false to be structural",
    ),
    (
        "junctor-with-additional-properties",
        lambda s: s["properties"]["spec"].__setitem__(
            "not", {"additionalProperties": {"type": "string"}}
        ),
        f"{SPEC}.not.additionalProperties: Forbidden: must be undefined to be structural",
    ),
    (
        "junctor-mentions-unspecified-field",
        lambda s: s["properties"]["spec"].__setitem__(
            "anyOf", [{"properties": {"other": {"minimum": 1}}}]
        ),
        f"{SPEC}.anyOf[0].properties[other]: Required value: must be specified outside the junctor "
        f"too ({SPEC}.properties[other])",
    ),
    (
        "junctor-mentions-metadata",
        lambda s: s.__setitem__("anyOf", [{"properties": {"metadata": {"required": ["name"]}}}]),
        "openAPIV3Schema.anyOf[0].properties[metadata]: Forbidden: must not be specified in a nested context",
    ),
    (
        "metadata-beyond-name",
        lambda s: s["properties"].__setitem__(
            "metadata",
            {
                "type": "object",
                "properties": {"name": {"type": "string"}, "labels": {"type": "object"}},
            },
        ),
        "openAPIV3Schema.properties[metadata]: Forbidden: must not specify anything other than name "
        "and generateName, but metadata is implicitly specified",
    ),
    (
        "metadata-with-description",
        lambda s: s["properties"]["metadata"].__setitem__("description", "meta"),
        "openAPIV3Schema.properties[metadata]: Forbidden: must not specify anything other than name "
        "and generateName, but metadata is implicitly specified",
    ),
    (
        "kind-not-string",
        lambda s: s["properties"].__setitem__("kind", {"type": "integer"}),
        "openAPIV3Schema.properties[kind].type: Invalid value: 'integer': must be string",
    ),
    (
        "int-or-string-and-preserve",
        lambda s: s["properties"]["spec"]["properties"]["port"].__setitem__(
            "x-kubernetes-preserve-unknown-fields", True
        ),
        f"{SPEC}.properties[port].x-kubernetes-preserve-unknown-fields: Invalid value: true: must be "
        "false if x-kubernetes-int-or-string is true",
    ),
    (
        "preserve-unknown-false",
        lambda s: s["properties"]["spec"].__setitem__(
            "x-kubernetes-preserve-unknown-fields", False
        ),
        f"{SPEC}.x-kubernetes-preserve-unknown-fields: Invalid value: false: must be true or undefined",
    ),
    (
        "items-array",
        lambda s: s["properties"]["spec"]["properties"].__setitem__(
            "xs", {"type": "array", "items": [{"type": "string"}]}
        ),
        f"{SPEC}.properties[xs].items: Forbidden: items must be a schema object and not an array",
    ),
    (
        "lookahead-pattern",
        lambda s: s["properties"]["spec"]["properties"]["mode"].__setitem__("pattern", "^(?!x)"),
        f"{SPEC}.properties[mode].pattern: Invalid value: '^(?!x)': lookarounds and backreferences are "
        "not RE2 syntax",
    ),
]


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [(m, e) for _, m, e in STRUCTURAL_CASES],
    ids=[name for name, _, _ in STRUCTURAL_CASES],
)
def test_check_structural_catches(mutate: Callable[[dict[str, Any]], None], expected: str) -> None:
    assert check_structural(_mutated(mutate)) == [expected]


def test_check_structural_in_a_crd_names_the_full_path() -> None:
    crd = crd_for(LoadTest)
    _schema(crd)["properties"]["spec"]["properties"]["service"].pop("type")
    assert check_crd(crd) == [
        "spec.versions[0].schema.openAPIV3Schema.properties[spec].properties[service].type: "
        "Required value: must not be empty for specified object fields"
    ]


# --------------------------------------------------------------------------------------------------
# check_crd catches each CRD-level rule


def _crd_mutated(mutate: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    crd = crd_for(ReplicatedService)
    mutate(crd)
    return crd


def _group_without_dot(crd: dict[str, Any]) -> None:
    crd["spec"]["group"] = "patterns"
    crd["metadata"]["name"] = "replicatedservices.patterns"


def _uppercase_plural(crd: dict[str, Any]) -> None:
    crd["spec"]["names"]["plural"] = "ReplicatedServices"
    crd["metadata"]["name"] = "ReplicatedServices.patterns.shoal.dev"


def _second_storage_version(crd: dict[str, Any]) -> None:
    extra = copy.deepcopy(crd["spec"]["versions"][0])
    extra["name"] = "v2"
    crd["spec"]["versions"].append(extra)


CRD_CASES: list[tuple[str, Callable[[dict[str, Any]], None], list[str]]] = [
    (
        "group-without-dot",
        _group_without_dot,
        ["spec.group: Invalid value: 'patterns': should be a domain with at least one dot"],
    ),
    (
        "two-storage-versions",
        _second_storage_version,
        [
            "spec.versions: Invalid value: must have exactly one version marked as storage version, got 2"
        ],
    ),
    (
        "no-storage-version",
        lambda c: c["spec"]["versions"][0].__setitem__("storage", False),
        [
            "spec.versions: Invalid value: must have exactly one version marked as storage version, got 0"
        ],
    ),
    (
        "name-mismatch",
        lambda c: c["metadata"].__setitem__("name", "replicatedservice.patterns.shoal.dev"),
        [
            "metadata.name: Invalid value: 'replicatedservice.patterns.shoal.dev': must be "
            'spec.names.plural+"."+spec.group (replicatedservices.patterns.shoal.dev)'
        ],
    ),
    (
        "plural-not-lowercase",
        _uppercase_plural,
        [
            "spec.names.plural: Invalid value: 'ReplicatedServices': must be a lowercase DNS-1035 label"
        ],
    ),
    (
        "kind-equals-list-kind",
        lambda c: c["spec"]["names"].__setitem__("listKind", "ReplicatedService"),
        ["spec.names.listKind: Invalid value: kind and listKind must be different"],
    ),
    (
        "scope",
        lambda c: c["spec"].__setitem__("scope", "Global"),
        ["spec.scope: Unsupported value: 'Global': supported values: 'Cluster', 'Namespaced'"],
    ),
    (
        "column-to-missing-field",
        lambda c: c["spec"]["versions"][0]["additionalPrinterColumns"][0].__setitem__(
            "jsonPath", ".spec.replica"
        ),
        [
            "spec.versions[0].additionalPrinterColumns[0].jsonPath: Invalid value: '.spec.replica': "
            "the schema has no field 'replica'"
        ],
    ),
    (
        "column-type",
        lambda c: c["spec"]["versions"][0]["additionalPrinterColumns"][0].__setitem__(
            "type", "int"
        ),
        ["spec.versions[0].additionalPrinterColumns[0].type: Unsupported value: 'int'"],
    ),
]


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [(m, e) for _, m, e in CRD_CASES],
    ids=[name for name, _, _ in CRD_CASES],
)
def test_check_crd_catches(mutate: Callable[[dict[str, Any]], None], expected: list[str]) -> None:
    assert check_crd(_crd_mutated(mutate)) == expected


# --------------------------------------------------------------------------------------------------
# The conversion on types the shoal kinds do not (yet) use


class _Leaf(ShoalModel):
    a: int


class _Other(ShoalModel):
    b: str


class _Tree(ShoalModel):
    value: int
    children: list[_Tree] | None = None


class _WidgetSpec(ShoalModel):
    size: int = Field(gt=0)
    ratio: float = Field(default=0.5, ge=0, lt=1)
    tags: set[str] = Field(default_factory=set)
    extra: dict[str, Any] | None = None
    anything: Any = None
    number: int | float = 1
    either: str | list[str] = "x"
    shape: _Leaf | _Other | None = None
    wait: timedelta | None = None
    pair: tuple[int, int] | None = None
    tree: _Tree | None = None
    bad_default: int = Field(default=-1, ge=0)


class _Widget(KubeObject):
    INFO: ClassVar[KindInfo] = KindInfo(
        group="widgets.example.dev",
        version="v1alpha1",
        kind="Widget",
        plural="widgets",
        namespaced=False,
    )

    spec: _WidgetSpec


def test_conversion_of_other_types() -> None:
    spec = openapi_schema(_Widget)["properties"]["spec"]["properties"]
    assert spec["size"] == {"type": "integer", "minimum": 0, "exclusiveMinimum": True}
    assert spec["ratio"] == {
        "type": "number",
        "default": 0.5,
        "minimum": 0,
        "maximum": 1,
        "exclusiveMaximum": True,
    }
    # set[str]: uniqueItems is forbidden; a set-typed list keeps items unique instead.
    assert spec["tags"] == {
        "type": "array",
        "x-kubernetes-list-type": "set",
        "items": {"type": "string"},
    }
    assert spec["extra"] == {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    assert spec["anything"] == {"x-kubernetes-preserve-unknown-fields": True}
    assert spec["number"] == {"type": "number", "default": 1}
    assert spec["either"] == {"default": "x", "x-kubernetes-preserve-unknown-fields": True}
    assert spec["shape"] == {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    assert spec["wait"] == {"type": "string"}  # pydantic's ISO 8601 "duration" format dropped
    assert spec["pair"] == {
        "type": "array",
        "minItems": 2,
        "maxItems": 2,
        "items": {"type": "integer"},
    }
    # A recursive type is inlined once, then left open.
    children = spec["tree"]["properties"]["children"]
    assert children["items"]["type"] == "object"
    assert children["items"]["x-kubernetes-preserve-unknown-fields"] is True
    # A default the field itself refuses is not written (the API server would refuse the CRD).
    assert spec["badDefault"] == {"type": "integer", "minimum": 0}


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_other_types_make_a_valid_cluster_scoped_crd(version: str) -> None:
    crd = crd_for(_Widget)
    assert crd["spec"]["scope"] == "Cluster"
    assert "subresources" not in crd["spec"]["versions"][0]
    assert check_crd(crd) == []
    assert validate_builtin(crd, version) == []
    widget = _Widget.model_validate(
        {
            "metadata": {"name": "w"},
            "spec": {
                "size": 3,
                "tags": ["a", "b"],
                "extra": {"k": [1, {"x": None}]},
                "anything": [1, "two"],
                "number": 2.5,
                "either": ["p", "q"],
                "shape": {"b": "x"},
                "wait": 30,
                "pair": [1, 2],
                "tree": {"value": 1, "children": [{"value": 2, "children": [{"value": 3}]}]},
                "badDefault": 0,
            },
        }
    )
    assert validate_custom_object(widget.to_dict(), crd) == []
    data = widget.to_dict()
    data["spec"]["size"] = 0
    assert validate_custom_object(data, crd) == [
        "spec.size: 0 is less than or equal to the minimum of 0"
    ]
