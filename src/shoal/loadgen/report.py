"""What a run means: the summary (JSON-ready), threshold verdicts, and a self-contained HTML
report whose plots are inline SVG drawn here (no JavaScript, no CDN).

Definitions (also in docs/tools/loadtest.md):

* ``achievedRequestsPerSecond`` = requests completed (answered or failed, not dropped) divided
  by the schedule's duration (or the time until a stopped run stopped);
* ``errorRatio`` = errors / requests (0 when there were no requests);
* latency percentiles are in milliseconds from each request's intended start.
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from shoal.loadgen.histogram import Histogram
from shoal.loadgen.plan import LoadPlan
from shoal.loadgen.stats import RunStats
from shoal.model.loadtest import Threshold

__all__ = [
    "ThresholdVerdict",
    "evaluate_thresholds",
    "latency_summary",
    "render_html",
    "render_svg",
    "summarize",
]

PERCENTILES = {"p50": 50.0, "p90": 90.0, "p95": 95.0, "p99": 99.0, "p999": 99.9}


def _ms(micros: int | float | None) -> float | None:
    return None if micros is None else round(micros / 1000, 3)


def latency_summary(histogram: Histogram) -> dict[str, float | None]:
    """Percentiles (and min, mean, max) in milliseconds."""
    result = {name: _ms(histogram.percentile(p)) for name, p in PERCENTILES.items()}
    result["min"] = _ms(histogram.min)
    result["mean"] = _ms(histogram.mean)
    result["max"] = _ms(histogram.max)
    return result


@dataclass(frozen=True, slots=True)
class ThresholdVerdict:
    expression: str
    passed: bool
    observed: float | None
    """The measured value (ms for latencies); None when nothing was measured (a failure)."""


def observe(threshold: Threshold, stats: RunStats) -> float | None:
    """The value a threshold compares: the error ratio, or a latency in milliseconds."""
    metric = threshold.metric
    if metric == "error_ratio":
        return stats.errors / stats.requests if stats.requests else None
    histogram = stats.latency
    if metric == "avg":
        return _ms(histogram.mean)
    if metric == "med":
        return _ms(histogram.percentile(50))
    if metric == "min":
        return _ms(histogram.min)
    if metric == "max":
        return _ms(histogram.max)
    return _ms(histogram.percentile(float(metric[1:])))


def evaluate_thresholds(thresholds: Iterable[Threshold], stats: RunStats) -> list[ThresholdVerdict]:
    """Each threshold's verdict; one that has nothing to measure (no requests) fails."""
    verdicts = []
    for threshold in thresholds:
        value = observe(threshold, stats)
        passed = value is not None and threshold.holds(value)
        verdicts.append(ThresholdVerdict(threshold.expression, passed, value))
    return verdicts


def _elapsed(plan: LoadPlan, stats: RunStats) -> float:
    if stats.stopped and stats.end is not None and stats.end - stats.start < plan.duration:
        return max(stats.end - stats.start, 1e-9)
    return plan.duration


def summarize(
    plan: LoadPlan, stats: RunStats, thresholds: Sequence[Threshold] = ()
) -> dict[str, Any]:
    """The run as a JSON-ready document (the ``--json`` output, and what status is made of)."""
    elapsed = _elapsed(plan, stats)
    achieved = stats.requests / elapsed
    requested = plan.schedule.arrivals_until(elapsed) / elapsed
    verdicts = evaluate_thresholds(thresholds, stats)
    series = []
    window = stats.window
    for index, item in enumerate(stats.windows):
        begin = index * window
        if begin >= elapsed + window:
            break
        span = min(window, max(elapsed - begin, 1e-9))
        due = plan.schedule.arrivals_until(begin + span) - plan.schedule.arrivals_until(begin)
        series.append(
            {
                "t": round(begin, 3),
                "requested": round(due / span, 3) if begin < elapsed else None,
                "achieved": round(item.completed / window, 3),
                "requests": item.requests,
                "errors": item.errors,
                "dropped": item.dropped,
                "p50": _ms(item.latency.percentile(50)),
                "p99": _ms(item.latency.percentile(99)),
                "max": _ms(item.latency.max),
            }
        )
    overall = stats.latency
    spectrum = []
    if overall.count:
        for step in range(101):
            x = step * 0.05  # up to 1 - 10**-5 = p99.999
            percent = 100 * (1 - 10**-x)
            spectrum.append([round(percent, 5), _ms(overall.percentile(percent))])
        spectrum.append([100.0, _ms(overall.max)])
    return {
        "target": str(plan.target),
        "duration": round(elapsed, 6),
        "window": window,
        "requestedRequestsPerSecond": round(requested, 3),
        "achievedRequestsPerSecond": round(achieved, 3),
        "achievedRatio": round(achieved / requested, 6) if requested else None,
        "scheduled": stats.scheduled,
        "requests": stats.requests,
        "errors": stats.errors,
        "errorRatio": round(stats.errors / stats.requests, 6) if stats.requests else 0.0,
        "dropped": stats.dropped,
        "late": stats.late,
        "cpuSeconds": round(stats.cpu, 6),
        "statuses": {str(k): v for k, v in sorted(stats.statuses.items())},
        "failures": dict(sorted(stats.failures.items())),
        "latency": latency_summary(overall),
        "paths": [
            {
                "path": request.path,
                "method": request.method,
                "requests": path.requests,
                "errors": path.errors,
                "latency": latency_summary(path.latency),
            }
            for request, path in zip(plan.requests, stats.paths, strict=True)
        ],
        "thresholds": [
            {"expression": v.expression, "passed": v.passed, "observed": v.observed}
            for v in verdicts
        ],
        "passed": all(v.passed for v in verdicts),
        "series": series,
        "spectrum": spectrum,
        "histogram": overall.to_dict(),
    }


