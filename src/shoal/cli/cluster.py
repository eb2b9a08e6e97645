"""``shoal up``, ``shoal down``, ``shoal status`` and ``shoal cluster run``: the one-machine cluster.

``shoal up -f PATH`` starts the cluster in the background when none runs (``shoal cluster run``
in its own session, logging to ``DATA_DIR/cluster.log``), applies the files, shows progress until
everything is ready, and prints each service's URL and each load test's result.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.live import Live
from rich.table import Table

from shoal.apiserver.security import default_data_dir
from shoal.apiserver.server import DEFAULT_PORT, AddressInUseError
from shoal.cli.objects import CommandError, apply_manifests, load_manifests, parse_duration
from shoal.client.http import APIError, APIRetryableError, HTTPClient, NotFoundError
from shoal.client.kubeconfig import KubeConfigError, load_kubeconfig
from shoal.client.protocol import ResourceRef
from shoal.cluster.lifecycle import (
    LOG_FILE,
    ClusterStartError,
    ClusterState,
    read_state,
    start_in_background,
    stop_cluster,
)
from shoal.cluster.readiness import Progress, Readiness, readiness

__all__ = ["cluster_group", "down_command", "status_command", "up_command"]

_DATA_DIR_OPTION = click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="The cluster's state: database, certificates, kubeconfig, pods, logs "
    "(default: $SHOAL_HOME or ~/.shoal).",
)


def _data_dir(value: Path | None) -> Path:
    return (value or default_data_dir()).expanduser().absolute()


# -- shoal up ---------------------------------------------------------------------------------------


def _key(obj: Mapping[str, Any]) -> tuple[str, str, str, str]:
    meta = obj.get("metadata") or {}
    return (
        str(obj.get("apiVersion")),
        str(obj.get("kind")),
        str(meta.get("namespace") or ""),
        str(meta.get("name") or ""),
    )


def _label(obj: Mapping[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    return f"{str(obj.get('kind', '')).lower()}/{meta.get('name')}"


async def _refresh(client: HTTPClient, objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    fresh: list[dict[str, Any]] = []
    for obj in objects:
        api_version, kind, namespace, name = _key(obj)
        try:
            fresh.append(await client.get(ResourceRef(api_version, kind, namespace or None), name))
        except NotFoundError:
            fresh.append(obj)
    return fresh


_TRACKED = ("ReplicatedService", "ShardedService", "Deployment", "ReplicaSet", "Pod", "LoadTest")


def _progress_table(states: Sequence[tuple[str, Readiness]], elapsed: float) -> Table:
    table = Table(title=f"shoal up ({elapsed:.0f}s)", title_justify="left", box=None)
    table.add_column("OBJECT")
    table.add_column("STATE")
    table.add_column("DETAIL")
    styles = {Progress.READY: "green", Progress.WAITING: "yellow", Progress.FAILED: "red"}
    for label, state in states:
        table.add_row(label, f"[{styles[state.progress]}]{state.progress}[/]", state.detail)
    return table


async def _wait_ready(
    client: HTTPClient, applied: list[dict[str, Any]], within: float, console: Console
) -> list[dict[str, Any]]:
    """Poll the applied objects until each is ready or failed; show progress as it changes.
    Returns the objects as last read. Raises CommandError on timeout."""
    tracked = [obj for obj in applied if obj.get("kind") in _TRACKED]
    began = time.monotonic()
    deadline = began + within
    last: dict[str, str] = {}
    interactive = console.is_terminal
    live = Live(console=console, auto_refresh=False, transient=False) if interactive else None
    with live if live is not None else contextlib.nullcontext():
        while True:
            objects = await _refresh(client, tracked)
            states = [(_label(obj), readiness(obj)) for obj in objects]
            elapsed = time.monotonic() - began
            if live is not None:
                live.update(_progress_table(states, elapsed), refresh=True)
            else:
                for label, state in states:
                    line = f"{state.progress}: {state.detail}"
                    if last.get(label) != line:
                        last[label] = line
                        click.echo(f"[{elapsed:5.1f}s] {label}: {line}")
            if all(state.progress is not Progress.WAITING for _, state in states):
                return await _refresh(client, applied)
            if time.monotonic() > deadline:
                waiting = ", ".join(
                    f"{label} ({state.detail})"
                    for label, state in states
                    if state.progress is Progress.WAITING
                )
                raise CommandError(
                    f"error: not ready after {within:.0f}s: {waiting}\n"
                    "  see `shoal describe KIND NAME`, `shoal get pods` and `shoal logs POD`"
                )
            await asyncio.sleep(0.25)


async def _service_urls(client: HTTPClient, objects: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """(name, URL) for each applied Service and each pattern's Service."""
    urls: list[tuple[str, str]] = []
    for obj in objects:
        kind = obj.get("kind")
        if kind not in ("Service", "ReplicatedService", "ShardedService"):
            continue
        meta = obj.get("metadata") or {}
        namespace, name = meta.get("namespace") or client.namespace, str(meta.get("name"))
        service = obj
        if kind != "Service":
            try:
                service = await client.get(ResourceRef("v1", "Service", namespace), name)
            except NotFoundError:
                continue
        spec = service.get("spec") or {}
        cluster_ip = spec.get("clusterIP")
        if not cluster_ip or cluster_ip == "None":
            continue
        for port in spec.get("ports") or ():
            if (port.get("protocol") or "TCP") == "TCP":
                label = name if namespace == client.namespace else f"{namespace}/{name}"
                urls.append((label, f"http://{cluster_ip}:{port.get('port')}"))
    return urls


