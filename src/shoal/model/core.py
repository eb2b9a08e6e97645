"""The Kubernetes-compatible core kinds: Pod, Deployment, Service, ConfigMap, Secret, Namespace, Event.

Field names and meanings are Kubernetes' own, so a user's manifest for these kinds works unchanged
where its fields are supported. A Kubernetes field that shoal does not implement is listed in the
type's ``k8s_unsupported`` and refused by name; defaults are the ones the Kubernetes API server fills
in, so a loaded object reads like ``kubectl get -o yaml`` would show it.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterator
from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field

from shoal.model import _syntax
from shoal.model._base import Check, ShoalModel, Time, field_name
from shoal.model._paths import Key
from shoal.model.meta import (
    KindInfo,
    KubeObject,
    LabelSelector,
    ObjectMeta,
    ObjectReference,
    PrinterColumn,
)
from shoal.model.quantity import Quantity

__all__ = [
    "ConfigMap",
    "Container",
    "ContainerPort",
    "Deployment",
    "DeploymentSpec",
    "DeploymentStrategy",
    "EnvVar",
    "Event",
    "Namespace",
    "Pod",
    "PodSpec",
    "PodTemplateSpec",
    "Probe",
    "Secret",
    "Service",
    "ServicePort",
    "ServiceSpec",
    "Volume",
]


IntOrString = int | str
"""A port number or a port name; a count or a percentage (``25%``). YAML decides which."""
Port = Annotated[int, Field(ge=1, le=65535)]

_PERCENT = re.compile(r"(0|[1-9][0-9]*)%")


def _check_port_ref(value: int | str, path: tuple[str, ...]) -> Iterator[Check]:
    """A port given by number (1-65535) or by the name of a container port."""
    if isinstance(value, int):
        if not 1 <= value <= 65535:
            yield path, f"Invalid value: {value}: must be between 1 and 65535, inclusive"
    else:
        for message in _syntax.port_name(value):
            yield path, f"Invalid value: {value!r}: {message}"


# --------------------------------------------------------------------------------------------------
# Containers


class ContainerPort(ShoalModel):
    """A port a container listens on."""

    container_port: Port
    name: str | None = None
    """An IANA service name; probes and Services may refer to the port by it."""
    protocol: Literal["TCP", "UDP", "SCTP"] = "TCP"

    k8s_unsupported: ClassVar[frozenset[str]] = frozenset({"hostPort", "hostIP"})

    def _checks(self) -> Iterator[Check]:
        if self.name is not None:
            for message in _syntax.port_name(self.name):
                yield ("name",), f"Invalid value: {self.name!r}: {message}"


class KeySelector(ShoalModel):
    """A key of a ConfigMap or Secret."""

    name: str
    key: str
    optional: bool | None = None


class ObjectFieldSelector(ShoalModel):
    """A field of the pod itself (``metadata.name``, ``status.podIP``...)."""

    field_path: str
    api_version: str | None = None

    SUPPORTED: ClassVar[frozenset[str]] = frozenset(
        {
            "metadata.name",
            "metadata.namespace",
            "metadata.uid",
            "spec.nodeName",
            "spec.serviceAccountName",
            "status.hostIP",
            "status.podIP",
            "status.podIPs",
        }
    )

    def _checks(self) -> Iterator[Check]:
        if self.field_path in self.SUPPORTED:
            return
        if re.fullmatch(r"metadata\.(labels|annotations)\['[^']+'\]", self.field_path):
            return
        supported = ", ".join(f'"{p}"' for p in sorted(self.SUPPORTED))
        yield (
            ("fieldPath",),
            f'Unsupported value: "{self.field_path}": supported values: {supported}',
        )


class EnvVarSource(ShoalModel):
    """Where an environment variable's value comes from; exactly one field is set."""

    config_map_key_ref: KeySelector | None = None
    secret_key_ref: KeySelector | None = None
    field_ref: ObjectFieldSelector | None = None

    k8s_unsupported: ClassVar[frozenset[str]] = frozenset({"resourceFieldRef", "fileKeyRef"})

    def _checks(self) -> Iterator[Check]:
        sources = [n for n in ("configMapKeyRef", "secretKeyRef", "fieldRef") if _is_set(self, n)]
        if len(sources) != 1:
            yield (), "must specify exactly one of: `configMapKeyRef`, `secretKeyRef` or `fieldRef`"


