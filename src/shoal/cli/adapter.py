"""``shoal adapter metrics|logs|health``: the adapter pattern's ready-made containers.

Every command takes its settings as flags or as a YAML file (``--config FILE``); a flag given
on the command line overrides the file's value. A bad file is reported as
``FILE:LINE:COLUMN: field: message`` and exits 2, like a bad flag.
"""

from __future__ import annotations

import asyncio
import dataclasses
import signal
import sys
from typing import Any, TypeVar

import click

from shoal.components.adapters.health import (
    HealthChecker,
    HealthConfig,
    HealthSettings,
    parse_check,
    serve_health,
)
from shoal.components.adapters.logs import FORMATS as LOG_FORMATS
from shoal.components.adapters.logs import LogsConfig, LogsSettings, make_parser, run_logs
from shoal.components.adapters.metrics import (
    FORMATS,
    MetricsAdapter,
    MetricsConfig,
    MetricsSettings,
    serve_metrics,
)
from shoal.errors import InvalidObjectsError
from shoal.model._base import ShoalModel
from shoal.model.configfile import load_config_file

__all__ = ["adapter_group"]

M = TypeVar("M", bound=ShoalModel)

CONFIG_HELP = "A YAML file with these settings (camelCase keys); flags given override it."


def _load(path: str, model: type[M]) -> M:
    try:
        return load_config_file(path, model)
    except InvalidObjectsError as error:
        for issue in error.issues:
            click.echo(str(issue), err=True)
        raise click.UsageError(f"{path}: invalid configuration (see above)") from None


def _override(settings: Any, **flags: Any) -> Any:
    """``settings`` with every flag that was given (not None, not empty) replacing its field."""
    given = {k: v for k, v in flags.items() if v is not None and v != ()}
    return dataclasses.replace(settings, **given)


@click.group("adapter")
def adapter_group() -> None:
    """Adapters: present an app's statistics, logs and health in a standard form.

    Each runs as a container beside the app in the same pod (or standalone) and talks to the
    app over the pod's loopback.
    """


@adapter_group.command("metrics")
@click.option("--config", "config_path", metavar="FILE", help=CONFIG_HELP)
@click.option("--listen", metavar="HOST:PORT", help="Where /metrics is served [127.0.0.1:9121].")
@click.option(
    "--upstream",
    metavar="ADDR",
    help="The app: HOST:PORT, redis://[:PASSWORD@]HOST:PORT or http://HOST:PORT/PATH.",
)
@click.option(
    "--format", "format_", type=click.Choice(FORMATS), help="What the app serves [redis-info]."
)
@click.option("--prefix", help="Metric name prefix [redis for redis-info, app otherwise].")
@click.option("--path", help="HTTP path of the statistics page (json, kv) [/stats].")
@click.option(
    "--timeout", type=click.FloatRange(min=0, min_open=True), help="Seconds per scrape [5]."
)
@click.option(
    "--label",
    "labels",
    multiple=True,
    metavar="PATH=LABEL",
    help="json: the keys of the object at PATH (dotted, * = any key) become LABEL values. Repeatable.",
)
@click.option(
    "--counter",
    "counters",
    multiple=True,
    metavar="GLOB",
    help="Metric names matching GLOB are counters (NAME_total always is). Repeatable.",
)
def metrics_command(
    config_path: str | None,
    listen: str | None,
    upstream: str | None,
    format_: str | None,
    prefix: str | None,
    path: str | None,
    timeout: float | None,
    labels: tuple[str, ...],
    counters: tuple[str, ...],
) -> None:
    """Serve an app's own statistics (Redis INFO, a JSON page, key-value text) as Prometheus
    metrics on /metrics.

    Each scrape of /metrics reads the app once; `PREFIX_up` says whether that worked. Prints
    `listening on HOST:PORT` when ready; SIGTERM or Ctrl-C stops it.
    """
    if config_path is not None:
        settings = _load(config_path, MetricsConfig).settings()
    elif upstream is None:
        raise click.UsageError("give --upstream (or --config FILE)")
    else:
        settings = MetricsSettings()
    label_paths: dict[str, str] | None = None
    if labels:
        label_paths = dict(settings.label_paths)
        for item in labels:
            key, sep, label = item.partition("=")
            if not sep or not label:
                raise click.UsageError(f"--label must be PATH=LABEL, got {item!r}")
            label_paths[key] = label
    settings = _override(
        settings,
        listen=listen,
        upstream=upstream,
        format=format_,
        prefix=prefix,
        path=path,
        timeout=timeout,
        label_paths=label_paths,
        counters=counters or None,
    )
    try:
        MetricsAdapter(settings)  # checks the addresses before anything listens
    except ValueError as error:
        raise click.UsageError(str(error)) from None
    asyncio.run(_serve(serve_metrics(settings)))