def _loadtest_lines(obj: Mapping[str, Any]) -> list[str]:
    status = obj.get("status") or {}
    name = (obj.get("metadata") or {}).get("name")
    state = readiness(obj)
    verdict = "Succeeded" if state.progress is Progress.READY else "Failed"
    lines = [f"loadtest/{name}: {verdict}: {state.detail}"]
    latency = status.get("latency") or {}
    figures = [
        f"requests {status['requests']}" if "requests" in status else "",
        f"achieved {status['achievedRequestsPerSecond']} req/s"
        if "achievedRequestsPerSecond" in status
        else "",
        f"errors {status['errorRatio']}" if "errorRatio" in status else "",
        " ".join(f"{key} {value} ms" for key, value in latency.items()),
    ]
    shown = "; ".join(figure for figure in figures if figure)
    if shown:
        lines.append(f"  {shown}")
    lines.append(f"  report: shoal loadtest report {name}")
    return lines


async def _up(
    kubeconfig: Path, paths: Sequence[str], within: float, wait: bool, console: Console
) -> int:
    config = load_kubeconfig(kubeconfig)
    async with HTTPClient(
        config, on_warning=lambda text: click.echo(f"Warning: {text}", err=True)
    ) as client:
        manifests = await load_manifests(client, paths)
        if not wait:
            _, failed = await apply_manifests(client, manifests)
            return 1 if failed else 0
        # Load tests go last: they measure the services, so they start once those are ready.
        workloads = [m for m in manifests if m.body.get("kind") != "LoadTest"]
        loadtests = [m for m in manifests if m.body.get("kind") == "LoadTest"]
        applied, failed = await apply_manifests(client, workloads)
        if failed:
            return 1
        objects = await _wait_ready(client, applied, within, console)
        if loadtests:
            applied_tests, failed = await apply_manifests(client, loadtests)
            if failed:
                return 1
            objects += await _wait_ready(client, applied_tests, within, console)
        code = 0
        for name, url in await _service_urls(client, objects):
            click.echo(f"service {name}: {url}")
        for obj in objects:
            if obj.get("kind") == "LoadTest":
                for line in _loadtest_lines(obj):
                    click.echo(line)
            if readiness(obj).progress is Progress.FAILED:
                code = 1
        return code


