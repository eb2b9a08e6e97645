"""The resources the API server serves, and the discovery documents that describe them.

Every kind of the model is a resource (``pods``, ``deployments.apps``, ``shardedservices.
patterns.shoal.dev``...), plus ``customresourcedefinitions.apiextensions.k8s.io``, through
which users add their own kinds at run time. Discovery (``/api``, ``/apis``, ``/api/v1``,
``/apis/GROUP/VERSION``) is generated from this registry, so kubectl finds exactly what is served.

shoal's groups also answer under their short names (``loadtest/v1`` for
``loadtest.shoal.dev/v1``), so the talk's YAML applies with kubectl unchanged; both names store
the same objects.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from shoal.model.meta import KindInfo, KubeObject, PrinterColumn
from shoal.model.registry import ALL_KINDS

__all__ = ["CRD_RESOURCE", "Registry", "Resource", "ScalePaths"]

VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")
SUBRESOURCE_VERBS = ("get", "patch", "update")


@dataclass(frozen=True, slots=True)
class ScalePaths:
    """Where a kind keeps what its ``/scale`` subresource shows (JSON paths, as in a CRD's
    ``subresources.scale``)."""

    spec_replicas: str = ".spec.replicas"
    status_replicas: str = ".status.replicas"
    label_selector: str | None = ".spec.selector"


BUILTIN_SCALE = {("apps", "Deployment"): ScalePaths(), ("apps", "ReplicaSet"): ScalePaths()}
"""Built-in kinds with a ``/scale`` subresource."""


@dataclass(frozen=True, slots=True)
class Resource:
    """One served resource: its names, scope, schema source and printer columns."""

    group: str
    version: str
    kind: str
    plural: str
    namespaced: bool = True
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    status_subresource: bool = False
    printer_columns: tuple[PrinterColumn, ...] = ()
    model: type[KubeObject] | None = None
    """The model that validates objects; ``None`` for user CRDs (their schema does)."""
    schema: Mapping[str, Any] | None = field(default=None, compare=False)
    """A user CRD's ``openAPIV3Schema``."""
    canonical_group: str = ""
    """For a short alias group, the group whose objects it serves; else the group itself."""
    scale: ScalePaths | None = None
    """The ``/scale`` subresource's paths, when the kind has one."""

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def storage_group(self) -> str:
        return self.canonical_group or self.group

    @property
    def singular(self) -> str:
        return self.kind.lower()

    @property
    def list_kind(self) -> str:
        return f"{self.kind}List"

    @property
    def is_alias(self) -> bool:
        return bool(self.canonical_group) and self.canonical_group != self.group

    def discovery(self) -> list[dict[str, Any]]:
        """This resource's entries of an ``APIResourceList`` (with ``/status`` when it has one)."""
        entry: dict[str, Any] = {
            "name": self.plural,
            "singularName": self.singular,
            "namespaced": self.namespaced,
            "kind": self.kind,
            "verbs": list(VERBS),
        }
        if self.short_names:
            entry["shortNames"] = list(self.short_names)
        if self.categories:
            entry["categories"] = list(self.categories)
        out = [entry]
        if self.status_subresource:
            out.append(
                {
                    "name": f"{self.plural}/status",
                    "singularName": "",
                    "namespaced": self.namespaced,
                    "kind": self.kind,
                    "verbs": list(SUBRESOURCE_VERBS),
                }
            )
        if self.scale is not None:  # kubectl scale resolves the Scale kind from this entry
            out.append(
                {
                    "name": f"{self.plural}/scale",
                    "singularName": "",
                    "namespaced": self.namespaced,
                    "group": "autoscaling",
                    "version": "v1",
                    "kind": "Scale",
                    "verbs": list(SUBRESOURCE_VERBS),
                }
            )
        return out


def _from_info(info: KindInfo, model: type[KubeObject], group: str | None = None) -> Resource:
    return Resource(
        group=info.group if group is None else group,
        version=info.version,
        kind=info.kind,
        plural=info.plural,
        namespaced=info.namespaced,
        short_names=info.short_names if group is None else (),
        categories=info.categories if group is None else (),
        status_subresource=info.status_subresource,
        printer_columns=info.printer_columns,
        model=model,
        canonical_group=info.group,
        scale=BUILTIN_SCALE.get((info.group, info.kind)),
    )


def _crd_scale(version: Mapping[str, Any]) -> ScalePaths | None:
    scale = (version.get("subresources") or {}).get("scale")
    if not isinstance(scale, dict):
        return None
    return ScalePaths(
        spec_replicas=scale.get("specReplicasPath", ".spec.replicas"),
        status_replicas=scale.get("statusReplicasPath", ".status.replicas"),
        label_selector=scale.get("labelSelectorPath"),
    )


CRD_RESOURCE = Resource(
    group="apiextensions.k8s.io",
    version="v1",
    kind="CustomResourceDefinition",
    plural="customresourcedefinitions",
    namespaced=False,
    short_names=("crd", "crds"),
    categories=("api-extensions",),
    status_subresource=True,
    printer_columns=(PrinterColumn("Created At", "date", ".metadata.creationTimestamp"),),
    canonical_group="apiextensions.k8s.io",
)


