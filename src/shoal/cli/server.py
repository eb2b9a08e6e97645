"""``shoal server``: run the Kubernetes-compatible API server in the foreground."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from pathlib import Path

import click

from shoal.apiserver.security import default_data_dir
from shoal.apiserver.server import DEFAULT_PORT, AddressInUseError, ServerSettings, serve

__all__ = ["server_command"]


def _new_loop() -> asyncio.AbstractEventLoop:
    """uvloop when it is installed (the ``fast`` extra: its TLS and transports cost less CPU per
    request), else asyncio's own loop."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


async def _run(settings: ServerSettings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with serve(settings) as server:
        click.echo(f"shoal API server listening on {server.url}")
        click.echo(f"kubeconfig: {server.kubeconfig}")
        click.echo(f"  export KUBECONFIG={server.kubeconfig}", err=True)
        sys.stdout.flush()
        await stop.wait()
        click.echo("shutting down", err=True)


@click.command("server")
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where the database, certificates, token and kubeconfig live "
    "(default: $SHOAL_HOME or ~/.shoal).",
)
@click.option("--address", default="127.0.0.1", show_default=True, help="The address to listen on.")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=DEFAULT_PORT,
    show_default=True,
    help="The port to listen on; 0 picks a free one.",
)
def server_command(data_dir: Path | None, address: str, port: int) -> None:
    """Run the API server in the foreground (Ctrl-C stops it).

    kubectl works against it through the kubeconfig it writes:
    KUBECONFIG=DATA_DIR/kubeconfig kubectl get namespaces
    """
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    directory = (data_dir or default_data_dir()).expanduser().absolute()
    settings = ServerSettings(directory, address=address, port=port, tune_gc=True)
    try:
        with contextlib.suppress(KeyboardInterrupt), asyncio.Runner(loop_factory=_new_loop) as run:
            run.run(_run(settings))
    except AddressInUseError as error:
        click.echo(f"error: {error}", err=True)
        sys.exit(1)
