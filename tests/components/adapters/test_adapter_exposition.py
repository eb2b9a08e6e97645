"""The exposition writer and the statistics converters, without sockets.

Every output is read back with Prometheus' own Python parser
(``prometheus_client.parser.text_string_to_metric_families``), and also checked line by line
for what that parser is too lax to refuse (a family declared twice, a sample outside its family).
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from shoal.components.adapters.exposition import (
    Exposition,
    format_value,
    label_name,
    metric_name,
)
from shoal.components.adapters.metrics import (
    MetricsSettings,
    ScrapeFailed,
    convert,
    render_scrape,
)
from shoal.components.adapters.stats import (
    flatten_json,
    json_exposition,
    kv_exposition,
    parse_kv,
    parse_redis_info,
    redis_exposition,
)

NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")

# A real `INFO ALL` reply of redis-server 7.0 (trimmed), as the adapter receives it.
REDIS_INFO = """\
# Server\r
redis_version:7.0.15\r
redis_git_sha1:00000000\r
redis_mode:standalone\r
os:Linux 6.1 x86_64\r
process_id:12605\r
run_id:6203b0b49f9c20652145eeb9847fa4df0149a288\r
tcp_port:6379\r
uptime_in_seconds:17\r
\r
# Clients\r
connected_clients:3\r
\r
# Memory\r
used_memory:990616\r
used_memory_human:967.40K\r
used_memory_peak_perc:100.19%\r
maxmemory_policy:noeviction\r
mem_fragmentation_ratio:13.38\r
\r
# Persistence\r
rdb_last_bgsave_status:ok\r
aof_last_write_status:err\r
\r
# Stats\r
total_connections_received:5\r
total_commands_processed:3\r
keyspace_hits:1\r
keyspace_misses:0\r
\r
# Replication\r
role:master\r
connected_slaves:1\r
slave0:ip=10.0.0.2,port=6380,state=online,offset=42,lag=1\r
\r
# CPU\r
used_cpu_user:0.009348\r
\r
# Commandstats\r
cmdstat_set:calls=1,usec=20,usec_per_call=20.00,rejected_calls=0,failed_calls=0\r
cmdstat_get:calls=7,usec=4,usec_per_call=4.00,rejected_calls=0,failed_calls=2\r
\r
# Errorstats\r
errorstat_ERR:count=1\r
\r
# Latencystats\r
latency_percentiles_usec_set:p50=20.095,p99=20.095,p99.9=20.095\r
\r
# Keyspace\r
db0:keys=12,expires=1,avg_ttl=2500\r
db3:keys=1,expires=0,avg_ttl=0\r
"""


def parse_strictly(text: str) -> dict[str, Any]:
    """Families by name, after checking what the lax Python parser lets through."""
    declared: list[str] = []
    current = ""
    for line in text.split("\n")[:-1] if text else []:
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert NAME.fullmatch(name), line
            assert kind in ("counter", "gauge", "untyped"), line
            assert name not in declared, f"family declared twice: {name}"
            declared.append(name)
            current = name
        elif line.startswith("# HELP "):
            name = line.split(" ")[2]
            assert NAME.fullmatch(name), line
            assert name not in declared, f"HELP after TYPE or family repeated: {name}"
        else:
            assert line.split("{")[0].split(" ")[0] == current, f"sample outside family: {line}"
    assert text == "" or text.endswith("\n")
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert len(families) == len(declared)
    for family in families.values():
        seen = set()
        for sample in family.samples:
            key = (sample.name, tuple(sorted(sample.labels.items())))
            assert key not in seen, f"series repeated: {key}"
            seen.add(key)
            assert all(LABEL.fullmatch(k) and not k.startswith("__") for k in sample.labels)
    return families


def value(families: dict[str, Any], name: str, **labels: str) -> float:
    family_name = (
        name.removesuffix("_total") if name in families or name.endswith("_total") else name
    )
    family = families.get(family_name) or families[name]
    for sample in family.samples:
        if sample.name == name and sample.labels == labels:
            return float(sample.value)
    raise AssertionError(f"no sample {name}{labels} in {family.samples}")


# --- names and values ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("parts", "expected"),
    [
        (("app", "http.requests"), "app_http_requests"),
        (("app", "requestsServed"), "app_requests_served"),
        (("app", "requests-served"), "app_requests_served"),
        (("", "9lives"), "_9lives"),
        (("app", "a//b  c"), "app_a_b_c"),
        (("redis", "db:keys"), "redis_db:keys"),
        ((), "_"),
    ],
)
def test_metric_names_are_made_valid(parts: tuple[str, ...], expected: str) -> None:
    assert metric_name(*parts) == expected


@given(st.lists(st.text(max_size=20), max_size=4))
def test_any_text_gives_a_valid_metric_name(parts: list[str]) -> None:
    assert NAME.fullmatch(metric_name(*parts))


@given(st.text(max_size=30))
def test_any_text_gives_a_valid_label_name(text: str) -> None:
    name = label_name(text)
    assert LABEL.fullmatch(name)
    assert not name.startswith("__")


@pytest.mark.parametrize(
    ("number", "text"),
    [
        (3.0, "3"),
        (-2.0, "-2"),
        (0.5, "0.5"),
        (math.nan, "NaN"),
        (math.inf, "+Inf"),
        (-math.inf, "-Inf"),
        (1e300, "1e+300"),
    ],
)
def test_values_are_written_as_prometheus_reads_them(number: float, text: str) -> None:
    assert format_value(number) == text


def test_help_type_and_samples_in_order_with_escaping() -> None:
    out = Exposition()
    out.add("requests", 3, type_="counter", help_="Requests\nserved \\ so far")
    out.add("temperature", 21.5, labels={"room": 'the "big" one\\\n'})
    text = out.render()
    assert text.splitlines()[:3] == [
        "# HELP requests_total Requests\\nserved \\\\ so far",
        "# TYPE requests_total counter",
        "requests_total 3",
    ]
    families = parse_strictly(text)
    assert families["requests"].documentation == "Requests\nserved \\ so far"
    assert value(families, "temperature", room='the "big" one\\\n') == 21.5


def test_repeated_series_and_type_clashes_are_dropped_not_written() -> None:
    out = Exposition()
    out.add("a.b", 1)
    out.add("a_b", 2)  # the same name once sanitized: the first one wins
    out.add("x", 1, labels={"k-1": "v"})
    out.add("x", 2, labels={"k_1": "v"})
    out.add("c", 1, type_="gauge")
    out.add("c", 1, type_="counter")  # c_total: Prometheus' family "c" again, refused
    out.add("d_total", 1, type_="gauge")
    out.add("d", 5, type_="counter")  # d_total again, now as a counter: refused
    out.add("e", 5, type_="counter")
    out.add("e_total", 6, type_="counter")  # the same counter: the series is repeated
    families = parse_strictly(out.render())
    assert value(families, "a_b") == 1
    assert value(families, "x", k_1="v") == 1
    assert value(families, "c") == 1
    assert value(families, "e_total") == 5
    assert out.dropped == ["a_b", "x", "c_total", "d_total", "e_total"]


@given(
    st.lists(
        st.tuples(
            st.text(max_size=12),
            st.dictionaries(st.text(max_size=6), st.text(max_size=10), max_size=3),
            st.floats(allow_nan=False, allow_infinity=True),
            st.sampled_from(["counter", "gauge"]),
        ),
        max_size=12,
    )
)
def test_any_samples_render_as_text_prometheus_parses(
    samples: list[tuple[str, dict[str, str], float, Any]],
) -> None:
    out = Exposition()
    for name, labels, number, kind in samples:
        out.add(name, number, type_=kind, help_=name, labels=labels)
    families = parse_strictly(out.render())
    written = sum(len(f.samples) for f in out.families())
    assert sum(len(f.samples) for f in families.values()) == written
    assert written + len(out.dropped) == len(samples)


# --- Redis INFO ----------------------------------------------------------------------------


def test_redis_info_parses_fields_and_records() -> None:
    info = parse_redis_info(REDIS_INFO)
    fields = dict(info.fields)
    assert fields["redis_version"] == "7.0.15"
    assert fields["used_memory_human"] == "967.40K"
    records = dict(info.records)
    assert dict(records["db0"]) == {"keys": "12", "expires": "1", "avg_ttl": "2500"}
    assert dict(records["cmdstat_get"])["failed_calls"] == "2"


def test_redis_info_becomes_redis_exporter_style_metrics() -> None:
    out = Exposition()
    redis_exposition(parse_redis_info(REDIS_INFO), out)
    families = parse_strictly(out.render())
    # Counters by known name, renamed as redis_exporter does.
    assert families["redis_commands_processed"].type == "counter"
    assert value(families, "redis_commands_processed_total") == 3
    assert value(families, "redis_connections_received_total") == 5
    assert value(families, "redis_keyspace_hits_total") == 1
    assert value(families, "redis_cpu_user_seconds_total") == pytest.approx(0.009348)
    # Gauges, renamed or by their own name.
    assert families["redis_memory_used_bytes"].type == "gauge"
    assert value(families, "redis_memory_used_bytes") == 990616
    assert value(families, "redis_connected_clients") == 3
    assert value(families, "redis_mem_fragmentation_ratio") == 13.38
    assert value(families, "redis_uptime_in_seconds") == 17
    # Status text as 1/0.
    assert value(families, "redis_rdb_last_bgsave_status") == 1
    assert value(families, "redis_aof_last_write_status") == 0
    # Structured lines as labelled families.
    assert value(families, "redis_db_keys", db="db0") == 12
    assert value(families, "redis_db_keys_expiring", db="db0") == 1
    assert value(families, "redis_db_avg_ttl_seconds", db="db0") == 2.5
    assert value(families, "redis_db_keys", db="db3") == 1
    assert value(families, "redis_commands_total", cmd="get") == 7
    assert value(families, "redis_commands_failed_calls_total", cmd="get") == 2
    assert value(families, "redis_commands_duration_seconds_total", cmd="set") == 20e-6
    assert value(families, "redis_errors_total", err="ERR") == 1
    who = {"slave_ip": "10.0.0.2", "slave_port": "6380", "slave_state": "online"}
    assert value(families, "redis_connected_slave_offset_bytes", **who) == 42
    # Text fields describe the instance.
    info = families["redis_instance_info"].samples[0].labels
    assert info["redis_version"] == "7.0.15"
    assert info["role"] == "master"
    # Text that is not a number, and build ids that look like one, are left out.
    assert "redis_used_memory_human" not in families
    assert "redis_used_memory_peak_perc" not in families
    assert "redis_redis_git_sha1" not in families
    assert not any(name.startswith("redis_latency") for name in families)


@given(st.text(max_size=300))
def test_redis_info_parser_never_fails_and_output_always_parses(text: str) -> None:
    out = Exposition()
    redis_exposition(parse_redis_info(text), out)
    parse_strictly(out.render())


# --- JSON ----------------------------------------------------------------------------------


def test_json_nested_objects_become_underscored_names_and_labels() -> None:
    document = {
        "uptime": 12.5,
        "ready": True,
        "version": "1.2.3",
        "missing": None,
        "http": {
            "requestsTotal": 40,
            "byStatus": {"200": 38, "503": 2},
            "latency": {"p50": 0.01, "p99": 0.2},
        },
        "pools": [{"name": "a", "busy": 1}, {"name": "b", "busy": 3}],
        "queues": {"mail": {"depth": 4}, "jobs": {"depth": 0}},
    }
    out = Exposition()
    json_exposition(
        document,
        out,
        label_paths={"http.byStatus": "status", "queues": "queue"},
        counters=["app_*_served"],
    )
    families = parse_strictly(out.render())
    assert value(families, "app_uptime") == 12.5
    assert value(families, "app_ready") == 1
    assert families["app_http_requests"].type == "counter"
    assert value(families, "app_http_requests_total") == 40
    assert value(families, "app_http_by_status", status="200") == 38
    assert value(families, "app_http_latency_p99") == 0.2
    assert value(families, "app_pools_busy", index="1") == 3
    assert value(families, "app_queues_depth", queue="mail") == 4
    assert "app_version" not in families
    assert "app_missing" not in families


def test_json_counter_globs_and_wildcard_label_paths() -> None:
    out = Exposition()
    json_exposition(
        {"served": 3, "shards": {"s1": {"keys": {"hot": 1, "cold": 9}}}},
        out,
        label_paths={"shards": "shard", "shards.*.keys": "temperature"},
        counters=["app_served"],
    )
    families = parse_strictly(out.render())
    assert value(families, "app_served_total") == 3
    assert value(families, "app_shards_keys", shard="s1", temperature="cold") == 9


def test_flatten_json_keeps_numbers_and_booleans_only() -> None:
    found = list(flatten_json({"a": [1, "x", None, False, {"b": 2.5}], "c": float("nan")}))
    assert [(f.path, dict(f.labels), f.value) for f in found] == [
        (("a",), {"index": "0"}, 1.0),
        (("a",), {"index": "3"}, 0.0),
        (("a", "b"), {"index": "4"}, 2.5),
    ]


JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=5),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=25,
)


@given(JSON)
def test_any_json_document_gives_parseable_output(document: Any) -> None:
    settings = MetricsSettings(format="json")
    text = json.dumps(document)
    app = convert(settings, text)
    families = parse_strictly(render_scrape("app", app, duration=0.01, errors_total=0))
    kept = sum(len(f.samples) for f in app.families())
    leaves = sum(1 for _ in flatten_json(document))
    assert kept + len(app.dropped) >= leaves - 4  # up to 4 may clash with the adapter's own
    assert value(families, "app_up") == 1


def test_json_nested_too_deeply_is_a_failed_scrape_not_a_crash() -> None:
    deep = "[" * 100_000 + "1" + "]" * 100_000
    with pytest.raises(ScrapeFailed, match="nests too deeply"):
        convert(MetricsSettings(format="json"), deep)
    app = convert(MetricsSettings(format="json"), "[" * 50 + "1" + "]" * 50)
    assert app.families()[0].samples[0].labels[-1] == ("index_49", "0")


def test_arrays_in_arrays_get_one_label_each() -> None:
    out = Exposition()
    json_exposition({"grid": [[1, 2], [3, 4]]}, out)
    families = parse_strictly(out.render())
    assert value(families, "app_grid", index="1", index_1="0") == 3
    assert sum(len(f.samples) for f in families.values()) == 4
    assert out.dropped == []


# --- key-value text ------------------------------------------------------------------------


def test_kv_pages_of_several_shapes() -> None:
    page = (
        "# a comment\n"
        "Total Accesses: 52\n"
        "BusyWorkers: 1\n"
        "Scoreboard: _W___\n"
        "uptime=3600\n"
        "STAT curr_connections 10\n"
        "ratio = 0.25\n"
        "healthy: true\n"
        "\n"
    )
    assert parse_kv(page) == [
        ("Total Accesses", 52.0),
        ("BusyWorkers", 1.0),
        ("uptime", 3600.0),
        ("STAT curr_connections", 10.0),
        ("ratio", 0.25),
        ("healthy", 1.0),
    ]
    out = Exposition()
    kv_exposition(page, out, counters=["app_total_*"])
    families = parse_strictly(out.render())
    assert value(families, "app_total_accesses_total") == 52
    assert value(families, "app_busy_workers") == 1
    assert value(families, "app_stat_curr_connections") == 10


@given(st.text(max_size=300))
def test_any_kv_text_gives_parseable_output(text: str) -> None:
    out = Exposition()
    kv_exposition(text, out)
    parse_strictly(out.render())


# --- the adapter's own families ------------------------------------------------------------


def test_a_failed_scrape_is_up_zero_with_no_app_samples() -> None:
    families = parse_strictly(render_scrape("redis", None, duration=0.25, errors_total=3))
    assert value(families, "redis_up") == 0
    assert value(families, "redis_scrape_duration_seconds") == 0.25
    assert value(families, "redis_scrape_errors_total") == 3
    assert set(families) == {
        "redis_up",
        "redis_scrape_duration_seconds",
        "redis_scrape_errors",
        "redis_scrape_dropped_samples",
    }


def test_app_keys_clashing_with_the_adapters_own_are_dropped_and_counted() -> None:
    app = convert(MetricsSettings(format="kv"), "up: 0\nscrape_duration_seconds: 9\nqueue: 2\n")
    families = parse_strictly(render_scrape("app", app, duration=0.5, errors_total=0))
    assert value(families, "app_up") == 1
    assert value(families, "app_scrape_duration_seconds") == 0.5
    assert value(families, "app_scrape_dropped_samples") == 2
    assert value(families, "app_queue") == 2
