"""The object model: typed Kubernetes-style objects, their validation, and YAML loading.

This is the lowest layer: pure data and rules, no I/O beyond reading the files it is asked to load.
"""

from shoal.model.apps import ReplicaSet, ReplicaSetSpec, ReplicaSetStatus
from shoal.model.core import (
    ConfigMap,
    Container,
    ContainerPort,
    Deployment,
    DeploymentSpec,
    DeploymentStrategy,
    EnvVar,
    Event,
    Namespace,
    Pod,
    PodSpec,
    PodTemplateSpec,
    Probe,
    Secret,
    Service,
    ServicePort,
    ServiceSpec,
    Volume,
)
from shoal.model.discovery import Endpoint, EndpointConditions, EndpointPort, EndpointSlice
from shoal.model.loading import check_object, load_manifests, load_text, object_from_dict
from shoal.model.loadtest import LoadTest, LoadTestSpec, parse_threshold
from shoal.model.meta import (
    Condition,
    KindInfo,
    KubeObject,
    LabelSelector,
    ObjectMeta,
    OwnerReference,
    PrinterColumn,
)
from shoal.model.patterns import (
    HashAlgorithm,
    PatternPort,
    ReplicatedService,
    ReplicatedServiceSpec,
    Role,
    ShardedService,
    ShardedServiceSpec,
)
from shoal.model.quantity import Duration, Quantity
from shoal.model.registry import ALL_KINDS, kind_for
from shoal.model.yamlio import dump_yaml

__all__ = [
    "ALL_KINDS",
    "Condition",
    "ConfigMap",
    "Container",
    "ContainerPort",
    "Deployment",
    "DeploymentSpec",
    "DeploymentStrategy",
    "Duration",
    "Endpoint",
    "EndpointConditions",
    "EndpointPort",
    "EndpointSlice",
    "EnvVar",
    "Event",
    "HashAlgorithm",
    "KindInfo",
    "KubeObject",
    "LabelSelector",
    "LoadTest",
    "LoadTestSpec",
    "Namespace",
    "ObjectMeta",
    "OwnerReference",
    "PatternPort",
    "Pod",
    "PodSpec",
    "PodTemplateSpec",
    "PrinterColumn",
    "Probe",
    "Quantity",
    "ReplicaSet",
    "ReplicaSetSpec",
    "ReplicaSetStatus",
    "ReplicatedService",
    "ReplicatedServiceSpec",
    "Role",
    "Secret",
    "Service",
    "ServicePort",
    "ServiceSpec",
    "ShardedService",
    "ShardedServiceSpec",
    "Volume",
    "check_object",
    "dump_yaml",
    "kind_for",
    "load_manifests",
    "load_text",
    "object_from_dict",
    "parse_threshold",
]
