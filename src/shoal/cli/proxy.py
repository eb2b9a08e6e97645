"""``shoal proxy``: the data plane's HTTP reverse proxy, like a small HAProxy (docs/dataplane-proxy.md)."""

from __future__ import annotations

import sys

import click

from shoal.dataplane.balancing import POLICIES
from shoal.dataplane.driver import LOOPS, ProxySettings
from shoal.dataplane.http1 import PARSERS
from shoal.dataplane.native import IMPLEMENTATIONS
from shoal.dataplane.runtime import ACCESS_LOG_FORMATS
from shoal.dataplane.standalone import ServeOptions, run_proxy
from shoal.errors import InvalidObjectsError


@click.command("proxy")
@click.option(
    "--config",
    "config_path",
    metavar="FILE",
    help="A ProxyConfig file (listeners, routes, shards). SIGHUP reloads it in place.",
)
@click.option(
    "--listen",
    metavar="HOST:PORT",
    help="Without --config: where to accept connections (port 0: any free port).",
)
@click.option(
    "--backend",
    "backends",
    multiple=True,
    metavar="HOST:PORT",
    help="Without --config: a server to forward to. Repeat for several.",
)
@click.option(
    "--policy",
    type=click.Choice(list(POLICIES)),
    default="round-robin",
    show_default=True,
    help="Without --config: how backends share requests (hash: by path).",
)
@click.option(
    "--shard-regexp",
    metavar="REGEXP",
    help="Without --config: every backend is a shard; the key is the first capture over the path.",
)
@click.option(
    "--health-path",
    metavar="PATH",
    help="Without --config: check every backend with GET PATH (2xx/3xx passes).",
)
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="With --config: the address every listener (and the admin port) binds.",
)
@click.option(
    "--namespace",
    default="default",
    show_default=True,
    help="With --config: the namespace of `service:` backends (DNS fallback).",
)
@click.option(
    "--admin",
    metavar="HOST:PORT",
    help="Serve /healthz and /metrics here (with --config, default: --host and admin.port).",
)
@click.option(
    "--access-log",
    metavar="FILE|-",
    help="Append one line per request to FILE (- for stdout).",
)
@click.option(
    "--access-log-format",
    type=click.Choice(list(ACCESS_LOG_FORMATS)),
    default="combined",
    show_default=True,
)
@click.option(
    "--resolve-interval",
    type=click.FloatRange(min=0.1),
    default=10.0,
    show_default=True,
    help="Seconds between resolutions of `service:` backends.",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Processes sharing the ports (SO_REUSEPORT).",
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
@click.option(
    "--implementation",
    type=click.Choice(list(IMPLEMENTATIONS)),
    default="auto",
    show_default=True,
    help="The compiled hot path when built (auto), or force one (compiled fails if not built).",
)
def proxy_command(
    config_path: str | None,
    listen: str | None,
    backends: tuple[str, ...],
    policy: str,
    shard_regexp: str | None,
    health_path: str | None,
    host: str,
    namespace: str,
    admin: str | None,
    access_log: str | None,
    access_log_format: str,
    resolve_interval: float,
    workers: int,
    loop: str,
    parser: str,
    implementation: str,
) -> None:
    """Forward HTTP/1.1 to backends: from --listen to the --backend servers, or as --config says.

    Prints `listening on HOST:PORT` per listener (and `admin on HOST:PORT`) when ready. SIGHUP
    reloads --config without dropping a request (`reloaded` is printed; a bad file is reported
    and the running configuration kept). SIGTERM or Ctrl-C drains in-flight requests and exits 0.
    """
    options = ServeOptions(
        listen=listen,
        backends=backends,
        policy=policy,
        shard_regexp=shard_regexp,
        health_path=health_path,
        config=config_path,
        host=host,
        namespace=namespace,
        admin=admin,
        access_log=access_log,
        access_log_format=access_log_format,
        resolve_interval=resolve_interval,
        settings=ProxySettings(implementation=implementation),
    )
    try:
        status = run_proxy(workers=workers, loop=loop, parser=parser, options=options)
    except ValueError as error:
        raise click.UsageError(str(error)) from None
    except InvalidObjectsError as error:
        click.echo(f"Error: {error}", err=True)
        sys.exit(1)
    sys.exit(status)
