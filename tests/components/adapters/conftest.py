"""Fixtures of the adapters' tests: a real redis-server per test (see adapter_servers)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from .adapter_servers import RedisServer


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()
