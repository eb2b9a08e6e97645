"""Applications' own statistics, parsed and turned into Prometheus families (pure functions).

Three inputs, one output:

- **Redis INFO** (:func:`parse_redis_info`, :func:`redis_exposition`): ``# Section`` headers and
  ``field:value`` lines. Known fields are named and typed the way redis_exporter names them
  (``total_commands_processed`` -> counter ``redis_commands_processed_total``, ``used_memory``
  -> gauge ``redis_memory_used_bytes``); the structured lines become labelled families
  (``db0:keys=..`` -> ``redis_db_keys{db="db0"}``, ``cmdstat_get:calls=..`` ->
  ``redis_commands_total{cmd="get"}``, ``errorstat_ERR:count=..`` -> ``redis_errors_total``,
  ``slave0:ip=..`` -> ``redis_connected_slave_offset_bytes``); every other numeric field becomes a
  gauge of its own name; text fields go into one ``redis_instance_info`` gauge's labels.
- **JSON** (:func:`flatten_json`, :func:`json_exposition`): nested objects are flattened into
  underscored names (``{"http": {"requests": 3}}`` -> ``app_http_requests``); the keys of the
  objects named in ``label_paths`` and the items of arrays become label values instead. Numbers
  and booleans (1/0) only; strings and nulls are left out.
- **key-value text** (:func:`parse_kv`, :func:`kv_exposition`): one ``key: value``, ``key=value`` or
  ``key value`` per line, ``#`` comments, numeric values only.

A name ending in ``_total``, or matching one of the ``counters`` glob patterns, is a counter;
everything else a gauge, as redis_exporter, the JSON exporter and the Prometheus naming guide do.
"""

from __future__ import annotations

import fnmatch
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from shoal.components.adapters.exposition import Exposition, MetricType, metric_name

__all__ = [
    "Field",
    "RedisInfo",
    "flatten_json",
    "json_exposition",
    "kv_exposition",
    "parse_kv",
    "parse_number",
    "parse_redis_info",
    "redis_exposition",
]


def parse_number(text: str) -> float | None:
    """A decimal number (int, float, exponent, ``inf``/``nan`` refused), else None."""
    text = text.strip()
    if not text or not _NUMBER.fullmatch(text):
        return None
    return float(text)


_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")


# --- Redis INFO ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RedisInfo:
    """INFO parsed: plain ``fields`` (in order) and the ``key=value,...`` lines as ``records``."""

    fields: tuple[tuple[str, str], ...]
    records: tuple[tuple[str, tuple[tuple[str, str], ...]], ...]


def parse_redis_info(text: str) -> RedisInfo:
    """Parse INFO's reply. Lines that are neither a header, blank nor ``name:value`` are skipped
    (a newer Redis may add kinds of lines; an exporter must not fail on them)."""
    fields: list[tuple[str, str]] = []
    records: list[tuple[str, tuple[tuple[str, str], ...]]] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, value = line.partition(":")
        if not sep or not name:
            continue
        if "=" in value and _is_record(value):
            pairs = tuple(
                (k, v) for k, _, v in (item.partition("=") for item in value.split(",") if item)
            )
            records.append((name, pairs))
        else:
            fields.append((name, value))
    return RedisInfo(tuple(fields), tuple(records))


def _is_record(value: str) -> bool:
    return all("=" in item for item in value.split(",") if item)


