"""Object metadata, owner references, label selectors, conditions and the base of every kind."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

from shoal.model import _syntax
from shoal.model._base import Check, ShoalModel, Time
from shoal.model._paths import Key

__all__ = [
    "Condition",
    "KindInfo",
    "KubeObject",
    "LabelSelector",
    "LabelSelectorRequirement",
    "ManagedFieldsEntry",
    "ObjectMeta",
    "ObjectReference",
    "OwnerReference",
    "PrinterColumn",
]

NameRule = Callable[[str], list[str]]


class OwnerReference(ShoalModel):
    """Names the object that owns this one; the garbage collector deletes dependents of a gone owner."""

    api_version: str
    kind: str
    name: str
    uid: str
    controller: bool | None = None
    """True for the one owner that manages this object."""
    block_owner_deletion: bool | None = None
    """With foreground deletion, the owner waits for this dependent to be deleted first."""


class ManagedFieldsEntry(ShoalModel):
    """Which manager last set which fields (server-side apply bookkeeping)."""

    manager: str | None = None
    operation: Literal["Apply", "Update"] | None = None
    api_version: str | None = None
    time: Time | None = None
    fields_type: str | None = None
    fields_v1: dict[str, Any] | None = Field(default=None, alias="fieldsV1")
    subresource: str | None = None


class ObjectMeta(ShoalModel):
    """Standard object metadata, with Kubernetes' field names and rules."""

    name: str | None = None
    """Unique within the namespace (and kind); required unless ``generateName`` is set."""
    generate_name: str | None = None
    """A prefix from which the server makes a unique name when ``name`` is not given."""
    namespace: str | None = None
    """The namespace of a namespaced object; ``default`` when left out."""
    uid: str | None = None
    """Set by the server; unique in time and space."""
    resource_version: str | None = None
    """Set by the server; changes on every write (compare for equality only)."""
    generation: int | None = Field(default=None, ge=0)
    """Set by the server; counts changes to the desired state (spec)."""
    creation_timestamp: Time | None = None
    deletion_timestamp: Time | None = None
    deletion_grace_period_seconds: int | None = Field(default=None, ge=0)
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None
    owner_references: list[OwnerReference] | None = None
    finalizers: list[str] | None = None
    managed_fields: list[ManagedFieldsEntry] | None = None

    k8s_unsupported: ClassVar[frozenset[str]] = frozenset({"selfLink"})

    def _checks(self) -> Iterator[Check]:
        if self.generate_name is not None:
            # The prefix is checked as a name once a suffix would make it valid.
            for message in _syntax.dns1123_subdomain(self.generate_name.rstrip("-") + "-x"):
                yield ("generateName",), message
        for key, value in (self.labels or {}).items():
            for message in _syntax.qualified_name(key):
                yield ("labels", Key(key)), f"invalid label key {key!r}: {message}"
            for message in _syntax.label_value(value):
                yield ("labels", Key(key)), f"invalid label value {value!r}: {message}"
        total = 0
        for key, value in (self.annotations or {}).items():
            total += len(key) + len(value)
            for message in _syntax.qualified_name(key):
                yield ("annotations", Key(key)), f"invalid annotation key {key!r}: {message}"
        if total > _syntax.ANNOTATIONS_TOTAL_MAX:
            yield ("annotations",), f"may not have more than 256 KiB in total, got {total} bytes"
        controllers = [ref for ref in self.owner_references or () if ref.controller]
        if len(controllers) > 1:
            names = ", ".join(f"{ref.kind}/{ref.name}" for ref in controllers)
            yield (
                ("ownerReferences",),
                f"only one reference can have controller set to true: {names}",
            )
        for index, finalizer in enumerate(self.finalizers or ()):
            for message in _syntax.qualified_name(finalizer):
                yield ("finalizers", index), f"invalid finalizer {finalizer!r}: {message}"