@click.command("up")
@click.option(
    "-f",
    "--filename",
    "paths",
    multiple=True,
    help="A YAML/JSON file, a directory or - to apply. Repeatable; none just starts the cluster.",
)
@_DATA_DIR_OPTION
@click.option("--address", default="127.0.0.1", show_default=True, help="The API server's address.")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=DEFAULT_PORT,
    show_default=True,
    help="The API server's port when a cluster is started (0 picks a free one).",
)
@click.option(
    "--timeout",
    default="5m",
    show_default=True,
    help="How long to wait for everything to be ready.",
)
@click.option(
    "--wait/--no-wait", default=True, show_default=True, help="Wait until everything is ready."
)
def up_command(
    paths: tuple[str, ...],
    data_dir: Path | None,
    address: str,
    port: int,
    timeout: str,
    wait: bool,
) -> None:
    """Start the one-machine cluster if none runs, apply files, and wait until all is ready.

    Prints each service's URL (its cluster address on loopback) and each load test's result.
    `shoal down` stops the cluster; `shoal status` summarizes it.
    """
    directory = _data_dir(data_dir)
    console = Console()
    try:
        seconds = parse_duration(timeout)
    except CommandError as error:
        raise click.BadParameter(str(error), param_hint="--timeout") from None
    shown = False

    def waiting(elapsed: float) -> None:
        nonlocal shown
        if not shown and elapsed > 0.5:
            click.echo("starting the cluster...", err=True)
            shown = True

    try:
        state, started = start_in_background(
            directory, ["--address", address, "--port", str(port)], on_wait=waiting
        )
    except ClusterStartError as error:
        click.echo(f"error: {error}", err=True)
        sys.exit(1)
    verb = "started" if started else "running"
    click.echo(f"cluster {verb}: API {state.url} (pid {state.pid})")
    click.echo(f"  export KUBECONFIG={state.kubeconfig}")
    if not paths:
        return
    try:
        code = asyncio.run(_up(state.kubeconfig, paths, seconds, wait, console))
    except KeyboardInterrupt:
        click.echo("interrupted; the cluster keeps running (`shoal down` stops it)", err=True)
        code = 130
    except CommandError as error:
        click.echo(str(error), err=True)
        code = 1
    except (KubeConfigError, APIError, NotFoundError, APIRetryableError) as error:
        click.echo(f"error: {error}", err=True)
        code = 1
    sys.exit(code)


# -- shoal down -------------------------------------------------------------------------------------


@click.command("down")
@_DATA_DIR_OPTION
@click.option(
    "--timeout",
    default="90s",
    show_default=True,
    help="How long pods get to stop gracefully before everything is killed.",
)
def down_command(data_dir: Path | None, timeout: str) -> None:
    """Stop the one-machine cluster and every pod process it runs.

    Objects stay in the cluster's database: the next `shoal up` starts their pods again.
    """
    directory = _data_dir(data_dir)
    try:
        seconds = parse_duration(timeout)
    except CommandError as error:
        raise click.BadParameter(str(error), param_hint="--timeout") from None
    state = stop_cluster(directory, timeout=seconds)
    if state is None:
        click.echo(f"no cluster is running (data dir {directory})")
        return
    click.echo(f"cluster stopped (pid {state.pid})")


# -- shoal status -----------------------------------------------------------------------------------


_STATUS_KINDS = (
    ("patterns.shoal.dev/v1", "ReplicatedService"),
    ("patterns.shoal.dev/v1", "ShardedService"),
    ("apps/v1", "Deployment"),
    ("loadtest.shoal.dev/v1", "LoadTest"),
)


