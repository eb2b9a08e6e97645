"""Fixtures of the ambassadors' integration tests: three real servers of each kind."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from shoal.components.ambassadors.native import IMPLEMENTATIONS

from .ambassador_servers import MemcachedServer, RedisServer


@pytest.fixture
def redis_servers(tmp_path: Path) -> Iterator[list[RedisServer]]:
    servers = [RedisServer(tmp_path) for _ in range(3)]
    try:
        for server in servers:
            server.start()
        yield servers
    finally:
        for server in servers:
            server.stop()


@pytest.fixture
def memcached_servers(tmp_path: Path) -> Iterator[list[MemcachedServer]]:
    servers = [MemcachedServer(tmp_path) for _ in range(3)]
    try:
        for server in servers:
            server.start()
        yield servers
    finally:
        for server in servers:
            server.stop()


@pytest.fixture(params=[i for i in IMPLEMENTATIONS if i != "auto"])
def implementation(request: pytest.FixtureRequest) -> str:
    """Each behavioural test runs over the compiled driver and the pure-Python one.

    ``compiled`` is never skipped: where it was not built (no C compiler) the test fails with
    the build instructions, as the rules ask (CI builds it).
    """
    name: str = request.param
    return name
