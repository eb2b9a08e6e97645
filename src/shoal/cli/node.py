"""``shoal node``: run the node (the one-machine kubelet) against an API server, in the
foreground. The cluster runs the same :class:`~shoal.node.Node` in its own process; this command
is for tests and debugging."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from pathlib import Path

import click

from shoal.client.http import HTTPClient
from shoal.client.kubeconfig import KubeConfigError, load_kubeconfig
from shoal.errors import PermanentError
from shoal.node import Node, NodeSettings
from shoal.node.settings import default_node_dir

__all__ = ["node_command"]


async def _run(kubeconfig: Path | None, settings: NodeSettings) -> None:
    config = load_kubeconfig(kubeconfig)
    async with HTTPClient(config, user_agent="shoal-node") as client:
        node = Node(client, settings)
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, node.stop)
        async with asyncio.TaskGroup() as group:
            group.create_task(node.run())
            await node.ready.wait()
            click.echo(
                f"shoal node {settings.node_name} running pods (data dir {settings.data_dir}, "
                f"pod addresses {settings.pod_cidr})"
            )
            sys.stdout.flush()


@click.command("node")
@click.option(
    "--kubeconfig",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="The API server's kubeconfig (default: $KUBECONFIG, $SHOAL_HOME/kubeconfig or "
    "~/.shoal/kubeconfig, ~/.kube/config).",
)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Pods' volumes and logs, and the node's state (default: $SHOAL_HOME/node or "
    "~/.shoal/node).",
)
@click.option("--name", "node_name", default=None, help="The node's name (default: the host's).")
@click.option(
    "--pod-cidr",
    default="127.1.0.0/16",
    show_default=True,
    help="The loopback range pod addresses come from.",
)
@click.option(
    "--backoff-base",
    type=float,
    default=10.0,
    show_default=True,
    help="Seconds before the first restart of an exited container (doubles up to 300).",
)
@click.option(
    "--probe-time-scale",
    type=float,
    default=1.0,
    show_default=True,
    help="Multiplies every probe delay, period and timeout (tests use less than 1).",
)
@click.option("-v", "--verbose", is_flag=True, help="Log at debug level.")
def node_command(
    kubeconfig: Path | None,
    data_dir: Path | None,
    node_name: str | None,
    pod_cidr: str,
    backoff_base: float,
    probe_time_scale: float,
    verbose: bool,
) -> None:
    """Run the pods the API server assigns to this node (or leaves unassigned) as process
    groups, until Ctrl-C or SIGTERM; on the way out no pod process is left running."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    defaults = NodeSettings()
    settings = NodeSettings(
        data_dir=(data_dir or default_node_dir()).expanduser().absolute(),
        node_name=node_name or defaults.node_name,
        pod_cidr=pod_cidr,
        backoff_base=backoff_base,
        probe_time_scale=probe_time_scale,
    )
    try:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(_run(kubeconfig, settings))
    except* (KubeConfigError, PermanentError) as group:
        for error in group.exceptions:
            click.echo(f"error: {error}", err=True)
        sys.exit(1)
