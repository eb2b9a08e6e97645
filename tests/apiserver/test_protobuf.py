"""Kubernetes' protobuf request bodies (``shoal.apiserver.protobuf``): transcripts of the bytes
kubectl 1.37 sends for its typed commands, round trips, and malformed input (only
``ProtobufError``, never another exception)."""

from __future__ import annotations

import base64
import contextlib
import string
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shoal.apiserver import protobuf
from shoal.apiserver.protobuf import MAGIC, ProtobufError, decode, encode
from shoal.testing import api_server


def hexbytes(text: str) -> bytes:
    return bytes.fromhex("".join(text.split()))


# Captured with `kubectl <command> -v=9` (kubectl 1.37.1): the request body of each command.
CREATE_CONFIGMAP = hexbytes(
    """6b 38 73 00 0a 0f 0a 02 76 31 12 09 43 6f 6e 66 69 67 4d 61 70 12 1b 0a 11 0a 01 78 12 00
    1a 00 22 00 2a 00 32 00 38 00 42 00 12 06 0a 01 61 12 01 62 1a 00 22 00"""
)  # kubectl create configmap x --from-literal=a=b
CREATE_NAMESPACE = hexbytes(
    """6b 38 73 00 0a 0f 0a 02 76 31 12 09 4e 61 6d 65 73 70 61 63 65 12 1a 0a 12 0a 02 6e 31 12
    00 1a 00 22 00 2a 00 32 00 38 00 42 00 12 00 1a 02 0a 00 1a 00 22 00"""
)  # kubectl create namespace n1
CREATE_DEPLOYMENT = hexbytes(
    """6b 38 73 00 0a 15 0a 07 61 70 70 73 2f 76 31 12 0a 44 65 70 6c 6f 79 6d 65 6e 74 12 b4 01
    0a 1d 0a 02 64 31 12 00 1a 00 22 00 2a 00 32 00 38 00 42 00 5a 09 0a 03 61 70 70 12 02 64 31
    12 84 01 08 00 12 0b 0a 09 0a 03 61 70 70 12 02 64 31 1a 6b 0a 1b 0a 00 12 00 1a 00 22 00 2a
    00 32 00 38 00 42 00 5a 09 0a 03 61 70 70 12 02 64 31 12 4c 12 2e 0a 05 6e 67 69 6e 78 12 05
    6e 67 69 6e 78 2a 00 32 0a 0a 00 10 00 18 50 22 00 2a 00 42 00 6a 00 72 00 80 01 00 88 01 00
    90 01 00 a2 01 00 1a 00 32 00 42 00 4a 00 52 00 58 00 60 00 68 00 82 01 00 8a 01 00 9a 01 00
    c2 01 00 22 02 0a 00 28 00 38 00 1a 0c 08 00 10 00 18 00 20 00 28 00 38 00 1a 00 22 00"""
)  # kubectl create deployment d1 --image=nginx --port=80 --replicas=0
CREATE_SECRET = hexbytes(
    """6b 38 73 00 0a 0c 0a 02 76 31 12 06 53 65 63 72 65 74 12 1e 0a 12 0a 02 73 31 12 00 1a 00
    22 00 2a 00 32 00 38 00 42 00 12 06 0a 01 6b 12 01 76 1a 00 1a 00 22 00"""
)  # kubectl create secret generic s1 --from-literal=k=v
CREATE_SERVICE = hexbytes(
    """6b 38 73 00 0a 0d 0a 02 76 31 12 07 53 65 72 76 69 63 65 12 66 0a 1d 0a 02 63 31 12 00 1a
    00 22 00 2a 00 32 00 38 00 42 00 5a 09 0a 03 61 70 70 12 02 63 31 12 41 0a 1b 0a 07 38 30 2d
    38 30 38 30 12 03 54 43 50 18 50 22 07 08 00 10 90 3f 1a 00 28 00 12 09 0a 03 61 70 70 12 02
    63 31 1a 00 22 09 43 6c 75 73 74 65 72 49 50 3a 00 42 00 52 00 5a 00 60 00 68 00 1a 02 0a 00
    1a 00 22 00"""
)  # kubectl create service clusterip c1 --tcp=80:8080


class TestKubectlTranscripts:
    """Go writes every non-pointer field, zeros included; the JSON form leaves zeros out, except
    where the field is a pointer (an explicit ``replicas: 0``)."""

    def test_configmap(self) -> None:
        assert decode(CREATE_CONFIGMAP) == {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "x"},
            "data": {"a": "b"},
        }

    def test_namespace(self) -> None:
        assert decode(CREATE_NAMESPACE) == {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": "n1"},
        }

    def test_deployment_keeps_an_explicit_zero_replicas(self) -> None:
        assert decode(CREATE_DEPLOYMENT) == {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "d1", "labels": {"app": "d1"}},
            "spec": {
                "replicas": 0,
                "selector": {"matchLabels": {"app": "d1"}},
                "template": {
                    "metadata": {"labels": {"app": "d1"}},
                    "spec": {
                        "containers": [
                            {"name": "nginx", "image": "nginx", "ports": [{"containerPort": 80}]}
                        ]
                    },
                },
            },
        }

    def test_secret_data_is_base64(self) -> None:
        assert decode(CREATE_SECRET) == {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "s1"},
            "data": {"k": "dg=="},
        }

    def test_service_int_target_port(self) -> None:
        assert decode(CREATE_SERVICE) == {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "c1", "labels": {"app": "c1"}},
            "spec": {
                "ports": [{"name": "80-8080", "protocol": "TCP", "port": 80, "targetPort": 8080}],
                "selector": {"app": "c1"},
                "type": "ClusterIP",
            },
        }


