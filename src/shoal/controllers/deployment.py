"""The Deployment controller's driver: claims ReplicaSets, runs :func:`plan_deployment`, writes.

See :mod:`shoal.controllers.rollout` for the decisions. This module only reads the caches,
adopts orphaned ReplicaSets that match (and releases owned ones that no longer do), and carries
the plan out: create the new ReplicaSet, write the scaled ones, delete surplus history, then the
Deployment's revision annotation and status, and the Events ``kubectl describe`` shows.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping
from typing import Any

from shoal.client import APIConflict, APINotFound, Result
from shoal.controllers._objects import (
    DEPLOYMENT,
    REPLICA_SET,
    claim,
    in_namespace,
    name_of,
    split_key,
    with_owner,
    without_owner,
)
from shoal.controllers._runtime import Context
from shoal.controllers.rollout import plan_deployment

__all__ = ["DeploymentController"]

log = logging.getLogger("shoal.controllers.deployment")


class DeploymentController:
    """Reconciles one Deployment per key (``namespace/name``)."""

    name = "deployment"

    def __init__(self, context: Context) -> None:
        self.context = context

    async def reconcile(self, key: str) -> Result | None:
        context = self.context
        deployment = context.caches.get(DEPLOYMENT, key)
        if deployment is None:
            return None
        namespace, _ = split_key(key)
        rs_api = in_namespace(REPLICA_SET, namespace)
        every = context.caches.list(REPLICA_SET, namespace)
        owned, adopt, release = claim(deployment, every)
        for rs in adopt:
            owned.append(await context.api.update(rs_api, with_owner(rs, deployment)))
        for rs in release:
            await context.api.update(rs_api, without_owner(rs, deployment))

        plan = plan_deployment(
            deployment, owned, context.now(), taken_names={name_of(rs): rs for rs in every}
        )
        if plan.create is not None:
            try:
                await context.api.create(rs_api, plan.create)
            except APIConflict:
                # Created meanwhile (by an earlier round whose write the cache has not shown).
                return Result(requeue_after=0.1)
        for rs in plan.update:
            await context.api.update(rs_api, rs)
        for name in plan.delete:
            with contextlib.suppress(APINotFound):
                await context.api.delete(rs_api, name)
        current: Mapping[str, Any] = deployment
        d_api = in_namespace(DEPLOYMENT, namespace)
        if plan.annotations is not None:
            body = {
                **deployment,
                "metadata": {**deployment["metadata"], "annotations": dict(plan.annotations)},
            }
            current = await context.api.update(d_api, body)
        if plan.status is not None:
            await context.api.update_status(d_api, {**current, "status": dict(plan.status)})
        for reason, message in plan.events:
            await context.recorder.record(deployment, "Normal", reason, message)
        if plan.requeue_after is not None:
            return Result(requeue_after=plan.requeue_after)
        return None
