"""``shoal ambassador redis`` and ``shoal ambassador memcached``: key-sharding ambassadors.

Both take the same flags (or ``--config FILE``; flags given on the command line win over the
file) and differ only in protocol and default listen address.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import Any

import click

from shoal.components.ambassadors.config import (
    PROTOCOLS,
    AmbassadorConfig,
    AmbassadorSettings,
    apply_overrides,
    check_config,
    default_listen,
    load_config,
    servers_from_flags,
)
from shoal.components.ambassadors.native import resolve
from shoal.components.ambassadors.serve import run_ambassador
from shoal.components.ambassadors.servers import HealthSettings
from shoal.dataplane.driver import LOOPS
from shoal.dataplane.hashing import ALGORITHMS
from shoal.errors import ShoalError

__all__ = ["memcached_command", "redis_command"]

_DEFAULT_LISTEN = {protocol: default_listen(protocol) for protocol in PROTOCOLS}


def _options(protocol: str) -> Callable[[Callable[..., None]], Callable[..., None]]:
    listen = _DEFAULT_LISTEN[protocol]

    def decorate(function: Callable[..., None]) -> Callable[..., None]:
        for option in reversed(
            [
                click.option(
                    "--listen",
                    metavar="HOST:PORT",
                    help=f"Where the app connects [default: {listen}]; port 0: any free port.",
                ),
                click.option(
                    "--server",
                    "servers",
                    multiple=True,
                    metavar="HOST:PORT[:WEIGHT][ NAME]",
                    help="A shard server (repeat). The NAME (default HOST:PORT) is what is hashed.",
                ),
                click.option(
                    "--config",
                    "config_file",
                    type=click.Path(dir_okay=False),
                    help="A YAML configuration (see the docs); flags override it.",
                ),
                click.option(
                    "--hash",
                    "algorithm",
                    type=click.Choice(list(ALGORITHMS)),
                    help="Consistent hashing [default: maglev].",
                ),
                click.option(
                    "--hash-tag",
                    help="Two characters; only what is between them is hashed [default: {}]; '' turns tags off.",
                ),
                click.option(
                    "--server-connections",
                    type=click.IntRange(1, 64),
                    help="Persistent connections per server [default: 1].",
                ),
                click.option(
                    "--timeout",
                    type=click.FloatRange(min=0, min_open=True),
                    help="Seconds a server may take to answer [default: 5].",
                ),
                click.option(
                    "--server-failure-limit",
                    type=click.IntRange(min=1),
                    help="Failures in a row that mark a server down [default: 2].",
                ),
                click.option(
                    "--server-retry-timeout",
                    type=click.FloatRange(min=0, min_open=True),
                    help="Seconds before a down server is tried again [default: 2].",
                ),
                click.option(
                    "--auto-eject-hosts/--no-auto-eject-hosts",
                    default=None,
                    help="Send a down server's keys to the next server instead of failing them [default: off].",
                ),
                click.option(
                    "--max-value-bytes",
                    type=click.IntRange(min=1),
                    help="Longest value accepted [default: 1 MiB memcached, 64 MiB redis].",
                ),
                click.option(
                    "--admin",
                    metavar="HOST:PORT",
                    help="Serve Prometheus /metrics here (off unless given).",
                ),
                click.option(
                    "--workers",
                    type=click.IntRange(1, 64),
                    default=1,
                    show_default=True,
                    help="Processes sharing the port (SO_REUSEPORT), each with its own server connections.",
                ),
                click.option(
                    "--implementation",
                    type=click.Choice(["auto", "compiled", "python"]),
                    default=None,
                    help="The compiled hot path when built (auto, the default), or force one "
                    "(compiled fails if it is not built).",
                ),
                click.option(
                    "--loop",
                    type=click.Choice(list(LOOPS)),
                    default="auto",
                    show_default=True,
                    help="uvloop when installed, or plain asyncio.",
                ),
                click.option(
                    "-v", "--verbose", is_flag=True, help="Log server recoveries and more."
                ),
            ]
        ):
            function = option(function)
        return function

    return decorate


def _run(
    protocol: str,
    config_file: str | None,
    loop: str,
    verbose: bool,
    flags: dict[str, Any],
    workers: int = 1,
) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    renames = {
        "server_failure_limit": "failure_limit",
        "server_retry_timeout": "retry_timeout",
        "auto_eject_hosts": "auto_eject",
    }
    overrides = {renames.get(k, k): v for k, v in flags.items() if v is not None and v != ()}
    try:
        if "servers" in overrides:
            overrides["servers"] = servers_from_flags(overrides["servers"])
        if config_file is not None:
            config = load_config(config_file, protocol, overrides)
        else:
            base = AmbassadorConfig(
                servers=(),
                listen=_DEFAULT_LISTEN[protocol],
                settings=AmbassadorSettings(protocol=protocol, health=HealthSettings()),
            )
            config = apply_overrides(base, overrides)
        check_config(config)
        resolve(config.settings.implementation)  # "compiled" where it is not built: say so now
    except ImportError as error:
        raise click.ClickException(str(error)) from None
    except ShoalError as error:
        raise click.ClickException(str(error)) from None
    except ValueError as error:
        raise click.UsageError(str(error)) from None
    try:
        status = run_ambassador(config, loop=loop, workers=workers)
    except ValueError as error:
        raise click.UsageError(str(error)) from None
    sys.exit(status)


@click.command("redis")
@_options("redis")
def redis_command(
    config_file: str | None, loop: str, verbose: bool, workers: int, **flags: Any
) -> None:
    """Shard Redis keys over --server redis-servers (RESP2), like twemproxy.

    The app connects to --listen as to one Redis. Single-key commands go to the key's server;
    MGET, MSET, DEL, UNLINK, EXISTS and TOUCH are split and merged; multi-key commands whose keys
    share a server (use {hash tags}) are forwarded; transactions, pub/sub, blocking commands and
    whole-keyspace commands (KEYS, SCAN...) are refused with -ERR. Prints `listening on HOST:PORT`
    when ready; SIGTERM stops it.
    """
    _run("redis", config_file, loop, verbose, flags, workers)


@click.command("memcached")
@_options("memcached")
def memcached_command(
    config_file: str | None, loop: str, verbose: bool, workers: int, **flags: Any
) -> None:
    """Shard memcached keys over --server memcached servers (text protocol), like twemproxy.

    get/gets/gat/gats with several keys are split and merged; storage, delete, incr/decr and
    touch go to the key's server; version and quit are answered here; stats, flush_all and
    the like are refused with SERVER_ERROR. Prints `listening on HOST:PORT` when ready.
    """
    _run("memcached", config_file, loop, verbose, flags, workers)
