"""Compile pattern objects into the primitive objects they stand for.

This is the one step both substrates share: the one-machine cluster's controllers run it on stored
objects, and ``shoal render --target kubernetes`` runs it on files. It is a pure function of the
pattern and the settings: same input, same output, byte for byte.

A ``ReplicatedService`` named ``web`` becomes::

    Deployment web        the replicas (app container + sidecars, ambassadors, adapters)
    Service web           load-balances over the ready replicas (only when ports are given)

A ``ShardedService`` named ``users`` with N shards becomes::

    ConfigMap users-router                 the router's proxy configuration (proxy.yaml)
    Deployment/Service users-shard-0..N-1  one replicated set per shard (replicasPerShard pods)
    Deployment users-router                shoal's proxy, routing by shardRegexp and hashing
    Service users                          the service's address, in front of the router

Every object carries the ``app.kubernetes.io`` labels and, when the pattern has been stored (it has
a ``metadata.uid``), an owner reference to it, so deleting the pattern deletes what it made.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from shoal.errors import CompileError
from shoal.model import (
    ConfigMap,
    Container,
    ContainerPort,
    Deployment,
    DeploymentSpec,
    KubeObject,
    LabelSelector,
    ObjectMeta,
    PodSpec,
    PodTemplateSpec,
    Probe,
    ReplicatedService,
    Service,
    ServicePort,
    ServiceSpec,
    ShardedService,
    Volume,
)
from shoal.model._base import ShoalModel
from shoal.model.core import (
    ConfigMapVolumeSource,
    EnvVar,
    EnvVarSource,
    HTTPGetAction,
    ObjectFieldSelector,
    VolumeMount,
)
from shoal.model.patterns import MAIN_CONTAINER, PatternPort, _PodShape
from shoal.model.proxy import AdminSpec, Backend, Listener, ProxyConfig, Route, Shard
from shoal.model.yamlio import dump_yaml

__all__ = [
    "LABEL_COMPONENT",
    "LABEL_MANAGED_BY",
    "LABEL_NAME",
    "LABEL_PATTERN",
    "LABEL_SHARD",
    "ROLE_ANNOTATION_PREFIX",
    "CompileSettings",
    "compile_objects",
    "compile_pattern",
]

LABEL_NAME = "app.kubernetes.io/name"
LABEL_COMPONENT = "app.kubernetes.io/component"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_PATTERN = "patterns.shoal.dev/pattern"
LABEL_SHARD = "patterns.shoal.dev/shard"
ROLE_ANNOTATION_PREFIX = "roles.shoal.dev/"
"""``roles.shoal.dev/<container>: sidecar|ambassador|adapter`` on the pod template."""
CONFIG_HASH_ANNOTATION = "patterns.shoal.dev/config-hash"
"""Changes with the router's configuration, so a new configuration rolls the router pods."""
ROUTER_CONFIG_KEY = "proxy.yaml"

M = TypeVar("M", bound=ShoalModel)


@dataclass(frozen=True, slots=True)
class CompileSettings:
    """Settings of the compile step."""

    shoal_image: str = "ghcr.io/shoal-dev/shoal:0.1.0"
    """The image with the ``shoal`` command (see the Dockerfile); runs the shard router."""
    router_admin_port: int = 9901
    """The router's admin port (``/healthz``, ``/metrics``)."""
    router_config_dir: str = "/etc/shoal/router"
    """Where the router's ConfigMap is mounted."""
    cluster_domain: str = "cluster.local"
    """The DNS domain of Services (``<svc>.<ns>.svc.<domain>``)."""


def compile_objects(
    objects: Iterable[KubeObject], settings: CompileSettings | None = None
) -> list[KubeObject]:
    """Every object, with patterns replaced by their primitives (the patterns themselves kept)."""
    out: list[KubeObject] = []
    for obj in objects:
        out.append(obj)
        if isinstance(obj, ReplicatedService | ShardedService):
            out.extend(compile_pattern(obj, settings))
    return out


def compile_pattern(
    pattern: ReplicatedService | ShardedService, settings: CompileSettings | None = None
) -> list[KubeObject]:
    """The primitive objects a pattern stands for, in the order they are best applied."""
    settings = settings or CompileSettings()
    if pattern.metadata.name is None:
        raise CompileError(f"a {pattern.kind} needs metadata.name to be compiled")
    if isinstance(pattern, ReplicatedService):
        return _replicated(pattern)
    return _sharded(pattern, settings)


