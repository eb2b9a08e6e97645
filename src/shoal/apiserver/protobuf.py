"""Kubernetes' protobuf wire format for request bodies, decoded to the JSON form the server uses.

Why: client-go's typed clients (and so kubectl's typed commands, ``kubectl create configmap``,
``create deployment``, ``create namespace``, ``create secret``, ``create service``) send built-in
kinds as ``application/vnd.kubernetes.protobuf`` and have no fallback to JSON when a server
answers 415 (client-go falls back only from CBOR). They *accept* JSON answers
(``Accept: application/vnd.kubernetes.protobuf,application/json``), so the server only has to
read protobuf, never write it; :func:`encode` exists for tests and tools.

Theory of operation:

* A body is the 4-byte magic ``k8s\\x00`` and a ``runtime.Unknown`` message: ``typeMeta``
  (apiVersion, kind), ``raw`` (the object's own message), ``contentEncoding``, ``contentType``.
* The object message is read against a schema: for each message, field number -> JSON name and
  type. The schema (:data:`SCHEMA`) holds the messages of the kinds shoal serves, with the
  field numbers of ``k8s.io/api``'s ``generated.proto`` files. Fields shoal's models refuse are
  still named (so the model refuses them *by name*); their content is kept as an opaque ``{}``.
* Go's protobuf marshaller writes every non-pointer field, zero or not, while Go's JSON writes
  ``omitempty`` fields only when non-zero. So a zero scalar (``""``, ``0``, ``false``), a zero
  time, an empty non-pointer message and an empty map or list decode to "absent", as in JSON;
  fields marked ``!`` (pointers, where an explicit zero means something, such as
  ``spec.replicas: 0``, and the few non-``omitempty`` fields) keep their zero.
* Special messages map to their JSON forms: ``Time`` (RFC 3339), ``MicroTime``,
  ``IntOrString`` (int or string), ``Quantity`` (its string), ``FieldsV1`` (raw JSON),
  ``bytes`` (base64).
* A field number the schema does not know is skipped when it carries a zero (a newer client
  writes its new non-pointer fields as zeros) and refused otherwise: :class:`ProtobufError`,
  which the HTTP layer answers with 400 and advice to send JSON.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "MAGIC",
    "MEDIA_TYPE",
    "SCHEMA",
    "ProtobufError",
    "decode",
    "encode",
    "message_for",
]

MAGIC = b"k8s\x00"
MEDIA_TYPE = "application/vnd.kubernetes.protobuf"

_VARINT, _I64, _LEN, _I32 = 0, 1, 2, 5
_SCALARS = frozenset({"s", "b", "i", "y"})
_SPECIAL = frozenset({"Time", "MicroTime", "IntOrString", "Quantity", "FieldsV1", "opaque"})
_MAX_DEPTH = 64


class ProtobufError(ValueError):
    """The body is not a protobuf object shoal can read; the message says what and where."""


@dataclass(frozen=True, slots=True)
class Field:
    """One field of a message: its JSON name, its type and how zeros and lists are treated."""

    name: str
    type: str  # s, b, i, y, map, map:y, map:Quantity, or a message name
    repeated: bool = False
    keep_zero: bool = False  # a pointer (or non-omitempty) field: an explicit zero is a value
    inline: bool = False  # an embedded struct whose fields JSON writes in the parent


# Schema: message -> "number name type[flags]; ...". Types: s string, b bool, i integer (varint),
# y bytes (base64 in JSON), map (string to string), map:y (string to bytes), map:Quantity, or a
# message name. Flags: [] repeated, ! keep an explicit zero (Go pointer), ^ inline, ? a field
# shoal does not implement (named, content kept opaque).
_SOURCE: dict[str, str] = {
    # k8s.io/apimachinery/pkg/apis/meta/v1
    "ObjectMeta": "1 name s; 2 generateName s; 3 namespace s; 4 selfLink s; 5 uid s; "
    "6 resourceVersion s; 7 generation i; 8 creationTimestamp Time; 9 deletionTimestamp Time!; "
    "10 deletionGracePeriodSeconds i!; 11 labels map; 12 annotations map; "
    "13 ownerReferences OwnerReference[]; 14 finalizers s[]; 17 managedFields ManagedFieldsEntry[]",
    "OwnerReference": "1 kind s!; 3 name s!; 4 uid s!; 5 apiVersion s!; 6 controller b!; "
    "7 blockOwnerDeletion b!",
    "ManagedFieldsEntry": "1 manager s; 2 operation s; 3 apiVersion s; 4 time Time!; "
    "6 fieldsType s; 7 fieldsV1 FieldsV1!; 8 subresource s",
    "LabelSelector": "1 matchLabels map; 2 matchExpressions LabelSelectorRequirement[]",
    "LabelSelectorRequirement": "1 key s!; 2 operator s!; 3 values s[]",
    "Condition": "1 type s!; 2 status s!; 3 observedGeneration i; 4 lastTransitionTime Time; "
    "5 reason s!; 6 message s!",
    "DeleteOptions": "1 gracePeriodSeconds i!; 2 preconditions Preconditions!; "
    "3 orphanDependents b!; 4 propagationPolicy s!; 5 dryRun s[]; "
    "6 ignoreStoreReadErrorWithClusterBreakingPotential b!",
    "Preconditions": "1 uid s!; 2 resourceVersion s!",
    # k8s.io/api/core/v1
    "Namespace": "1 metadata ObjectMeta; 2 spec NamespaceSpec; 3 status NamespaceStatus",
    "NamespaceSpec": "1 finalizers s[]",
    "NamespaceStatus": "1 phase s; 2 conditions NamespaceCondition[]",
    "NamespaceCondition": "1 type s!; 2 status s!; 4 lastTransitionTime Time; 5 reason s; "
    "6 message s",
    "ConfigMap": "1 metadata ObjectMeta; 2 data map; 3 binaryData map:y; 4 immutable b!",
    "Secret": "1 metadata ObjectMeta; 2 data map:y; 3 type s; 4 stringData map; 5 immutable b!",
    "Service": "1 metadata ObjectMeta; 2 spec ServiceSpec; 3 status ServiceStatus",
    "ServiceSpec": "1 ports ServicePort[]; 2 selector map; 3 clusterIP s; 4 type s; "
    "5 externalIPs s[]; 7 sessionAffinity s; 8 loadBalancerIP s; 9 loadBalancerSourceRanges s[]; "
    "10 externalName s; 11 externalTrafficPolicy s; 12 healthCheckNodePort i; "
    "13 publishNotReadyAddresses b; 14 sessionAffinityConfig opaque?; 17 ipFamilyPolicy s!; "
    "18 clusterIPs s[]; 19 ipFamilies s[]; 20 allocateLoadBalancerNodePorts b!; "
    "21 loadBalancerClass s!; 22 internalTrafficPolicy s!; 23 trafficDistribution s!",
    "ServicePort": "1 name s; 2 protocol s; 3 port i!; 4 targetPort IntOrString; 5 nodePort i; "
    "6 appProtocol s!",
    "ServiceStatus": "1 loadBalancer LoadBalancerStatus; 2 conditions Condition[]",
    "LoadBalancerStatus": "1 ingress LoadBalancerIngress[]",
    "LoadBalancerIngress": "1 ip s; 2 hostname s; 3 ipMode s!; 4 ports PortStatus[]",
    "PortStatus": "1 port i!; 2 protocol s!; 3 error s!",
    "Pod": "1 metadata ObjectMeta; 2 spec PodSpec; 3 status PodStatus",
    "PodTemplateSpec": "1 metadata ObjectMeta; 2 spec PodSpec",
    "PodSpec": "1 volumes Volume[]; 2 containers Container[]; 3 restartPolicy s; "
    "4 terminationGracePeriodSeconds i!; 5 activeDeadlineSeconds i!; 6 dnsPolicy s; "
    "7 nodeSelector map; 8 serviceAccountName s; 9 serviceAccount s; 10 nodeName s; "
    "11 hostNetwork b; 12 hostPID b; 13 hostIPC b; 14 securityContext opaque?; "
    "15 imagePullSecrets opaque[]?; 16 hostname s; 17 subdomain s; 18 affinity opaque?; "
    "19 schedulerName s; 20 initContainers Container[]; 21 automountServiceAccountToken b!; "
    "22 tolerations opaque[]?; 23 hostAliases opaque[]?; 24 priorityClassName s; 25 priority i!; "
    "26 dnsConfig opaque?; 27 shareProcessNamespace b!; 28 readinessGates opaque[]?; "
    "29 runtimeClassName s!; 30 enableServiceLinks b!; 31 preemptionPolicy s!; "
    "32 overhead map:Quantity; 33 topologySpreadConstraints opaque[]?; "
    "34 ephemeralContainers opaque[]?; 35 setHostnameAsFQDN b!; 36 os opaque?; 37 hostUsers b!; "
    "38 schedulingGates opaque[]?; 39 resourceClaims opaque[]?; 40 resources opaque?",
    "Container": "1 name s!; 2 image s; 3 command s[]; 4 args s[]; 5 workingDir s; "
    "6 ports ContainerPort[]; 7 env EnvVar[]; 8 resources ResourceRequirements; "
    "9 volumeMounts VolumeMount[]; 10 livenessProbe Probe!; 11 readinessProbe Probe!; "
    "12 lifecycle Lifecycle!; 13 terminationMessagePath s; 14 imagePullPolicy s; "
    "15 securityContext opaque?; 16 stdin b; 17 stdinOnce b; 18 tty b; "
    "19 envFrom EnvFromSource[]; 20 terminationMessagePolicy s; 21 volumeDevices opaque[]?; "
    "22 startupProbe Probe!; 23 resizePolicy opaque[]?; 24 restartPolicy s!; "
    "25 restartPolicyRules opaque[]?",
    "ContainerPort": "1 name s; 2 hostPort i; 3 containerPort i!; 4 protocol s; 5 hostIP s",
    "EnvVar": "1 name s!; 2 value s; 3 valueFrom EnvVarSource!",
    "EnvVarSource": "1 fieldRef ObjectFieldSelector!; 2 resourceFieldRef opaque?; "
    "3 configMapKeyRef ConfigMapKeySelector!; 4 secretKeyRef SecretKeySelector!; "
    "5 fileKeyRef opaque?",
    "ObjectFieldSelector": "1 apiVersion s; 2 fieldPath s!",
    "ConfigMapKeySelector": "1 localObjectReference LocalObjectReference^; 2 key s!; 3 optional b!",
    "SecretKeySelector": "1 localObjectReference LocalObjectReference^; 2 key s!; 3 optional b!",
    "LocalObjectReference": "1 name s",
    "EnvFromSource": "1 prefix s; 2 configMapRef ConfigMapEnvSource!; 3 secretRef SecretEnvSource!",
    "ConfigMapEnvSource": "1 localObjectReference LocalObjectReference^; 2 optional b!",
    "SecretEnvSource": "1 localObjectReference LocalObjectReference^; 2 optional b!",
    "ResourceRequirements": "1 limits map:Quantity; 2 requests map:Quantity; 3 claims opaque[]?",
    "VolumeMount": "1 name s!; 2 readOnly b; 3 mountPath s!; 4 subPath s; "
    "5 mountPropagation s!; 6 subPathExpr s; 7 recursiveReadOnly s!",
    "Probe": "1 handler ProbeHandler^; 2 initialDelaySeconds i; 3 timeoutSeconds i; "
    "4 periodSeconds i; 5 successThreshold i; 6 failureThreshold i; "
    "7 terminationGracePeriodSeconds i!",
    "ProbeHandler": "1 exec ExecAction!; 2 httpGet HTTPGetAction!; 3 tcpSocket TCPSocketAction!; "
    "4 grpc opaque?",
    "ExecAction": "1 command s[]",
    "HTTPGetAction": "1 path s; 2 port IntOrString; 3 host s; 4 scheme s; "
    "5 httpHeaders HTTPHeader[]",
    "HTTPHeader": "1 name s!; 2 value s!",
    "TCPSocketAction": "1 port IntOrString; 2 host s",
    "Lifecycle": "1 postStart LifecycleHandler!; 2 preStop LifecycleHandler!; 3 stopSignal s!",
    "LifecycleHandler": "1 exec ExecAction!; 2 httpGet HTTPGetAction!; "
    "3 tcpSocket TCPSocketAction!; 4 sleep SleepAction!",
    "SleepAction": "1 seconds i!",
    "Volume": "1 name s!; 2 volumeSource VolumeSource^",
    "VolumeSource": "1 hostPath opaque?; 2 emptyDir EmptyDirVolumeSource!; "
    "3 gcePersistentDisk opaque?; 4 awsElasticBlockStore opaque?; 5 gitRepo opaque?; "
    "6 secret SecretVolumeSource!; 7 nfs opaque?; 8 iscsi opaque?; 9 glusterfs opaque?; "
    "10 persistentVolumeClaim opaque?; 11 rbd opaque?; 12 flexVolume opaque?; 13 cinder opaque?; "
    "14 cephfs opaque?; 15 flocker opaque?; 16 downwardAPI opaque?; 17 fc opaque?; "
    "18 azureFile opaque?; 19 configMap ConfigMapVolumeSource!; 20 vsphereVolume opaque?; "
    "21 quobyte opaque?; 22 azureDisk opaque?; 23 photonPersistentDisk opaque?; "
    "24 portworxVolume opaque?; 25 scaleIO opaque?; 26 projected opaque?; 27 storageos opaque?; "
    "28 csi opaque?; 29 ephemeral opaque?; 30 image opaque?",
    "EmptyDirVolumeSource": "1 medium s; 2 sizeLimit Quantity!",
    "SecretVolumeSource": "1 secretName s; 2 items KeyToPath[]; 3 defaultMode i!; 4 optional b!",
    "ConfigMapVolumeSource": "1 localObjectReference LocalObjectReference^; 2 items KeyToPath[]; "
    "3 defaultMode i!; 4 optional b!",
    "KeyToPath": "1 key s!; 2 path s!; 3 mode i!",
    "PodStatus": "1 phase s; 2 conditions PodCondition[]; 3 message s; 4 reason s; 5 hostIP s; "
    "6 podIP s; 7 startTime Time!; 8 containerStatuses ContainerStatus[]; 9 qosClass s; "
    "10 initContainerStatuses ContainerStatus[]; 11 nominatedNodeName s; 12 podIPs PodIP[]; "
    "13 ephemeralContainerStatuses opaque[]?; 14 resize s; 15 resourceClaimStatuses opaque[]?; "
    "16 hostIPs PodIP[]; 17 observedGeneration i",
    "PodCondition": "1 type s!; 2 status s!; 3 lastProbeTime Time; 4 lastTransitionTime Time; "
    "5 reason s; 6 message s; 7 observedGeneration i",
    "PodIP": "1 ip s!",
    "ContainerStatus": "1 name s!; 2 state ContainerState; 3 lastState ContainerState; "
    "4 ready b!; 5 restartCount i!; 6 image s!; 7 imageID s!; 8 containerID s; 9 started b!",
    "ContainerState": "1 waiting ContainerStateWaiting!; 2 running ContainerStateRunning!; "
    "3 terminated ContainerStateTerminated!",
    "ContainerStateWaiting": "1 reason s; 2 message s",
    "ContainerStateRunning": "1 startedAt Time",
    "ContainerStateTerminated": "1 exitCode i!; 2 signal i; 3 reason s; 4 message s; "
    "5 startedAt Time; 6 finishedAt Time; 7 containerID s",
    "Event": "1 metadata ObjectMeta; 2 involvedObject ObjectReference; 3 reason s; 4 message s; "
    "5 source EventSource; 6 firstTimestamp Time; 7 lastTimestamp Time; 8 count i; 9 type s; "
    "10 eventTime MicroTime!; 11 series opaque?; 12 action s; 13 related ObjectReference!; "
    "14 reportingComponent s; 15 reportingInstance s",
    "EventSource": "1 component s; 2 host s",
    "ObjectReference": "1 kind s; 2 namespace s; 3 name s; 4 uid s; 5 apiVersion s; "
    "6 resourceVersion s; 7 fieldPath s",
    # k8s.io/api/apps/v1
    "Deployment": "1 metadata ObjectMeta; 2 spec DeploymentSpec; 3 status DeploymentStatus",
    "DeploymentSpec": "1 replicas i!; 2 selector LabelSelector!; 3 template PodTemplateSpec; "
    "4 strategy DeploymentStrategy; 5 minReadySeconds i; 6 revisionHistoryLimit i!; 7 paused b; "
    "9 progressDeadlineSeconds i!",
    "DeploymentStrategy": "1 type s; 2 rollingUpdate RollingUpdateDeployment!",
    "RollingUpdateDeployment": "1 maxUnavailable IntOrString!; 2 maxSurge IntOrString!",
    "DeploymentStatus": "1 observedGeneration i; 2 replicas i; 3 updatedReplicas i; "
    "4 availableReplicas i; 5 unavailableReplicas i; 6 conditions DeploymentCondition[]; "
    "7 readyReplicas i; 8 collisionCount i!; 9 terminatingReplicas i!",
    "DeploymentCondition": "1 type s!; 2 status s!; 4 reason s; 5 message s; "
    "6 lastUpdateTime Time; 7 lastTransitionTime Time",
    "ReplicaSet": "1 metadata ObjectMeta; 2 spec ReplicaSetSpec; 3 status ReplicaSetStatus",
    "ReplicaSetSpec": "1 replicas i!; 2 selector LabelSelector!; 3 template PodTemplateSpec; "
    "4 minReadySeconds i",
    "ReplicaSetStatus": "1 replicas i!; 2 fullyLabeledReplicas i; 3 observedGeneration i; "
    "4 readyReplicas i; 5 availableReplicas i; 6 conditions ReplicaSetCondition[]; "
    "7 terminatingReplicas i!",
    "ReplicaSetCondition": "1 type s!; 2 status s!; 3 lastTransitionTime Time; 4 reason s; "
    "5 message s",
    # k8s.io/api/discovery/v1
    "EndpointSlice": "1 metadata ObjectMeta; 2 endpoints Endpoint[]; 3 ports EndpointPort[]; "
    "4 addressType s!",
    "Endpoint": "1 addresses s[]; 2 conditions EndpointConditions; 3 hostname s!; "
    "4 targetRef ObjectReference!; 5 deprecatedTopology map; 6 nodeName s!; 7 zone s!; "
    "8 hints opaque?",
    "EndpointConditions": "1 ready b!; 2 serving b!; 3 terminating b!",
    "EndpointPort": "1 name s!; 2 protocol s!; 3 port i!; 4 appProtocol s!",
    # k8s.io/api/autoscaling/v1
    "Scale": "1 metadata ObjectMeta; 2 spec ScaleSpec; 3 status ScaleStatus",
    "ScaleSpec": "1 replicas i",
    "ScaleStatus": "1 replicas i!; 2 selector s",
}

# (group, kind) -> top-level message; the group of a kind decides which message reads it.
_KINDS: dict[tuple[str, str], str] = {
    ("", "Namespace"): "Namespace",
    ("", "ConfigMap"): "ConfigMap",
    ("", "Secret"): "Secret",
    ("", "Service"): "Service",
    ("", "Pod"): "Pod",
    ("", "Event"): "Event",
    ("apps", "Deployment"): "Deployment",
    ("apps", "ReplicaSet"): "ReplicaSet",
    ("discovery.k8s.io", "EndpointSlice"): "EndpointSlice",
    ("autoscaling", "Scale"): "Scale",
    ("meta.k8s.io", "DeleteOptions"): "DeleteOptions",
    ("", "DeleteOptions"): "DeleteOptions",
}


def _parse_schema(source: Mapping[str, str]) -> dict[str, dict[int, Field]]:
    schema: dict[str, dict[int, Field]] = {}
    for message, text in source.items():
        fields: dict[int, Field] = {}
        for item in text.split(";"):
            number, name, spec = item.split()
            flags = ""
            while spec[-1] in "!^?]":
                if spec.endswith("[]"):
                    flags += "[]"
                    spec = spec[:-2]
                else:
                    flags += spec[-1]
                    spec = spec[:-1]
            fields[int(number)] = Field(
                name=name,
                type=spec,
                repeated="[]" in flags,
                keep_zero="!" in flags,
                inline="^" in flags,
            )
        schema[message] = fields
    for message, fields in schema.items():  # every referenced message is defined
        for fld in fields.values():
            base = fld.type.removeprefix("map:")
            if base not in _SCALARS | _SPECIAL | {"map"} and base not in schema:
                raise AssertionError(f"{message}.{fld.name}: unknown message {base}")
    return schema


SCHEMA: dict[str, dict[int, Field]] = _parse_schema(_SOURCE)


def message_for(api_version: str, kind: str) -> str | None:
    """The schema message that reads objects of ``apiVersion``/``kind``, or None."""
    group = api_version.rpartition("/")[0]
    return _KINDS.get((group, kind))


# -- the wire ---------------------------------------------------------------------------------


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data):
            raise ProtobufError("truncated varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift >= 70:
            raise ProtobufError("varint longer than 10 bytes")


def _fields(data: bytes) -> list[tuple[int, int, int | bytes]]:
    """(number, wire type, value) for every field of one message, in order."""
    out: list[tuple[int, int, int | bytes]] = []
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise ProtobufError("field number 0")
        value: int | bytes
        if wire == _VARINT:
            value, pos = _varint(data, pos)
        elif wire == _LEN:
            size, pos = _varint(data, pos)
            if pos + size > len(data):
                raise ProtobufError(f"field {number}: length {size} runs past the end")
            value, pos = data[pos : pos + size], pos + size
        elif wire == _I64:
            value, pos = int.from_bytes(data[pos : pos + 8], "little"), pos + 8
        elif wire == _I32:
            value, pos = int.from_bytes(data[pos : pos + 4], "little"), pos + 4
        else:
            raise ProtobufError(f"field {number}: unsupported wire type {wire}")
        if pos > len(data):
            raise ProtobufError(f"field {number}: truncated")
        out.append((number, wire, value))
    return out


def _signed(value: int) -> int:
    """A varint as Go's int32/int64 writes it (negatives are 10-byte two's complement)."""
    return value - (1 << 64) if value >= 1 << 63 else value


# -- decoding ---------------------------------------------------------------------------------


def decode(body: bytes) -> dict[str, Any]:
    """The JSON form of a protobuf-encoded object (``k8s\\x00`` + ``runtime.Unknown``).

    Raises :class:`ProtobufError` for anything that is not such an object of a kind in
    :data:`SCHEMA`.
    """
    if not body.startswith(MAGIC):
        raise ProtobufError("the body does not start with the Kubernetes protobuf magic k8s\\0")
    envelope = _fields(body[len(MAGIC) :])
    api_version = kind = ""
    raw = b""
    for number, wire, value in envelope:
        if number == 1 and isinstance(value, bytes):
            for sub, _, text in _fields(value):
                if isinstance(text, bytes) and sub in (1, 2):
                    decoded = _text(text, "typeMeta")
                    api_version, kind = (decoded, kind) if sub == 1 else (api_version, decoded)
        elif number == 2 and isinstance(value, bytes):
            raw = value
        elif number in (3, 4) and isinstance(value, bytes) and value:
            what = "contentEncoding" if number == 3 else "contentType"
            raise ProtobufError(f"runtime.Unknown {what} {_text(value, what)!r} is not supported")
        elif wire != _LEN:
            raise ProtobufError(f"runtime.Unknown field {number} has the wrong wire type")
    if not kind or not api_version:
        raise ProtobufError("the protobuf envelope names no apiVersion and kind")
    message = message_for(api_version, kind)
    if message is None:
        raise ProtobufError(f"shoal does not read {api_version} {kind} as protobuf")
    obj = _message(raw, message, 0)
    return {"apiVersion": api_version, "kind": kind, **obj}


def _text(value: bytes, where: str) -> str:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        raise ProtobufError(f"{where}: a string field is not UTF-8") from None


def _message(data: bytes, message: str, depth: int) -> dict[str, Any]:
    if depth > _MAX_DEPTH:
        raise ProtobufError("messages nested too deeply")
    schema = SCHEMA[message]
    out: dict[str, Any] = {}
    for number, _wire, value in _fields(data):
        fld = schema.get(number)
        if fld is None:
            if value in (0, b""):
                continue  # a newer client's non-pointer field, written as its zero
            raise ProtobufError(
                f"field {number} of {message} is not known to shoal; send the object as JSON"
            )
        where = f"{message}.{fld.name}"
        if fld.type.startswith("map"):
            if not isinstance(value, bytes):
                raise ProtobufError(f"{where}: a map entry must be length-delimited")
            key, item = _map_entry(value, fld.type, where, depth)
            out.setdefault(fld.name, {})[key] = item
            continue
        if fld.repeated and fld.type in ("i", "b") and isinstance(value, bytes):
            for packed in _packed(value, where):  # a packed repeated varint
                out.setdefault(fld.name, []).append(_scalar(packed, fld.type, where))
            continue
        decoded = _value(value, fld, where, depth)
        if fld.repeated:
            out.setdefault(fld.name, []).append(decoded)
        elif fld.inline:
            if not isinstance(decoded, dict):
                raise ProtobufError(f"{where}: an inline field must be a message")
            out.update(decoded)
        elif decoded is _ABSENT or (_is_zero(decoded, fld) and not fld.keep_zero):
            out.pop(fld.name, None)
        else:
            out[fld.name] = decoded
    return out


class _Absent:
    """A value JSON would not write (a zero time)."""


_ABSENT: Any = _Absent()


def _is_zero(value: Any, fld: Field) -> bool:
    if isinstance(value, dict):
        # Go writes a pointer sub-message only when it is set, so one marked ``!`` that is
        # present but empty is an explicit ``{}`` (``emptyDir: {}``); a non-pointer struct
        # (spec, status, resources) is always written and means nothing when empty.
        return not value and fld.type != "opaque"
    return value in ("", 0, False)


def _packed(value: bytes, where: str) -> list[int]:
    items: list[int] = []
    pos = 0
    while pos < len(value):
        item, pos = _varint(value, pos)
        items.append(item)
    return items


def _scalar(value: int | bytes, type_: str, where: str) -> Any:
    if type_ == "s":
        if not isinstance(value, bytes):
            raise ProtobufError(f"{where}: a string must be length-delimited")
        return _text(value, where)
    if type_ == "y":
        if not isinstance(value, bytes):
            raise ProtobufError(f"{where}: bytes must be length-delimited")
        return base64.b64encode(value).decode("ascii")
    if not isinstance(value, int):
        raise ProtobufError(f"{where}: a number must be a varint")
    if type_ == "b":
        return value != 0
    return _signed(value)


def _value(value: int | bytes, fld: Field, where: str, depth: int) -> Any:
    if fld.type in _SCALARS:
        return _scalar(value, fld.type, where)
    if not isinstance(value, bytes):
        raise ProtobufError(f"{where}: a message must be length-delimited")
    if fld.type == "Time":
        return _time(value, where, micro=False)
    if fld.type == "MicroTime":
        return _time(value, where, micro=True)
    if fld.type == "IntOrString":
        return _int_or_string(value, where)
    if fld.type == "Quantity":
        return _quantity(value, where)
    if fld.type == "FieldsV1":
        return _fields_v1(value, where)
    if fld.type == "opaque":
        _fields(value)  # well-formed, content unread: shoal refuses the field by name
        return {}
    return _message(value, fld.type, depth + 1)


def _map_entry(value: bytes, type_: str, where: str, depth: int) -> tuple[str, Any]:
    key = ""
    item: Any = {"map": "", "map:y": "", "map:Quantity": "0"}[type_]
    for number, _, part in _fields(value):
        if number == 1:
            key = _scalar(part, "s", where)
        elif number == 2:
            if type_ == "map":
                item = _scalar(part, "s", where)
            elif type_ == "map:y":
                item = _scalar(part, "y", where)
            else:
                if not isinstance(part, bytes):
                    raise ProtobufError(f"{where}: a quantity must be a message")
                item = _quantity(part, where)
    return key, item


def _time(value: bytes, where: str, *, micro: bool) -> Any:
    seconds = nanos = 0
    for number, _, part in _fields(value):
        if not isinstance(part, int):
            raise ProtobufError(f"{where}: a time's fields are varints")
        if number == 1:
            seconds = _signed(part)
        elif number == 2:
            nanos = _signed(part)
    if seconds == 0 and nanos == 0:
        return _ABSENT  # Go's zero time, written as null
    try:
        moment = dt.datetime.fromtimestamp(seconds, dt.UTC)
    except (OverflowError, OSError, ValueError):
        raise ProtobufError(f"{where}: time {seconds} is out of range") from None
    if micro:
        return moment.strftime("%Y-%m-%dT%H:%M:%S") + f".{nanos // 1000:06d}Z"
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _int_or_string(value: bytes, where: str) -> Any:
    kind = int_val = 0
    str_val = ""
    for number, _, part in _fields(value):
        if number == 1 and isinstance(part, int):
            kind = part
        elif number == 2 and isinstance(part, int):
            int_val = _signed(part)
        elif number == 3 and isinstance(part, bytes):
            str_val = _text(part, where)
        else:
            raise ProtobufError(f"{where}: malformed IntOrString")
    if kind == 1:
        return str_val
    if kind != 0:
        raise ProtobufError(f"{where}: IntOrString type {kind} is neither 0 (int) nor 1 (string)")
    return int_val


def _quantity(value: bytes, where: str) -> str:
    text = ""
    for number, _, part in _fields(value):
        if number == 1 and isinstance(part, bytes):
            text = _text(part, where)
    return text


def _fields_v1(value: bytes, where: str) -> Any:
    for number, _, part in _fields(value):
        if number == 1 and isinstance(part, bytes):
            try:
                return json.loads(part)
            except ValueError:
                raise ProtobufError(f"{where}: fieldsV1 is not JSON") from None
    return {}


# -- encoding (tests and tools; the server answers JSON) ----------------------------------------


def _put_varint(value: int) -> bytes:
    if value < 0:
        value += 1 << 64
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _tag(number: int, wire: int) -> bytes:
    return _put_varint(number << 3 | wire)


def _len_field(number: int, payload: bytes) -> bytes:
    return _tag(number, _LEN) + _put_varint(len(payload)) + payload


def encode(obj: Mapping[str, Any]) -> bytes:
    """The protobuf form of a JSON object of a kind in :data:`SCHEMA` (the inverse of
    :func:`decode` for the fields it names). Unknown JSON fields raise :class:`ProtobufError`."""
    api_version = str(obj.get("apiVersion", ""))
    kind = str(obj.get("kind", ""))
    message = message_for(api_version, kind)
    if message is None:
        raise ProtobufError(f"shoal does not encode {api_version} {kind} as protobuf")
    body = {k: v for k, v in obj.items() if k not in ("apiVersion", "kind")}
    type_meta = _len_field(1, api_version.encode()) + _len_field(2, kind.encode())
    envelope = (
        _len_field(1, type_meta)
        + _len_field(2, _encode_message(body, message))
        + _len_field(3, b"")
        + _len_field(4, b"")
    )
    return MAGIC + envelope


def _encode_message(obj: Mapping[str, Any], message: str) -> bytes:
    schema = SCHEMA[message]
    out = bytearray()
    used: set[str] = set()
    for number, fld in sorted(schema.items()):
        if fld.inline:
            inner_fields = SCHEMA[fld.type]
            inner = {f.name: obj[f.name] for f in inner_fields.values() if f.name in obj}
            used.update(inner)
            out += _len_field(number, _encode_message(inner, fld.type))
            continue
        if fld.name not in obj:
            continue
        used.add(fld.name)
        value = obj[fld.name]
        if fld.type.startswith("map"):
            for key, item in value.items():
                entry = _len_field(1, str(key).encode()) + _encode_map_value(item, fld.type)
                out += _len_field(number, entry)
        elif fld.repeated:
            for item in value:
                out += _encode_value(number, item, fld)
        else:
            out += _encode_value(number, value, fld)
    unknown = set(obj) - used
    if unknown:
        raise ProtobufError(f"{message} has no field {sorted(unknown)[0]!r}")
    return bytes(out)


def _encode_map_value(item: Any, type_: str) -> bytes:
    if type_ == "map":
        return _len_field(2, str(item).encode())
    if type_ == "map:y":
        return _len_field(2, base64.b64decode(item))
    return _len_field(2, _len_field(1, str(item).encode()))


def _encode_value(number: int, value: Any, fld: Field) -> bytes:
    t = fld.type
    if t == "s":
        return _len_field(number, str(value).encode())
    if t == "y":
        return _len_field(number, base64.b64decode(value))
    if t in ("i", "b"):
        return _tag(number, _VARINT) + _put_varint(int(value))
    if t in ("Time", "MicroTime"):
        moment = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        seconds = int(moment.timestamp())
        payload = _tag(1, _VARINT) + _put_varint(seconds)
        if moment.microsecond:
            payload += _tag(2, _VARINT) + _put_varint(moment.microsecond * 1000)
        return _len_field(number, payload)
    if t == "IntOrString":
        if isinstance(value, str):
            payload = _tag(1, _VARINT) + b"\x01" + _len_field(3, value.encode())
        else:
            payload = _tag(1, _VARINT) + b"\x00" + _tag(2, _VARINT) + _put_varint(int(value))
        return _len_field(number, payload)
    if t == "Quantity":
        return _len_field(number, _len_field(1, str(value).encode()))
    if t == "FieldsV1":
        return _len_field(number, _len_field(1, json.dumps(value).encode()))
    if t == "opaque":
        return _len_field(number, b"")
    return _len_field(number, _encode_message(value, t))
