"""The pure cores: server specs, hash tags, health transcripts, plans and merges."""

from __future__ import annotations

import functools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shoal.components.ambassadors import memcache, resp
from shoal.components.ambassadors.planning import (
    Answer,
    Forward,
    MemcachePlanner,
    RedisPlanner,
    Split,
    merge,
)
from shoal.components.ambassadors.servers import (
    HealthSettings,
    KeyRouter,
    ServerDown,
    ServerHealth,
    ServerSpec,
    ServerUp,
    hashed_part,
    parse_server,
)
from shoal.dataplane.hashing import make_hasher

SERVERS = [
    ServerSpec("127.0.0.1", 7001, name="a"),
    ServerSpec("127.0.0.1", 7002, name="b"),
    ServerSpec("127.0.0.1", 7003, name="c"),
]


@functools.cache
def _default() -> RedisPlanner:
    router = KeyRouter(SERVERS)
    return RedisPlanner(router, {s.key: s for s in SERVERS})


def redis(**health: object) -> RedisPlanner:
    """A planner over SERVERS; the default one (never marked down) is built once: Maglev tables
    take a fraction of a second to build."""
    if not health:
        return _default()
    router = KeyRouter(SERVERS, health=HealthSettings(**health))  # type: ignore[arg-type]
    return RedisPlanner(router, {s.key: s for s in SERVERS})


def plan(planner: RedisPlanner, *args: bytes, now: float = 0.0) -> object:
    return planner.plan(list(args), resp.encode_command(list(args)), now)


def test_parse_server_forms() -> None:
    assert parse_server("10.0.0.1:6379") == ServerSpec("10.0.0.1", 6379)
    assert parse_server("10.0.0.1:6379:3 shard-a") == ServerSpec("10.0.0.1", 6379, 3, "shard-a")
    assert parse_server("[::1]:6379:2") == ServerSpec("::1", 6379, 2)
    assert parse_server("[::1]:6379").address == "[::1]:6379"
    for bad in ("host", "host:x", "host:1:0", ":1", "h:70000", "[::1]6379"):
        with pytest.raises(ValueError, match=r"HOST\]?:PORT|port|weight"):
            parse_server(bad)


def test_hash_tags_like_redis_cluster() -> None:
    assert hashed_part(b"user:{42}:name", b"{}") == b"42"
    assert hashed_part(b"{}x", b"{}") == b"{}x"  # empty tag: the whole key
    assert hashed_part(b"a{b", b"{}") == b"a{b"
    assert hashed_part(b"user:{42}:name", b"") == b"user:{42}:name"


def test_keys_go_where_the_data_planes_hasher_says() -> None:
    router = redis().router
    hasher = make_hasher("maglev", ["a", "b", "c"])
    for i in range(200):
        key = b"key:%d" % i
        assert router.route(key, 0.0) == (hasher.lookup(key), True)


def test_health_transcript() -> None:
    health = ServerHealth(["a", "b"], HealthSettings(failure_limit=2, retry_timeout=3.0))
    assert health.failed("a", "connection refused", 1.0) is None
    assert health.available("a", 1.0)
    assert health.down() == {}
    assert health.failed("a", "connection refused", 2.0) == ServerDown(
        "a", "connection refused", 5.0, False
    )
    assert health.down() == {"a": 5.0}
    assert not health.available("a", 4.9)
    assert health.available("b", 4.9)
    assert health.due(4.9) == []
    assert health.due(5.0) == ["a"]
    # The probe fails: down again for another retry time.
    assert health.failed("a", "connection refused", 5.0) == ServerDown(
        "a", "connection refused", 8.0, False
    )
    assert health.succeeded("a") == ServerUp("a")
    assert not health.any_down
    assert health.available("a", 5.1)
    assert health.succeeded("a") is None