class EnvVar(ShoalModel):
    """An environment variable of a container: a literal ``value`` or a ``valueFrom`` source."""

    name: str
    value: str | None = None
    value_from: EnvVarSource | None = None

    def _checks(self) -> Iterator[Check]:
        for message in _syntax.env_var_name(self.name):
            yield ("name",), f"Invalid value: {self.name!r}: {message}"
        if self.value is not None and self.value_from is not None:
            yield ("valueFrom",), "may not be specified when `value` is not empty"


class LocalObjectReference(ShoalModel):
    name: str
    optional: bool | None = None


class EnvFromSource(ShoalModel):
    """All keys of a ConfigMap or Secret as environment variables."""

    prefix: str | None = None
    config_map_ref: LocalObjectReference | None = None
    secret_ref: LocalObjectReference | None = None

    def _checks(self) -> Iterator[Check]:
        if (self.config_map_ref is None) == (self.secret_ref is None):
            yield (), "must specify exactly one of: `configMapRef` or `secretRef`"


class ResourceRequirements(ShoalModel):
    """Resources a container asks for and may not exceed (``cpu: 500m``, ``memory: 1Gi``)."""

    requests: dict[str, Quantity] | None = None
    limits: dict[str, Quantity] | None = None

    k8s_unsupported: ClassVar[frozenset[str]] = frozenset({"claims"})

    def _checks(self) -> Iterator[Check]:
        for kind in ("requests", "limits"):
            for resource, quantity in (getattr(self, kind) or {}).items():
                if quantity.value < 0:
                    yield (kind, Key(resource)), f"Invalid value: {quantity.text!r}: must be >= 0"
        requests, limits = self.requests or {}, self.limits or {}
        for resource, request in requests.items():
            if resource in limits and request.value > limits[resource].value:
                yield (
                    ("requests", Key(resource)),
                    f"Invalid value: {request.text!r}: must be less than or equal to "
                    f"{resource} limit of {limits[resource].text}",
                )


class HTTPHeader(ShoalModel):
    name: str
    value: str


class HTTPGetAction(ShoalModel):
    """An HTTP GET against the pod: success is a status in 200-399."""

    port: IntOrString
    path: str | None = None
    host: str | None = None
    """Defaults to the pod's IP."""
    scheme: Literal["HTTP", "HTTPS"] = "HTTP"
    http_headers: list[HTTPHeader] | None = None

    def _checks(self) -> Iterator[Check]:
        yield from _check_port_ref(self.port, ("port",))
        if self.path is not None and not self.path.startswith("/"):
            yield ("path",), f"Invalid value: {self.path!r}: must start with '/'"


class TCPSocketAction(ShoalModel):
    """A TCP connection to the pod: success is an accepted connection."""

    port: IntOrString
    host: str | None = None

    def _checks(self) -> Iterator[Check]:
        yield from _check_port_ref(self.port, ("port",))


class ExecAction(ShoalModel):
    """A command run in the container: success is exit status 0."""

    command: list[str] = Field(min_length=1)


class Probe(ShoalModel):
    """A periodic check of a container (startup, readiness or liveness)."""

    exec: ExecAction | None = None
    http_get: HTTPGetAction | None = None
    tcp_socket: TCPSocketAction | None = None
    initial_delay_seconds: int = Field(default=0, ge=0)
    timeout_seconds: int = Field(default=1, ge=1)
    period_seconds: int = Field(default=10, ge=1)
    success_threshold: int = Field(default=1, ge=1)
    failure_threshold: int = Field(default=3, ge=1)
    termination_grace_period_seconds: int | None = Field(default=None, ge=1)

    k8s_unsupported: ClassVar[frozenset[str]] = frozenset({"grpc"})

    def _checks(self) -> Iterator[Check]:
        handlers = [n for n in ("exec", "httpGet", "tcpSocket") if _is_set(self, n)]
        if not handlers:
            yield (), "must specify a handler type: one of `exec`, `httpGet` or `tcpSocket`"
        elif len(handlers) > 1:
            yield (handlers[1],), "may not specify more than 1 handler type"


class SleepAction(ShoalModel):
    seconds: int = Field(ge=0)