class LabelSelectorRequirement(ShoalModel):
    """One requirement of a label selector: ``key``, an operator and values."""

    key: str
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"]
    values: list[str] | None = None

    def _checks(self) -> Iterator[Check]:
        if self.operator in ("In", "NotIn") and not self.values:
            yield ("values",), f"must be specified when `operator` is '{self.operator}'"
        if self.operator in ("Exists", "DoesNotExist") and self.values:
            yield ("values",), f"may not be specified when `operator` is '{self.operator}'"
        for message in _syntax.qualified_name(self.key):
            yield ("key",), message

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        if self.operator == "Exists":
            return present
        if self.operator == "DoesNotExist":
            return not present
        inside = present and labels[self.key] in (self.values or ())
        return inside if self.operator == "In" else not inside


class LabelSelector(ShoalModel):
    """Selects objects by labels: all ``matchLabels`` and all ``matchExpressions`` must hold."""

    match_labels: dict[str, str] | None = None
    match_expressions: list[LabelSelectorRequirement] | None = None

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        """Whether an object with ``labels`` is selected. An empty selector selects everything."""
        labels = labels or {}
        if any(labels.get(k) != v for k, v in (self.match_labels or {}).items()):
            return False
        return all(req.matches(labels) for req in self.match_expressions or ())

    def is_empty(self) -> bool:
        return not self.match_labels and not self.match_expressions

    def _checks(self) -> Iterator[Check]:
        for key, value in (self.match_labels or {}).items():
            for message in _syntax.qualified_name(key):
                yield ("matchLabels", Key(key)), f"invalid label key {key!r}: {message}"
            for message in _syntax.label_value(value):
                yield ("matchLabels", Key(key)), f"invalid label value {value!r}: {message}"


class ObjectReference(ShoalModel):
    """Points at another object (the subject of an Event, for example)."""

    api_version: str | None = None
    kind: str | None = None
    name: str | None = None
    namespace: str | None = None
    uid: str | None = None
    resource_version: str | None = None
    field_path: str | None = None


_CONDITION_REASON = r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$"


class Condition(ShoalModel):
    """A standard condition (``metav1.Condition``): one aspect of an object's observed state."""

    type: str = Field(max_length=316)
    """CamelCase, e.g. ``Ready``, ``Succeeded``."""
    status: Literal["True", "False", "Unknown"]
    observed_generation: int | None = Field(default=None, ge=0)
    last_transition_time: Time | None = None
    """When ``status`` last changed (not when the condition was last written)."""
    reason: str | None = Field(default=None, max_length=1024, pattern=_CONDITION_REASON)
    """A CamelCase word a program can switch on."""
    message: str | None = Field(default=None, max_length=32768)
    """What a person should know."""


@dataclass(frozen=True, slots=True)
class PrinterColumn:
    """A column of ``kubectl get`` (and of a CRD's ``additionalPrinterColumns``)."""

    name: str
    type: Literal["integer", "number", "string", "boolean", "date"]
    json_path: str
    description: str = ""
    priority: int = 0


@dataclass(frozen=True, slots=True)
class KindInfo:
    """What the API needs to know about a kind: where it lives, how it is named and listed."""

    group: str
    """API group; empty for the core group (``v1``)."""
    version: str
    kind: str
    plural: str
    namespaced: bool = True
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    name_rule: NameRule = _syntax.dns1123_subdomain
    """The syntax object names of this kind must follow."""
    status_subresource: bool = False
    """Whether ``status`` is written through ``/status`` only (and never bumps ``generation``)."""
    printer_columns: tuple[PrinterColumn, ...] = ()
    group_aliases: tuple[str, ...] = field(default=())
    """Other spellings of ``group`` accepted on input (the talk's ``loadtest/v1``)."""

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def singular(self) -> str:
        return self.kind.lower()

    @property
    def list_kind(self) -> str:
        return f"{self.kind}List"

    @property
    def custom(self) -> bool:
        """Whether this kind is shoal's own (a CustomResourceDefinition on Kubernetes)."""
        return self.group.endswith(".shoal.dev")

    def accepts_api_version(self, api_version: str) -> bool:
        group, _, version = api_version.rpartition("/")
        return version == self.version and (group == self.group or group in self.group_aliases)


