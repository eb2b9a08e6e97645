"""``shoal adapter metrics`` against real upstreams: redis-server, an aiohttp JSON app, a text page.

Every /metrics answer is read back with ``prometheus_client.parser``.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from click.testing import CliRunner
from prometheus_client.parser import text_string_to_metric_families

from shoal.cli import main
from shoal.components.adapters._serving import running
from shoal.components.adapters.exposition import CONTENT_TYPE
from shoal.components.adapters.metrics import (
    MetricsAdapter,
    MetricsConfig,
    MetricsSettings,
    metrics_app,
    parse_redis_upstream,
    stats_url,
)
from shoal.model.configfile import load_config_text

from .adapter_servers import RedisServer, free_port


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = float(sample.value)
    return out


@pytest.fixture
async def stats_app() -> AsyncIterator[tuple[str, dict[str, Any]]]:
    """A real aiohttp app with a JSON /stats, a text /vars and a /broken page."""
    state: dict[str, Any] = {"requests": 0, "status": 200}

    async def stats(request: web.Request) -> web.Response:
        state["requests"] += 1
        body = {
            "requests_total": state["requests"],
            "inFlight": 2,
            "healthy": True,
            "build": "abc",
            "cache": {"hits": 10, "misses": 3},
            "byRoute": {"/users": 4, "/items": 1},
        }
        return web.json_response(body, status=state["status"])

    async def text_vars(request: web.Request) -> web.Response:
        return web.Response(text="Total Accesses: 7\nBusyWorkers: 2\nScoreboard: _W\n")

    async def broken(request: web.Request) -> web.Response:
        return web.Response(text="{not json", content_type="application/json")

    app = web.Application()
    app.router.add_get("/stats", stats)
    app.router.add_get("/vars", text_vars)
    app.router.add_get("/broken", broken)
    async with running(app, "127.0.0.1:0") as (host, port):
        yield f"{host}:{port}", state


async def scrape(settings: MetricsSettings) -> tuple[str, str]:
    async with (
        MetricsAdapter(settings) as adapter,
        running(metrics_app(adapter), "127.0.0.1:0") as (host, port),
        aiohttp.ClientSession() as session,
        session.get(f"http://{host}:{port}/metrics") as response,
    ):
        assert response.status == 200
        return response.headers["Content-Type"], await response.text()


async def test_redis_info_from_a_real_redis_server(redis_server: RedisServer) -> None:
    redis_server.command("SET", "k", "v")
    redis_server.command("GET", "k")
    redis_server.command("NOSUCHCOMMAND")
    content_type, text = await scrape(MetricsSettings(upstream=redis_server.address))
    assert content_type == CONTENT_TYPE
    got = samples(text)
    assert got[("redis_up", ())] == 1
    assert got[("redis_db_keys", (("db", "db0"),))] == 1
    assert got[("redis_commands_total", (("cmd", "set"),))] == 1
    assert got[("redis_commands_total", (("cmd", "get"),))] == 1
    assert got[("redis_errors_total", (("err", "ERR"),))] == 1
    assert got[("redis_connected_clients", ())] >= 1
    assert got[("redis_memory_used_bytes", ())] > 0
    assert got[("redis_commands_processed_total", ())] >= 2
    assert got[("redis_scrape_errors_total", ())] == 0
    families = {f.name: f.type for f in text_string_to_metric_families(text)}
    assert families["redis_keyspace_hits"] == "counter"
    assert families["redis_connected_clients"] == "gauge"


async def test_redis_with_a_password(tmp_path: Path) -> None:
    server = RedisServer(tmp_path, password="s3cret")
    server.start()
    try:
        good = parse_redis_upstream(f"redis://:s3cret@{server.address}")
        assert "s3cret" not in repr(good)
        assert "s3cret" not in str(good)
        _, text = await scrape(MetricsSettings(upstream=f"redis://:s3cret@{server.address}"))
        assert samples(text)[("redis_up", ())] == 1
        _, text = await scrape(MetricsSettings(upstream=f"redis://:wrong@{server.address}"))
        assert samples(text)[("redis_up", ())] == 0
        _, text = await scrape(MetricsSettings(upstream=server.address))
        assert samples(text)[("redis_up", ())] == 0
    finally:
        server.stop()


async def test_a_stopped_upstream_is_up_zero_and_counted() -> None:
    settings = MetricsSettings(upstream=f"127.0.0.1:{free_port()}", timeout=2)
    async with MetricsAdapter(settings) as adapter:
        first = samples(await adapter.scrape())
        second = samples(await adapter.scrape())
    assert first[("redis_up", ())] == 0
    assert second[("redis_scrape_errors_total", ())] == 2
    assert not any(name.startswith("redis_db") for name, _ in second)


async def test_an_upstream_speaking_garbage_is_up_zero() -> None:
    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(100)
        writer.write(b"HTTP/1.1 400 Bad Request\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(garbage, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with MetricsAdapter(MetricsSettings(upstream=f"127.0.0.1:{port}")) as adapter:
            got = samples(await adapter.scrape())
        assert got[("redis_up", ())] == 0
    finally:
        server.close()
        await server.wait_closed()


async def test_json_stats_from_a_real_http_app(stats_app: tuple[str, dict[str, Any]]) -> None:
    address, _ = stats_app
    _, text = await scrape(
        MetricsSettings(upstream=address, format="json", label_paths={"byRoute": "route"})
    )
    got = samples(text)
    assert got[("app_up", ())] == 1
    assert got[("app_requests_total", ())] == 1
    assert got[("app_in_flight", ())] == 2
    assert got[("app_healthy", ())] == 1
    assert got[("app_cache_hits", ())] == 10
    assert got[("app_by_route", (("route", "/users"),))] == 4
    assert not any(name.startswith("app_build") for name, _ in got)


async def test_json_upstream_errors_are_up_zero(stats_app: tuple[str, dict[str, Any]]) -> None:
    address, state = stats_app
    state["status"] = 500
    _, text = await scrape(MetricsSettings(upstream=address, format="json"))
    assert samples(text)[("app_up", ())] == 0
    _, text = await scrape(MetricsSettings(upstream=f"http://{address}/broken", format="json"))
    assert samples(text)[("app_up", ())] == 0


async def test_kv_page_from_a_real_http_app(stats_app: tuple[str, dict[str, Any]]) -> None:
    address, _ = stats_app
    _, text = await scrape(
        MetricsSettings(upstream=address, format="kv", path="/vars", prefix="apache")
    )
    got = samples(text)
    assert got[("apache_up", ())] == 1
    assert got[("apache_total_accesses", ())] == 7
    assert got[("apache_busy_workers", ())] == 2


def test_upstream_addresses() -> None:
    assert parse_redis_upstream("10.0.0.1:6380").port == 6380
    assert parse_redis_upstream("redis://cache").port == 6379
    address = parse_redis_upstream("redis://u:p@cache:7000")
    assert (address.host, address.port, address.username, address.password) == (
        "cache",
        7000,
        "u",
        "p",
    )
    assert stats_url("127.0.0.1:8080", "/stats") == "http://127.0.0.1:8080/stats"
    assert stats_url("http://app:8080/debug/vars", "/stats") == "http://app:8080/debug/vars"
    for bad in ("cache", "http://x:1/", "redis://:1"):
        with pytest.raises(ValueError, match="expected"):
            parse_redis_upstream(bad)
    with pytest.raises(ValueError, match="expected"):
        stats_url("ftp://x/y", "/stats")


def test_config_file_form_and_its_errors(tmp_path: Path) -> None:
    config = load_config_text(
        "upstream: 127.0.0.1:8080\nformat: json\nlabels:\n  byRoute: route\ncounters: [app_*_served]\n",
        MetricsConfig,
        "metrics.yaml",
    )
    settings = config.settings()
    assert settings.format == "json"
    assert settings.label_paths == {"byRoute": "route"}
    assert settings.counters == ("app_*_served",)
    path = tmp_path / "metrics.yaml"
    path.write_text("upstream: x:1\nformat: xml\ntimeoutSecond: 3\n")
    result = CliRunner().invoke(main, ["adapter", "metrics", "--config", str(path)])
    assert result.exit_code == 2
    assert f"{path}:2:9: format:" in result.output
    assert (
        f'{path}:3:1: timeoutSecond: unknown field "timeoutSecond"; did you mean "timeoutSeconds"?'
        in result.output
    )


def test_cli_flags_are_checked_before_listening() -> None:
    result = CliRunner().invoke(main, ["adapter", "metrics"])
    assert result.exit_code == 2
    assert "give --upstream" in result.output
    result = CliRunner().invoke(main, ["adapter", "metrics", "--upstream", "nohost"])
    assert result.exit_code == 2
    assert "expected HOST:PORT" in result.output
    result = CliRunner().invoke(
        main, ["adapter", "metrics", "--upstream", "x:1", "--label", "nolabel"]
    )
    assert result.exit_code == 2
    assert "PATH=LABEL" in result.output


def test_the_command_serves_metrics_of_a_real_redis(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    config = tmp_path / "metrics.yaml"
    config.write_text(f"upstream: {redis_server.address}\nlisten: 127.0.0.1:1\n")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "shoal",
            "adapter",
            "metrics",
            "--config",
            str(config),
            "--listen",
            "127.0.0.1:0",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert process.stderr is not None
        assert line.startswith("listening on 127.0.0.1:"), line + process.stderr.read()
        address = line.split()[-1]
        import urllib.request

        with urllib.request.urlopen(f"http://{address}/metrics", timeout=10) as response:
            got = samples(response.read().decode())
        assert got[("redis_up", ())] == 1
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()
