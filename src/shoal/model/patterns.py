"""The multi-node patterns as objects: ``ReplicatedService`` and ``ShardedService``.

Both describe their pods the same way: either the short form of the talk (``image``, ``command``,
``ports``...) or a full pod ``template``; and both may add helper containers with a declared role:
``sidecars`` (augment and extend the app), ``ambassadors`` (represent its outbound calls) and
``adapters`` (normalize its outputs). The Python API takes the talk's calls as written::

    ReplicatedService(image="acr.io/brendan/my-server:v1", ports=[8080], replicas=4)
    ShardedService(image="acr.io/brendan/my-server:v1", shard_regexp="/users/(.*)/.*",
                   ports=[8080], shards=4)

A name is derived from the image (``my-server``) when none is given.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from enum import StrEnum
from typing import Any, ClassVar, Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from shoal.errors import InvalidObjectsError, Issue
from shoal.model import _syntax
from shoal.model._base import Check, ShoalModel, field_name, iter_issues
from shoal.model._errors import translate
from shoal.model._paths import format_path
from shoal.model.core import (
    Container,
    DeploymentStrategy,
    EnvFromSource,
    EnvVar,
    Lifecycle,
    PodTemplateSpec,
    Probe,
    ResourceRequirements,
    Volume,
    VolumeMount,
)
from shoal.model.meta import Condition, KindInfo, KubeObject, ObjectMeta, PrinterColumn

__all__ = [
    "HashAlgorithm",
    "Hashing",
    "PatternPort",
    "ReplicatedService",
    "ReplicatedServiceSpec",
    "Role",
    "RouterSpec",
    "ShardedService",
    "ShardedServiceSpec",
    "name_from_image",
]

PATTERNS_GROUP = "patterns.shoal.dev"
MAIN_CONTAINER = "app"
"""The name of the app's container when the short form describes it."""


class Role(StrEnum):
    """What a helper container does for the app beside it (the talk's single-node patterns)."""

    SIDECAR = "sidecar"
    """Augments and extends the app (HTTPS in front of a plain HTTP server)."""
    AMBASSADOR = "ambassador"
    """Represents the app's outbound calls (a sharded cache client, a canary splitter)."""
    ADAPTER = "adapter"
    """Normalizes the app's outputs (metrics, logs, health)."""


class HashAlgorithm(StrEnum):
    """How shard keys map to shards. See docs/patterns/sharded.md for the measurements."""

    MAGLEV = "maglev"
    """Maglev lookup table: O(1) lookups, about 1% imbalance, near-minimal movement."""
    RENDEZVOUS = "rendezvous"
    """Highest random weight: exactly minimal movement, O(shards) per lookup."""
    RING = "ring"
    """A ketama-style ring with virtual nodes: what nginx and HAProxy use."""


class PatternPort(ShoalModel):
    """A port of the app, exposed under the same number by the pattern's Service."""

    port: int = Field(ge=1, le=65535)
    name: str | None = None
    protocol: Literal["TCP"] = "TCP"

    @model_validator(mode="before")
    @classmethod
    def _from_number(cls, data: Any) -> Any:
        # The talk writes ``ports=[8080]``: a bare number is the port.
        if isinstance(data, int) and not isinstance(data, bool):
            return {"port": data}
        return data

    def _checks(self) -> Iterator[Check]:
        if self.name is not None:
            for message in _syntax.port_name(self.name):
                yield ("name",), f"Invalid value: {self.name!r}: {message}"


class Hashing(ShoalModel):
    """The consistent-hashing settings of a sharded service's router."""

    algorithm: HashAlgorithm = HashAlgorithm.MAGLEV


class RouterSpec(ShoalModel):
    """The shard router in front of the shards."""

    replicas: int = Field(default=1, ge=1)
    """Router pods; each one routes every key the same way."""


