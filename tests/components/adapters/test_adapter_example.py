"""The adapters' example (a Redis pod with shoal's three adapters) says what the commands accept,
and its log regexp reads what a real redis-server writes."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

from shoal.cli.adapter import adapter_group
from shoal.components.adapters.logs import LogsSettings, run_logs
from shoal.model import ReplicatedService, load_manifests

from .adapter_servers import RedisServer

EXAMPLE = next((Path(__file__).resolve().parents[3] / "examples").glob("*-adapters"))


def _service() -> ReplicatedService:
    [service] = [o for o in load_manifests([EXAMPLE]) if isinstance(o, ReplicatedService)]
    return service


def test_every_adapter_command_in_the_example_parses() -> None:
    adapters = _service().spec.adapters
    assert [a.name for a in adapters] == ["metrics", "logs", "health"]
    for container in adapters:
        command = list(container.command or [])
        assert command[:2] == ["shoal", "adapter"], command
        name, *args = command[2:]
        assert name == container.name
        sub = adapter_group.commands[name]
        # make_context parses and checks every flag without running the command.
        with sub.make_context(name, args) as context:
            assert context.params


async def test_the_examples_log_regexp_reads_a_real_redis_log(tmp_path: Path) -> None:
    [logs] = [a for a in _service().spec.adapters if a.name == "logs"]
    regexp = next(arg.split("=", 1)[1] for arg in logs.command or [] if arg.startswith("--regexp="))
    log = tmp_path / "redis.log"
    out = tmp_path / "redis.jsonl"
    server = RedisServer(tmp_path, extra=["--logfile", str(log), "--loglevel", "verbose"])
    stop = asyncio.Event()
    settings = LogsSettings(
        input=str(log), output=str(out), format="regexp", regexp=regexp, follow=True, poll=0.02
    )

    def records() -> list[dict[str, object]]:
        return [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []

    async with asyncio.TaskGroup() as group:
        group.create_task(run_logs(settings, stop=stop))
        try:
            server.start()
            end = time.monotonic() + 15
            while not any(
                "Ready to accept connections" in str(r.get("message")) for r in records()
            ):
                assert time.monotonic() < end, f"no 'Ready' line: {records()}"
                await asyncio.sleep(0.02)
        finally:
            server.stop()
            stop.set()
    got = records()
    assert got
    assert not [r for r in got if r.get("parse_error")], got
    ready = next(r for r in got if "Ready to accept connections" in str(r["message"]))
    assert str(ready["timestamp"]).endswith("Z")
    assert ready["role"] == "M"
