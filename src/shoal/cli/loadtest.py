"""``shoal loadtest``: a LoadTest's report, and the runner its generator pod runs."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import sys
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from shoal.client import APINotFound, HTTPClient, KubeConfigError, ResourceRef
from shoal.client.kubeconfig import load_kubeconfig
from shoal.controllers.loadtest import (
    LOADTESTS,
    RunnerSettings,
    run_loadtest,
    runner_config,
)
from shoal.errors import PermanentError
from shoal.loadgen import LoadSettings, PlanError, parse_target
from shoal.loadgen.driver import run

__all__ = ["loadtest_group", "print_report"]


@click.group("loadtest")
def loadtest_group() -> None:
    """LoadTest objects: read a report, or run one (what the generator pod does)."""


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.3f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def print_report(body: dict[str, Any], console: Console) -> None:
    """A LoadTest's spec and status as tables."""
    spec, status = body.get("spec") or {}, body.get("status") or {}
    name = body["metadata"]["name"]
    head = Table(title=f"LoadTest {body['metadata'].get('namespace')}/{name}", show_header=False)
    head.add_column(style="bold")
    head.add_column()
    head.add_row("service", str(spec.get("service")))
    head.add_row("requested req/s", str(spec.get("requestPerSecond")))
    head.add_row("duration", str(spec.get("duration", "30s")))
    head.add_row(
        "generation",
        f"{body['metadata'].get('generation')} (observed {status.get('observedGeneration')})",
    )
    head.add_row(
        "started / completed",
        f"{status.get('startTime', '-')} / {status.get('completionTime', '-')}",
    )
    head.add_row("requests", _cell(status.get("requests")))
    head.add_row("achieved req/s", _cell(status.get("achievedRequestsPerSecond")))
    head.add_row("error ratio", _cell(status.get("errorRatio")))
    console.print(head)
    conditions = Table(title="conditions")
    for column in ("type", "status", "reason", "message"):
        conditions.add_column(column)
    for item in status.get("conditions") or ():
        conditions.add_row(
            item.get("type", ""),
            item.get("status", ""),
            item.get("reason", ""),
            item.get("message", ""),
        )
    console.print(conditions)
    names = ("p50", "p90", "p99", "p999")
    paths = Table(title="latency ms (from intended start)")
    paths.add_column("request")
    paths.add_column("requests", justify="right")
    paths.add_column("errors", justify="right")
    for column in names:
        paths.add_column(column, justify="right")
    latency = status.get("latency") or {}
    paths.add_row(
        "all",
        _cell(status.get("requests")),
        "",
        *(_cell(latency.get(n)) for n in names),
    )
    for path in status.get("paths") or ():
        values = path.get("latency") or {}
        paths.add_row(
            f"{path.get('method', 'GET')} {path.get('path')}",
            _cell(path.get("requests")),
            _cell(path.get("errors")),
            *(_cell(values.get(n)) for n in names),
        )
    console.print(paths)
    if status.get("thresholds"):
        verdicts = Table(title="thresholds")
        for column in ("threshold", "observed", "verdict"):
            verdicts.add_column(column)
        for item in status["thresholds"]:
            verdicts.add_row(
                item.get("expression", ""),
                _cell(item.get("observed")),
                "[green]passed[/]" if item.get("passed") else "[bold red]FAILED[/]",
            )
        console.print(verdicts)


@loadtest_group.command("report")
@click.argument("name")
@click.option("-n", "--namespace", default=None, help="Default: the kubeconfig context's.")
@click.option("--kubeconfig", default=None, help="Default: as kubectl finds it.")
@click.option("--context", default=None)
@click.option("-o", "--output", type=click.Choice(["table", "json"]), default="table")
def report_command(
    name: str, namespace: str | None, kubeconfig: str | None, context: str | None, output: str
) -> None:
    """Show the LoadTest NAME's result: figures, conditions, per-path latency, thresholds."""

    async def fetch() -> dict[str, Any]:
        config = load_kubeconfig(kubeconfig, context=context, namespace=namespace)
        async with HTTPClient(config) as api:
            ref = ResourceRef(LOADTESTS.api_version, LOADTESTS.kind, config.namespace)
            return await api.get(ref, name)

    try:
        body = asyncio.run(fetch())
    except APINotFound:
        raise click.ClickException(f'loadtests.loadtest.shoal.dev "{name}" not found') from None
    except PermanentError as error:
        raise click.ClickException(str(error)) from None
    if output == "json":
        click.echo(
            json.dumps(
                {
                    "metadata": body["metadata"],
                    "spec": body.get("spec"),
                    "status": body.get("status"),
                },
                indent=2,
            )
        )
    else:
        print_report(body, Console())


@loadtest_group.command("run")
@click.option("--name", required=True, help="The LoadTest to run.")
@click.option("--namespace", default=None, help="Default: the credential's namespace.")
@click.option("--generation", type=int, default=None, help="Run only if the spec is still at it.")
@click.option("--status-interval", type=float, default=2.0, show_default=True)
@click.option(
    "--kubeconfig",
    default=None,
    help="Default: $KUBECONFIG, else the in-cluster service account, else as kubectl finds it.",
)
@click.option("--target", default=None, help="Send to this URL instead of the Service's address.")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True)
@click.option(
    "--loop", type=click.Choice(["auto", "asyncio", "uvloop"]), default="auto", show_default=True
)
def run_command(
    name: str,
    namespace: str | None,
    generation: int | None,
    status_interval: float,
    kubeconfig: str | None,
    target: str | None,
    workers: int,
    loop: str,
) -> None:
    """Run a LoadTest and write its status (the generator pod's command).

    Exits 0 when the run succeeded, 1 when it ended Failed, 0 as well when it was superseded
    (the object was deleted or its spec changed: a new pod takes over)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        config = runner_config(kubeconfig)
        address = parse_target(target)[0] if target else None
    except (KubeConfigError, PlanError) as error:
        raise click.ClickException(str(error)) from None
    settings = RunnerSettings(
        status_interval=status_interval, target=address, workers=workers, load=LoadSettings()
    )

    async def main() -> str:
        stop = asyncio.Event()
        loop_ = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop_.add_signal_handler(signum, stop.set)
        async with HTTPClient(config, namespace=namespace) as api:
            return await run_loadtest(
                api,
                namespace or config.namespace,
                name,
                generation,
                settings=settings,
                stop=stop,
            )

    reason = run(main(), loop=loop)
    click.echo(f"loadtest {name}: {reason}")
    if reason not in ("Succeeded", "Superseded", "NotFound"):
        sys.exit(1)
