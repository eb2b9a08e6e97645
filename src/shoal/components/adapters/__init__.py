"""The adapter pattern's ready-made containers: ``shoal adapter metrics|logs|health``.

An adapter stands beside an app in the same pod and presents what the app already has (its own
statistics, its log lines, its dependencies' state) in the form the rest of the system expects:
Prometheus exposition, one JSON object per log line, a ``/healthz`` for readiness probes. The
parsing and deciding are pure functions and classes; each adapter has one small asyncio driver.
"""

from shoal.components.adapters.exposition import CONTENT_TYPE, Exposition, MetricFamily, Sample
from shoal.components.adapters.health import (
    CheckSpec,
    HealthBoard,
    HealthChecker,
    HealthConfig,
    HealthSettings,
    health_app,
    parse_check,
    serve_health,
)
from shoal.components.adapters.logs import (
    Follower,
    LogsConfig,
    LogsSettings,
    make_parser,
    normalize,
    run_logs,
)
from shoal.components.adapters.metrics import (
    MetricsAdapter,
    MetricsConfig,
    MetricsSettings,
    metrics_app,
    serve_metrics,
)

__all__ = [
    "CONTENT_TYPE",
    "CheckSpec",
    "Exposition",
    "Follower",
    "HealthBoard",
    "HealthChecker",
    "HealthConfig",
    "HealthSettings",
    "LogsConfig",
    "LogsSettings",
    "MetricFamily",
    "MetricsAdapter",
    "MetricsConfig",
    "MetricsSettings",
    "Sample",
    "health_app",
    "make_parser",
    "metrics_app",
    "normalize",
    "parse_check",
    "run_logs",
    "serve_health",
    "serve_metrics",
]
