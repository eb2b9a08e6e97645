"""``shoal ambassador split``: a weighted share of requests to a canary, mirroring to a shadow."""

from __future__ import annotations

import logging
from typing import Any

import click

from shoal.cli.sidecar import load_settings
from shoal.errors import ShoalError

__all__ = ["split_command"]


@click.command("split")
@click.option("--config", type=click.Path(dir_okay=False), help="YAML settings (flags override).")
@click.option(
    "--listen",
    metavar="HOST:PORT",
    help="Where the app sends its requests (port 0: any free port).  [default: 127.0.0.1:8000]",
)
@click.option("--upstream", metavar="HOST:PORT", help="The primary service.")
@click.option("--canary", metavar="HOST:PORT", help="The canary service.")
@click.option(
    "--weight",
    type=click.FloatRange(0, 100),
    help="Percent of requests for the canary.  [default: 10]",
)
@click.option("--sticky-header", metavar="NAME", help="Keep a client on one side by this header.")
@click.option("--sticky-cookie", metavar="NAME", help="Keep a client on one side by this cookie.")
@click.option("--mirror", metavar="HOST:PORT", help="A shadow service; its answers are dropped.")
@click.option(
    "--mirror-percent",
    type=click.FloatRange(0, 100),
    help="Percent of bodiless requests copied to the shadow.  [default: 100]",
)
@click.option(
    "--loop", type=click.Choice(["auto", "asyncio", "uvloop"]), default="auto", show_default=True
)
@click.option("-v", "--verbose", is_flag=True, help="Log upstream and mirror errors.")
def split_command(config: str | None, loop: str, verbose: bool, **flags: Any) -> None:
    """Send --weight percent of requests to --canary and the rest to --upstream.

    With --sticky-header or --sticky-cookie, the value is hashed (the data plane's Maglev
    hashing) so a client stays on one side; without, each request draws. With --mirror, a
    share of bodiless requests is also copied to a shadow whose answers are dropped; a slow or
    failing shadow never delays or fails a client. Prints `listening on HOST:PORT`.
    """
    from shoal.components.sidecars._serve import run
    from shoal.components.split.ambassador import SplitConfig, run_split

    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    settings = load_settings(SplitConfig, config, flags).settings()
    try:
        run(lambda: run_split(settings), loop)
    except ShoalError as error:
        raise click.ClickException(str(error)) from None
    except ValueError as error:
        raise click.UsageError(str(error)) from None