class _PodShape(ShoalModel):
    """The fields both patterns use to describe their pods."""

    image: str | None = None
    """The app's image (for Kubernetes; on one machine ``command`` runs directly)."""
    command: list[str] | None = None
    args: list[str] | None = None
    working_dir: str | None = None
    env: list[EnvVar] | None = None
    env_from: list[EnvFromSource] | None = None
    ports: list[PatternPort] | None = None
    """The app's ports; the pattern's Service exposes each one under the same number."""
    resources: ResourceRequirements | None = None
    readiness_probe: Probe | None = None
    liveness_probe: Probe | None = None
    startup_probe: Probe | None = None
    lifecycle: Lifecycle | None = None
    volume_mounts: list[VolumeMount] | None = None
    volumes: list[Volume] | None = None
    termination_grace_period_seconds: int | None = Field(default=None, ge=0)
    template: PodTemplateSpec | None = None
    """A full pod template instead of the short form (``image``, ``command``...)."""
    sidecars: list[Container] = Field(default_factory=list)
    ambassadors: list[Container] = Field(default_factory=list)
    adapters: list[Container] = Field(default_factory=list)

    _SHORT_FORM: ClassVar[tuple[str, ...]] = (
        "image",
        "command",
        "args",
        "workingDir",
        "env",
        "envFrom",
        "resources",
        "readinessProbe",
        "livenessProbe",
        "startupProbe",
        "lifecycle",
        "volumeMounts",
        "volumes",
        "terminationGracePeriodSeconds",
    )

    def _checks(self) -> Iterator[Check]:
        if self.template is not None:
            for alias in self._SHORT_FORM:
                if getattr(self, field_name(alias)) is not None:
                    yield (
                        (alias,),
                        "may not be specified together with `template`: put it in the template",
                    )
        elif self.image is None and self.command is None:
            yield ("image",), "Required value: give `image` (and/or `command`), or a pod `template`"
        ports: set[int] = set()
        for index, port in enumerate(self.ports or ()):
            if port.port in ports:
                yield ("ports", index, "port"), f"Duplicate value: {port.port}"
            ports.add(port.port)
        if len(self.ports or ()) > 1:
            for index, port in enumerate(self.ports or ()):
                if port.name is None:
                    yield (
                        ("ports", index, "name"),
                        "Required value: a name is required when there are several ports",
                    )
        names = (
            {MAIN_CONTAINER}
            if self.template is None
            else {c.name for c in self.template.spec.containers}
        )
        for field in ("sidecars", "ambassadors", "adapters"):
            for index, helper in enumerate(getattr(self, field)):
                if helper.name in names:
                    yield (
                        (field, index, "name"),
                        f"Duplicate value: {helper.name!r}: container names must be unique in a pod",
                    )
                names.add(helper.name)

    def helpers(self) -> Iterator[tuple[Role, Container]]:
        """The helper containers with their roles, in a stable order."""
        for role, field in (
            (Role.SIDECAR, "sidecars"),
            (Role.AMBASSADOR, "ambassadors"),
            (Role.ADAPTER, "adapters"),
        ):
            for container in getattr(self, field):
                yield role, container


class ReplicatedServiceSpec(_PodShape):
    """Identical replicas behind one Service, rolled out without downtime."""

    replicas: int = Field(default=1, ge=0)
    strategy: DeploymentStrategy = Field(default_factory=DeploymentStrategy)
    """How new versions roll out (the Deployment strategy: maxSurge, maxUnavailable)."""
    min_ready_seconds: int = Field(default=0, ge=0)
    """A new replica takes traffic for this long before the rollout counts it available."""


