"""The ambassador over three shards answers like one Redis: random pipelines, compared.

Each example sends the same pipeline of string and multi-key commands to the ambassador (over
three real redis-servers) and to a fourth redis-server directly; every reply must be the same.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shoal.components.ambassadors import AmbassadorSettings
from shoal.components.ambassadors.native import make_ambassador
from shoal.components.ambassadors.servers import parse_server

from .ambassador_servers import Client, RedisServer

KEYS = [b"a", b"b", b"c", b"d", b"e", b"{t}x", b"{t}y", b"n1", b"n2"]
key = st.sampled_from(KEYS)
value = st.binary(max_size=6)
command = st.one_of(
    st.tuples(st.just(b"SET"), key, value).map(list),
    st.tuples(st.just(b"GET"), key).map(list),
    st.tuples(st.just(b"APPEND"), key, value).map(list),
    st.tuples(st.just(b"STRLEN"), key).map(list),
    st.tuples(st.just(b"INCR"), st.sampled_from([b"n1", b"n2"])).map(list),
    st.lists(key, min_size=1, max_size=5).map(lambda ks: [b"MGET", *ks]),
    st.lists(key, min_size=1, max_size=5).map(lambda ks: [b"DEL", *ks]),
    st.lists(key, min_size=1, max_size=5).map(lambda ks: [b"EXISTS", *ks]),
    st.lists(st.tuples(key, value), min_size=1, max_size=4).map(
        lambda kvs: [b"MSET", *(x for kv in kvs for x in kv)]
    ),
    st.just([b"RENAME", b"{t}x", b"{t}y"]),
    st.just([b"PING"]),
)


@pytest.fixture(scope="module")
def cluster(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[list[RedisServer], RedisServer]]:
    workdir: Path = tmp_path_factory.mktemp("equivalence")
    servers = [RedisServer(workdir) for _ in range(4)]
    try:
        for server in servers:
            server.start()
        yield servers[:3], servers[3]
    finally:
        for server in servers:
            server.stop()


def run(coroutine: object) -> None:
    asyncio.run(coroutine)  # type: ignore[arg-type]


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(command, min_size=1, max_size=40))
def test_pipelines_answer_like_one_redis(
    implementation: str, cluster: tuple[list[RedisServer], RedisServer], commands: list[list[bytes]]
) -> None:
    shards, single = cluster

    async def compare() -> None:
        for server in [*shards, single]:
            server.call(b"*1\r\n$8\r\nFLUSHALL\r\n")
        specs = [parse_server(f"{s.address} s{i}") for i, s in enumerate(shards)]
        # Rendezvous: no table to build per example (placement is not what is compared here).
        ambassador = make_ambassador(
            specs, AmbassadorSettings(algorithm="rendezvous", implementation=implementation)
        )
        await ambassador.start("127.0.0.1", 0)
        clients: list[Client] = []
        try:
            through = await Client.connect(ambassador.address)
            clients.append(through)
            direct = await Client.connect(("127.0.0.1", single.port))
            clients.append(direct)
            got, want = await asyncio.gather(through.redis(*commands), direct.redis(*commands))
            # Errors compare by kind (the first word): the texts are the ambassador's or Redis'.
            assert [_shape(r) for r in got] == [_shape(r) for r in want], commands
        finally:
            for client in clients:
                with contextlib.suppress(ConnectionError):
                    await client.close()
            await ambassador.shutdown(grace=1.0)

    run(compare())


def _shape(reply: object) -> object:
    if isinstance(reply, Exception):
        return ("error", str(reply).split()[0])
    return reply
