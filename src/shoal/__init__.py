"""shoal: the patterns of Designing Distributed Systems as real, running software.

The talk's calls work as written::

    import shoal

    web = shoal.ReplicatedService(image="acr.io/brendan/my-server:v1", ports=[8080], replicas=4)
    users = shoal.ShardedService(
        image="acr.io/brendan/my-server:v1", shard_regexp="/users/(.*)/.*", ports=[8080], shards=4
    )
    print(users.to_yaml())
    print(shoal.render([web, users], target="kubernetes"))
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from shoal.errors import (
    CompileError,
    InvalidObjectsError,
    PermanentError,
    RenderError,
    RetryableError,
    ShoalError,
)
from shoal.model import (
    ConfigMap,
    Container,
    ContainerPort,
    Deployment,
    Duration,
    EnvVar,
    LoadTest,
    Namespace,
    Pod,
    Probe,
    Quantity,
    ReplicatedService,
    Role,
    Secret,
    Service,
    ShardedService,
    load_manifests,
    load_text,
)
from shoal.patterns import compile_objects

if TYPE_CHECKING:
    from shoal.kube.render import Manifests

__version__ = "0.1.0"

__all__ = [
    "CompileError",
    "ConfigMap",
    "Container",
    "ContainerPort",
    "Deployment",
    "Duration",
    "EnvVar",
    "InvalidObjectsError",
    "LoadTest",
    "Namespace",
    "PermanentError",
    "Pod",
    "Probe",
    "Quantity",
    "RenderError",
    "ReplicatedService",
    "RetryableError",
    "Role",
    "Secret",
    "Service",
    "ShardedService",
    "ShoalError",
    "__version__",
    "compile_objects",
    "load",
    "load_text",
    "render",
]

load = load_manifests
"""Load objects from files, directories or ``-`` (stdin); every problem is reported at once."""


def render(objects: Any, target: str = "kubernetes", **settings: Any) -> Manifests:
    """Render objects (one, or an iterable) as manifests for ``target``; ``str()`` gives YAML."""
    from shoal.kube.render import RenderSettings
    from shoal.kube.render import render as _render

    return _render(objects, target=target, settings=RenderSettings(**settings))