class ShardedServiceSpec(_PodShape):
    """Shards, each owning the keys the router hashes to it; optionally replicated."""

    shards: int = Field(default=1, ge=1, le=1024)
    shard_regexp: str | None = None
    """Applied to the request path (searched, not anchored); its first capture group is the shard
    key, or the whole match when it has no group. A path that does not match is routed by the
    whole path. Left out, the whole path is the key."""
    replicas_per_shard: int = Field(default=1, ge=1)
    """Above 1 this is the sharded-and-replicated pattern: each shard is a replicated service."""
    hashing: Hashing = Field(default_factory=Hashing)
    router: RouterSpec = Field(default_factory=RouterSpec)
    strategy: DeploymentStrategy = Field(default_factory=DeploymentStrategy)
    """How each shard rolls out a new version."""
    min_ready_seconds: int = Field(default=0, ge=0)

    @field_validator("shard_regexp")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as error:
                raise ValueError(
                    f"invalid regular expression at position {error.pos}: {error.msg}"
                ) from error
        return value

    def _checks(self) -> Iterator[Check]:
        yield from super()._checks()
        if not self.ports:
            yield (
                ("ports",),
                "Required value: the shard router needs the port the shards serve HTTP on",
            )


class ShardStatus(ShoalModel):
    """The pods of one shard, as the pattern controller observed them."""

    name: str
    """The shard's Deployment (and Service): ``<pattern>-shard-<n>``."""
    replicas: int | None = None
    ready_replicas: int | None = None
    available_replicas: int | None = None


class PatternStatus(ShoalModel):
    """What the controller observed of a pattern's pods."""

    observed_generation: int | None = None
    replicas: int | None = None
    ready_replicas: int | None = None
    updated_replicas: int | None = None
    shards: int | None = None
    ready_shards: int | None = None
    url: str | None = None
    """Where the service answers (its Service's address)."""
    shard_statuses: list[ShardStatus] | None = None
    """Per shard of a ShardedService: its replicas and how many are ready."""
    conditions: list[Condition] | None = None


def name_from_image(image: str) -> str:
    """A DNS-1035 name from an image reference: ``acr.io/brendan/my-server:v1`` -> ``my-server``."""
    last = image.rsplit("/", 1)[-1].split("@", 1)[0].split(":", 1)[0].lower()
    name = re.sub(r"[^a-z0-9-]+", "-", last).strip("-")
    name = re.sub(r"^[^a-z]+", "", name)[:40].rstrip("-")
    return name or "app"


class _Pattern(KubeObject):
    """Shared behaviour of the pattern kinds, including the talk's keyword constructor."""

    spec: Any
    status: PatternStatus | None = None

    _SPEC_TYPE: ClassVar[type[_PodShape]]

    def __init__(self, /, **data: Any) -> None:
        # Two ways in: the object form (apiVersion/kind/metadata/spec), which is also how pydantic
        # validates YAML and API bodies, and the talk's keyword form, where spec fields are passed
        # directly and metadata by name. The keyword form reports problems as shoal errors.
        if not data or any(key in data for key in ("spec", "apiVersion", "api_version", "kind")):
            super().__init__(**data)
            return
        metadata = ObjectMeta.model_validate(data.pop("metadata", {}))
        for key in ("name", "namespace", "labels", "annotations"):
            if key in data:
                setattr(metadata, key, data.pop(key))
        try:
            spec = self._SPEC_TYPE(**data)
        except ValidationError as error:
            raise InvalidObjectsError(
                Issue(e.message, format_path(("spec", *e.path)))
                for e in translate(error, self._SPEC_TYPE, data)
            ) from None
        if metadata.name is None and metadata.generate_name is None and spec.image:
            metadata.name = name_from_image(spec.image)
        parts: dict[str, Any] = {"metadata": metadata, "spec": spec}
        super().__init__(**parts)
        problems = [Issue(message, format_path(path)) for path, message in iter_issues(self)]
        if problems:
            raise InvalidObjectsError(problems)

    @property
    def pod_spec_shape(self) -> _PodShape:
        spec: _PodShape = self.spec
        return spec

    def _checks(self) -> Iterator[Check]:
        yield from super()._checks()
        if self.metadata.name is not None:
            longest = self._longest_derived_suffix()
            limit = _syntax.DNS1035_LABEL_MAX - len(longest)
            if len(self.metadata.name) > limit:
                yield (
                    ("metadata", "name"),
                    f"Invalid value: {self.metadata.name!r}: must be no more than {limit} characters "
                    f"(the derived name {self.metadata.name + longest!r} must fit in 63)",
                )

    def _longest_derived_suffix(self) -> str:
        return ""