# Counters Redis counts since start, and the gauges redis_exporter renames (names are facts of
# Redis' INFO and of the exporter's conventions that dashboards use).
REDIS_COUNTERS: Mapping[str, str] = {
    "total_connections_received": "connections_received_total",
    "total_commands_processed": "commands_processed_total",
    "rejected_connections": "rejected_connections_total",
    "total_net_input_bytes": "net_input_bytes_total",
    "total_net_output_bytes": "net_output_bytes_total",
    "total_net_repl_input_bytes": "net_repl_input_bytes_total",
    "total_net_repl_output_bytes": "net_repl_output_bytes_total",
    "expired_keys": "expired_keys_total",
    "evicted_keys": "evicted_keys_total",
    "evicted_clients": "evicted_clients_total",
    "keyspace_hits": "keyspace_hits_total",
    "keyspace_misses": "keyspace_misses_total",
    "used_cpu_sys": "cpu_sys_seconds_total",
    "used_cpu_user": "cpu_user_seconds_total",
    "used_cpu_sys_children": "cpu_sys_children_seconds_total",
    "used_cpu_user_children": "cpu_user_children_seconds_total",
    "used_cpu_sys_main_thread": "cpu_sys_main_thread_seconds_total",
    "used_cpu_user_main_thread": "cpu_user_main_thread_seconds_total",
    "total_error_replies": "errors_replies_total",
    "total_reads_processed": "reads_processed_total",
    "total_writes_processed": "writes_processed_total",
    "total_forks": "forks_total",
    "rdb_saves": "rdb_saves_total",
    "aof_rewrites": "aof_rewrites_total",
    "expired_time_cap_reached_count": "expired_time_cap_reached_total",
}

REDIS_GAUGES: Mapping[str, str] = {
    "used_memory": "memory_used_bytes",
    "used_memory_rss": "memory_used_rss_bytes",
    "used_memory_peak": "memory_used_peak_bytes",
    "used_memory_lua": "memory_used_lua_bytes",
    "used_memory_overhead": "memory_used_overhead_bytes",
    "used_memory_startup": "memory_used_startup_bytes",
    "used_memory_dataset": "memory_used_dataset_bytes",
    "used_memory_scripts": "memory_used_scripts_bytes",
    "maxmemory": "memory_max_bytes",
    "client_recent_max_output_buffer": "client_recent_max_output_buffer_bytes",
    "client_recent_max_input_buffer": "client_recent_max_input_buffer_bytes",
    "allocator_active": "allocator_active_bytes",
    "allocator_allocated": "allocator_allocated_bytes",
    "allocator_resident": "allocator_resident_bytes",
    "loading": "loading_dump_file",
    "rdb_last_save_time": "rdb_last_save_timestamp_seconds",
    "rdb_last_bgsave_time_sec": "rdb_last_bgsave_duration_sec",
    "rdb_current_bgsave_time_sec": "rdb_current_bgsave_duration_sec",
    "rdb_last_cow_size": "rdb_last_cow_size_bytes",
    "aof_last_rewrite_time_sec": "aof_last_rewrite_duration_sec",
    "aof_current_rewrite_time_sec": "aof_current_rewrite_duration_sec",
    "aof_last_cow_size": "aof_last_cow_size_bytes",
    "repl_backlog_size": "replication_backlog_bytes",
    "repl_backlog_active": "repl_backlog_is_active",
    "repl_backlog_histlen": "repl_backlog_history_bytes",
    "expired_stale_perc": "expired_stale_percentage",
    "sync_full": "replica_resyncs_full",
    "sync_partial_ok": "replica_partial_resync_accepted",
    "sync_partial_err": "replica_partial_resync_denied",
}

# Text fields reported as 1 (``ok``/``up``) or 0, under the name given.
REDIS_STATUS: Mapping[str, tuple[str, str]] = {
    "rdb_last_bgsave_status": ("rdb_last_bgsave_status", "ok"),
    "aof_last_bgrewrite_status": ("aof_last_bgrewrite_status", "ok"),
    "aof_last_write_status": ("aof_last_write_status", "ok"),
    "master_link_status": ("master_link_up", "up"),
}

# Text fields that describe the instance: the labels of ``redis_instance_info``.
REDIS_INFO_LABELS = (
    "role",
    "redis_version",
    "redis_build_id",
    "redis_mode",
    "os",
    "maxmemory_policy",
    "tcp_port",
    "run_id",
    "process_id",
)


# Build identifiers that look like numbers but are not quantities.
REDIS_SKIPPED = frozenset({"redis_git_sha1", "redis_git_dirty", "redis_build_id", "run_id"})


