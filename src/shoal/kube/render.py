"""Render objects as Kubernetes manifests: CRDs, the custom objects, and the primitives they compile to.

The output applies to a real cluster with ``kubectl apply -f``: the CustomResourceDefinitions of
shoal's kinds come first (so the custom objects after them are accepted), then namespaces and
configuration, then the custom objects (kept, so that the shoal operator can take them over), then
the Deployments and Services the compile step made of them. ``status`` is desired-state noise in a
manifest and is left out.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from shoal.errors import RenderError
from shoal.kube.crds import crd_for
from shoal.model import Deployment, KubeObject, Pod, dump_yaml
from shoal.model.core import PodSpec
from shoal.model.registry import ALL_KINDS
from shoal.patterns import CompileSettings, compile_objects

__all__ = ["Manifests", "RenderSettings", "render"]

Target = Literal["kubernetes"]
TARGETS: tuple[Target, ...] = ("kubernetes",)


@dataclass(frozen=True, slots=True)
class RenderSettings:
    """Settings of rendering to Kubernetes."""

    compile: CompileSettings = field(default_factory=CompileSettings)
    """Passed to the compile step (the shoal image the shard router runs, for example)."""
    include_crds: bool = True
    """Emit the CRDs of the custom kinds used, ahead of the objects."""


class Manifests(list[dict[str, Any]]):
    """Rendered manifests: a list of plain dicts, printable as multi-document YAML."""

    def to_yaml(self) -> str:
        return dump_yaml(list(self))

    def __str__(self) -> str:
        return self.to_yaml()


def render(
    objects: KubeObject | Iterable[KubeObject],
    target: str = "kubernetes",
    settings: RenderSettings | None = None,
) -> Manifests:
    """The manifests for ``objects`` on ``target`` (only ``kubernetes`` today)."""
    if target not in TARGETS:
        raise RenderError(f"unknown target {target!r}; supported targets: {', '.join(TARGETS)}")
    settings = settings or RenderSettings()
    items = [objects] if isinstance(objects, KubeObject) else list(objects)
    expanded = compile_objects(items, settings.compile)
    _require_images(expanded)

    order = {cls: index for index, cls in enumerate(ALL_KINDS)}
    custom = [obj for obj in expanded if obj.INFO.custom]
    builtin = [obj for obj in expanded if not obj.INFO.custom]
    manifests = Manifests()
    if settings.include_crds:
        seen: list[type[KubeObject]] = []
        for obj in custom:
            if type(obj) not in seen:
                seen.append(type(obj))
        manifests.extend(crd_for(cls) for cls in sorted(seen, key=lambda c: order[c]))
    early = [obj for obj in builtin if obj.INFO.kind in ("Namespace", "ConfigMap", "Secret")]
    late = [obj for obj in builtin if obj not in early]
    early.sort(key=lambda obj: order[type(obj)])
    for obj in (*early, *custom, *late):
        manifests.append(_manifest(obj))
    return manifests


def _manifest(obj: KubeObject) -> dict[str, Any]:
    data = obj.to_dict()
    data.pop("status", None)
    return data


def _require_images(objects: Iterable[KubeObject]) -> None:
    problems: list[str] = []
    for obj in objects:
        spec: PodSpec | None = None
        prefix = ""
        if isinstance(obj, Deployment):
            spec, prefix = obj.spec.template.spec, "spec.template.spec"
        elif isinstance(obj, Pod):
            spec, prefix = obj.spec, "spec"
        for index, container in enumerate(spec.containers if spec else ()):
            if not container.image:
                problems.append(
                    f"{obj.kind}/{obj.name}: {prefix}.containers[{index}].image: Required value: "
                    f"Kubernetes runs images; container {container.name!r} only has a command "
                    "(which runs directly on one machine). Add an `image`."
                )
    if problems:
        raise RenderError("cannot render for Kubernetes:\n" + "\n".join(problems))
