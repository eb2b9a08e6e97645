"""``shoal load``: the open-loop load generator, standalone (wrk2's or vegeta's job)."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from shoal.errors import InvalidObjectsError
from shoal.loadgen import (
    ArrivalSchedule,
    LoadPlan,
    LoadSettings,
    PlanError,
    RequestSpec,
    RunStats,
    plan_for_loadtest,
    render_html,
    run,
    run_load,
    run_workers,
    summarize,
)
from shoal.loadgen.plan import Target, parse_target
from shoal.model.loading import load_text
from shoal.model.loadtest import LoadTest, Threshold, parse_threshold
from shoal.model.quantity import Duration, Quantity

__all__ = ["load_command", "print_summary"]


def _rate(text: str) -> float:
    try:
        value = float(Quantity.parse(text).value)
    except ValueError as error:
        raise click.BadParameter(str(error)) from None
    if value <= 0:
        raise click.BadParameter(f"must be greater than 0, got {text!r}")
    return value


def _seconds(text: str) -> float:
    try:
        return Duration.parse(text).seconds
    except ValueError as error:
        raise click.BadParameter(str(error)) from None


def parse_stages(text: str) -> list[tuple[float, float]]:
    """``10s:1k,20s:5k`` -> ``[(10.0, 1000.0), (20.0, 5000.0)]`` (ramp over DURATION to TARGET)."""
    stages = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        duration, colon, target = item.partition(":")
        if not colon:
            raise click.BadParameter(f"stage {item!r}: write DURATION:TARGET, e.g. 10s:1k")
        rate = float(Quantity.parse(target).value) if target.strip() else -1
        if rate < 0:
            raise click.BadParameter(f"stage {item!r}: the target must be a rate >= 0")
        stages.append((_seconds(duration), rate))
    return stages


def _load_spec(path: Path) -> LoadTest:
    try:
        objects = [o for o in load_text(path.read_text(), str(path)) if isinstance(o, LoadTest)]
    except InvalidObjectsError as error:
        raise click.ClickException(str(error)) from None
    if len(objects) != 1:
        raise click.ClickException(f"{path}: expected exactly one LoadTest, found {len(objects)}")
    return objects[0]


def print_summary(summary: dict[str, Any], console: Console) -> None:
    """The run as rich tables: totals, latency, paths, thresholds."""
    totals = Table(title=f"load on {summary['target']}", show_header=False)
    totals.add_column(style="bold")
    totals.add_column(justify="right")
    ratio = summary.get("achievedRatio")
    totals.add_row("requested req/s", f"{summary['requestedRequestsPerSecond']:,.1f}")
    totals.add_row(
        "achieved req/s",
        f"{summary['achievedRequestsPerSecond']:,.1f}"
        + (f"  ({ratio:.4f} of requested)" if ratio is not None else ""),
    )
    totals.add_row("duration s", f"{summary['duration']:,.3f}")
    totals.add_row("requests", f"{summary['requests']:,}")
    totals.add_row("errors", f"{summary['errors']:,} ({summary['errorRatio']:.4%})")
    totals.add_row("dropped / late", f"{summary['dropped']:,} / {summary['late']:,}")
    statuses = ", ".join(f"{k}: {v:,}" for k, v in summary["statuses"].items())
    failures = ", ".join(f"{k}: {v:,}" for k, v in summary["failures"].items())
    totals.add_row("statuses", statuses or "-")
    if failures:
        totals.add_row("failures", failures)
    console.print(totals)
    names = ("min", "p50", "p90", "p95", "p99", "p999", "max")
    latency = Table(title="latency ms (from intended start)")
    paths = Table(title="paths")
    paths.add_column("request")
    paths.add_column("requests", justify="right")
    paths.add_column("errors", justify="right")
    for name in names:
        latency.add_column(name, justify="right")
        if name not in ("min", "max"):
            paths.add_column(name, justify="right")

    def cell(value: float | None) -> str:
        return "-" if value is None else f"{value:,.3f}"

    latency.add_row(*(cell(summary["latency"].get(name)) for name in names))
    console.print(latency)
    for path in summary["paths"]:
        paths.add_row(
            f"{path['method']} {path['path']}",
            f"{path['requests']:,}",
            f"{path['errors']:,}",
            *(cell(path["latency"].get(name)) for name in names if name not in ("min", "max")),
        )
    if len(summary["paths"]) > 1:
        console.print(paths)
    if summary["thresholds"]:
        verdicts = Table(title="thresholds")
        verdicts.add_column("threshold")
        verdicts.add_column("observed", justify="right")
        verdicts.add_column("verdict")
        for item in summary["thresholds"]:
            verdicts.add_row(
                item["expression"],
                cell(item["observed"]),
                "[green]passed[/]" if item["passed"] else "[bold red]FAILED[/]",
            )
        console.print(verdicts)


async def _run(plan: LoadPlan, workers: int, loop: str, parser: str, progress: bool) -> RunStats:
    stop = asyncio.Event()
    running = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        running.add_signal_handler(signum, stop.set)
    try:
        if workers > 1:
            return await run_workers(plan, workers, stop=stop, loop=loop, parser=parser)

        def report(stats: RunStats, now: float) -> None:
            elapsed = now - stats.start
            print(
                f"{elapsed:6.1f}s  {stats.requests:>10,} requests  {stats.errors:,} errors  "
                f"{stats.dropped:,} dropped",
                file=sys.stderr,
            )

        return await run_load(
            plan, stop=stop, parser=parser, on_progress=report if progress else None
        )
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            running.remove_signal_handler(signum)


@click.command("load")
@click.argument("urls", nargs=-1, required=True, metavar="URL...")
@click.option("--rate", help="Requests per second, a quantity: 500, 10k. [required without -f]")
@click.option("--duration", default=None, help="How long to hold the rate: 30s, 1m.  [30s]")
@click.option(
    "--connections",
    type=click.IntRange(min=1),
    default=None,
    help="Keep-alive connections (one request in flight on each).  [64]",
)
@click.option("--stages", default=None, help="Ramps before the steady part: 10s:1k,20s:5k.")
@click.option("-X", "--method", default="GET", show_default=True, help="Method of every URL.")
@click.option("-H", "--header", "headers", multiple=True, help="'Name: value'; repeatable.")
@click.option("--body", default=None, help="Request body of every URL.")
@click.option(
    "-f",
    "--file",
    "spec_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A LoadTest YAML: its tests, rate, duration, stages and thresholds (flags override); "
    "the URL gives the host.",
)
@click.option(
    "--threshold", "thresholds", multiple=True, help="k6-style: 'p(99)<50', 'error_ratio<0.01'."
)
@click.option("--timeout", default="10s", show_default=True, help="Per request.")
@click.option(
    "--drop-after",
    default="1s",
    show_default=True,
    help="A request waiting this long for a free connection is dropped.",
)
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--json", "json_file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--html", "html_file", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--loop", type=click.Choice(["auto", "asyncio", "uvloop"]), default="auto", show_default=True
)
@click.option(
    "--parser",
    type=click.Choice(["auto", "pure", "httptools"]),
    default="auto",
    show_default=True,
)
@click.option("-q", "--quiet", is_flag=True, help="No progress lines.")
def load_command(
    urls: tuple[str, ...],
    rate: str | None,
    duration: str | None,
    connections: int | None,
    stages: str | None,
    method: str,
    headers: tuple[str, ...],
    body: str | None,
    spec_file: Path | None,
    thresholds: tuple[str, ...],
    timeout: str,
    drop_after: str,
    workers: int,
    json_file: Path | None,
    html_file: Path | None,
    loop: str,
    parser: str,
    quiet: bool,
) -> None:
    """Send requests to URL... at a constant (or ramping) arrival rate, open loop.

    Requests leave at their scheduled times whatever the responses do; latency is measured from
    each request's intended start, so a slow server shows in the percentiles (coordinated
    omission corrected). Every URL must name the same host; requests are spread evenly over the
    URLs (or by weight, with -f). Exits 1 when a --threshold fails.
    """
    try:
        plan, checks = _plan(
            urls, rate, duration, connections, stages, method, headers, body, spec_file,
            thresholds, timeout, drop_after,
        )  # fmt: skip
        stats = run(_run(plan, workers, loop, parser, not quiet), loop=loop)
    except PlanError as error:
        raise click.ClickException(str(error)) from None
    summary = summarize(plan, stats, checks)
    print_summary(summary, Console())
    if json_file is not None:
        json_file.write_text(json.dumps(summary, indent=2) + "\n")
    if html_file is not None:
        html_file.write_text(render_html(summary, title=f"shoal load: {summary['target']}"))
    failed = [t["expression"] for t in summary["thresholds"] if not t["passed"]]
    if failed:
        click.echo(f"thresholds failed: {', '.join(failed)}", err=True)
        sys.exit(1)


def _plan(
    urls: tuple[str, ...],
    rate: str | None,
    duration: str | None,
    connections: int | None,
    stages: str | None,
    method: str,
    headers: tuple[str, ...],
    body: str | None,
    spec_file: Path | None,
    thresholds: tuple[str, ...],
    timeout: str,
    drop_after: str,
) -> tuple[LoadPlan, list[Threshold]]:
    targets: list[Target] = []
    paths: list[str] = []
    for url in urls:
        target, path = parse_target(url)
        targets.append(target)
        paths.append(path)
    if len({(t.host, t.port) for t in targets}) != 1:
        raise click.BadParameter("every URL must name the same host and port", param_hint="URL")
    settings = LoadSettings(timeout=_seconds(timeout), drop_after=_seconds(drop_after))
    checks = [_threshold(text) for text in thresholds]
    if spec_file is not None:
        loadtest = _load_spec(spec_file)
        plan = plan_for_loadtest(loadtest.spec, targets[0], settings=settings)
        checks = loadtest.spec.parsed_thresholds() + checks
        schedule = plan.schedule
        if rate is not None or duration is not None or stages is not None:
            spec_rate = float(loadtest.spec.request_per_second.value)
            schedule = ArrivalSchedule.with_stages(
                parse_stages(stages) if stages is not None else _spec_stages(loadtest),
                _rate(rate) if rate is not None else spec_rate,
                _seconds(duration) if duration is not None else loadtest.spec.duration.seconds,
            )
        return (
            LoadPlan(
                plan.target,
                plan.requests,
                schedule,
                LoadSettings(
                    connections=connections or plan.settings.connections,
                    timeout=settings.timeout,
                    drop_after=settings.drop_after,
                ),
            ),
            checks,
        )
    if rate is None:
        raise click.UsageError("--rate is required (or -f LOADTEST.yaml)")
    header_pairs = []
    for header in headers:
        name, colon, value = header.partition(":")
        if not colon:
            raise click.BadParameter(f"{header!r}: write 'Name: value'", param_hint="--header")
        header_pairs.append((name.strip(), value.strip()))
    requests = tuple(
        RequestSpec(
            path=path,
            method=method.upper(),
            headers=tuple(header_pairs),
            body=(body or "").encode(),
        )
        for path in paths
    )
    schedule = ArrivalSchedule.with_stages(
        parse_stages(stages or ""), _rate(rate), _seconds(duration or "30s")
    )
    return (
        LoadPlan(
            targets[0],
            requests,
            schedule,
            LoadSettings(
                connections=connections or 64,
                timeout=settings.timeout,
                drop_after=settings.drop_after,
            ),
        ),
        checks,
    )


def _spec_stages(loadtest: LoadTest) -> list[tuple[float, float]]:
    return [(s.duration.seconds, float(s.target.value)) for s in loadtest.spec.stages or ()]


def _threshold(text: str) -> Threshold:
    try:
        return parse_threshold(text)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--threshold") from None