def redis_exposition(info: RedisInfo, out: Exposition, prefix: str = "redis") -> None:
    """Add INFO's statistics to ``out`` as families named ``{prefix}_...``."""
    values = dict(info.fields)
    labels = {name: values[name] for name in REDIS_INFO_LABELS if name in values}
    if labels:
        out.add(
            metric_name(prefix, "instance_info"),
            1,
            help_="Information about the Redis instance",
            labels=labels,
        )
    for name, text in info.fields:
        if name in REDIS_STATUS:
            metric, good = REDIS_STATUS[name]
            out.add(
                metric_name(prefix, metric), 1 if text == good else 0, help_=f"INFO {name}={good}"
            )
            continue
        value = parse_number(text)
        if value is None or name in REDIS_SKIPPED:
            continue
        if name in REDIS_COUNTERS:
            out.add(
                metric_name(prefix, REDIS_COUNTERS[name]),
                value,
                type_="counter",
                help_=f"INFO {name}",
            )
        else:
            out.add(metric_name(prefix, REDIS_GAUGES.get(name, name)), value, help_=f"INFO {name}")
    for name, pairs in info.records:
        _redis_record(name, dict(pairs), out, prefix)


def _redis_record(name: str, pairs: dict[str, str], out: Exposition, prefix: str) -> None:
    def number(key: str) -> float | None:
        return parse_number(pairs.get(key, ""))

    def add(metric: str, value: float | None, type_: MetricType, help_: str, **labels: str) -> None:
        if value is not None:
            out.add(metric_name(prefix, metric), value, type_=type_, help_=help_, labels=labels)

    if re.fullmatch(r"db\d+", name):
        add("db_keys", number("keys"), "gauge", "Total number of keys by DB", db=name)
        add("db_keys_expiring", number("expires"), "gauge", "Keys with an expiry by DB", db=name)
        ttl = number("avg_ttl")
        add(
            "db_avg_ttl_seconds",
            None if ttl is None else ttl / 1000,
            "gauge",
            "Average TTL in seconds",
            db=name,
        )
    elif name.startswith("cmdstat_"):
        cmd = name.removeprefix("cmdstat_").lower()
        add("commands_total", number("calls"), "counter", "Calls per command", cmd=cmd)
        usec = number("usec")
        add(
            "commands_duration_seconds_total",
            None if usec is None else usec / 1e6,
            "counter",
            "Time spent per command, in seconds",
            cmd=cmd,
        )
        add(
            "commands_rejected_calls_total",
            number("rejected_calls"),
            "counter",
            "Rejected calls per command",
            cmd=cmd,
        )
        add(
            "commands_failed_calls_total",
            number("failed_calls"),
            "counter",
            "Failed calls per command",
            cmd=cmd,
        )
    elif name.startswith("errorstat_"):
        add(
            "errors_total",
            number("count"),
            "counter",
            "Error replies by error prefix",
            err=name.removeprefix("errorstat_"),
        )
    elif re.fullmatch(r"slave\d+", name):
        who = {
            "slave_ip": pairs.get("ip", ""),
            "slave_port": pairs.get("port", ""),
            "slave_state": pairs.get("state", ""),
        }
        add("connected_slave_offset_bytes", number("offset"), "gauge", "Replica offset", **who)
        add("connected_slave_lag_seconds", number("lag"), "gauge", "Replica lag", **who)
    # Other structured lines (latency percentiles, modules) are not exported: they have no
    # agreed metric shape, and a wrong one is worse than none.


# --- JSON ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Field:
    """One number found in a statistics document: its name parts, labels and value."""

    path: tuple[str, ...]
    labels: tuple[tuple[str, str], ...]
    value: float


def flatten_json(
    document: Any, label_paths: Mapping[str, str] | None = None, *, index_label: str = "index"
) -> Iterator[Field]:
    """Every number and boolean in ``document``, with its name path and labels.

    ``label_paths`` maps a dotted path of keys (``*`` matches any one key) to a label name: the
    keys of the object at that path become values of that label instead of parts of the name.
    Array items are labelled ``index_label="0"``, ... (or the label given for the array's path).
    """
    yield from _walk(document, (), (), (), dict(label_paths or {}), index_label)