# -- SVG plots ------------------------------------------------------------------------------------

_COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd")


def _ticks(low: float, high: float, count: int = 5) -> list[float]:
    if high <= low:
        high = low + 1
    raw = (high - low) / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    first = math.floor(low / step) * step
    ticks = []
    value = first
    while value <= high + step * 1e-9:
        ticks.append(round(value, 10))
        value += step
    return ticks


def _fmt(value: float) -> str:
    if value == int(value):
        return f"{int(value):,}"
    return f"{value:.3g}"


def line_chart(
    title: str,
    series: Sequence[tuple[str, Sequence[tuple[float, float]]]],
    *,
    x_label: str,
    y_label: str,
    x_ticks: Sequence[tuple[float, str]] | None = None,
    width: int = 760,
    height: int = 280,
) -> str:
    """An SVG line chart of ``(name, [(x, y), ...])`` series, with axes, ticks and a legend."""
    left, right, top, bottom = 70, 34, 34, 46
    points = [p for _, data in series for p in data]
    xs = [p[0] for p in points] or [0.0, 1.0]
    ys = [p[1] for p in points] or [0.0, 1.0]
    x_low, x_high = min(xs), max(xs)
    if x_high <= x_low:
        x_high = x_low + 1
    y_ticks = _ticks(0.0, max(ys) * 1.05 if max(ys) > 0 else 1.0)
    y_high = y_ticks[-1]
    plot_w, plot_h = width - left - right, height - top - bottom

    def sx(x: float) -> float:
        return left + (x - x_low) / (x_high - x_low) * plot_w

    def sy(y: float) -> float:
        return top + plot_h - y / y_high * plot_h

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="{left}" y="18" font-size="13" font-weight="bold">{html.escape(title)}</text>',
    ]
    for tick in y_ticks:
        y = sy(tick)
        out.append(
            f'<line x1="{left}" y1="{y:.1f}" x2="{width - right}" y2="{y:.1f}" stroke="#e5e5e5"/>'
        )
        out.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{_fmt(tick)}</text>')
    ticks = x_ticks or [(t, _fmt(t)) for t in _ticks(x_low, x_high) if x_low <= t <= x_high]
    for value, label in ticks:
        x = sx(value)
        out.append(
            f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{top + plot_h}" stroke="#f0f0f0"/>'
        )
        out.append(
            f'<text x="{x:.1f}" y="{top + plot_h + 16}" text-anchor="middle">'
            f"{html.escape(label)}</text>"
        )
    out.append(
        f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#888"/>'
    )
    out.append(
        f'<text x="{left + plot_w / 2:.1f}" y="{height - 8}" text-anchor="middle">'
        f"{html.escape(x_label)}</text>"
    )
    out.append(
        f'<text x="14" y="{top + plot_h / 2:.1f}" text-anchor="middle" '
        f'transform="rotate(-90 14 {top + plot_h / 2:.1f})">{html.escape(y_label)}</text>'
    )
    legend_x = width - right - 10
    for index, (name, data) in enumerate(series):
        color = _COLORS[index % len(_COLORS)]
        if data:
            path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in data)
            out.append(
                f'<polyline fill="none" stroke="{color}" stroke-width="1.6" points="{path}"/>'
            )
        y = 18 + index * 0
        label_x = legend_x - (len(series) - 1 - index) * 110
        out.append(
            f'<line x1="{label_x - 100}" y1="{y - 4}" x2="{label_x - 84}" y2="{y - 4}" '
            f'stroke="{color}" stroke-width="3"/>'
        )
        out.append(f'<text x="{label_x - 80}" y="{y}">{html.escape(name)}</text>')
    out.append("</svg>")
    return "\n".join(out)