class Registry:
    """The served resources, looked up by URL path or by apiVersion and kind."""

    def __init__(self) -> None:
        self._resources: dict[tuple[str, str, str], Resource] = {}
        self._by_crd: dict[str, list[Resource]] = {}

    @classmethod
    def builtin(cls) -> Registry:
        """Every kind of the model, CRDs, and the short alias groups of shoal's own kinds."""
        registry = cls()
        for model in ALL_KINDS:
            info = model.INFO
            registry._add(_from_info(info, model))
            for alias in info.group_aliases:
                registry._add(_from_info(info, model, group=alias))
        registry._add(CRD_RESOURCE)
        return registry

    def _add(self, resource: Resource) -> None:
        self._resources[(resource.group, resource.version, resource.plural)] = resource

    def add_crd(self, crd: Mapping[str, Any]) -> list[Resource]:
        """Serve the versions of a (valid) CustomResourceDefinition; returns what was added.

        Versions of built-in kinds are not replaced (the model keeps serving them)."""
        spec = crd["spec"]
        names = spec["names"]
        added = []
        for version in spec.get("versions", []):
            if not version.get("served", True):
                continue
            columns = tuple(
                PrinterColumn(
                    column["name"],
                    column["type"],
                    column["jsonPath"],
                    column.get("description", ""),
                    column.get("priority", 0),
                )
                for column in version.get("additionalPrinterColumns", [])
            )
            resource = Resource(
                group=spec["group"],
                version=version["name"],
                kind=names["kind"],
                plural=names["plural"],
                namespaced=spec.get("scope", "Namespaced") == "Namespaced",
                short_names=tuple(names.get("shortNames", ())),
                categories=tuple(names.get("categories", ())),
                status_subresource="status" in (version.get("subresources") or {}),
                printer_columns=columns,
                schema=(version.get("schema") or {}).get("openAPIV3Schema"),
                canonical_group=spec["group"],
                scale=_crd_scale(version),
            )
            key = (resource.group, resource.version, resource.plural)
            existing = self._resources.get(key)
            if existing is not None and existing.model is not None:
                # shoal's own kinds are built in: their CRD (from `shoal render`) is accepted and
                # stored, so Kubernetes manifests apply here unchanged, but the model serves them.
                continue
            self._add(resource)
            added.append(resource)
        self._by_crd[crd["metadata"]["name"]] = added
        return added

    def remove_crd(self, name: str) -> list[Resource]:
        removed = self._by_crd.pop(name, [])
        for resource in removed:
            self._resources.pop((resource.group, resource.version, resource.plural), None)
        return removed

    def lookup(self, group: str, version: str, plural: str) -> Resource | None:
        return self._resources.get((group, version, plural))

    def for_kind(self, api_version: str, kind: str) -> Resource | None:
        group, _, version = api_version.rpartition("/")
        for resource in self._resources.values():
            if (resource.group, resource.version, resource.kind) == (group, version, kind):
                return resource
        return None

    def __iter__(self) -> Iterator[Resource]:
        return iter(sorted(self._resources.values(), key=lambda r: (r.group, r.version, r.plural)))

    # -- discovery documents --------------------------------------------------------------

    def api_versions(self, server_address: str) -> dict[str, Any]:
        """``GET /api``."""
        return {
            "kind": "APIVersions",
            "versions": ["v1"],
            "serverAddressByClientCIDRs": [
                {"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}
            ],
        }

    def group_list(self) -> dict[str, Any]:
        """``GET /apis``: every named group and its versions."""
        groups: dict[str, list[str]] = {}
        for resource in self:
            if resource.group:
                versions = groups.setdefault(resource.group, [])
                if resource.version not in versions:
                    versions.append(resource.version)
        return {
            "kind": "APIGroupList",
            "apiVersion": "v1",
            "groups": [
                {
                    "name": group,
                    "versions": [{"groupVersion": f"{group}/{v}", "version": v} for v in versions],
                    "preferredVersion": {
                        "groupVersion": f"{group}/{versions[0]}",
                        "version": versions[0],
                    },
                }
                for group, versions in sorted(groups.items())
            ],
        }

    def group(self, name: str) -> dict[str, Any] | None:
        """``GET /apis/GROUP``."""
        for group in self.group_list()["groups"]:
            if group["name"] == name:
                return {"kind": "APIGroup", "apiVersion": "v1", **group}
        return None

    def resource_list(self, group: str, version: str) -> dict[str, Any] | None:
        """``GET /api/v1`` or ``GET /apis/GROUP/VERSION``; ``None`` when nothing is served there."""
        resources = [r for r in self if (r.group, r.version) == (group, version)]
        if not resources:
            return None
        return {
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": f"{group}/{version}" if group else version,
            "resources": [entry for r in resources for entry in r.discovery()],
        }
