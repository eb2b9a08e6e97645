"""Bad input: every case names the exact file, line, column, field path and message.

Each manifest below is wrong in one way (or, where stated, several); the loader must report every
problem at once, in file order, in Kubernetes' wording.
"""

from __future__ import annotations

import pytest

from shoal.errors import InvalidObjectsError
from shoal.model import load_text

CASES: dict[str, tuple[str, list[str]]] = {
    "replicas_negative": (
        (
            "apiVersion: apps/v1\n"
            "kind: Deployment\n"
            "metadata: {name: web}\n"
            "spec:\n"
            "  replicas: -1\n"
            "  selector: {matchLabels: {app: web}}\n"
            "  template:\n"
            "    metadata: {labels: {app: web}}\n"
            "    spec:\n"
            "      containers: [{name: web, image: nginx}]\n"
        ),
        [
            "m.yaml:5:13: spec.replicas: must be >= 0, got -1",
        ],
    ),
    "unknown_field_hint": (
        (
            "apiVersion: patterns.shoal.dev/v1\n"
            "kind: ReplicatedService\n"
            "metadata: {name: web}\n"
            "spec:\n"
            "  replica: 3\n"
            "  image: nginx\n"
        ),
        [
            'm.yaml:5:3: spec.replica: unknown field "replica"; did you mean "replicas"?',
        ],
    ),
    "k8s_unsupported_field": (
        (
            "apiVersion: v1\n"
            "kind: Pod\n"
            "metadata: {name: p}\n"
            "spec:\n"
            "  nodeSelector: {disk: ssd}\n"
            "  containers: [{name: c, image: nginx}]\n"
        ),
        [
            'm.yaml:5:3: spec.nodeSelector: field not supported: "nodeSelector" is a Kubernetes field that shoal does not implement; remove it (see docs/model.md for what is supported)',
        ],
    ),
    "duplicate_key": (
        ("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n  name: d\n"),
        [
            'm.yaml:5:3: duplicate key "name" (first defined at line 4, column 3)',
        ],
    ),
    "yaml_syntax": (
        ("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: [c\n"),
        [
            "m.yaml:5:1: YAML syntax error: expected ',' or ']', but got '<stream end>' (while parsing a flow sequence)",
        ],
    ),
    "bad_regexp": (
        (
            "apiVersion: patterns.shoal.dev/v1\n"
            "kind: ShardedService\n"
            "metadata: {name: users}\n"
            "spec:\n"
            "  shards: 4\n"
            "  shardRegexp: /users/(.*/.*\n"
            "  image: x\n"
            "  ports: [8080]\n"
        ),
        [
            "m.yaml:6:23: spec.shardRegexp: invalid regular expression at position 7: missing ), unterminated subpattern",
        ],
    ),
    "unknown_kind": (
        ("apiVersion: apps/v1\nkind: Deploymnet\nmetadata: {name: web}\n"),
        [
            "m.yaml:2:7: kind: unknown kind 'Deploymnet'; did you mean 'Deployment'? (known kinds: ConfigMap, Deployment, EndpointSlice, Event, LoadTest, Namespace, Pod, ReplicaSet, ReplicatedService, Secret, Service, ShardedService)",
        ],
    ),
    "wrong_api_version": (
        ("apiVersion: v1\nkind: Deployment\nmetadata: {name: web}\n"),
        [
            "m.yaml:1:13: apiVersion: kind Deployment is served at apiVersion 'apps/v1', not 'v1'",
        ],
    ),
    "missing_kind": (
        ("apiVersion: v1\nmetadata: {name: web}\n"),
        [
            "m.yaml:1:1: kind: Required value: every object needs `apiVersion` and `kind` (strings)",
        ],
    ),
    "not_a_mapping": (
        ("- a\n- b\n"),
        [
            "m.yaml:1:1: a document must be a mapping with apiVersion and kind, got a list",
        ],
    ),
    "name_uppercase": (
        ("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: MyConfig}\n"),
        [
            "m.yaml:3:18: metadata.name: Invalid value: 'MyConfig': a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com')",
        ],
    ),
    "service_name_starts_digit": (
        ("apiVersion: v1\nkind: Service\nmetadata: {name: 1web}\nspec:\n  ports: [{port: 80}]\n"),
        [
            "m.yaml:3:18: metadata.name: Invalid value: '1web': a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name', or 'abc-123')",
        ],
    ),
    "label_key_bad": (
        ('apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n  labels: {"bad key": x}\n'),
        [
            "m.yaml:5:23: metadata.labels[bad key]: invalid label key 'bad key': name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName', or 'my.name', or '123-abc')",
        ],
    ),
    "label_value_too_long": (
        (
            "apiVersion: v1\n"
            "kind: ConfigMap\n"
            "metadata:\n"
            "  name: c\n"
            "  labels: {a: xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx}\n"
        ),
        [
            "m.yaml:5:15: metadata.labels[a]: invalid label value 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx': must be no more than 63 characters",
        ],
    ),
    "label_value_not_string": (
        ("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n  labels: {version: 2}\n"),
        [
            "m.yaml:5:21: metadata.labels[version]: Invalid value: must be a string, got number 2",
        ],
    ),
    "no_name": (
        ("apiVersion: v1\nkind: ConfigMap\nmetadata: {labels: {a: b}}\n"),
        [
            "m.yaml:3:11: metadata.name: Required value: name or generateName is required",
        ],
    ),
    "namespace_on_cluster_scoped": (
        ("apiVersion: v1\nkind: Namespace\nmetadata: {name: team-a, namespace: default}\n"),
        [
            "m.yaml:3:37: metadata.namespace: not allowed on this type: Namespace is cluster-scoped",
        ],
    ),
    "selector_mismatch": (
        (
            "apiVersion: apps/v1\n"
            "kind: Deployment\n"
            "metadata: {name: web}\n"
            "spec:\n"
            "  selector: {matchLabels: {app: web}}\n"
            "  template:\n"
            "    metadata: {labels: {app: api}}\n"
            "    spec:\n"
            "      containers: [{name: web, image: nginx}]\n"
        ),
        [
            "m.yaml:7:24: spec.template.metadata.labels: Invalid value: `selector` does not match template `labels`",
        ],
    ),
    "probe_two_handlers": (
        (
            "apiVersion: v1\n"
            "kind: Pod\n"
            "metadata: {name: p}\n"
            "spec:\n"
            "  containers:\n"
            "  - name: c\n"
            "    image: nginx\n"
            "    readinessProbe:\n"
            "      httpGet: {port: 80}\n"
            "      tcpSocket: {port: 80}\n"
        ),
        [
            "m.yaml:10:18: spec.containers[0].readinessProbe.tcpSocket: may not specify more than 1 handler type",
        ],
    ),
    "probe_no_handler": (
        (
            "apiVersion: v1\n"
            "kind: Pod\n"
            "metadata: {name: p}\n"
            "spec:\n"
            "  containers:\n"
            "  - name: c\n"
            "    image: nginx\n"
            "    livenessProbe: {periodSeconds: 5}\n"
        ),
        [
            "m.yaml:8:20: spec.containers[0].livenessProbe: must specify a handler type: one of `exec`, `httpGet` or `tcpSocket`",
        ],
    ),
    "probe_named_port_missing": (
        (
            "apiVersion: v1\n"
            "kind: Pod\n"
            "metadata: {name: p}\n"
            "spec:\n"
            "  containers:\n"
            "  - name: c\n"
            "    image: nginx\n"
            "    ports: [{containerPort: 80, name: web}]\n"
            "    readinessProbe:\n"
            "      httpGet: {port: http}\n"
        ),
        [
            "m.yaml:10:23: spec.containers[0].readinessProbe.httpGet.port: Not found: 'http': no container port of that name",
        ],
    ),
    "port_out_of_range": (
        ("apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec:\n  ports: [{port: 70000}]\n"),
        [
            "m.yaml:5:18: spec.ports[0].port: must be <= 65535, got 70000",
        ],
    ),
    "service_type_nodeport": (
        (
            "apiVersion: v1\n"
            "kind: Service\n"
            "metadata: {name: web}\n"
            "spec:\n"
            "  type: NodePort\n"
            "  ports: [{port: 80}]\n"
        ),
        [
            "m.yaml:5:9: spec.type: Unsupported value: 'NodePort': supported values: \"ClusterIP\"",
        ],
    ),
    "service_ports_unnamed": (
        (
            "apiVersion: v1\n"
            "kind: Service\n"
            "metadata: {name: web}\n"
            "spec:\n"
            "  ports:\n"
            "  - {port: 80}\n"
            "  - {port: 443}\n"
        ),
        [
            "m.yaml:6:5: spec.ports[0].name: Required value: a name is required when a Service has several ports",
            "m.yaml:7:5: spec.ports[1].name: Required value: a name is required when a Service has several ports",
        ],
    ),
    "duplicate_container_names": (
        (
            "apiVersion: v1\n"
            "kind: Pod\n"
            "metadata: {name: p}\n"
            "spec:\n"
            "  containers:\n"
            "  - {name: c, image: nginx}\n"
            "  - {name: c, image: redis}\n"
        ),
        [
            "m.yaml:7:12: spec.containers[1].name: Duplicate value: 'c'",
        ],
    ),
    "no_containers": (
        ("apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers: []\n"),
        [
            "m.yaml:5:15: spec.containers: Required value: must have at least 1 item",
        ],
    ),
    "volume_mount_unknown": (
        (
            "apiVersion: v1\n"
            "kind: Pod\n"
            "metadata: {name: p}\n"
            "spec:\n"
            "  containers:\n"
            "  - name: c\n"
            "    image: nginx\n"
            "    volumeMounts: [{name: data, mountPath: /data}]\n"
        ),
        [
            "m.yaml:8:27: spec.containers[0].volumeMounts[0].name: Not found: 'data': no volume of that name in spec.volumes",
        ],
    ),
    "volume_two_sources": (
        (
            "apiVersion: v1\n"
            "kind: Pod\n"
            "metadata: {name: p}\n"
            "spec:\n"
            "  volumes:\n"
            "  - name: data\n"
            "    emptyDir: {}\n"
            "    configMap: {name: c}\n"
            "  containers: [{name: c, image: nginx}]\n"
        ),
        [
            "m.yaml:8:16: spec.volumes[0].configMap: may not specify more than 1 volume type",
        ],
    ),
    "restart_policy_bad": (
        (
            "apiVersion: v1\n"
            "kind: Pod\n"
            "metadata: {name: p}\n"
            "spec:\n"
            "  restartPolicy: Sometimes\n"
            "  containers: [{name: c, image: nginx}]\n"
        ),
        [
            'm.yaml:5:18: spec.restartPolicy: Unsupported value: \'Sometimes\': supported values: "Always", "OnFailure" or "Never"',
        ],
    ),
    "env_value_and_from": (
        (
            "apiVersion: v1\n"
            "kind: Pod\n"
            "metadata: {name: p}\n"
            "spec:\n"
            "  containers:\n"
            "  - name: c\n"
            "    image: nginx\n"
            "    env:\n"
            "    - name: A\n"
            "      value: x\n"
            "      valueFrom: {fieldRef: {fieldPath: metadata.name}}\n"
        ),
        [
            "m.yaml:11:18: spec.containers[0].env[0].valueFrom: may not be specified when `value` is not empty",
        ],
    ),
    "max_surge_and_unavailable_zero": (
        (
            "apiVersion: apps/v1\n"
            "kind: Deployment\n"
            "metadata: {name: web}\n"
            "spec:\n"
            "  selector: {matchLabels: {app: web}}\n"
            "  strategy:\n"
            "    rollingUpdate: {maxSurge: 0, maxUnavailable: 0}\n"
            "  template:\n"
            "    metadata: {labels: {app: web}}\n"
            "    spec:\n"
            "      containers: [{name: web, image: nginx}]\n"
        ),
        [
            "m.yaml:7:50: spec.strategy.rollingUpdate.maxUnavailable: may not be 0 when `maxSurge` is 0",
        ],
    ),
    "max_surge_bad_percent": (
        (
            "apiVersion: apps/v1\n"
            "kind: Deployment\n"
            "metadata: {name: web}\n"
            "spec:\n"
            "  selector: {matchLabels: {app: web}}\n"
            "  strategy:\n"
            "    rollingUpdate: {maxSurge: 120%}\n"
            "  template:\n"
            "    metadata: {labels: {app: web}}\n"
            "    spec:\n"
            "      containers: [{name: web, image: nginx}]\n"
        ),
        [
            "m.yaml:7:31: spec.strategy.rollingUpdate.maxSurge: Invalid value: '120%': must not be greater than 100%",
        ],
    ),
    "quantity_bad": (
        (
            "apiVersion: loadtest.shoal.dev/v1\n"
            "kind: LoadTest\n"
            "metadata: {name: lt}\n"
            "spec:\n"
            "  service: web\n"
            "  requestPerSecond: 10x\n"
            "  tests: [{path: /}]\n"
        ),
        [
            "m.yaml:6:21: spec.requestPerSecond: must be a quantity such as 10k or 500m (suffixes: k M G T P E, Ki Mi Gi Ti Pi Ei, m u n, or an exponent such as e3), got '10x': unknown suffix 'x'",
        ],
    ),
    "rate_zero": (
        (
            "apiVersion: loadtest/v1\n"
            "kind: LoadTest\n"
            "metadata: {name: lt}\n"
            "spec:\n"
            "  service: web\n"
            "  requestPerSecond: 0\n"
            "  tests: [{path: /}]\n"
        ),
        [
            "m.yaml:6:21: spec.requestPerSecond: Invalid value: '0': must be greater than 0",
        ],
    ),
    "path_without_slash": (
        (
            "apiVersion: loadtest/v1\n"
            "kind: LoadTest\n"
            "metadata: {name: lt}\n"
            "spec:\n"
            "  service: web\n"
            "  requestPerSecond: 10\n"
            "  tests:\n"
            "    - test:\n"
            "      - some/path\n"
        ),
        [
            "m.yaml:9:9: spec.tests[0].test[0]: must start with '/', got 'some/path'",
        ],
    ),
    "duration_bad": (
        (
            "apiVersion: loadtest/v1\n"
            "kind: LoadTest\n"
            "metadata: {name: lt}\n"
            "spec:\n"
            "  service: web\n"
            "  requestPerSecond: 10\n"
            "  duration: 30 seconds\n"
            "  tests: [{path: /}]\n"
        ),
        [
            "m.yaml:7:13: spec.duration: must be a duration such as 30s or 1m30s (units: ns us ms s m h), got '30 seconds'",
        ],
    ),
    "threshold_bad": (
        (
            "apiVersion: loadtest/v1\n"
            "kind: LoadTest\n"
            "metadata: {name: lt}\n"
            "spec:\n"
            "  service: web\n"
            "  requestPerSecond: 10\n"
            "  tests: [{path: /}]\n"
            '  thresholds: ["p95 < 200"]\n'
        ),
        [
            "m.yaml:8:16: spec.thresholds[0]: invalid threshold 'p95 < 200': write `METRIC OP VALUE` where METRIC is error_ratio, p(N), avg, med, min or max, OP is <, <=, > or >=, and latencies are in ms (default) or s, e.g. 'p(95)<200' or 'error_ratio<0.01'",
        ],
    ),
    "pattern_template_and_image": (
        (
            "apiVersion: patterns.shoal.dev/v1\n"
            "kind: ReplicatedService\n"
            "metadata: {name: web}\n"
            "spec:\n"
            "  image: nginx\n"
            "  template:\n"
            "    spec:\n"
            "      containers: [{name: web, image: nginx}]\n"
        ),
        [
            "m.yaml:5:10: spec.image: may not be specified together with `template`: put it in the template",
        ],
    ),
    "pattern_no_image": (
        (
            "apiVersion: patterns.shoal.dev/v1\n"
            "kind: ReplicatedService\n"
            "metadata: {name: web}\n"
            "spec:\n"
            "  replicas: 2\n"
        ),
        [
            "m.yaml:5:3: spec.image: Required value: give `image` (and/or `command`), or a pod `template`",
        ],
    ),
    "sharded_zero_shards": (
        (
            "apiVersion: patterns.shoal.dev/v1\n"
            "kind: ShardedService\n"
            "metadata: {name: users}\n"
            "spec:\n"
            "  shards: 0\n"
            "  image: x\n"
            "  ports: [8080]\n"
        ),
        [
            "m.yaml:5:11: spec.shards: must be >= 1, got 0",
        ],
    ),
    "sharded_name_too_long": (
        (
            "apiVersion: patterns.shoal.dev/v1\n"
            "kind: ShardedService\n"
            "metadata: {name: uuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuu}\n"
            "spec:\n"
            "  shards: 12\n"
            "  image: x\n"
            "  ports: [8080]\n"
        ),
        [
            "m.yaml:3:18: metadata.name: Invalid value: 'uuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuu': must be no more than 54 characters (the derived name 'uuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuu-shard-11' must fit in 63)",
        ],
    ),
    "sidecar_name_clash": (
        (
            "apiVersion: patterns.shoal.dev/v1\n"
            "kind: ReplicatedService\n"
            "metadata: {name: web}\n"
            "spec:\n"
            "  image: nginx\n"
            "  sidecars:\n"
            "  - {name: app, image: envoy}\n"
        ),
        [
            "m.yaml:7:12: spec.sidecars[0].name: Duplicate value: 'app': container names must be unique in a pod",
        ],
    ),
    "hash_algorithm_unknown": (
        (
            "apiVersion: patterns.shoal.dev/v1\n"
            "kind: ShardedService\n"
            "metadata: {name: users}\n"
            "spec:\n"
            "  image: x\n"
            "  ports: [8080]\n"
            "  hashing: {algorithm: jump}\n"
        ),
        [
            'm.yaml:7:24: spec.hashing.algorithm: Unsupported value: \'jump\': supported values: "maglev", "rendezvous" or "ring"',
        ],
    ),
    "secret_not_base64": (
        ("apiVersion: v1\nkind: Secret\nmetadata: {name: s}\ndata:\n  password: not base64!\n"),
        [
            "m.yaml:5:13: data[password]: Invalid value: must be base64-encoded",
        ],
    ),
    "configmap_bad_key": (
        ('apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata:\n  "a/b": x\n'),
        [
            "m.yaml:5:10: data[a/b]: Invalid value: 'a/b': a valid config key must consist of alphanumeric characters, '-', '_' or '.'",
        ],
    ),
    "port_type_wrong": (
        (
            "apiVersion: v1\n"
            "kind: Pod\n"
            "metadata: {name: p}\n"
            "spec:\n"
            "  containers:\n"
            "  - name: c\n"
            "    image: nginx\n"
            "    ports: [{containerPort: [80]}]\n"
        ),
        [
            "m.yaml:8:29: spec.containers[0].ports[0].containerPort: Invalid value: must be an integer, got a list",
        ],
    ),
    "container_no_image_no_command": (
        ("apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers: [{name: c}]\n"),
        [
            "m.yaml:5:16: spec.containers[0].image: Required value: a container needs an `image` or a `command`",
        ],
    ),
    "list_item_error": (
        (
            "apiVersion: v1\n"
            "kind: List\n"
            "items:\n"
            "- apiVersion: v1\n"
            "  kind: ConfigMap\n"
            "  metadata: {name: ok}\n"
            "- apiVersion: v1\n"
            "  kind: ConfigMap\n"
            "  metadata: {name: Bad}\n"
        ),
        [
            "m.yaml:9:20: items[1].metadata.name: Invalid value: 'Bad': a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com')",
        ],
    ),
    "two_docs_errors": (
        (
            "apiVersion: v1\n"
            "kind: ConfigMap\n"
            "metadata: {name: A}\n"
            "---\n"
            "apiVersion: v1\n"
            "kind: ConfigMap\n"
            'metadata: {name: b, labels: {x: "-bad"}}\n'
        ),
        [
            "m.yaml:3:18: metadata.name: Invalid value: 'A': a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com')",
            "m.yaml:7:33: metadata.labels[x]: invalid label value '-bad': a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character",
        ],
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input_is_reported_exactly(name: str) -> None:
    text, expected = CASES[name]
    with pytest.raises(InvalidObjectsError) as caught:
        load_text(text, "m.yaml")
    assert [str(issue) for issue in caught.value.issues] == expected


def test_there_are_at_least_thirty_cases() -> None:
    assert len(CASES) >= 30


def test_every_problem_of_a_file_is_reported_at_once() -> None:
    text = CASES["two_docs_errors"][0] + "---\n" + CASES["replicas_negative"][0]
    with pytest.raises(InvalidObjectsError) as caught:
        load_text(text, "m.yaml")
    assert len(caught.value.issues) == 3
    assert str(caught.value).startswith("3 problems found\n")
