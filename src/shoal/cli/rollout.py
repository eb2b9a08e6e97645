"""``shoal rollout status|history|undo`` and ``shoal scale``: kubectl's rollout commands.

They read what the Deployment controller writes (``status``, the ReplicaSets' revision
annotations) exactly as kubectl does, so they work against shoal's server and Kubernetes alike.
``undo`` is client-side, as kubectl's: it copies the template of the chosen revision's
ReplicaSet (without ``pod-template-hash``) into the Deployment; the controller then rolls.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import click

from shoal.cli.objects import CommandError, _connection_options, _run
from shoal.client import APIConflict, HTTPClient, ResourceRef
from shoal.controllers.rollout import LABEL_HASH, revision_of

__all__ = ["rollout_group", "rollout_message", "scale_command", "undo_target"]

DEPLOYMENT = "apps/v1"


def rollout_message(deployment: Mapping[str, Any]) -> tuple[str, bool]:
    """kubectl's ``DeploymentStatusViewer``: what to print, and whether the rollout is done.
    Raises CommandError when the progress deadline was exceeded."""
    name = deployment.get("metadata", {}).get("name")
    spec, status = deployment.get("spec") or {}, deployment.get("status") or {}
    if int(deployment.get("metadata", {}).get("generation") or 0) > int(
        status.get("observedGeneration") or 0
    ):
        return "Waiting for deployment spec update to be observed...", False
    for condition in status.get("conditions") or ():
        if condition.get("type") == "Progressing" and condition.get("reason") == (
            "ProgressDeadlineExceeded"
        ):
            raise CommandError(f'error: deployment "{name}" exceeded its progress deadline')
    replicas = int(spec.get("replicas", 1))
    updated = int(status.get("updatedReplicas") or 0)
    total = int(status.get("replicas") or 0)
    available = int(status.get("availableReplicas") or 0)
    if updated < replicas:
        return (
            f'Waiting for deployment "{name}" rollout to finish: {updated} out of {replicas} '
            "new replicas have been updated...",
            False,
        )
    if total > updated:
        return (
            f'Waiting for deployment "{name}" rollout to finish: {total - updated} old replicas '
            "are pending termination...",
            False,
        )
    if available < updated:
        return (
            f'Waiting for deployment "{name}" rollout to finish: {available} of {updated} '
            "updated replicas are available...",
            False,
        )
    return f'deployment "{name}" successfully rolled out', True


def undo_target(replica_sets: Sequence[Mapping[str, Any]], to_revision: int) -> Mapping[str, Any]:
    """The ReplicaSet to roll back to: revision ``to_revision``, or (0) the one before the
    current (highest) revision."""
    ordered = sorted(replica_sets, key=revision_of)
    if to_revision:
        for rs in ordered:
            if revision_of(rs) == to_revision:
                return rs
        raise CommandError(f"error: unable to find specified revision {to_revision} in history")
    if len(ordered) < 2:
        raise CommandError("error: no rollout history found for the previous revision")
    return ordered[-2]


def _split(target: str) -> str:
    kind, _, name = target.partition("/")
    if kind not in ("deployment", "deployments", "deploy", "deployment.apps") or not name:
        raise click.BadParameter("expected deployment/NAME", param_hint="TARGET")
    return name


async def _owned_sets(client: HTTPClient, deployment: Mapping[str, Any]) -> list[dict[str, Any]]:
    namespace = deployment["metadata"]["namespace"]
    uid = deployment["metadata"]["uid"]
    listed = await client.list(ResourceRef(DEPLOYMENT, "ReplicaSet", namespace))
    return [
        rs
        for rs in listed.items
        if any(
            ref.get("uid") == uid and ref.get("controller")
            for ref in rs["metadata"].get("ownerReferences") or ()
        )
    ]


@click.group("rollout")
def rollout_group() -> None:
    """Watch, list and undo the rollouts of a Deployment."""


@rollout_group.command("status")
@click.argument("target")
@click.option("--timeout", default=300.0, show_default=True, help="Seconds to wait.")
@_connection_options
def status_command(
    target: str, timeout: float, kubeconfig: Path | None, context: str | None, namespace: str | None
) -> None:
    """Wait until deployment/NAME has rolled out."""
    name = _split(target)

    async def body(client: HTTPClient) -> int:
        ref = ResourceRef(DEPLOYMENT, "Deployment", client.namespace)
        last = ""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            message, done = rollout_message(await client.get(ref, name))
            if message != last:
                click.echo(message)
                last = message
            if done:
                return 0
            if loop.time() >= deadline:
                raise CommandError("error: timed out waiting for the condition")
            await asyncio.sleep(0.5)  # polling a server, as kubectl's watch would

    _run(kubeconfig, context, namespace, body)


@rollout_group.command("history")
@click.argument("target")
@_connection_options
def history_command(
    target: str, kubeconfig: Path | None, context: str | None, namespace: str | None
) -> None:
    """List the revisions of deployment/NAME."""
    name = _split(target)

    async def body(client: HTTPClient) -> int:
        deployment = await client.get(ResourceRef(DEPLOYMENT, "Deployment", client.namespace), name)
        click.echo(f"deployment.apps/{name}")
        click.echo("REVISION  CHANGE-CAUSE")
        for rs in sorted(await _owned_sets(client, deployment), key=revision_of):
            cause = (rs["metadata"].get("annotations") or {}).get("kubernetes.io/change-cause")
            click.echo(f"{revision_of(rs):<9} {cause or '<none>'}")
        return 0

    _run(kubeconfig, context, namespace, body)


@rollout_group.command("undo")
@click.argument("target")
@click.option("--to-revision", default=0, help="The revision to roll back to (0: the previous).")
@_connection_options
def undo_command(
    target: str,
    to_revision: int,
    kubeconfig: Path | None,
    context: str | None,
    namespace: str | None,
) -> None:
    """Roll deployment/NAME back to an earlier revision."""
    name = _split(target)

    async def body(client: HTTPClient) -> int:
        ref = ResourceRef(DEPLOYMENT, "Deployment", client.namespace)
        for _ in range(10):
            deployment = await client.get(ref, name)
            rs = undo_target(await _owned_sets(client, deployment), to_revision)
            template = copy.deepcopy(rs["spec"]["template"])
            template.get("metadata", {}).get("labels", {}).pop(LABEL_HASH, None)
            if template == deployment["spec"]["template"]:
                click.echo(
                    f"deployment.apps/{name} skipped rollback (current template already matches revision {revision_of(rs)})"
                )
                return 0
            deployment["spec"]["template"] = template
            try:
                await client.update(ref, deployment)
            except APIConflict:
                continue
            click.echo(f"deployment.apps/{name} rolled back")
            return 0
        raise CommandError(f"error: {name} kept changing; try again")

    _run(kubeconfig, context, namespace, body)


@click.command("scale")
@click.argument("target")
@click.option("--replicas", type=click.IntRange(min=0), required=True, help="The new count.")
@_connection_options
def scale_command(
    target: str, replicas: int, kubeconfig: Path | None, context: str | None, namespace: str | None
) -> None:
    """Set the replicas of deployment/NAME."""
    name = _split(target)

    async def body(client: HTTPClient) -> int:
        ref = ResourceRef(DEPLOYMENT, "Deployment", client.namespace)
        for _ in range(10):
            deployment = await client.get(ref, name)
            deployment["spec"]["replicas"] = replicas
            try:
                await client.update(ref, deployment)
            except APIConflict:
                continue
            click.echo(f"deployment.apps/{name} scaled")
            return 0
        raise CommandError(f"error: {name} kept changing; try again")

    _run(kubeconfig, context, namespace, body)