RICH_POD: dict[str, Any] = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {
        "name": "p",
        "namespace": "ns",
        "creationTimestamp": "2026-01-02T03:04:05Z",
        "labels": {"a": "b"},
        "annotations": {"note": ""},
        "finalizers": ["example.com/f"],
        "ownerReferences": [
            {
                "apiVersion": "apps/v1",
                "kind": "ReplicaSet",
                "name": "rs",
                "uid": "u-1",
                "controller": True,
                "blockOwnerDeletion": False,
            }
        ],
        "managedFields": [
            {
                "manager": "kubectl",
                "operation": "Apply",
                "apiVersion": "v1",
                "time": "2026-01-02T03:04:05Z",
                "fieldsType": "FieldsV1",
                "fieldsV1": {"f:metadata": {"f:labels": {"f:a": {}}}},
            }
        ],
    },
    "spec": {
        "terminationGracePeriodSeconds": 0,
        "volumes": [
            {"name": "scratch", "emptyDir": {}},
            {
                "name": "cfg",
                "configMap": {"name": "settings", "items": [{"key": "k", "path": "p"}]},
            },
        ],
        "containers": [
            {
                "name": "app",
                "image": "busybox",
                "command": ["sh", "-c", ""],
                "env": [
                    {"name": "A", "value": "1"},
                    {"name": "B", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
                ],
                "resources": {"limits": {"cpu": "500m"}, "requests": {"memory": "64Mi"}},
                "readinessProbe": {
                    "httpGet": {"path": "/healthz", "port": "http"},
                    "periodSeconds": 2,
                },
                "livenessProbe": {"tcpSocket": {"port": 8080}},
                "lifecycle": {"preStop": {"sleep": {"seconds": 0}}},
            }
        ],
    },
    "status": {
        "phase": "Running",
        "startTime": "2026-01-02T03:04:06Z",
        "containerStatuses": [
            {
                "name": "app",
                "ready": False,
                "restartCount": 0,
                "image": "busybox",
                "imageID": "",
                "state": {"terminated": {"exitCode": 0, "reason": "Completed"}},
            }
        ],
    },
}


class TestRoundTrip:
    def test_a_rich_pod(self) -> None:
        assert decode(encode(RICH_POD)) == RICH_POD

    def test_deployment_strategy_and_int_or_string_zero(self) -> None:
        deployment = {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "d"},
            "spec": {
                "replicas": 3,
                "selector": {
                    "matchExpressions": [{"key": "app", "operator": "In", "values": ["a", "b"]}]
                },
                "strategy": {
                    "type": "RollingUpdate",
                    "rollingUpdate": {"maxUnavailable": 0, "maxSurge": "50%"},
                },
                "template": {"spec": {"containers": [{"name": "c", "image": "i"}]}},
            },
        }
        assert decode(encode(deployment)) == deployment

    def test_event_micro_time_and_endpoint_slice(self) -> None:
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": "e", "namespace": "default"},
            "involvedObject": {"kind": "Pod", "name": "p", "namespace": "default"},
            "reason": "Started",
            "count": 2,
            "eventTime": "2026-01-02T03:04:05.123456Z",
        }
        assert decode(encode(event)) == event
        slice_ = {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {"name": "web-abc"},
            "addressType": "IPv4",
            "endpoints": [{"addresses": ["127.0.0.1"], "conditions": {"ready": False}}],
            "ports": [{"name": "", "port": 8080, "protocol": "TCP"}],
        }
        assert decode(encode(slice_)) == slice_

    def test_negative_integers(self) -> None:
        scale = {
            "apiVersion": "autoscaling/v1",
            "kind": "Scale",
            "metadata": {"name": "d", "generation": -1},
            "spec": {"replicas": -5},
        }
        assert decode(encode(scale)) == scale

    @given(
        data=st.dictionaries(
            st.text(string.ascii_letters, min_size=1, max_size=8),
            st.text(max_size=20),
            max_size=5,
        ),
        labels=st.dictionaries(
            st.text(string.ascii_lowercase, min_size=1, max_size=8),
            st.text(string.ascii_lowercase, min_size=1, max_size=8),
            max_size=3,
        ),
        immutable=st.none() | st.booleans(),
        binary=st.dictionaries(
            st.text(string.ascii_letters, min_size=1, max_size=8), st.binary(max_size=16)
        ),
    )
    @settings(max_examples=60, deadline=None)
    def test_configmaps(
        self,
        data: dict[str, str],
        labels: dict[str, str],
        immutable: bool | None,
        binary: dict[str, bytes],
    ) -> None:
        config: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "c"},
        }
        if labels:
            config["metadata"]["labels"] = labels
        if data:
            config["data"] = data
        if binary:
            config["binaryData"] = {k: base64.b64encode(v).decode() for k, v in binary.items()}
        if immutable is not None:
            config["immutable"] = immutable
        assert decode(encode(config)) == config


