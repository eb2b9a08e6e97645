"""The memcached ambassador against three real memcached servers."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from shoal.components.ambassadors import Ambassador, AmbassadorSettings, HealthSettings
from shoal.components.ambassadors.native import make_ambassador
from shoal.components.ambassadors.servers import parse_server

from .ambassador_servers import Client, MemcachedServer


@contextlib.asynccontextmanager
async def running(
    implementation: str, servers: list[MemcachedServer], **overrides: object
) -> AsyncIterator[Ambassador]:
    settings = AmbassadorSettings(
        protocol="memcached",
        implementation=implementation,
        **overrides,  # type: ignore[arg-type]
    )
    specs = [parse_server(f"{s.address} mc-{i}") for i, s in enumerate(servers)]
    ambassador = make_ambassador(specs, settings)
    await ambassador.start("127.0.0.1", 0)
    try:
        yield ambassador
    finally:
        await ambassador.shutdown(grace=1.0)


async def exchange(client: Client, requests: list[tuple[bytes, bool]]) -> list[bytes]:
    """Send every request pipelined; ``bool``: a retrieval (VALUE ... END) reply."""
    client.writer.write(b"".join(raw for raw, _ in requests))
    return await client.replies(len(requests), memcached=[r for _, r in requests])


async def test_storage_retrieval_and_placement(
    implementation: str, memcached_servers: list[MemcachedServer]
) -> None:
    async with running(implementation, memcached_servers) as ambassador:
        client = await Client.connect(ambassador.address)
        keys = [b"k%d" % i for i in range(60)]
        stored = await exchange(
            client, [(b"set %b 7 0 2\r\nv%b\r\n" % (k, k[-1:]), False) for k in keys]
        )
        assert stored == [b"STORED\r\n"] * len(keys)
        for index, server in enumerate(memcached_servers):
            for key in keys:
                found = server.call(b"get %b\r\n" % key, memcached_get=True)
                assert (found != b"END\r\n") == (ambassador.router.owner(key) == f"mc-{index}")
        # A multi-get spans all three servers; values come back in the order asked, misses left out.
        (values,) = await exchange(
            client, [(b"get " + b" ".join([*keys, b"nope"]) + b"\r\n", True)]
        )
        expected = b"".join(b"VALUE %b 7 2\r\nv%b\r\n" % (k, k[-1:]) for k in keys) + b"END\r\n"
        assert values == expected
        (gets,) = await exchange(client, [(b"gets k1 k2 k3\r\n", True)])
        assert gets.count(b"VALUE ") == 3
        cas_unique = gets.split(b"\r\n")[0].split()[4]
        replies = await exchange(
            client,
            [
                (b"cas k1 0 0 1 %b\r\nZ\r\n" % cas_unique, False),
                (b"cas k1 0 0 1 %b\r\nY\r\n" % cas_unique, False),
                (b"add k1 0 0 1\r\nA\r\n", False),
                (b"replace k1 0 0 1\r\nR\r\n", False),
                (b"append k1 0 0 1\r\n+\r\n", False),
                (b"prepend k1 0 0 1\r\n-\r\n", False),
                (b"get k1\r\n", True),
                (b"set n 0 0 1\r\n5\r\n", False),
                (b"incr n 10\r\n", False),
                (b"decr n 3\r\n", False),
                (b"touch n 100\r\n", False),
                (b"delete n\r\n", False),
                (b"delete n\r\n", False),
                # A noreply set (no reply owed), then a gat in the same write.
                (b"set quiet 0 0 1 noreply\r\nq\r\ngat 100 quiet\r\n", True),
                (b"version\r\n", False),
            ],
        )
        assert replies[:6] == [
            b"STORED\r\n",
            b"EXISTS\r\n",
            b"NOT_STORED\r\n",
            b"STORED\r\n",
            b"STORED\r\n",
            b"STORED\r\n",
        ]
        assert replies[6] == b"VALUE k1 0 3\r\n-R+\r\nEND\r\n"
        assert replies[7:13] == [
            b"STORED\r\n",
            b"15\r\n",
            b"12\r\n",
            b"TOUCHED\r\n",
            b"DELETED\r\n",
            b"NOT_FOUND\r\n",
        ]
        # The noreply set produced no reply; the next reply is the gat's.
        assert replies[13] == b"VALUE quiet 0 1\r\nq\r\nEND\r\n"
        assert replies[14].startswith(b"VERSION ")
        await client.close()


async def test_bad_input_gets_memcached_errors(
    implementation: str, memcached_servers: list[MemcachedServer]
) -> None:
    async with running(implementation, memcached_servers, max_value_bytes=100) as ambassador:
        client = await Client.connect(ambassador.address)
        other = await Client.connect(ambassador.address)
        replies = await exchange(
            client,
            [
                (b"bogus\r\n", False),
                (b"set k 0 0 200\r\n" + b"x" * 200 + b"\r\n", False),
                (b"set k 0 0 2\r\nabcd\r\n", False),
                (b"get " + b"k" * 300 + b"\r\n", False),
                (b"stats\r\n", False),
                (b"flush_all\r\n", False),
                (b"set k 0 0 2\r\nok\r\n", False),
                (b"get k\r\n", True),
            ],
        )
        assert replies[:6] == [
            b"ERROR\r\n",
            b"SERVER_ERROR object too large for cache\r\n",
            b"CLIENT_ERROR bad data chunk\r\n",
            b"CLIENT_ERROR bad command line format\r\n",
            b"SERVER_ERROR 'stats' is not supported by the ambassador: statistics are per server\r\n",
            b"SERVER_ERROR 'flush_all' is not supported by the ambassador: it would have to reach every server\r\n",
        ]
        assert replies[6:] == [b"STORED\r\n", b"VALUE k 0 2\r\nok\r\nEND\r\n"]
        assert await exchange(other, [(b"get k\r\n", True)]) == [b"VALUE k 0 2\r\nok\r\nEND\r\n"]
        client.writer.write(b"quit\r\n")
        assert await client.closed()
        await client.close()
        await other.close()


async def test_lost_server_is_named_and_recovers(
    implementation: str, memcached_servers: list[MemcachedServer]
) -> None:
    health = HealthSettings(failure_limit=1, retry_timeout=0.2)
    async with running(implementation, memcached_servers, health=health) as ambassador:
        client = await Client.connect(ambassador.address)
        mine = next(b"k%d" % i for i in range(500) if ambassador.router.owner(b"k%d" % i) == "mc-0")
        other = next(
            b"k%d" % i for i in range(500) if ambassador.router.owner(b"k%d" % i) == "mc-1"
        )
        await exchange(
            client,
            [(b"set %b 0 0 1\r\nx\r\n" % mine, False), (b"set %b 0 0 1\r\ny\r\n" % other, False)],
        )
        lost = memcached_servers[0]
        lost.stop()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        while True:
            (reply,) = await exchange(client, [(b"get %b %b\r\n" % (mine, other), True)])
            if reply.startswith(b"SERVER_ERROR"):
                break
            assert loop.time() < deadline
        assert (
            reply
            == f"SERVER_ERROR server mc-0 ({lost.address}) is unavailable: ".encode()
            + reply.split(b"unavailable: ")[1]
        )
        assert await exchange(client, [(b"get %b\r\n" % other, True)]) == [
            b"VALUE %b 0 1\r\ny\r\nEND\r\n" % other
        ]
        lost.start()
        deadline = loop.time() + 10
        while ambassador.metrics.server_up.get("mc-0") != 1:
            assert loop.time() < deadline
            await asyncio.sleep(0.05)
        assert await exchange(client, [(b"get %b\r\n" % mine, True)]) == [
            b"END\r\n"
        ]  # restarted empty
        await client.close()