def _replicated(pattern: ReplicatedService) -> list[KubeObject]:
    name = pattern.name
    spec = pattern.spec
    selector = {LABEL_NAME: name, LABEL_COMPONENT: "server"}
    deployment = Deployment(
        metadata=_meta(pattern, name, "server"),
        spec=DeploymentSpec(
            replicas=spec.replicas,
            selector=LabelSelector(match_labels=selector),
            template=_pod_template(pattern, spec, selector),
            strategy=spec.strategy.model_copy(deep=True),
            min_ready_seconds=spec.min_ready_seconds,
        ),
    )
    out: list[KubeObject] = []
    if spec.ports:
        out.append(_service(pattern, name, "server", selector, spec.ports))
    out.append(deployment)
    return out


def _sharded(pattern: ShardedService, settings: CompileSettings) -> list[KubeObject]:
    name = pattern.name
    spec = pattern.spec
    ports = spec.ports or []
    shard_names = [f"{name}-shard-{index}" for index in range(spec.shards)]

    proxy = ProxyConfig(
        listeners=[
            Listener(
                name=port.name or f"port-{port.port}",
                port=port.port,
                routes=[
                    Route(
                        name=name,
                        policy="round-robin",
                        shard_regexp=spec.shard_regexp,
                        hashing=spec.hashing.model_copy(deep=True),
                        shards=[
                            Shard(name=shard, backends=[Backend(service=shard, port=port.port)])
                            for shard in shard_names
                        ],
                    )
                ],
            )
            for port in ports
        ],
        admin=AdminSpec(port=settings.router_admin_port),
    )
    config_text = dump_yaml([proxy.to_dict()])
    config_map = ConfigMap(
        metadata=_meta(pattern, f"{name}-router", "router"),
        data={ROUTER_CONFIG_KEY: config_text},
    )

    objects: list[KubeObject] = [config_map]
    deployments: list[KubeObject] = []
    for index, shard in enumerate(shard_names):
        selector = {LABEL_NAME: name, LABEL_COMPONENT: "shard", LABEL_SHARD: str(index)}
        objects.append(_service(pattern, shard, "shard", selector, ports, shard=index))
        deployments.append(
            Deployment(
                metadata=_meta(pattern, shard, "shard", shard=index),
                spec=DeploymentSpec(
                    replicas=spec.replicas_per_shard,
                    selector=LabelSelector(match_labels=selector),
                    template=_pod_template(pattern, spec, selector),
                    strategy=spec.strategy.model_copy(deep=True),
                    min_ready_seconds=spec.min_ready_seconds,
                ),
            )
        )

    router_selector = {LABEL_NAME: name, LABEL_COMPONENT: "router"}
    objects.append(_service(pattern, name, "router", router_selector, ports))
    objects.extend(deployments)
    objects.append(_router_deployment(pattern, settings, ports, router_selector, config_text))
    return objects


def _router_deployment(
    pattern: ShardedService,
    settings: CompileSettings,
    ports: Sequence[PatternPort],
    selector: dict[str, str],
    config_text: str,
) -> Deployment:
    name = pattern.name
    admin = settings.router_admin_port
    container = Container(
        name="router",
        image=settings.shoal_image,
        command=[
            "shoal",
            "proxy",
            "--config",
            f"{settings.router_config_dir}/{ROUTER_CONFIG_KEY}",
            # Kubernetes (and shoal's node) expand $(VAR) from the container's environment: the
            # router binds its pod's own address, so several routers can share one machine.
            "--host",
            "$(POD_IP)",
            "--namespace",
            "$(POD_NAMESPACE)",
        ],
        ports=[
            *(ContainerPort(container_port=p.port, name=p.name) for p in ports),
            ContainerPort(container_port=admin, name="admin"),
        ],
        env=[
            EnvVar(
                name="POD_IP",
                value_from=EnvVarSource(field_ref=ObjectFieldSelector(field_path="status.podIP")),
            ),
            EnvVar(
                name="POD_NAMESPACE",
                value_from=EnvVarSource(
                    field_ref=ObjectFieldSelector(field_path="metadata.namespace")
                ),
            ),
        ],
        readiness_probe=Probe(
            http_get=HTTPGetAction(path="/healthz", port="admin"), period_seconds=2
        ),
        liveness_probe=Probe(
            http_get=HTTPGetAction(path="/healthz", port="admin"), period_seconds=10
        ),
        volume_mounts=[
            VolumeMount(name="router-config", mount_path=settings.router_config_dir, read_only=True)
        ],
    )
    labels = {**_labels(pattern, "router"), **selector}
    digest = hashlib.sha256(config_text.encode()).hexdigest()[:16]
    template = PodTemplateSpec(
        metadata=ObjectMeta(labels=labels, annotations={CONFIG_HASH_ANNOTATION: digest}),
        spec=PodSpec(
            containers=[container],
            volumes=[
                Volume(
                    name="router-config", config_map=ConfigMapVolumeSource(name=f"{name}-router")
                )
            ],
        ),
    )
    return Deployment(
        metadata=_meta(pattern, f"{name}-router", "router"),
        spec=DeploymentSpec(
            replicas=pattern.spec.router.replicas,
            selector=LabelSelector(match_labels=selector),
            template=template,
        ),
    )


