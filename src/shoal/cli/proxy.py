"""``shoal proxy``: the data plane's HTTP reverse proxy, standalone, like a small HAProxy."""

from __future__ import annotations

import sys

import click

from shoal.dataplane.balancing import POLICIES
from shoal.dataplane.driver import LOOPS
from shoal.dataplane.http1 import PARSERS
from shoal.dataplane.standalone import run_proxy


@click.command("proxy")
@click.option(
    "--listen",
    required=True,
    metavar="HOST:PORT",
    help="Where to accept connections (port 0: any free port).",
)
@click.option(
    "--backend",
    "backends",
    multiple=True,
    required=True,
    metavar="HOST:PORT",
    help="A server to forward to. Repeat for several.",
)
@click.option(
    "--policy", type=click.Choice(list(POLICIES)), default="round-robin", show_default=True
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Processes sharing the port (SO_REUSEPORT).",
)
@click.option(
    "--loop",
    type=click.Choice(list(LOOPS)),
    default="auto",
    show_default=True,
    help="uvloop when installed, or plain asyncio.",
)
@click.option(
    "--parser",
    type=click.Choice(list(PARSERS)),
    default="auto",
    show_default=True,
    help="httptools when installed, or the pure-Python parser.",
)
def proxy_command(
    listen: str, backends: tuple[str, ...], policy: str, workers: int, loop: str, parser: str
) -> None:
    """Forward HTTP/1.1 from --listen to the --backend servers, balanced by --policy.

    Prints `listening on HOST:PORT` when ready; SIGTERM or Ctrl-C drains in-flight requests and
    exits 0. Not yet here: --config files, shard routing, health checks and metrics (see
    docs/dataplane-proxy.md).
    """
    try:
        status = run_proxy(
            listen, backends, policy=policy, workers=workers, loop=loop, parser=parser
        )
    except ValueError as error:
        raise click.UsageError(str(error)) from None
    sys.exit(status)