class TestBadInput:
    @pytest.mark.parametrize(
        ("body", "message"),
        [
            (b'{"kind": "ConfigMap"}', "magic"),
            (MAGIC, "no apiVersion and kind"),
            (MAGIC + b"\x0a\x05\x0a\x02v1", "length 5 runs past the end"),
            (MAGIC + b"\x0a\x0d\x0a\x02v1\x12\x07Unknown", "does not read v1 Unknown"),
            (CREATE_CONFIGMAP[:-10], "runs past the end"),
            (MAGIC + b"\x08", "truncated varint"),
            (MAGIC + b"\x0b", "wire type 3"),
        ],
    )
    def test_refused_with_a_reason(self, body: bytes, message: str) -> None:
        with pytest.raises(ProtobufError, match=message):
            decode(body)

    def test_an_unknown_field_with_a_value_is_refused_a_zero_one_skipped(self) -> None:
        def configmap_with(extra: bytes) -> bytes:
            raw = b"\x0a\x03\x0a\x01x" + extra
            type_meta = b"\x0a\x02v1\x12\x09ConfigMap"
            envelope = b"\x0a" + bytes([len(type_meta)]) + type_meta
            return MAGIC + envelope + b"\x12" + bytes([len(raw)]) + raw

        zero = decode(configmap_with(b"\xf8\x01\x00"))  # field 31, varint 0
        assert zero["metadata"] == {"name": "x"}
        with pytest.raises(ProtobufError, match="field 31 of ConfigMap is not known"):
            decode(configmap_with(b"\xf8\x01\x07"))

    def test_unsupported_fields_are_named_so_the_model_refuses_them(self) -> None:
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "c"}], "securityContext": {}},
        }
        assert decode(encode(pod))["spec"]["securityContext"] == {}

    def test_a_content_encoding_is_refused(self) -> None:
        body = CREATE_CONFIGMAP[:-4] + b"\x1a\x04gzip\x22\x00"
        with pytest.raises(ProtobufError, match="contentEncoding"):
            decode(body)

    @given(st.binary(max_size=200))
    @settings(max_examples=300, deadline=None)
    def test_random_bytes_only_raise_protobuf_error(self, tail: bytes) -> None:
        with contextlib.suppress(ProtobufError):
            decode(MAGIC + tail)

    @given(st.data())
    @settings(max_examples=300, deadline=None)
    def test_mutated_kubectl_bodies_only_raise_protobuf_error(self, data: st.DataObject) -> None:
        body = bytearray(data.draw(st.sampled_from([CREATE_DEPLOYMENT, CREATE_SERVICE])))
        for _ in range(data.draw(st.integers(1, 4))):
            body[data.draw(st.integers(len(MAGIC), len(body) - 1))] = data.draw(st.integers(0, 255))
        with contextlib.suppress(ProtobufError):
            decode(bytes(body))


def test_every_referenced_message_is_defined() -> None:
    for message, fields in protobuf.SCHEMA.items():
        numbers = list(fields)
        assert numbers == sorted(numbers), message
        names = [f.name for f in fields.values()]
        assert len(names) == len(set(names)), message


async def test_over_http_a_bad_body_is_a_400_status_and_a_good_one_is_created(
    tmp_path: Path,
) -> None:
    headers = {
        "Content-Type": protobuf.MEDIA_TYPE,
        "Accept": f"{protobuf.MEDIA_TYPE},application/json",
    }
    async with api_server(data_dir=tmp_path / "data") as server, server.session() as session:
        url = f"{server.url}/api/v1/namespaces/default/configmaps"
        async with session.post(url, data=CREATE_CONFIGMAP[:-10], headers=headers) as response:
            assert response.status == 400
            status = await response.json()
            assert status["reason"] == "BadRequest"
            assert "protobuf request body could not be read" in status["message"]
        async with session.post(url, data=CREATE_CONFIGMAP, headers=headers) as response:
            assert response.status == 201
            assert response.content_type == "application/json"
            created = await response.json()
            assert created["data"] == {"a": "b"}
            assert created["metadata"]["namespace"] == "default"
        # The object must be the kind of the URL, as for JSON bodies.
        secrets = f"{server.url}/api/v1/namespaces/default/secrets"
        async with session.post(secrets, data=CREATE_CONFIGMAP, headers=headers) as response:
            assert response.status == 400