def test_down_server_keys_get_an_error_naming_it_or_move_with_auto_eject() -> None:
    for eject in (False, True):
        planner = redis(failure_limit=1, retry_timeout=10.0, auto_eject=eject)
        key = next(b"k%d" % i for i in range(100) if planner.router.owner(b"k%d" % i) == "b")
        planner.router.health.failed("b", "connection refused", 0.0)
        got = plan(planner, b"GET", key, now=1.0)
        if eject:
            assert isinstance(got, Forward)
            assert got.server != "b"
        else:
            assert got == Answer(
                b"-ERR ambassador: server b (127.0.0.1:7002) is unavailable: connection refused\r\n"
            )
        # Keys of servers that are up never move.
        other = next(b"k%d" % i for i in range(100) if planner.router.owner(b"k%d" % i) == "a")
        assert plan(planner, b"GET", other, now=1.0) == Forward(
            "a", resp.encode_command([b"GET", other])
        )
        # After the retry time the server is tried again.
        assert isinstance(plan(planner, b"GET", key, now=10.0), Forward)


def test_multi_key_commands_split_by_server_and_merge_in_order() -> None:
    planner = redis()
    keys = [b"k%d" % i for i in range(12)]
    got = plan(planner, b"MGET", *keys)
    assert isinstance(got, Split)
    assert got.merge == "array"
    assert len(got.parts) == 3
    owners = {planner.router.owner(k) for k in keys}
    assert {p.server for p in got.parts} == owners
    replies = []
    for part in got.parts:
        assert resp.decode(part.raw) == [b"MGET", *(keys[i] for i in part.positions)]
        assert all(planner.router.owner(keys[i]) == part.server for i in part.positions)
        replies.append(
            resp.encode_array([resp.encode_bulk(keys[i] + b"!") for i in part.positions])
        )
    assert resp.decode(merge(got, replies)) == [k + b"!" for k in keys]
    mset = plan(planner, b"MSET", *(x for k in keys for x in (k, b"v")))
    assert isinstance(mset, Split)
    assert mset.merge == "ok"
    assert merge(mset, [b"+OK\r\n"] * len(mset.parts)) == b"+OK\r\n"
    dels = plan(planner, b"DEL", *keys)
    assert isinstance(dels, Split)
    assert merge(dels, [b":1\r\n", b":2\r\n", b":0\r\n"]) == b":3\r\n"
    assert merge(dels, [b":1\r\n", b"-ERR down\r\n", b":0\r\n"]) == b"-ERR down\r\n"


def test_same_server_commands_need_hash_tags() -> None:
    planner = redis()
    a, b = next(
        (x, y)
        for x in (b"a%d" % i for i in range(50))
        for y in (b"b%d" % i for i in range(50))
        if planner.router.owner(x) != planner.router.owner(y)
    )
    refused = plan(planner, b"RENAME", a, b)
    assert isinstance(refused, Answer)
    assert refused.reply.startswith(b"-CROSSSLOT keys of 'RENAME' hash to different servers")
    assert isinstance(plan(planner, b"RENAME", b"{u1}:a", b"{u1}:b"), Forward)
    assert isinstance(plan(planner, b"EVAL", b"return 1", b"2", b"{t}x", b"{t}y", b"arg"), Forward)
    evalzero = plan(planner, b"EVAL", b"return 1", b"0")
    assert isinstance(evalzero, Answer)
    assert b"no keys" in evalzero.reply


