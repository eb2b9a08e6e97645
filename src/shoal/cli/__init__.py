"""The ``shoal`` command."""

from __future__ import annotations

import click

from shoal import __version__
from shoal.cli.adapter import adapter_group
from shoal.cli.ambassador import ambassador_group
from shoal.cli.cluster import cluster_group, down_command, status_command, up_command
from shoal.cli.load import load_command
from shoal.cli.loadtest import loadtest_group
from shoal.cli.logs import logs_command
from shoal.cli.manifests import render_command, validate_command
from shoal.cli.node import node_command
from shoal.cli.objects import (
    apply_command,
    delete_command,
    describe_command,
    get_command,
    wait_command,
)
from shoal.cli.proxy import proxy_command
from shoal.cli.rollout import rollout_group, scale_command
from shoal.cli.server import server_command
from shoal.cli.sidecar import sidecar_group

__all__ = ["main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="shoal")
def main() -> None:
    """shoal: the patterns of Designing Distributed Systems, running for real.

    Describe a replicated or sharded service (or a load test) in YAML or Python; run it on this
    machine (`shoal up -f FILE`, `shoal status`, `shoal down`) or render it as Kubernetes
    manifests (`shoal render`); run the parts alone: the API server (`shoal server`), the HTTP
    proxy (`shoal proxy`), the load generator (`shoal load`), the sidecars, ambassadors and
    adapters.
    """


main.add_command(up_command)
main.add_command(down_command)
main.add_command(status_command)
main.add_command(cluster_group)
main.add_command(validate_command)
main.add_command(render_command)
main.add_command(server_command)
main.add_command(proxy_command)
main.add_command(apply_command)
main.add_command(get_command)
main.add_command(describe_command)
main.add_command(delete_command)
main.add_command(wait_command)
main.add_command(sidecar_group)
main.add_command(adapter_group)
main.add_command(ambassador_group)
main.add_command(load_command)
main.add_command(node_command)
main.add_command(logs_command)
main.add_command(loadtest_group)
main.add_command(rollout_group)
main.add_command(scale_command)