@adapter_group.command("logs")
@click.option("--config", "config_path", metavar="FILE", help=CONFIG_HELP)
@click.option("--input", "input_", metavar="FILE|-", help="The log to read [- : standard input].")
@click.option(
    "--output", metavar="FILE|-", help="Where JSON lines go (appended) [- : standard output]."
)
@click.option(
    "--format", "format_", type=click.Choice(LOG_FORMATS), help="The lines' format [combined]."
)
@click.option(
    "--regexp", metavar="REGEXP", help="With --format regexp: named groups, e.g. (?P<level>\\w+)."
)
@click.option(
    "--follow/--no-follow",
    "-F",
    default=None,
    help="Keep reading the file as it grows and is rotated, like tail -F.",
)
@click.option("--from-end", is_flag=True, default=None, help="Following: skip what is there now.")
def logs_command(
    config_path: str | None,
    input_: str | None,
    output: str | None,
    format_: str | None,
    regexp: str | None,
    follow: bool | None,
    from_end: bool | None,
) -> None:
    """Turn log lines (common/combined access logs, logfmt, a regexp) into one JSON object per
    line with normalized fields.

    A line that does not parse is written as {"message": LINE, "parse_error": true}, never
    dropped. The fields are listed in docs/components/adapter-logs.md.
    """
    settings = _load(config_path, LogsConfig).settings() if config_path else LogsSettings()
    settings = _override(
        settings,
        input=input_,
        output=output,
        format=format_,
        regexp=regexp,
        follow=follow,
        from_end=from_end,
    )
    if settings.follow and settings.input == "-":
        raise click.UsageError("--follow needs --input FILE (standard input is read to its end)")
    try:
        make_parser(settings.format, settings.regexp)
    except ValueError as error:
        raise click.UsageError(str(error)) from None
    try:
        asyncio.run(_until_signal(run_logs, settings))
    except FileNotFoundError as error:
        click.echo(f"error: {error.filename}: no such file (use --follow to wait for it)", err=True)
        sys.exit(1)
    except OSError as error:
        click.echo(f"error: {error.filename or ''}: {error.strerror or error}", err=True)
        sys.exit(1)


@adapter_group.command("health")
@click.option("--config", "config_path", metavar="FILE", help=CONFIG_HELP)
@click.option("--listen", metavar="HOST:PORT", help="Where /healthz is served [127.0.0.1:8086].")
@click.option(
    "--check",
    "checks",
    multiple=True,
    metavar="[NAME=]URL",
    help="redis://HOST:PORT, http://HOST/PATH, tcp://HOST:PORT or "
    "sql:sqlite:///PATH?query=SELECT+1. Repeatable.",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=1.0,
    show_default=True,
    help="Seconds each --check may take.",
)
@click.option(
    "--interval",
    type=click.FloatRange(min=0, min_open=True),
    help="Seconds between checks of each dependency [2].",
)
@click.option("--rise", type=click.IntRange(min=1), help="Passes in a row to recover [1].")
@click.option("--fall", type=click.IntRange(min=1), help="Failures in a row to fail [1].")
def health_command(
    config_path: str | None,
    listen: str | None,
    checks: tuple[str, ...],
    timeout: float,
    interval: float | None,
    rise: int | None,
    fall: int | None,
) -> None:
    """Check the app's dependencies and serve /healthz: 200 when all pass, else 503, with a JSON
    body listing each check's status, latency and detail. /livez is always 200.

    Checks run in the background every --interval; a probe only reads their last results.
    --check flags are added to the config file's checks.
    """
    try:
        specs = tuple(parse_check(text, timeout=timeout) for text in checks)
    except ValueError as error:
        raise click.UsageError(str(error)) from None
    if config_path is not None:
        try:
            settings = _load(config_path, HealthConfig).settings()
        except ValueError as error:
            raise click.UsageError(f"{config_path}: {error}") from None
    elif not specs:
        raise click.UsageError("give at least one --check (or --config FILE)")
    else:
        settings = HealthSettings()
    settings = _override(
        settings,
        listen=listen,
        checks=(settings.checks + specs) if specs else None,
        interval=interval,
        rise=rise,
        fall=fall,
    )
    try:
        HealthChecker(settings)
    except ValueError as error:
        raise click.UsageError(str(error)) from None
    asyncio.run(_serve(serve_health(settings)))


async def _until_signal(run: Any, settings: Any) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        await run(settings, stop=stop)
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)


async def _serve(server: Any) -> None:
    try:
        await server
    except OSError as error:
        click.echo(f"error: cannot listen: {error.strerror or error}", err=True)
        sys.exit(1)
