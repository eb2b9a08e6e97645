"""The object model: the talk's objects as written, Kubernetes field names, defaults, round trips."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

import shoal
from shoal.errors import InvalidObjectsError
from shoal.model import (
    ALL_KINDS,
    LabelSelector,
    LoadTest,
    ObjectMeta,
    ReplicatedService,
    Secret,
    Service,
    ShardedService,
    kind_for,
    load_text,
    parse_threshold,
)
from shoal.model.patterns import name_from_image

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


def test_the_talks_loadtest_is_accepted_verbatim() -> None:
    (loadtest,) = load_text(TALK_LOADTEST, "talk.yaml")
    assert isinstance(loadtest, LoadTest)
    assert loadtest.api_version == "loadtest.shoal.dev/v1"
    assert loadtest.spec.request_per_second.value == 10_000
    assert [p.path for p in loadtest.spec.paths()] == ["/some/path", "/some/other/path"]
    assert loadtest.spec.duration.seconds == 30.0
    assert loadtest.namespace == "default"


def test_the_talks_python_calls_work_as_written() -> None:
    replicated = ReplicatedService(image="acr.io/brendan/my-server:v1", ports=[8080], replicas=4)
    sharded = ShardedService(
        image="acr.io/brendan/my-server:v1", shard_regexp="/users/(.*)/.*", ports=[8080], shards=4
    )
    assert (replicated.name, replicated.spec.replicas) == ("my-server", 4)
    assert replicated.api_version == "patterns.shoal.dev/v1"
    assert [p.port for p in replicated.spec.ports or ()] == [8080]
    assert (sharded.spec.shards, sharded.spec.shard_regexp) == (4, "/users/(.*)/.*")
    assert sharded.spec.replicas_per_shard == 1


def test_python_api_reports_problems_as_shoal_errors() -> None:
    with pytest.raises(InvalidObjectsError) as caught:
        ReplicatedService(image="x:v1", replicas=-1, portz=[1])
    assert [str(i) for i in caught.value.issues] == [
        "spec.replicas: must be >= 0, got -1",
        'spec.portz: unknown field "portz"; did you mean "ports"?',
    ]
    with pytest.raises(InvalidObjectsError, match=r"spec.shardRegexp: invalid regular expression"):
        ShardedService(image="x:v1", shard_regexp="(", ports=[80])


@pytest.mark.parametrize(
    ("image", "name"),
    [
        ("acr.io/brendan/my-server:v1", "my-server"),
        ("nginx", "nginx"),
        ("registry:5000/team/API_Server@sha256:abc", "api-server"),
        ("ghcr.io/x/9lives:1", "lives"),
        ("ghcr.io/x/123:1", "app"),
    ],
)
def test_names_derived_from_images_are_dns_labels(image: str, name: str) -> None:
    assert name_from_image(image) == name


def test_objects_round_trip_through_yaml() -> None:
    users = ShardedService(
        name="users",
        image="x:v1",
        shard_regexp="/users/(.*)/.*",
        ports=[{"name": "http", "port": 8080}],
        shards=4,
        replicas_per_shard=2,
        sidecars=[shoal.Container(name="tls", image="nginx")],
    )
    (again,) = load_text(users.to_yaml())
    assert again == users
    (loadtest,) = load_text(TALK_LOADTEST)
    (loadtest_again,) = load_text(loadtest.to_yaml())
    assert loadtest_again == loadtest


def test_kubernetes_field_names_are_kept() -> None:
    (service,) = load_text(
        "apiVersion: v1\nkind: Service\nmetadata: {name: web}\n"
        "spec: {clusterIP: 10.0.0.7, ports: [{port: 80, targetPort: http}]}\n"
    )
    assert isinstance(service, Service)
    assert service.spec.cluster_ip == "10.0.0.7"
    assert service.to_dict()["spec"]["clusterIP"] == "10.0.0.7"
    assert service.to_dict()["spec"]["ports"][0]["targetPort"] == "http"


def test_server_defaults_are_filled_like_kubernetes() -> None:
    (deployment,) = load_text(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\n"
        "spec:\n  selector: {matchLabels: {a: b}}\n  template:\n    metadata: {labels: {a: b}}\n"
        "    spec: {containers: [{name: c, image: nginx}]}\n"
    )
    spec = deployment.to_dict()["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "RollingUpdate"}
    assert deployment.spec.strategy.effective_rolling_update().max_surge == "25%"  # type: ignore[attr-defined]
    assert spec["revisionHistoryLimit"] == 10
    assert spec["template"]["spec"]["restartPolicy"] == "Always"
    assert spec["template"]["spec"]["terminationGracePeriodSeconds"] == 30


def test_secret_values_never_show_in_repr() -> None:
    secret = Secret(
        metadata=ObjectMeta(name="s"),
        string_data={"password": "hunter2"},
        data={"token": "c2VjcmV0"},
    )
    assert "hunter2" not in repr(secret)
    assert "c2VjcmV0" not in repr(secret)
    assert "password" in repr(secret)
    assert secret.decoded() == {"token": b"secret", "password": b"hunter2"}


def test_every_kind_is_found_by_api_version_and_kind() -> None:
    for cls in ALL_KINDS:
        assert kind_for(cls.INFO.api_version, cls.INFO.kind) is cls
    assert kind_for("loadtest/v1", "LoadTest") is LoadTest
    assert kind_for("patterns/v1", "ShardedService") is ShardedService


@given(
    labels=st.dictionaries(
        st.sampled_from(["a", "b", "c"]), st.sampled_from(["x", "y"]), max_size=3
    ),
    required=st.dictionaries(
        st.sampled_from(["a", "b", "c"]), st.sampled_from(["x", "y"]), max_size=2
    ),
)
def test_match_labels_selects_exactly_the_supersets(
    labels: dict[str, str], required: dict[str, str]
) -> None:
    selector = LabelSelector(match_labels=required)
    assert selector.matches(labels) == all(labels.get(k) == v for k, v in required.items())


def test_match_expressions() -> None:
    selector = LabelSelector.model_validate(
        {
            "matchExpressions": [
                {"key": "tier", "operator": "In", "values": ["web", "api"]},
                {"key": "canary", "operator": "DoesNotExist"},
            ]
        }
    )
    assert selector.matches({"tier": "web"})
    assert not selector.matches({"tier": "db"})
    assert not selector.matches({"tier": "api", "canary": "true"})


@pytest.mark.parametrize(
    ("expression", "metric", "operator", "value"),
    [
        ("p(95)<200", "p95", "<", 200.0),
        ("p(99.9) <= 0.5s", "p99.9", "<=", 500.0),
        ("error_ratio<0.01", "error_ratio", "<", 0.01),
        ("http_req_failed < 0.05", "error_ratio", "<", 0.05),
        ("avg<100ms", "avg", "<", 100.0),
    ],
)
def test_thresholds_parse_like_k6(
    expression: str, metric: str, operator: str, value: float
) -> None:
    threshold = parse_threshold(expression)
    assert (threshold.metric, threshold.operator, threshold.value) == (metric, operator, value)
    assert threshold.holds(value - 0.001) == (operator in ("<", "<="))


def test_assigning_a_field_keeps_the_object_whole() -> None:
    web = ReplicatedService(image="x:v1", ports=[8080])
    web.status = None
    web.spec.replicas = 3
    assert web.api_version == "patterns.shoal.dev/v1"
    assert web.to_dict()["apiVersion"] == "patterns.shoal.dev/v1"


def test_times_are_utc_rfc3339() -> None:
    from datetime import datetime, timedelta, timezone

    from shoal.model import Condition

    naive = Condition(type="Ready", status="True", last_transition_time=datetime(2025, 1, 1))
    assert naive.to_dict()["lastTransitionTime"] == "2025-01-01T00:00:00Z"
    zoned = datetime(2025, 1, 1, 2, 0, 0, 500, tzinfo=timezone(timedelta(hours=2)))
    aware = Condition(type="Ready", status="True", last_transition_time=zoned)
    assert aware.to_dict()["lastTransitionTime"] == "2025-01-01T00:00:00.000500Z"