class LifecycleHandler(ShoalModel):
    """An action run at a point of a container's life."""

    exec: ExecAction | None = None
    http_get: HTTPGetAction | None = None
    tcp_socket: TCPSocketAction | None = None
    sleep: SleepAction | None = None

    def _checks(self) -> Iterator[Check]:
        handlers = [n for n in ("exec", "httpGet", "tcpSocket", "sleep") if _is_set(self, n)]
        if len(handlers) != 1:
            yield (
                (),
                "must specify exactly one handler type: `exec`, `httpGet`, `tcpSocket` or `sleep`",
            )


class Lifecycle(ShoalModel):
    """Hooks around a container's life; shoal runs ``preStop`` before it sends SIGTERM."""

    pre_stop: LifecycleHandler | None = None

    k8s_unsupported: ClassVar[frozenset[str]] = frozenset({"postStart", "stopSignal"})


class VolumeMount(ShoalModel):
    """Where a pod volume appears inside a container."""

    name: str
    mount_path: str
    read_only: bool | None = None
    sub_path: str | None = None

    k8s_unsupported: ClassVar[frozenset[str]] = frozenset(
        {"mountPropagation", "subPathExpr", "recursiveReadOnly"}
    )

    def _checks(self) -> Iterator[Check]:
        if not self.mount_path:
            yield ("mountPath",), "Required value"
        if self.sub_path is not None and (
            self.sub_path.startswith("/") or ".." in self.sub_path.split("/")
        ):
            yield (
                ("subPath",),
                f"Invalid value: {self.sub_path!r}: must be a relative path without '..'",
            )


class Container(ShoalModel):
    """One process of a pod. shoal runs ``command`` + ``args`` locally; ``image`` is for Kubernetes."""

    name: str
    image: str | None = None
    """The container image; required on Kubernetes. On one machine the command runs directly."""
    command: list[str] | None = None
    args: list[str] | None = None
    working_dir: str | None = None
    ports: list[ContainerPort] | None = None
    env_from: list[EnvFromSource] | None = None
    env: list[EnvVar] | None = None
    resources: ResourceRequirements | None = None
    volume_mounts: list[VolumeMount] | None = None
    liveness_probe: Probe | None = None
    readiness_probe: Probe | None = None
    startup_probe: Probe | None = None
    lifecycle: Lifecycle | None = None
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] | None = None
    """Passed through to Kubernetes; meaningless on one machine, where nothing is pulled."""

    k8s_unsupported: ClassVar[frozenset[str]] = frozenset(
        {
            "securityContext",
            "stdin",
            "stdinOnce",
            "tty",
            "terminationMessagePath",
            "terminationMessagePolicy",
            "resizePolicy",
            "restartPolicy",
            "restartPolicyRules",
            "volumeDevices",
        }
    )

    def _checks(self) -> Iterator[Check]:
        for message in _syntax.dns1123_label(self.name):
            yield ("name",), f"Invalid value: {self.name!r}: {message}"
        if not self.image and not self.command:
            yield ("image",), "Required value: a container needs an `image` or a `command`"
        seen_names: dict[str, int] = {}
        seen_ports: dict[tuple[int, str], int] = {}
        for index, port in enumerate(self.ports or ()):
            if port.name is not None:
                if port.name in seen_names:
                    yield ("ports", index, "name"), f"Duplicate value: {port.name!r}"
                seen_names[port.name] = index
            key = (port.container_port, port.protocol)
            if key in seen_ports:
                yield (
                    ("ports", index, "containerPort"),
                    f"Duplicate value: {port.container_port}/{port.protocol}",
                )
            seen_ports[key] = index
        for probe_name in ("livenessProbe", "startupProbe"):
            probe = getattr(self, field_name(probe_name))
            if probe is not None and probe.success_threshold != 1:
                yield (probe_name, "successThreshold"), "must be 1"
        mount_paths: set[str] = set()
        for index, mount in enumerate(self.volume_mounts or ()):
            if mount.mount_path in mount_paths:
                yield ("volumeMounts", index, "mountPath"), "must be unique"
            mount_paths.add(mount.mount_path)

    def port_number(self, ref: int | str) -> int | None:
        """The number of a port given by number or by name (``None`` if no port has that name)."""
        if isinstance(ref, int):
            return ref
        for port in self.ports or ():
            if port.name == ref:
                return port.container_port
        return None


