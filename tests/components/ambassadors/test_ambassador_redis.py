"""The Redis ambassador against three real redis-servers."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import AsyncIterator

import pytest

from shoal.components.ambassadors import Ambassador, AmbassadorSettings, HealthSettings
from shoal.components.ambassadors.native import make_ambassador
from shoal.components.ambassadors.resp import ReplyError, encode_command
from shoal.components.ambassadors.servers import ServerSpec, parse_server

from .ambassador_servers import Client, RedisServer


def specs(servers: list[RedisServer]) -> list[ServerSpec]:
    return [parse_server(f"{s.address} shard-{i}") for i, s in enumerate(servers)]


@contextlib.asynccontextmanager
async def running(
    implementation: str, servers: list[RedisServer], settings: AmbassadorSettings | None = None
) -> AsyncIterator[Ambassador]:
    chosen = dataclasses.replace(settings or AmbassadorSettings(), implementation=implementation)
    ambassador = make_ambassador(specs(servers), chosen)
    await ambassador.start("127.0.0.1", 0)
    try:
        yield ambassador
    finally:
        await ambassador.shutdown(grace=1.0)


async def test_keys_land_where_the_hash_says(
    implementation: str, redis_servers: list[RedisServer]
) -> None:
    async with running(implementation, redis_servers) as ambassador:
        client = await Client.connect(ambassador.address)
        keys = [b"user:%d" % i for i in range(300)]
        replies = await client.redis(*([b"SET", k, k + b"-value"] for k in keys))
        assert replies == [b"OK"] * len(keys)
        by_name = {f"shard-{i}": s for i, s in enumerate(redis_servers)}
        stored = {name: server.keys() for name, server in by_name.items()}
        for key in keys:
            owner = ambassador.router.owner(key)
            assert key in stored[owner], (key, owner)
            assert all(key not in found for name, found in stored.items() if name != owner)
        # Every server holds some keys, and reads come back through the ambassador.
        assert all(stored.values())
        assert await client.redis([b"GET", b"user:7"]) == [b"user:7-value"]
        await client.close()


async def test_pipelined_replies_come_back_in_request_order(
    implementation: str,
    redis_servers: list[RedisServer],
) -> None:
    async with running(implementation, redis_servers) as ambassador:
        clients = [await Client.connect(ambassador.address) for _ in range(4)]

        async def work(n: int, client: Client) -> None:
            commands = []
            for i in range(200):
                key = b"c%d:k%d" % (n, i)
                commands += [[b"SET", key, b"%d" % i], [b"INCR", key], [b"GET", key]]
            replies = await client.redis(*commands)
            for i in range(200):
                assert replies[3 * i : 3 * i + 3] == [b"OK", i + 1, b"%d" % (i + 1)]

        async with asyncio.TaskGroup() as group:
            for n, client in enumerate(clients):
                group.create_task(work(n, client))
        for client in clients:
            await client.close()


async def test_multi_key_commands_are_split_and_merged(
    implementation: str, redis_servers: list[RedisServer]
) -> None:
    async with running(implementation, redis_servers) as ambassador:
        client = await Client.connect(ambassador.address)
        keys = [b"m%d" % i for i in range(30)]
        owners = {ambassador.router.owner(k) for k in keys}
        assert len(owners) == 3  # the keys really span the servers
        pairs = [x for i, k in enumerate(keys) for x in (k, b"v%d" % i)]
        replies = await client.redis(
            [b"MSET", *pairs],
            [b"MGET", *keys, b"missing"],
            [b"EXISTS", *keys[:10], b"missing"],
            [b"TOUCH", *keys[10:20]],
            [b"DEL", *keys[:15]],
            [b"UNLINK", *keys[15:], b"missing"],
            [b"MGET", *keys[:3]],
        )
        assert replies[0] == b"OK"
        assert replies[1] == [b"v%d" % i for i in range(30)] + [None]
        assert replies[2:6] == [10, 10, 15, 15]
        assert replies[6] == [None, None, None]
        assert all(not s.keys() for s in redis_servers)
        # Keys with one hash tag meet on one server, so commands that need that work.
        tagged = await client.redis(
            [b"SADD", b"{u1}:a", b"x", b"y"],
            [b"SADD", b"{u1}:b", b"y", b"z"],
            [b"SUNION", b"{u1}:a", b"{u1}:b"],
            [b"RENAME", b"{u1}:a", b"{u1}:c"],
        )
        assert tagged[:2] == [2, 2]
        assert isinstance(tagged[2], list)
        assert sorted(tagged[2]) == [b"x", b"y", b"z"]  # type: ignore[type-var]
        assert tagged[3] == b"OK"
        await client.close()


async def test_refusals_and_bad_input_keep_connections_working(
    implementation: str,
    redis_servers: list[RedisServer],
) -> None:
    settings = AmbassadorSettings(max_value_bytes=1000)
    async with running(implementation, redis_servers, settings) as ambassador:
        client = await Client.connect(ambassador.address)
        other = await Client.connect(ambassador.address)
        replies = await client.redis(
            [b"MULTI"],
            [b"KEYS", b"*"],
            [b"SUBSCRIBE", b"news"],
            [b"BLPOP", b"q", b"0"],
            [b"SELECT", b"2"],
            [b"HELLO", b"3"],
            [b"NOSUCHCOMMAND"],
            [b"SET", b"big", b"x" * 5000],
            [b"SUNION", b"a1", b"b9", b"c3", b"d4"],
            [b"PING"],
            [b"SET", b"k", b"v"],
            [b"GET", b"k"],
        )
        errors = [r for r in replies[:9] if isinstance(r, ReplyError)]
        assert len(errors) == 9, replies
        assert str(replies[5]).startswith("NOPROTO")
        assert str(replies[7]).startswith("ERR argument 2 of 'SET' is 5000 bytes")
        assert str(replies[8]).startswith("CROSSSLOT")
        assert replies[9:] == [b"PONG", b"OK", b"v"]
        # Malformed RESP: Redis' own protocol error, then that connection (only) is closed.
        client.writer.write(b"*2\r\n$3\r\nGET\r\n+oops\r\n")
        (raw,) = await client.replies(1)
        assert raw.startswith(b"-ERR Protocol error: expected '$'")
        assert await client.closed()
        assert await other.redis([b"GET", b"k"]) == [b"v"]
        await client.close()
        await other.close()


async def test_a_lost_server_is_reported_and_comes_back(
    implementation: str, redis_servers: list[RedisServer], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "shoal.ambassador")
    settings = AmbassadorSettings(health=HealthSettings(failure_limit=1, retry_timeout=0.2))
    async with running(implementation, redis_servers, settings) as ambassador:
        client = await Client.connect(ambassador.address)
        lost = redis_servers[1]
        mine = next(
            b"k%d" % i for i in range(500) if ambassador.router.owner(b"k%d" % i) == "shard-1"
        )
        safe = next(
            b"k%d" % i for i in range(500) if ambassador.router.owner(b"k%d" % i) == "shard-0"
        )
        assert await client.redis([b"SET", mine, b"1"], [b"SET", safe, b"1"]) == [b"OK", b"OK"]
        lost.stop()
        # The loss is noticed on the next request (connection lost or refused); it names the server.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        while True:
            (reply,) = await client.redis([b"GET", mine])
            if isinstance(reply, ReplyError):
                break
            assert loop.time() < deadline
        assert f"server shard-1 ({lost.address}) is unavailable" in str(reply)
        assert await client.redis([b"GET", safe]) == [b"1"]  # other servers unaffected
        assert ambassador.metrics.server_up["shard-1"] == 0
        assert "server shard-1" in caplog.text
        assert "is down" in caplog.text
        metrics = ambassador.metrics.render(1)
        assert 'shoal_ambassador_server_up{protocol="redis",server="shard-1"' in metrics
        lost.start()
        # Probed after the retry time: it comes back without a client request.
        deadline = loop.time() + 10
        while ambassador.metrics.server_up.get("shard-1") != 1:
            assert loop.time() < deadline, "the server was not readmitted"
            await asyncio.sleep(0.05)
        assert await client.redis([b"SET", mine, b"2"], [b"GET", mine]) == [b"OK", b"2"]
        assert "server shard-1 is back" in caplog.text
        await client.close()


async def test_auto_eject_moves_only_the_lost_servers_keys(
    implementation: str,
    redis_servers: list[RedisServer],
) -> None:
    health = HealthSettings(failure_limit=1, retry_timeout=30, auto_eject=True)
    async with running(
        implementation, redis_servers, AmbassadorSettings(health=health)
    ) as ambassador:
        client = await Client.connect(ambassador.address)
        keys = [b"e%d" % i for i in range(60)]
        await client.redis(*([b"SET", k, b"old"] for k in keys))
        redis_servers[2].stop()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        lost = [k for k in keys if ambassador.router.owner(k) == "shard-2"]
        while ambassador.router.health.available("shard-2", loop.time()):
            await client.redis([b"GET", lost[0]])
            assert loop.time() < deadline
        replies = await client.redis(*([b"GET", k] for k in keys))
        for key, reply in zip(keys, replies, strict=True):
            # Keys of live servers keep their values; the lost server's keys are misses elsewhere.
            assert reply == (None if key in lost else b"old")
        await client.close()


async def test_key_distribution_is_even(
    implementation: str, redis_servers: list[RedisServer]
) -> None:
    async with running(implementation, redis_servers) as ambassador:
        client = await Client.connect(ambassador.address)
        count = 30_000
        for start in range(0, count, 3000):
            await client.redis(*([b"SET", b"key:%d" % i, b"1"] for i in range(start, start + 3000)))
        sizes = []
        for server in redis_servers:
            value = server.call(encode_command([b"DBSIZE"]))
            sizes.append(int(value[1:-2]))
        assert sum(sizes) == count
        mean = count / 3
        assert max(sizes) / mean <= 1.03, sizes
        await client.close()


async def test_idle_connections_closed_by_a_server_are_not_failures(
    implementation: str,
    redis_servers: list[RedisServer],
) -> None:
    health = HealthSettings(failure_limit=1, retry_timeout=30)
    async with running(
        implementation, redis_servers, AmbassadorSettings(health=health)
    ) as ambassador:
        client = await Client.connect(ambassador.address)
        keys = [b"i%d" % i for i in range(30)]
        assert await client.redis(*([b"SET", k, b"1"] for k in keys)) == [b"OK"] * 30
        # Every server drops its idle client connections (as with Redis' `timeout` setting).
        for server in redis_servers:
            server.call(encode_command([b"CLIENT", b"KILL", b"TYPE", b"normal", b"SKIPME", b"yes"]))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        while any(c.state != "closed" for b in ambassador.backends.values() for c in b.conns):
            assert loop.time() < deadline
            await asyncio.sleep(0.02)
        assert await client.redis(*([b"GET", k] for k in keys)) == [b"1"] * 30
        assert not ambassador.router.health.down()
        await client.close()