def _pod_template(
    pattern: ReplicatedService | ShardedService, shape: _PodShape, selector: dict[str, str]
) -> PodTemplateSpec:
    helpers = [(role, c.model_copy(deep=True)) for role, c in shape.helpers()]
    roles = {f"{ROLE_ANNOTATION_PREFIX}{c.name}": role.value for role, c in helpers}
    if shape.template is not None:
        template = shape.template.model_copy(deep=True)
        template.metadata.labels = {
            **(template.metadata.labels or {}),
            **_labels(pattern, selector[LABEL_COMPONENT]),
            **selector,
        }
        template.metadata.annotations = {**(template.metadata.annotations or {}), **roles} or None
        template.spec.containers = [*template.spec.containers, *(c for _, c in helpers)]
        return template
    app = Container(
        name=MAIN_CONTAINER,
        image=shape.image,
        command=shape.command,
        args=shape.args,
        working_dir=shape.working_dir,
        ports=[ContainerPort(container_port=p.port, name=p.name) for p in shape.ports or ()]
        or None,
        env=_copy_list(shape.env),
        env_from=_copy_list(shape.env_from),
        resources=shape.resources.model_copy(deep=True) if shape.resources else None,
        readiness_probe=_copy(shape.readiness_probe),
        liveness_probe=_copy(shape.liveness_probe),
        startup_probe=_copy(shape.startup_probe),
        lifecycle=_copy(shape.lifecycle),
        volume_mounts=_copy_list(shape.volume_mounts),
    )
    spec = PodSpec(containers=[app, *(c for _, c in helpers)], volumes=_copy_list(shape.volumes))
    if shape.termination_grace_period_seconds is not None:
        spec.termination_grace_period_seconds = shape.termination_grace_period_seconds
    return PodTemplateSpec(
        metadata=ObjectMeta(
            labels={**_labels(pattern, selector[LABEL_COMPONENT]), **selector},
            annotations=roles or None,
        ),
        spec=spec,
    )


def _service(
    pattern: ReplicatedService | ShardedService,
    name: str,
    component: str,
    selector: dict[str, str],
    ports: Sequence[PatternPort],
    *,
    shard: int | None = None,
) -> Service:
    return Service(
        metadata=_meta(pattern, name, component, shard=shard),
        spec=ServiceSpec(
            selector=dict(selector),
            ports=[ServicePort(name=p.name, port=p.port, target_port=p.port) for p in ports],
        ),
    )


def _labels(pattern: ReplicatedService | ShardedService, component: str) -> dict[str, str]:
    return {
        LABEL_NAME: pattern.name,
        LABEL_COMPONENT: component,
        LABEL_MANAGED_BY: "shoal",
        LABEL_PATTERN: "replicated" if isinstance(pattern, ReplicatedService) else "sharded",
    }


def _meta(
    pattern: ReplicatedService | ShardedService,
    name: str,
    component: str,
    *,
    shard: int | None = None,
) -> ObjectMeta:
    labels = _labels(pattern, component)
    if shard is not None:
        labels[LABEL_SHARD] = str(shard)
    # Only a stored pattern has a uid; an owner reference with an invented uid would make the
    # Kubernetes garbage collector delete the object at once, so a file-only pattern gets none.
    owners = [pattern.owner_reference()] if pattern.metadata.uid else None
    return ObjectMeta(
        name=name, namespace=pattern.namespace, labels=labels, owner_references=owners
    )


def _copy(value: M | None) -> M | None:
    return value.model_copy(deep=True) if value is not None else None


def _copy_list(values: Sequence[M] | None) -> list[M] | None:
    return None if values is None else [value.model_copy(deep=True) for value in values]