_READY_COLUMNS = (
    PrinterColumn("Ready", "string", '.status.conditions[?(@.type=="Ready")].status'),
    PrinterColumn("URL", "string", ".status.url"),
    PrinterColumn("Age", "date", ".metadata.creationTimestamp"),
)


class ReplicatedService(_Pattern):
    """The replicated pattern: N identical replicas behind a load-balanced Service."""

    INFO: ClassVar[KindInfo] = KindInfo(
        group=PATTERNS_GROUP,
        version="v1",
        kind="ReplicatedService",
        plural="replicatedservices",
        short_names=("rsvc",),
        categories=("all", "shoal"),
        name_rule=_syntax.dns1035_label,
        status_subresource=True,
        printer_columns=(
            PrinterColumn("Replicas", "integer", ".spec.replicas"),
            PrinterColumn("Available", "integer", ".status.readyReplicas"),
            *_READY_COLUMNS,
        ),
        group_aliases=("patterns",),
    )
    _SPEC_TYPE: ClassVar[type[_PodShape]] = ReplicatedServiceSpec

    spec: ReplicatedServiceSpec

    def __init__(
        self,
        /,
        *,
        image: str | None = None,
        ports: Sequence[int | PatternPort | Mapping[str, Any]] | None = None,
        replicas: int | None = None,
        name: str | None = None,
        **fields: Any,
    ) -> None:
        """``ReplicatedService(image=..., ports=[8080], replicas=4)``, or the object form.

        Any other spec field (``command``, ``env``, ``sidecars``, ``strategy``...) and ``namespace``,
        ``labels`` and ``annotations`` may be passed by keyword too.
        """
        given = {"image": image, "ports": ports, "replicas": replicas, "name": name}
        super().__init__(**{k: v for k, v in given.items() if v is not None}, **fields)


class ShardedService(_Pattern):
    """The sharded pattern: a router hashes a key from the path to one of N shards."""

    INFO: ClassVar[KindInfo] = KindInfo(
        group=PATTERNS_GROUP,
        version="v1",
        kind="ShardedService",
        plural="shardedservices",
        short_names=("ssvc",),
        categories=("all", "shoal"),
        name_rule=_syntax.dns1035_label,
        status_subresource=True,
        printer_columns=(
            PrinterColumn("Shards", "integer", ".spec.shards"),
            PrinterColumn("Per-Shard", "integer", ".spec.replicasPerShard"),
            PrinterColumn("Ready-Shards", "integer", ".status.readyShards"),
            *_READY_COLUMNS,
        ),
        group_aliases=("patterns",),
    )
    _SPEC_TYPE: ClassVar[type[_PodShape]] = ShardedServiceSpec

    spec: ShardedServiceSpec

    def __init__(
        self,
        /,
        *,
        image: str | None = None,
        shard_regexp: str | None = None,
        ports: Sequence[int | PatternPort | Mapping[str, Any]] | None = None,
        shards: int | None = None,
        replicas_per_shard: int | None = None,
        name: str | None = None,
        **fields: Any,
    ) -> None:
        """``ShardedService(image=..., shard_regexp="/users/(.*)/.*", ports=[8080], shards=4)``.

        Any other spec field, and ``namespace``, ``labels`` and ``annotations``, may be passed by
        keyword too; or give the object form (``metadata=``, ``spec=``).
        """
        given = {
            "image": image,
            "shard_regexp": shard_regexp,
            "ports": ports,
            "shards": shards,
            "replicas_per_shard": replicas_per_shard,
            "name": name,
        }
        super().__init__(**{k: v for k, v in given.items() if v is not None}, **fields)

    def _longest_derived_suffix(self) -> str:
        return f"-shard-{max(self.spec.shards - 1, 0)}"