async def _status(state: ClusterState) -> list[str]:
    lines: list[str] = []
    async with HTTPClient(load_kubeconfig(state.kubeconfig)) as client:
        for api_version, kind in _STATUS_KINDS:
            try:
                items = (await client.list(ResourceRef(api_version, kind))).items
            except (APIError, NotFoundError):
                continue
            for obj in items:
                meta = obj.get("metadata") or {}
                state_of = readiness(obj)
                lines.append(
                    f"{kind.lower()}/{meta.get('namespace')}/{meta.get('name')}: "
                    f"{state_of.progress}: {state_of.detail}"
                )
        services = (await client.list(ResourceRef("v1", "Service"))).items
        for name, url in await _service_urls(client, services):
            lines.append(f"service/{name}: {url}")
        pods = (await client.list(ResourceRef("v1", "Pod"))).items
        phases: dict[str, int] = {}
        for pod in pods:
            phase = (pod.get("status") or {}).get("phase") or "Pending"
            phases[phase] = phases.get(phase, 0) + 1
        summary = ", ".join(f"{count} {phase}" for phase, count in sorted(phases.items()))
        lines.append(f"pods: {summary or 'none'}")
    return lines


@click.command("status")
@_DATA_DIR_OPTION
def status_command(data_dir: Path | None) -> None:
    """Summarize the one-machine cluster: workloads, services with their URLs, pods."""
    directory = _data_dir(data_dir)
    state = read_state(directory)
    if state is None:
        click.echo(f"no cluster is running (data dir {directory}); start one with `shoal up`")
        sys.exit(3)
    uptime = time.time() - state.started
    click.echo(f"cluster running: API {state.url} (pid {state.pid}, up {uptime:.0f}s)")
    click.echo(f"  kubeconfig: {state.kubeconfig}")
    click.echo(f"  log: {directory / LOG_FILE}")
    try:
        for line in asyncio.run(_status(state)):
            click.echo(line)
    except (KubeConfigError, APIError, APIRetryableError) as error:
        click.echo(f"error: {error}", err=True)
        sys.exit(1)


# -- shoal cluster run ------------------------------------------------------------------------------


@click.group("cluster")
def cluster_group() -> None:
    """The cluster process itself (`shoal up` starts it in the background)."""


@cluster_group.command("run")
@_DATA_DIR_OPTION
@click.option("--address", default="127.0.0.1", show_default=True, help="The API server's address.")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=DEFAULT_PORT,
    show_default=True,
    help="The API server's port (0 picks a free one).",
)
@click.option(
    "--service-cidr",
    default="127.2.0.0/16",
    show_default=True,
    help="The loopback range Services' cluster addresses come from.",
)
@click.option(
    "--node-option",
    "node_options",
    multiple=True,
    metavar="FIELD=VALUE",
    help="Override a node setting (NodeSettings field, e.g. backoff_base=0.5). Repeatable.",
)
def run_command(
    data_dir: Path | None,
    address: str,
    port: int,
    service_cidr: str,
    node_options: tuple[str, ...],
) -> None:
    """Run the cluster in the foreground: API server, controllers, node and service proxy.

    SIGTERM or Ctrl-C stops it: pods stop gracefully first.
    """
    from shoal.cluster.runner import ClusterSettings, node_overrides, run_cluster

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        overrides = node_overrides(node_options)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--node-option") from None
    settings = ClusterSettings(
        data_dir=_data_dir(data_dir),
        address=address,
        port=port,
        service_cidr=service_cidr,
        node=overrides,
    )
    try:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(run_cluster(settings, stop_signals=(signal.SIGTERM, signal.SIGINT)))
    except AddressInUseError as error:
        click.echo(f"error: {error}", err=True)
        sys.exit(1)


@cluster_group.command("service-proxy")
@click.option("--kubeconfig", type=click.Path(dir_okay=False, path_type=Path), required=True)
def service_proxy_command(kubeconfig: Path) -> None:
    """Serve every Service's cluster address (the cluster runs this; like kube-proxy)."""
    from shoal.cluster.serviceproxy import run_service_proxy

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    with contextlib.suppress(KeyboardInterrupt):
        run_service_proxy(kubeconfig)
