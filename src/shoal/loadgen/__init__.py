"""The load generator: open-loop constant (or ramping) arrival rate, latency from each request's
intended start in HDR-style histograms, a keep-alive connection pool, dropped and late requests
counted, several worker processes merged.

::

    from shoal.loadgen import (ArrivalSchedule, LoadPlan, RequestSpec, parse_target, run,
                                run_load, summarize)

    target, path = parse_target("http://127.0.0.1:8080/hello")
    plan = LoadPlan(target, (RequestSpec(path),), ArrivalSchedule.constant(1000, 10))
    stats = run(run_load(plan))          # or await run_load(plan) on a running loop
    summary = summarize(plan, stats)     # JSON-ready; render_html(summary) for a page

* :mod:`~shoal.loadgen.plan`: the schedule, requests, settings (pure);
* :mod:`~shoal.loadgen.engine`: pooling, dropping, accounting (pure, driven with ``now``);
* :mod:`~shoal.loadgen.histogram`, :mod:`~shoal.loadgen.stats`: what was measured (pure);
* :mod:`~shoal.loadgen.http`: response parsers (pure Python, or httptools);
* :mod:`~shoal.loadgen.driver`: the asyncio I/O and worker processes, and which engine runs;
* ``shoal.loadgen._engine`` (compiled, when built): the same engine and its I/O in C, with the
  GIL released; chosen by default, ``SHOAL_LOADGEN_ENGINE=python`` forces the pure one;
* :mod:`~shoal.loadgen.report`: the summary, thresholds, HTML and SVG.
"""

from shoal.loadgen.driver import run, run_load, run_workers
from shoal.loadgen.engine import Engine, Slot
from shoal.loadgen.histogram import Histogram
from shoal.loadgen.plan import (
    ArrivalSchedule,
    LoadPlan,
    LoadSettings,
    PathPicker,
    PlanError,
    RequestSpec,
    Segment,
    Target,
    parse_target,
    plan_for_loadtest,
)
from shoal.loadgen.report import (
    ThresholdVerdict,
    evaluate_thresholds,
    render_html,
    render_svg,
    summarize,
)
from shoal.loadgen.stats import RunStats

__all__ = [
    "ArrivalSchedule",
    "Engine",
    "Histogram",
    "LoadPlan",
    "LoadSettings",
    "PathPicker",
    "PlanError",
    "RequestSpec",
    "RunStats",
    "Segment",
    "Slot",
    "Target",
    "ThresholdVerdict",
    "evaluate_thresholds",
    "parse_target",
    "plan_for_loadtest",
    "render_html",
    "render_svg",
    "run",
    "run_load",
    "run_workers",
    "summarize",
]