# --------------------------------------------------------------------------------------------------
# Volumes


class KeyToPath(ShoalModel):
    key: str
    path: str
    mode: int | None = Field(default=None, ge=0, le=0o777)


class EmptyDirVolumeSource(ShoalModel):
    """A fresh directory for the pod's life, shared by its containers."""

    medium: Literal["", "Memory"] | None = None
    size_limit: Quantity | None = None


class ConfigMapVolumeSource(ShoalModel):
    """The keys of a ConfigMap as files."""

    name: str
    items: list[KeyToPath] | None = None
    default_mode: int | None = Field(default=None, ge=0, le=0o777)
    optional: bool | None = None


class SecretVolumeSource(ShoalModel):
    """The keys of a Secret as files."""

    secret_name: str
    items: list[KeyToPath] | None = None
    default_mode: int | None = Field(default=None, ge=0, le=0o777)
    optional: bool | None = None


class Volume(ShoalModel):
    """A directory the pod's containers can mount: exactly one source is set."""

    name: str
    empty_dir: EmptyDirVolumeSource | None = None
    config_map: ConfigMapVolumeSource | None = None
    secret: SecretVolumeSource | None = None

    k8s_unsupported: ClassVar[frozenset[str]] = frozenset(
        {
            "hostPath",
            "persistentVolumeClaim",
            "projected",
            "downwardAPI",
            "nfs",
            "csi",
            "ephemeral",
            "image",
            "gitRepo",
            "iscsi",
            "awsElasticBlockStore",
            "gcePersistentDisk",
            "azureDisk",
            "azureFile",
        }
    )

    def _checks(self) -> Iterator[Check]:
        for message in _syntax.dns1123_label(self.name):
            yield ("name",), f"Invalid value: {self.name!r}: {message}"
        sources = [n for n in ("emptyDir", "configMap", "secret") if _is_set(self, n)]
        if not sources:
            yield (), "must specify a volume type: one of `emptyDir`, `configMap` or `secret`"
        elif len(sources) > 1:
            yield (sources[1],), "may not specify more than 1 volume type"


# --------------------------------------------------------------------------------------------------
# Pods


class PodSpec(ShoalModel):
    """What runs in a pod: its containers, the volumes they share, and how it restarts and stops."""

    containers: list[Container] = Field(min_length=1)
    volumes: list[Volume] | None = None
    restart_policy: Literal["Always", "OnFailure", "Never"] = "Always"
    termination_grace_period_seconds: int = Field(default=30, ge=0)
    """Seconds between SIGTERM and SIGKILL when the pod stops."""
    node_name: str | None = None
    """The node the pod runs on; set by the node that claims it (empty: not yet claimed)."""

    k8s_unsupported: ClassVar[frozenset[str]] = frozenset(
        {
            "initContainers",
            "ephemeralContainers",
            "activeDeadlineSeconds",
            "affinity",
            "automountServiceAccountToken",
            "dnsConfig",
            "dnsPolicy",
            "enableServiceLinks",
            "hostAliases",
            "hostIPC",
            "hostNetwork",
            "hostPID",
            "hostUsers",
            "hostname",
            "imagePullSecrets",
            "nodeSelector",
            "os",
            "overhead",
            "preemptionPolicy",
            "priority",
            "priorityClassName",
            "readinessGates",
            "resourceClaims",
            "resources",
            "runtimeClassName",
            "schedulerName",
            "schedulingGates",
            "securityContext",
            "serviceAccount",
            "serviceAccountName",
            "setHostnameAsFQDN",
            "shareProcessNamespace",
            "subdomain",
            "tolerations",
            "topologySpreadConstraints",
        }
    )

    def _checks(self) -> Iterator[Check]:
        names: set[str] = set()
        for index, container in enumerate(self.containers):
            if container.name in names:
                yield ("containers", index, "name"), f"Duplicate value: {container.name!r}"
            names.add(container.name)
        volumes: set[str] = set()
        for index, volume in enumerate(self.volumes or ()):
            if volume.name in volumes:
                yield ("volumes", index, "name"), f"Duplicate value: {volume.name!r}"
            volumes.add(volume.name)
        for c_index, container in enumerate(self.containers):
            for m_index, mount in enumerate(container.volume_mounts or ()):
                if mount.name not in volumes:
                    yield (
                        ("containers", c_index, "volumeMounts", m_index, "name"),
                        f"Not found: {mount.name!r}: no volume of that name in spec.volumes",
                    )
            for probe_name in ("livenessProbe", "readinessProbe", "startupProbe"):
                probe: Probe | None = getattr(container, field_name(probe_name))
                if probe is None:
                    continue
                action = probe.http_get or probe.tcp_socket
                if (
                    action is not None
                    and isinstance(action.port, str)
                    and container.port_number(action.port) is None
                ):
                    kind = "httpGet" if probe.http_get else "tcpSocket"
                    yield (
                        ("containers", c_index, probe_name, kind, "port"),
                        f"Not found: {action.port!r}: no container port of that name",
                    )