def _charts(summary: Mapping[str, Any]) -> list[str]:
    series = summary.get("series") or []
    half = float(summary.get("window") or 1.0) / 2

    def column(name: str) -> list[tuple[float, float]]:
        # Each window's figure is drawn at its middle.
        return [(float(p["t"]) + half, float(p[name])) for p in series if p.get(name) is not None]

    latency = line_chart(
        "Latency over time (from intended start)",
        [("p50", column("p50")), ("p99", column("p99")), ("max", column("max"))],
        x_label="seconds into the run (by intended start)",
        y_label="milliseconds",
    )
    rate = line_chart(
        "Rate: requested and achieved",
        [("requested", column("requested")), ("achieved", column("achieved"))],
        x_label="seconds into the run",
        y_label="requests per second",
    )
    spectrum_points = [
        (-math.log10(max(1e-6, 1 - p / 100)), float(ms))
        for p, ms in summary.get("spectrum") or []
        if ms is not None and p < 100
    ]
    labels = [(0.0, "0%"), (1.0, "90%"), (2.0, "99%"), (3.0, "99.9%"), (4.0, "99.99%")]
    labels.append((5.0, "99.999%"))
    spectrum = line_chart(
        "Percentile spectrum",
        [("latency", spectrum_points)],
        x_label="percentile",
        y_label="milliseconds",
        x_ticks=labels,
    )
    return [latency, spectrum, rate]


def render_svg(summary: Mapping[str, Any]) -> str:
    """The three plots stacked in one SVG (for documents that embed a picture)."""
    charts = _charts(summary)
    height = 280
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="760" height="{height * len(charts)}">'
    ]
    for index, chart in enumerate(charts):
        parts.append(f'<g transform="translate(0 {index * height})">{chart}</g>')
    parts.append("</svg>")
    return "\n".join(parts)


def _row(name: str, value: Any) -> str:
    return f"<tr><th>{html.escape(name)}</th><td>{html.escape(str(value))}</td></tr>"


def _num(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return f"{value:,}"


def render_html(summary: Mapping[str, Any], *, title: str = "shoal load report") -> str:
    """A self-contained HTML page: the summary, per-path figures, thresholds and three plots."""
    latency = summary.get("latency") or {}
    rows = [
        _row("target", summary.get("target")),
        _row("duration (s)", _num(summary.get("duration"))),
        _row("requested (req/s)", _num(summary.get("requestedRequestsPerSecond"))),
        _row("achieved (req/s)", _num(summary.get("achievedRequestsPerSecond"))),
        _row("achieved / requested", _num(summary.get("achievedRatio"), 4)),
        _row("requests", _num(summary.get("requests"))),
        _row("errors", f"{_num(summary.get('errors'))} ({_num(summary.get('errorRatio'), 4)})"),
        _row("dropped", _num(summary.get("dropped"))),
        _row("late", _num(summary.get("late"))),
        _row(
            "statuses", ", ".join(f"{k}: {v}" for k, v in (summary.get("statuses") or {}).items())
        ),
        _row(
            "failures",
            ", ".join(f"{k}: {v}" for k, v in (summary.get("failures") or {}).items()) or "-",
        ),
    ]
    latency_row = "".join(
        f"<td>{_num(latency.get(name))}</td>" for name in ("min", *PERCENTILES, "max")
    )
    path_rows = "".join(
        "<tr>"
        f"<td>{html.escape(p['method'])} {html.escape(p['path'])}</td>"
        f"<td>{_num(p['requests'])}</td><td>{_num(p['errors'])}</td>"
        + "".join(f"<td>{_num(p['latency'].get(n))}</td>" for n in PERCENTILES)
        + "</tr>"
        for p in summary.get("paths") or []
    )
    threshold_rows = "".join(
        f'<tr class="{"pass" if t["passed"] else "fail"}"><td>{html.escape(t["expression"])}</td>'
        f"<td>{_num(t['observed'])}</td><td>{'passed' if t['passed'] else 'FAILED'}</td></tr>"
        for t in summary.get("thresholds") or []
    )
    thresholds = (
        f"<h2>Thresholds</h2><table><tr><th>threshold</th><th>observed</th><th>verdict</th></tr>"
        f"{threshold_rows}</table>"
        if threshold_rows
        else ""
    )
    heads = "".join(f"<th>{n}</th>" for n in PERCENTILES)
    charts = "".join(f"<figure>{chart}</figure>" for chart in _charts(summary))
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; margin-bottom: 1.5em; }}
th, td {{ border: 1px solid #ddd; padding: 4px 10px; text-align: right; }}
th {{ background: #f6f6f6; }} td:first-child, th:first-child {{ text-align: left; }}
tr.fail td {{ color: #b00; font-weight: bold; }} tr.pass td {{ color: #070; }}
figure {{ margin: 0 0 1em 0; }}
</style></head><body>
<h1>{html.escape(title)}</h1>
<table>{"".join(rows)}</table>
<h2>Latency (ms, from intended start)</h2>
<table><tr><th>min</th>{heads}<th>max</th></tr><tr>{latency_row}</tr></table>
<h2>Paths</h2>
<table><tr><th>request</th><th>requests</th><th>errors</th>{heads}</tr>{path_rows}</table>
{thresholds}
<h2>Plots</h2>
{charts}
</body></html>
"""