def _walk(
    value: Any,
    path: tuple[str, ...],
    keys: tuple[str, ...],
    labels: tuple[tuple[str, str], ...],
    label_paths: dict[str, str],
    index_label: str,
) -> Iterator[Field]:
    # ``keys`` is the full key path (matched against label_paths); ``path`` the name parts only.
    if isinstance(value, bool):
        yield Field(path, labels, 1.0 if value else 0.0)
    elif isinstance(value, int | float):
        if isinstance(value, float) and not math.isfinite(value):
            return
        yield Field(path, labels, float(value))
    elif isinstance(value, Mapping):
        label = _label_for(keys, label_paths)
        for key, item in value.items():
            key = str(key)
            if label is not None:
                yield from _walk(
                    item, path, (*keys, key), _with(labels, label, key), label_paths, index_label
                )
            else:
                yield from _walk(item, (*path, key), (*keys, key), labels, label_paths, index_label)
    elif isinstance(value, list):
        label = _label_for(keys, label_paths) or index_label
        for number, item in enumerate(value):
            yield from _walk(
                item,
                path,
                (*keys, str(number)),
                _with(labels, label, str(number)),
                label_paths,
                index_label,
            )


def _with(
    labels: tuple[tuple[str, str], ...], name: str, value: str
) -> tuple[tuple[str, str], ...]:
    """``labels`` plus one; a name already taken (arrays in arrays) gets ``_1``, ``_2``, ..."""
    taken = {existing for existing, _ in labels}
    unique, suffix = name, 0
    while unique in taken:
        suffix += 1
        unique = f"{name}_{suffix}"
    return (*labels, (unique, value))


def _label_for(keys: tuple[str, ...], label_paths: dict[str, str]) -> str | None:
    dotted = ".".join(keys)
    for pattern, label in label_paths.items():
        if _path_matches(pattern, keys) or pattern == dotted:
            return label
    return None


def _path_matches(pattern: str, keys: tuple[str, ...]) -> bool:
    parts = pattern.split(".") if pattern else []
    return len(parts) == len(keys) and all(
        p == "*" or p == k for p, k in zip(parts, keys, strict=True)
    )


def json_exposition(
    document: Any,
    out: Exposition,
    prefix: str = "app",
    *,
    label_paths: Mapping[str, str] | None = None,
    counters: Sequence[str] = (),
) -> None:
    """Add every number of a JSON statistics document to ``out``."""
    for found in flatten_json(document, label_paths):
        name = metric_name(prefix, *found.path)
        out.add(
            name,
            found.value,
            type_=_type_of(name, counters),
            help_=f"JSON {'.'.join(found.path) or '(root)'}",
            labels=dict(found.labels),
        )


def _type_of(name: str, counters: Sequence[str]) -> MetricType:
    if name.endswith("_total") or any(fnmatch.fnmatchcase(name, glob) for glob in counters):
        return "counter"
    return "gauge"


# --- key-value text ------------------------------------------------------------------------


def parse_kv(text: str) -> list[tuple[str, float]]:
    """The numeric ``key: value`` / ``key=value`` / ``key value`` lines of a text page, in order.

    ``true``/``false`` count as 1/0; lines with other values, blank lines and ``#`` comments are
    skipped.
    """
    out: list[tuple[str, float]] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = _KV_SEPARATED.fullmatch(line) or _KV_SPACED.fullmatch(line)
        if match is None:
            continue
        key, text_value = match.group(1).strip(), match.group(2).strip()
        if not key:
            continue
        lowered = text_value.lower()
        value = (
            1.0 if lowered == "true" else 0.0 if lowered == "false" else parse_number(text_value)
        )
        if value is not None:
            out.append((key, value))
    return out


_KV_SEPARATED = re.compile(r"([^:=]+?)\s*[:=]\s*(.*)")
_KV_SPACED = re.compile(r"(.+?)\s+(\S+)")


def kv_exposition(
    text: str, out: Exposition, prefix: str = "app", *, counters: Sequence[str] = ()
) -> None:
    """Add the numeric lines of a key-value page to ``out``."""
    for key, value in parse_kv(text):
        name = metric_name(prefix, key)
        out.add(name, value, type_=_type_of(name, counters), help_=f"{key}")