class KubeObject(ShoalModel):
    """The base of every kind: ``apiVersion``, ``kind``, ``metadata`` (then ``spec``, ``status``)."""

    INFO: ClassVar[KindInfo]

    api_version: str = ""
    """Filled in from the class when left out (``apps/v1`` for a Deployment)."""
    kind: str = ""
    """Filled in from the class when left out."""
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)

    @model_validator(mode="before")
    @classmethod
    def _fill_type_fields(cls, data: Any) -> Any:
        # Python users need not repeat apiVersion and kind; YAML users who wrote them are checked.
        info = getattr(cls, "INFO", None)
        if info is None or not isinstance(data, dict) or "api_version" in data:
            # On assignment pydantic passes the fields by name: they were filled in already.
            return data
        data = dict(data)
        api_version = data.get("apiVersion", data.get("api_version"))
        if api_version is None or (
            isinstance(api_version, str) and info.accepts_api_version(api_version)
        ):
            data.pop("api_version", None)
            data["apiVersion"] = info.api_version
        if "kind" not in data:
            data["kind"] = info.kind
        return data

    @model_validator(mode="after")
    def _default_namespace(self) -> KubeObject:
        if self.INFO.namespaced and self.metadata.namespace is None:
            self.metadata.namespace = "default"
        return self

    def _checks(self) -> Iterator[Check]:
        info = self.INFO
        if self.api_version != info.api_version:
            yield (
                ("apiVersion",),
                f"must be {info.api_version!r} for kind {info.kind}, got {self.api_version!r}",
            )
        if self.kind != info.kind:
            yield ("kind",), f"must be {info.kind!r}, got {self.kind!r}"
        meta = self.metadata
        if meta.name is None and meta.generate_name is None:
            yield ("metadata", "name"), "Required value: name or generateName is required"
        if meta.name is not None:
            for message in info.name_rule(meta.name):
                yield ("metadata", "name"), f"Invalid value: {meta.name!r}: {message}"
        if info.namespaced and meta.namespace is not None:
            for message in _syntax.dns1123_label(meta.namespace):
                yield ("metadata", "namespace"), f"Invalid value: {meta.namespace!r}: {message}"
        if not info.namespaced and meta.namespace:
            yield (
                ("metadata", "namespace"),
                f"not allowed on this type: {info.kind} is cluster-scoped",
            )

    # Convenience accessors used throughout the code base.
    @property
    def name(self) -> str:
        """``metadata.name`` (an object without one cannot be stored or compiled)."""
        if self.metadata.name is None:
            raise ValueError(f"this {self.kind} has no metadata.name")
        return self.metadata.name

    @property
    def namespace(self) -> str | None:
        return self.metadata.namespace

    def owner_reference(self, *, controller: bool = True) -> OwnerReference:
        """A reference making this object the (controlling) owner of another one."""
        if self.metadata.uid is None:
            raise ValueError(
                f"{self.kind}/{self.name} has no metadata.uid; only stored objects can own others"
            )
        return OwnerReference(
            api_version=self.api_version,
            kind=self.kind,
            name=self.name,
            uid=self.metadata.uid,
            controller=controller,
            block_owner_deletion=True,
        )

    def to_yaml(self) -> str:
        """The object as one YAML document, keys in the Kubernetes order."""
        from shoal.model.yamlio import dump_yaml

        return dump_yaml([self.to_dict()])

    @classmethod
    def kind_info(cls) -> KindInfo:
        return cls.INFO


def new_uid() -> str:
    """A fresh object uid, as the API server assigns on create."""
    return str(uuid.uuid4())


def selector_matches(selector: Mapping[str, str] | None, labels: Mapping[str, str] | None) -> bool:
    """Whether a Service-style equality selector (a plain map) selects ``labels``."""
    if not selector:
        return False
    labels = labels or {}
    return all(labels.get(k) == v for k, v in selector.items())