class PodTemplateSpec(ShoalModel):
    """The pods a workload makes: their labels and annotations, and their spec."""

    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: PodSpec


class ContainerStateWaiting(ShoalModel):
    reason: str | None = None
    message: str | None = None


class ContainerStateRunning(ShoalModel):
    started_at: Time | None = None


class ContainerStateTerminated(ShoalModel):
    exit_code: int
    signal: int | None = None
    reason: str | None = None
    message: str | None = None
    started_at: Time | None = None
    finished_at: Time | None = None


class ContainerState(ShoalModel):
    """At most one of the fields is set."""

    waiting: ContainerStateWaiting | None = None
    running: ContainerStateRunning | None = None
    terminated: ContainerStateTerminated | None = None


class ContainerStatus(ShoalModel):
    name: str
    ready: bool = False
    restart_count: int = Field(default=0, ge=0)
    state: ContainerState | None = None
    last_state: ContainerState | None = None
    image: str = ""
    image_id: str = Field(default="", alias="imageID")
    container_id: str | None = Field(default=None, alias="containerID")
    started: bool | None = None


class PodCondition(ShoalModel):
    type: str
    status: Literal["True", "False", "Unknown"]
    last_probe_time: Time | None = None
    last_transition_time: Time | None = None
    reason: str | None = None
    message: str | None = None


class PodIP(ShoalModel):
    ip: str


class PodStatus(ShoalModel):
    """What the node observed of a pod, in Kubernetes' shape."""

    phase: Literal["Pending", "Running", "Succeeded", "Failed", "Unknown"] | None = None
    conditions: list[PodCondition] | None = None
    message: str | None = None
    reason: str | None = None
    host_ip: str | None = Field(default=None, alias="hostIP")
    host_ips: list[PodIP] | None = Field(default=None, alias="hostIPs")
    pod_ip: str | None = Field(default=None, alias="podIP")
    pod_ips: list[PodIP] | None = Field(default=None, alias="podIPs")
    start_time: Time | None = None
    container_statuses: list[ContainerStatus] | None = None
    qos_class: str | None = None


class Pod(KubeObject):
    """A group of containers that run together on one node and share its network address."""

    INFO: ClassVar[KindInfo] = KindInfo(
        group="",
        version="v1",
        kind="Pod",
        plural="pods",
        short_names=("po",),
        categories=("all",),
        status_subresource=True,
    )

    spec: PodSpec
    status: PodStatus | None = None


# --------------------------------------------------------------------------------------------------
# Deployments


def workload_template_checks(
    selector: LabelSelector, template: PodTemplateSpec, kind: str
) -> Iterator[Check]:
    """What Kubernetes checks of a workload's pods (Deployment, ReplicaSet): a non-empty selector
    that matches the template's labels, and pods that always restart."""
    if selector.is_empty():
        yield ("selector",), f"Invalid value: empty selector is invalid for {kind}"
    elif not selector.matches(template.metadata.labels):
        yield (
            ("template", "metadata", "labels"),
            "Invalid value: `selector` does not match template `labels`",
        )
    if template.spec.restart_policy != "Always":
        yield (
            ("template", "spec", "restartPolicy"),
            f'Unsupported value: "{template.spec.restart_policy}": supported values: "Always"',
        )


