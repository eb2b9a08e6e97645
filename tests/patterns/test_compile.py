"""The compile step: what each pattern becomes, deterministically, labelled and owned."""

from __future__ import annotations

from collections.abc import Sequence

import yaml
from hypothesis import given
from hypothesis import strategies as st

from shoal.model import (
    Container,
    Deployment,
    ReplicatedService,
    Service,
    ShardedService,
    check_object,
    dump_yaml,
)
from shoal.model.core import ConfigMap
from shoal.model.meta import KubeObject, ObjectMeta
from shoal.model.proxy import ProxyConfig
from shoal.patterns import CompileSettings, compile_objects, compile_pattern
from shoal.patterns.compile import LABEL_COMPONENT, LABEL_NAME, LABEL_SHARD, ROLE_ANNOTATION_PREFIX


def _names(objects: Sequence[KubeObject]) -> list[str]:
    return [f"{o.kind}/{o.name}" for o in objects]


def test_replicated_service_becomes_a_deployment_and_a_service() -> None:
    web = ReplicatedService(image="acr.io/brendan/my-server:v1", ports=[8080], replicas=4)
    service, deployment = compile_pattern(web)
    assert isinstance(service, Service)
    assert isinstance(deployment, Deployment)
    assert _names([service, deployment]) == ["Service/my-server", "Deployment/my-server"]
    assert deployment.spec.replicas == 4
    assert deployment.spec.selector.matches(deployment.spec.template.metadata.labels)
    assert service.spec.selector == deployment.spec.selector.match_labels
    assert [(p.port, p.target_port) for p in service.spec.ports or ()] == [(8080, 8080)]
    container = deployment.spec.template.spec.containers[0]
    assert (container.name, container.image) == ("app", "acr.io/brendan/my-server:v1")
    assert [p.container_port for p in container.ports or ()] == [8080]


def test_replicated_service_without_ports_has_no_service() -> None:
    worker = ReplicatedService(name="worker", image="worker:v1", replicas=2)
    assert _names(compile_pattern(worker)) == ["Deployment/worker"]


def test_sharded_service_becomes_shards_a_router_and_its_config() -> None:
    users = ShardedService(
        image="img:v1", shard_regexp="/users/(.*)/.*", ports=[8080], shards=3, replicas_per_shard=2
    )
    objects = compile_pattern(users, CompileSettings(shoal_image="registry.example/shoal:test"))
    assert _names(objects) == [
        "ConfigMap/img-router",
        "Service/img-shard-0",
        "Service/img-shard-1",
        "Service/img-shard-2",
        "Service/img",
        "Deployment/img-shard-0",
        "Deployment/img-shard-1",
        "Deployment/img-shard-2",
        "Deployment/img-router",
    ]
    shards = [o for o in objects if isinstance(o, Deployment) and o.name.startswith("img-shard-")]
    for index, shard in enumerate(shards):
        assert shard.spec.replicas == 2
        assert shard.spec.selector.match_labels == {
            LABEL_NAME: "img",
            LABEL_COMPONENT: "shard",
            LABEL_SHARD: str(index),
        }
    router = objects[-1]
    assert isinstance(router, Deployment)
    container = router.spec.template.spec.containers[0]
    assert container.image == "registry.example/shoal:test"
    assert container.command is not None
    assert container.command[:2] == ["shoal", "proxy"]
    front = objects[4]
    assert isinstance(front, Service)
    assert front.spec.selector == router.spec.selector.match_labels


def test_router_config_lists_every_shard_with_the_regexp_and_algorithm() -> None:
    users = ShardedService(name="users", image="x", shard_regexp="/u/(.*)", ports=[8080], shards=4)
    config_map = compile_pattern(users)[0]
    assert isinstance(config_map, ConfigMap)
    assert config_map.data is not None
    config = ProxyConfig.model_validate(yaml.safe_load(config_map.data["proxy.yaml"]))
    route = config.listeners[0].routes[0]
    assert route.shard_regexp == "/u/(.*)"
    assert route.hashing.algorithm == "maglev"
    assert [s.name for s in route.shards or ()] == [f"users-shard-{i}" for i in range(4)]
    assert all(check_object(o) == [] for o in compile_pattern(users))


def test_helper_containers_run_beside_the_app_with_their_roles() -> None:
    web = ReplicatedService(
        name="web",
        image="app:v1",
        ports=[8080],
        sidecars=[Container(name="tls", image="nginx")],
        ambassadors=[Container(name="cache", image="twemproxy")],
        adapters=[Container(name="metrics", image="exporter")],
    )
    deployment = compile_pattern(web)[1]
    assert isinstance(deployment, Deployment)
    template = deployment.spec.template
    assert [c.name for c in template.spec.containers] == ["app", "tls", "cache", "metrics"]
    assert template.metadata.annotations == {
        f"{ROLE_ANNOTATION_PREFIX}tls": "sidecar",
        f"{ROLE_ANNOTATION_PREFIX}cache": "ambassador",
        f"{ROLE_ANNOTATION_PREFIX}metrics": "adapter",
    }


def test_owner_references_only_for_stored_patterns() -> None:
    web = ReplicatedService(name="web", image="app:v1", ports=[8080])
    assert all(o.metadata.owner_references is None for o in compile_pattern(web))
    web.metadata.uid = "0b1c7a52-3f1e-4c55-8d7e-2b3f8f9d6a10"
    for obj in compile_pattern(web):
        (owner,) = obj.metadata.owner_references or []
        assert (owner.kind, owner.name, owner.uid) == ("ReplicatedService", "web", web.metadata.uid)
        assert owner.controller is True
        assert owner.block_owner_deletion is True


def test_compile_objects_keeps_patterns_and_passes_primitives_through() -> None:
    web = ReplicatedService(name="web", image="app:v1", ports=[8080])
    config = ConfigMap(metadata=ObjectMeta(name="settings"), data={"a": "b"})
    assert _names(compile_objects([config, web])) == [
        "ConfigMap/settings",
        "ReplicatedService/web",
        "Service/web",
        "Deployment/web",
    ]


def test_compiled_objects_are_independent_copies() -> None:
    web = ReplicatedService(
        name="web", image="app:v1", ports=[8080], env=[{"name": "A", "value": "1"}]
    )
    deployment = compile_pattern(web)[1]
    assert isinstance(deployment, Deployment)
    env = deployment.spec.template.spec.containers[0].env or []
    env[0].value = "changed"
    assert web.spec.env is not None
    assert web.spec.env[0].value == "1"


@given(
    shards=st.integers(min_value=1, max_value=16),
    per_shard=st.integers(min_value=1, max_value=5),
    regexp=st.sampled_from([None, "/users/(.*)/.*", "^/([^/]+)", "/items/[0-9]+"]),
)
def test_compile_is_deterministic_and_valid(
    shards: int, per_shard: int, regexp: str | None
) -> None:
    def build() -> str:
        pattern = ShardedService(
            name="svc",
            image="x:v1",
            ports=[8080],
            shards=shards,
            replicas_per_shard=per_shard,
            shard_regexp=regexp,
        )
        objects = compile_pattern(pattern)
        assert all(check_object(o) == [] for o in objects)
        assert len(objects) == 2 * shards + 3
        return dump_yaml([o.to_dict() for o in objects])

    assert build() == build()
