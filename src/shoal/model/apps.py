"""``ReplicaSet`` (``apps/v1``): a fixed number of identical pods, as Kubernetes defines it.

Users rarely write one: the Deployment controller makes one ReplicaSet per revision of a
Deployment's pod template (named ``<deployment>-<pod-template-hash>``) and scales them during a
rollout; the ReplicaSet controller keeps each one's pods. Field names, defaults and status are
Kubernetes' own, so ``kubectl get rs`` and ``kubectl rollout history`` read them unchanged.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import ClassVar, Literal

from pydantic import Field

from shoal.model._base import Check, ShoalModel, Time
from shoal.model.core import PodTemplateSpec, workload_template_checks
from shoal.model.meta import KindInfo, KubeObject, LabelSelector

__all__ = ["ReplicaSet", "ReplicaSetCondition", "ReplicaSetSpec", "ReplicaSetStatus"]


class ReplicaSetSpec(ShoalModel):
    """How many pods of which template, and which pods count as this set's."""

    replicas: int = Field(default=1, ge=0)
    min_ready_seconds: int = Field(default=0, ge=0)
    """A pod counts as available only after it has been ready this long."""
    selector: LabelSelector
    template: PodTemplateSpec

    def _checks(self) -> Iterator[Check]:
        yield from workload_template_checks(self.selector, self.template, "replicaset")


class ReplicaSetCondition(ShoalModel):
    type: str
    status: Literal["True", "False", "Unknown"]
    last_transition_time: Time | None = None
    reason: str | None = None
    message: str | None = None


class ReplicaSetStatus(ShoalModel):
    """What the ReplicaSet controller observed of the set's pods."""

    replicas: int = Field(default=0, ge=0)
    """Pods that exist and are not being deleted."""
    fully_labeled_replicas: int | None = Field(default=None, ge=0)
    ready_replicas: int | None = Field(default=None, ge=0)
    available_replicas: int | None = Field(default=None, ge=0)
    """Pods ready for at least ``minReadySeconds``."""
    terminating_replicas: int | None = Field(default=None, ge=0)
    observed_generation: int | None = None
    conditions: list[ReplicaSetCondition] | None = None


class ReplicaSet(KubeObject):
    """Keeps ``replicas`` pods of its template running (the Deployment controller's unit)."""

    INFO: ClassVar[KindInfo] = KindInfo(
        group="apps",
        version="v1",
        kind="ReplicaSet",
        plural="replicasets",
        short_names=("rs",),
        categories=("all",),
        status_subresource=True,
    )

    spec: ReplicaSetSpec
    status: ReplicaSetStatus | None = None