def _check_int_or_percent(value: int | str, path: tuple[str, ...]) -> Iterator[Check]:
    if isinstance(value, int):
        if value < 0:
            yield path, f"Invalid value: {value}: must be greater than or equal to 0"
    elif not _PERCENT.fullmatch(value):
        yield path, f"Invalid value: {value!r}: must be an integer or a percentage (e.g. '25%')"
    elif int(value[:-1]) > 100:
        yield path, f"Invalid value: {value!r}: must not be greater than 100%"


class RollingUpdateDeployment(ShoalModel):
    """How far a rolling update may go above and below the desired number of pods."""

    max_unavailable: IntOrString = "25%"
    """Pods that may be unavailable during the update (a number or a percentage, rounded down)."""
    max_surge: IntOrString = "25%"
    """Pods that may exist above the desired number (a number or a percentage, rounded up)."""

    def _checks(self) -> Iterator[Check]:
        yield from _check_int_or_percent(self.max_unavailable, ("maxUnavailable",))
        yield from _check_int_or_percent(self.max_surge, ("maxSurge",))
        if _is_zero(self.max_unavailable) and _is_zero(self.max_surge):
            yield ("maxUnavailable",), "may not be 0 when `maxSurge` is 0"


class DeploymentStrategy(ShoalModel):
    """How a Deployment replaces old pods with new ones."""

    type: Literal["RollingUpdate", "Recreate"] = "RollingUpdate"
    rolling_update: RollingUpdateDeployment | None = None

    def _checks(self) -> Iterator[Check]:
        if self.type == "Recreate" and self.rolling_update is not None:
            yield ("rollingUpdate",), "may not be specified when strategy `type` is 'Recreate'"

    def effective_rolling_update(self) -> RollingUpdateDeployment:
        return self.rolling_update or RollingUpdateDeployment()


class DeploymentSpec(ShoalModel):
    """A replicated, rolled-out set of identical pods."""

    replicas: int = Field(default=1, ge=0)
    selector: LabelSelector
    template: PodTemplateSpec
    strategy: DeploymentStrategy = Field(default_factory=DeploymentStrategy)
    min_ready_seconds: int = Field(default=0, ge=0)
    """A new pod counts as available only after it has been ready this long."""
    revision_history_limit: int = Field(default=10, ge=0)
    """Old revisions kept for ``rollout undo``."""
    progress_deadline_seconds: int = Field(default=600, ge=1)
    """A rollout making no progress this long is reported with ``Progressing=False``."""

    k8s_unsupported: ClassVar[frozenset[str]] = frozenset({"paused"})

    def _checks(self) -> Iterator[Check]:
        yield from workload_template_checks(self.selector, self.template, "deployment")
        if self.progress_deadline_seconds <= self.min_ready_seconds:
            yield ("progressDeadlineSeconds",), "must be greater than minReadySeconds"


class DeploymentCondition(ShoalModel):
    type: str
    status: Literal["True", "False", "Unknown"]
    last_update_time: Time | None = None
    last_transition_time: Time | None = None
    reason: str | None = None
    message: str | None = None


class DeploymentStatus(ShoalModel):
    observed_generation: int | None = None
    replicas: int | None = None
    updated_replicas: int | None = None
    ready_replicas: int | None = None
    available_replicas: int | None = None
    unavailable_replicas: int | None = None
    conditions: list[DeploymentCondition] | None = None
    collision_count: int | None = None


class Deployment(KubeObject):
    """Declarative updates for pods: the desired count and template; rollouts move towards it."""

    INFO: ClassVar[KindInfo] = KindInfo(
        group="apps",
        version="v1",
        kind="Deployment",
        plural="deployments",
        short_names=("deploy",),
        categories=("all",),
        status_subresource=True,
    )

    spec: DeploymentSpec
    status: DeploymentStatus | None = None


# --------------------------------------------------------------------------------------------------
# Services


class ServicePort(ShoalModel):
    """A port a Service exposes, and the pod port it forwards to."""

    port: Port
    name: str | None = None
    protocol: Literal["TCP", "UDP", "SCTP"] = "TCP"
    target_port: IntOrString | None = None
    """The pod port, by number or container-port name; the same as ``port`` when left out."""
    app_protocol: str | None = None

    k8s_unsupported: ClassVar[frozenset[str]] = frozenset({"nodePort"})

    def _checks(self) -> Iterator[Check]:
        if self.name is not None:
            for message in _syntax.dns1123_label(self.name):
                yield ("name",), f"Invalid value: {self.name!r}: {message}"
        if self.target_port is not None:
            yield from _check_port_ref(self.target_port, ("targetPort",))