@pytest.mark.parametrize(
    ("args", "reply"),
    [
        ((b"PING",), b"+PONG\r\n"),
        ((b"ping", b"hi"), b"$2\r\nhi\r\n"),
        ((b"ECHO", b"x"), b"$1\r\nx\r\n"),
        ((b"SELECT", b"0"), b"+OK\r\n"),
        ((b"SELECT", b"1"), b"-ERR SELECT: only database 0"),
        ((b"HELLO", b"3"), b"-NOPROTO unsupported protocol version 3"),
        ((b"MULTI",), b"-ERR 'MULTI' is not supported by the ambassador: transactions"),
        ((b"SUBSCRIBE", b"c"), b"-ERR 'SUBSCRIBE' is not supported by the ambassador: pub/sub"),
        ((b"BLPOP", b"k", b"0"), b"-ERR 'BLPOP' is not supported by the ambassador: blocking"),
        (
            (b"KEYS", b"*"),
            b"-ERR 'KEYS' is not supported by the ambassador: it would have to visit every shard",
        ),
        ((b"SCAN", b"0"), b"-ERR 'SCAN' is not supported"),
        ((b"FOO",), b"-ERR unknown or unsupported command 'FOO'"),
        ((b"GET",), b"-ERR wrong number of arguments for 'get' command"),
        ((b"MSET", b"a"), b"-ERR wrong number of arguments for 'mset' command"),
    ],
)
def test_local_answers_and_refusals(args: tuple[bytes, ...], reply: bytes) -> None:
    got = plan(redis(), *args)
    assert isinstance(got, Answer)
    assert got.reply.startswith(reply)
    assert got.reply.endswith(b"\r\n")


def test_hello_2_and_quit() -> None:
    hello = plan(redis(), b"HELLO", b"2")
    assert isinstance(hello, Answer)
    decoded = resp.decode(hello.reply)
    assert isinstance(decoded, list)
    assert decoded[decoded.index(b"proto") + 1] == 2
    assert plan(redis(), b"QUIT") == Answer(b"+OK\r\n", close=True)


def test_memcached_plans() -> None:
    router = redis().router
    planner = MemcachePlanner(router, {s.key: s for s in SERVERS})
    keys = [b"m%d" % i for i in range(10)]
    got = planner.plan(memcache.Request(b"gat", keys, b"", True, b"30"), 0.0)
    assert isinstance(got, Split)
    for part in got.parts:
        assert part.raw.startswith(b"gat 30 ")
        assert part.raw.endswith(b"\r\n")
    replies = [
        b"".join(b"VALUE %b 0 1\r\nx\r\n" % keys[i] for i in part.positions if i % 2) + b"END\r\n"
        for part in got.parts
    ]
    merged = merge(got, replies)
    assert (
        merged
        == b"".join(b"VALUE %b 0 1\r\nx\r\n" % k for i, k in enumerate(keys) if i % 2) + b"END\r\n"
    )
    one = planner.plan(memcache.Request(b"set", [b"k"], b"set k 0 0 1\r\nx\r\n", False), 0.0)
    assert one == Forward(router.owner(b"k"), b"set k 0 0 1\r\nx\r\n", False, False)
    assert planner.plan(memcache.Request(b"quit", [], b"quit\r\n"), 0.0) == Answer(b"", close=True)


@given(st.lists(st.binary(min_size=1, max_size=12), min_size=1, max_size=30))
def test_split_parts_cover_every_key_once(keys: list[bytes]) -> None:
    planner = redis()
    got = plan(planner, b"DEL", *keys)
    if isinstance(got, Forward):
        assert len({planner.router.owner(k) for k in keys}) == 1
        return
    assert isinstance(got, Split)
    positions = sorted(i for part in got.parts for i in part.positions)
    assert positions == list(range(len(keys)))
    for part in got.parts:
        assert resp.decode(part.raw) == [b"DEL", *(keys[i] for i in part.positions)]


@given(
    st.lists(st.binary(max_size=8), min_size=1, max_size=4),
    st.sampled_from([b"GET", b"set", b"MGET", b"PING", b"KEYS", b"RENAME"]),
)
def test_the_single_key_fast_path_agrees_with_plan(rest: list[bytes], name: bytes) -> None:
    planner = redis()
    args = [name, *rest]
    raw = resp.encode_command(args)
    server = planner.single(args, 0.0)
    if server is not None:
        assert planner.plan(args, raw, 0.0) == Forward(server, raw)
    else:
        got = planner.plan(args, raw, 0.0)
        assert not (isinstance(got, Forward) and name.upper() in (b"GET", b"SET"))