class ServiceSpec(ShoalModel):
    """A stable virtual address for a set of pods chosen by label."""

    selector: dict[str, str] | None = None
    """Pods with all these labels are the Service's endpoints (when ready)."""
    ports: list[ServicePort] | None = None
    type: Literal["ClusterIP"] = "ClusterIP"
    """shoal serves Services on loopback addresses; NodePort and LoadBalancer do not apply."""
    cluster_ip: str | None = Field(default=None, alias="clusterIP")
    """The virtual address (assigned when left out); ``None`` makes a headless Service."""
    cluster_ips: list[str] | None = Field(default=None, alias="clusterIPs")

    k8s_unsupported: ClassVar[frozenset[str]] = frozenset(
        {
            "allocateLoadBalancerNodePorts",
            "externalIPs",
            "externalName",
            "externalTrafficPolicy",
            "healthCheckNodePort",
            "internalTrafficPolicy",
            "ipFamilies",
            "ipFamilyPolicy",
            "loadBalancerClass",
            "loadBalancerIP",
            "loadBalancerSourceRanges",
            "publishNotReadyAddresses",
            "sessionAffinity",
            "sessionAffinityConfig",
            "trafficDistribution",
        }
    )

    def _checks(self) -> Iterator[Check]:
        ports = self.ports or []
        if not ports and self.cluster_ip != "None":
            yield ("ports",), "Required value"
        names: set[str] = set()
        numbers: set[tuple[int, str]] = set()
        for index, port in enumerate(ports):
            if len(ports) > 1 and not port.name:
                yield (
                    ("ports", index, "name"),
                    "Required value: a name is required when a Service has several ports",
                )
            if port.name:
                if port.name in names:
                    yield ("ports", index, "name"), f"Duplicate value: {port.name!r}"
                names.add(port.name)
            if (port.port, port.protocol) in numbers:
                yield ("ports", index), f"Duplicate value: {port.port}/{port.protocol}"
            numbers.add((port.port, port.protocol))
        if self.cluster_ip not in (None, "", "None"):
            for message in _syntax.ip_address(self.cluster_ip):
                yield ("clusterIP",), f"Invalid value: {self.cluster_ip!r}: {message}"
        for key, value in (self.selector or {}).items():
            for message in _syntax.qualified_name(key):
                yield ("selector", Key(key)), f"invalid label key {key!r}: {message}"
            for message in _syntax.label_value(value):
                yield ("selector", Key(key)), f"invalid label value {value!r}: {message}"


class LoadBalancerStatus(ShoalModel):
    ingress: list[dict[str, Any]] | None = None


class ServiceStatus(ShoalModel):
    load_balancer: LoadBalancerStatus | None = None
    conditions: list[dict[str, Any]] | None = None


class Service(KubeObject):
    """A named, stable address that balances over the ready pods its selector picks."""

    INFO: ClassVar[KindInfo] = KindInfo(
        group="",
        version="v1",
        kind="Service",
        plural="services",
        short_names=("svc",),
        categories=("all",),
        name_rule=_syntax.dns1035_label,
        status_subresource=True,
    )

    spec: ServiceSpec = Field(default_factory=ServiceSpec)
    status: ServiceStatus | None = None


# --------------------------------------------------------------------------------------------------
# Configuration and secrets


def _check_config_keys(data: dict[str, str] | None, field: str) -> Iterator[Check]:
    for key in data or {}:
        for message in _syntax.config_key(key):
            yield (field, Key(key)), f"Invalid value: {key!r}: {message}"


class ConfigMap(KubeObject):
    """Non-secret configuration as keys and values (and files, when mounted as a volume)."""

    INFO: ClassVar[KindInfo] = KindInfo(
        group="", version="v1", kind="ConfigMap", plural="configmaps", short_names=("cm",)
    )

    data: dict[str, str] | None = None
    binary_data: dict[str, str] | None = None
    """Base64-encoded bytes."""
    immutable: bool | None = None

    def _checks(self) -> Iterator[Check]:
        yield from super()._checks()
        yield from _check_config_keys(self.data, "data")
        yield from _check_config_keys(self.binary_data, "binaryData")
        for key in set(self.data or ()) & set(self.binary_data or ()):
            yield (
                ("binaryData", Key(key)),
                f"Invalid value: {key!r}: duplicate of key present in data",
            )
        for key, value in (self.binary_data or {}).items():
            if not _is_base64(value):
                yield ("binaryData", Key(key)), "Invalid value: must be base64-encoded"


class Secret(KubeObject):
    """Secret keys and values (base64 in ``data``, plain text in ``stringData``); never logged."""

    INFO: ClassVar[KindInfo] = KindInfo(group="", version="v1", kind="Secret", plural="secrets")

    type: str = "Opaque"
    data: dict[str, str] | None = None
    string_data: dict[str, str] | None = None
    """Written in plain text for convenience; merged into ``data`` when stored."""
    immutable: bool | None = None

    def _checks(self) -> Iterator[Check]:
        yield from super()._checks()
        yield from _check_config_keys(self.data, "data")
        yield from _check_config_keys(self.string_data, "stringData")
        for key, value in (self.data or {}).items():
            if not _is_base64(value):
                yield ("data", Key(key)), "Invalid value: must be base64-encoded"

    def __repr_args__(self) -> Any:
        # Secrets must never reach a log through repr(): show the keys, not the values.
        for name, value in super().__repr_args__():
            if name in ("data", "string_data") and isinstance(value, dict):
                yield name, dict.fromkeys(value, "<redacted>")
            else:
                yield name, value

    def decoded(self) -> dict[str, bytes]:
        """Every key's bytes, ``stringData`` taking precedence as the API server merges it."""
        out = {key: base64.b64decode(value) for key, value in (self.data or {}).items()}
        out.update({key: value.encode() for key, value in (self.string_data or {}).items()})
        return out


class NamespaceSpec(ShoalModel):
    finalizers: list[str] | None = None


class NamespaceStatus(ShoalModel):
    phase: Literal["Active", "Terminating"] | None = None
    conditions: list[dict[str, Any]] | None = None


class Namespace(KubeObject):
    """A scope for names; deleting it deletes everything in it."""

    INFO: ClassVar[KindInfo] = KindInfo(
        group="",
        version="v1",
        kind="Namespace",
        plural="namespaces",
        namespaced=False,
        short_names=("ns",),
        name_rule=_syntax.dns1123_label,
        status_subresource=True,
    )

    spec: NamespaceSpec | None = None
    status: NamespaceStatus | None = None


class EventSource(ShoalModel):
    component: str | None = None
    host: str | None = None


class Event(KubeObject):
    """A report of something that happened to an object (``kubectl describe`` lists them)."""

    INFO: ClassVar[KindInfo] = KindInfo(
        group="",
        version="v1",
        kind="Event",
        plural="events",
        short_names=("ev",),
        printer_columns=(
            PrinterColumn("Type", "string", ".type"),
            PrinterColumn("Reason", "string", ".reason"),
            PrinterColumn("Object", "string", ".involvedObject.name"),
            PrinterColumn("Message", "string", ".message"),
        ),
    )

    involved_object: ObjectReference
    reason: str | None = None
    """A short CamelCase word: ``Scheduled``, ``BackOff``, ``ScalingReplicaSet``."""
    message: str | None = None
    type: Literal["Normal", "Warning"] | None = None
    count: int | None = Field(default=None, ge=0)
    first_timestamp: Time | None = None
    last_timestamp: Time | None = None
    event_time: Time | None = None
    source: EventSource | None = None
    reporting_component: str | None = None
    reporting_instance: str | None = None
    action: str | None = None
    related: ObjectReference | None = None

    k8s_unsupported: ClassVar[frozenset[str]] = frozenset({"series"})


# --------------------------------------------------------------------------------------------------
# Helpers


def _is_set(model: ShoalModel, alias: str) -> bool:
    return getattr(model, field_name(alias)) is not None


def _is_zero(value: int | str) -> bool:
    return value == 0 or value == "0%"


def _is_base64(value: str) -> bool:
    try:
        base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return False
    return True
