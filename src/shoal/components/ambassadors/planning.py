"""
What to do with each request: forward it to one server, split it over several and merge the
answers, or answer it here.

Theory of operation
-------------------
A planner is pure: a parsed request (and ``now``, for server health) in, a plan out. The driver
carries plans out and never looks inside a command.

:class:`Forward`
    The request's bytes go unchanged to one server; its reply comes back unchanged.
:class:`Split`
    A multi-key command whose keys live on several servers: one part per server (the command
    re-encoded with that server's keys), and a merge of the parts' replies (:func:`merge`) in the
    keys' original order. Redis ``MGET`` (array), ``DEL``/``UNLINK``/``EXISTS``/``TOUCH`` (sum of
    integers), ``MSET`` (all ``+OK``); memcached ``get``/``gets``/``gat``/``gats`` (``VALUE``
    blocks). If any part fails, the merged reply is that part's error.
:class:`Answer`
    A reply the ambassador writes itself: ``PING``, ``ECHO``, ``SELECT 0``, ``QUIT``, ``HELLO 2``,
    ``version``, and every refusal. Refusals use the protocol's own error forms, so clients raise
    their usual exception and the connection keeps working.

Commands whose keys must meet on one server (``RENAME``, ``SUNION``, ``EVAL`` ...) are forwarded
when every key hashes to the same server (a ``{hash tag}`` arranges that) and refused otherwise,
like Redis Cluster's ``CROSSSLOT``. Commands that cannot work over shards at all (transactions,
pub/sub, blocking pops, whole-keyspace commands such as ``KEYS`` and ``SCAN``) are refused with
the reason.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final, NamedTuple

from shoal import __version__
from shoal.components.ambassadors import memcache, resp
from shoal.components.ambassadors.servers import KeyRouter, ServerSpec

__all__ = [
    "Answer",
    "Forward",
    "MemcachePlanner",
    "Part",
    "Plan",
    "RedisPlanner",
    "Split",
    "merge",
]


class Forward(NamedTuple):
    """Send ``raw`` to ``server``. ``retrieval``: a memcached get-like reply (``VALUE`` ... ``END``).

    ``reply`` False: nothing comes back (memcached ``noreply``).
    """

    server: str
    raw: bytes
    retrieval: bool = False
    reply: bool = True


class Part(NamedTuple):
    """One server's share of a split command: ``positions`` of its keys in the original."""

    server: str
    raw: bytes
    positions: list[int]


class Split(NamedTuple):
    """Send each part, then :func:`merge` the replies; ``size`` keys in all."""

    parts: list[Part]
    merge: str
    size: int
    keys: list[bytes]


class Answer(NamedTuple):
    """Reply ``reply`` without asking a server; then close the connection if ``close``."""

    reply: bytes
    close: bool = False


Plan = Forward | Split | Answer

# --- Redis -------------------------------------------------------------------------------------


def _words(text: str) -> list[str]:
    """A table of names reads better as words than as a list of quoted strings."""
    return text.split()


_SINGLE_KEY = _words(
    """
GET SET SETNX SETEX PSETEX GETSET GETDEL GETEX APPEND STRLEN INCR DECR INCRBY DECRBY INCRBYFLOAT
GETRANGE SETRANGE SUBSTR GETBIT SETBIT BITCOUNT BITPOS BITFIELD BITFIELD_RO
EXPIRE PEXPIRE EXPIREAT PEXPIREAT EXPIRETIME PEXPIRETIME TTL PTTL PERSIST TYPE DUMP RESTORE
HGET HSET HSETNX HMSET HMGET HDEL HLEN HEXISTS HGETALL HKEYS HVALS HINCRBY HINCRBYFLOAT HSTRLEN
HSCAN HRANDFIELD
LPUSH RPUSH LPUSHX RPUSHX LPOP RPOP LLEN LRANGE LINDEX LSET LREM LTRIM LINSERT LPOS
SADD SREM SCARD SISMEMBER SMISMEMBER SMEMBERS SPOP SRANDMEMBER SSCAN
ZADD ZREM ZCARD ZSCORE ZMSCORE ZINCRBY ZRANGE ZRANGEBYSCORE ZREVRANGE ZREVRANGEBYSCORE
ZRANGEBYLEX ZREVRANGEBYLEX ZRANK ZREVRANK ZCOUNT ZLEXCOUNT ZREMRANGEBYRANK ZREMRANGEBYSCORE
ZREMRANGEBYLEX ZPOPMIN ZPOPMAX ZRANDMEMBER ZSCAN
PFADD GEOADD GEODIST GEOHASH GEOPOS
XADD XLEN XRANGE XREVRANGE XDEL XTRIM XACK XPENDING XCLAIM XAUTOCLAIM
"""
)

_SAME_SERVER: Final[dict[bytes, tuple[int, int, int]]] = {
    b"RENAME": (1, 3, 1),
    b"LCS": (1, 3, 1),
    b"RENAMENX": (1, 3, 1),
    b"COPY": (1, 3, 1),
    b"SMOVE": (1, 3, 1),
    b"RPOPLPUSH": (1, 3, 1),
    b"LMOVE": (1, 3, 1),
    b"SUNION": (1, 0, 1),
    b"SINTER": (1, 0, 1),
    b"SDIFF": (1, 0, 1),
    b"SUNIONSTORE": (1, 0, 1),
    b"SINTERSTORE": (1, 0, 1),
    b"SDIFFSTORE": (1, 0, 1),
    b"PFCOUNT": (1, 0, 1),
    b"PFMERGE": (1, 0, 1),
    b"MSETNX": (1, 0, 2),
    b"BITOP": (2, 0, 1),
}
"""(first, stop, step) of the keys; stop 0 means to the end."""

_NUMKEYS_AT: Final[dict[bytes, tuple[int, bool]]] = {
    # command: (index of numkeys, whether args[1] is a destination key too)
    b"ZUNIONSTORE": (2, True),
    b"ZINTERSTORE": (2, True),
    b"ZDIFFSTORE": (2, True),
    b"ZUNION": (1, False),
    b"ZINTER": (1, False),
    b"ZDIFF": (1, False),
    b"SINTERCARD": (1, False),
    b"ZINTERCARD": (1, False),
    b"EVAL": (2, False),
    b"EVALSHA": (2, False),
    b"EVAL_RO": (2, False),
    b"EVALSHA_RO": (2, False),
    b"FCALL": (2, False),
    b"FCALL_RO": (2, False),
}

_SPLITS: Final[dict[bytes, tuple[int, str]]] = {
    b"MGET": (1, "array"),
    b"DEL": (1, "sum"),
    b"UNLINK": (1, "sum"),
    b"EXISTS": (1, "sum"),
    b"TOUCH": (1, "sum"),
    b"MSET": (2, "ok"),
}
"""command: (step between keys, how replies merge)."""

_REFUSED: Final[dict[str, str]] = {
    "transactions cannot span shards": "MULTI EXEC DISCARD WATCH UNWATCH",
    "pub/sub is not sharded by the ambassador; connect to a server directly": (
        "SUBSCRIBE PSUBSCRIBE SSUBSCRIBE UNSUBSCRIBE PUNSUBSCRIBE SUNSUBSCRIBE PUBLISH SPUBLISH "
        "PUBSUB"
    ),
    "blocking commands would hold a shared server connection": (
        "BLPOP BRPOP BRPOPLPUSH BLMOVE BLMPOP BZPOPMIN BZPOPMAX BZMPOP XREAD XREADGROUP WAIT "
        "WAITAOF"
    ),
    "it would have to visit every shard": (
        "KEYS SCAN RANDOMKEY DBSIZE FLUSHDB FLUSHALL SWAPDB MOVE MIGRATE OBJECT SORT SORT_RO "
        "SCRIPT FUNCTION"
    ),
    "it is a per-server command; connect to the server directly": (
        "INFO CONFIG SAVE BGSAVE BGREWRITEAOF LASTSAVE MONITOR SYNC PSYNC SHUTDOWN SLAVEOF "
        "REPLICAOF DEBUG SLOWLOG LATENCY MEMORY MODULE ACL CLUSTER READONLY READWRITE FAILOVER "
        "TIME LOLWUT RESET ROLE"
    ),
    "server passwords are not configurable in the ambassador yet": "AUTH",
}

_CLIENT_OK: Final = frozenset({b"SETNAME", b"SETINFO", b"NO-EVICT", b"NO-TOUCH"})


def _wrong_args(name: bytes) -> Answer:
    return Answer(
        resp.encode_error(
            f"ERR wrong number of arguments for '{name.decode('latin-1').lower()}' command"
        )
    )


class RedisPlanner:
    """Redis commands to plans; see the module docstring."""

    __slots__ = ("_refused", "_single", "_usable_owner", "router", "servers")

    def __init__(self, router: KeyRouter, servers: dict[str, ServerSpec]) -> None:
        self.router = router
        self.servers = servers
        self._usable_owner = router.usable_owner
        self._single = frozenset(name.encode() for name in _SINGLE_KEY)
        self._refused = {
            name.encode(): why for why, names in _REFUSED.items() for name in names.split()
        }

    def unavailable(self, server: str) -> bytes:
        """The error for a request whose server is down."""
        spec = self.servers[server]
        reason = self.router.health.reason(server) or "not reachable"
        return resp.encode_error(
            f"ERR ambassador: server {server} ({spec.address}) is unavailable: {reason}"
        )

    @property
    def single_names(self) -> frozenset[bytes]:
        """The single-key commands (upper case): their key is ``args[1]``."""
        return self._single

    def single(self, args: list[bytes], now: float) -> str | None:
        """The hot path: the server for a single-key command whose server is usable, else None
        (then :meth:`plan` decides). The same answer ``plan`` gives, without building a plan."""
        if len(args) > 1 and args[0].upper() in self._single:
            return self._usable_owner(args[1], now)
        return None

    def plan(self, args: list[bytes], raw: bytes, now: float) -> Plan:
        name = args[0].upper()
        if name in self._single:
            if len(args) < 2:
                return _wrong_args(name)
            server, ok = self.router.route(args[1], now)
            return Forward(server, raw) if ok else Answer(self.unavailable(server))
        split = _SPLITS.get(name)
        if split is not None:
            return self._split(name, args, now, *split)
        same = _SAME_SERVER.get(name)
        if same is not None:
            first, stop, step = same
            if len(args) <= first or (stop and len(args) < stop):
                return _wrong_args(name)
            return self._same(name, args[first : stop or None : step], raw, now)
        numkeys = _NUMKEYS_AT.get(name)
        if numkeys is not None:
            return self._numkeys(name, args, raw, now, *numkeys)
        return self._local(name, args)

    def _same(self, name: bytes, keys: list[bytes], raw: bytes, now: float) -> Plan:
        owners = {self.router.owner(key) for key in keys}
        if len(owners) > 1:
            listed = ", ".join(sorted(owners))
            return Answer(
                resp.encode_error(
                    f"CROSSSLOT keys of '{name.decode('latin-1')}' hash to different servers "
                    f"({listed}): put a hash tag in them, like user:{{42}}:a and user:{{42}}:b"
                )
            )
        server, ok = self.router.route(keys[0], now)
        return Forward(server, raw) if ok else Answer(self.unavailable(server))

    def _numkeys(
        self, name: bytes, args: list[bytes], raw: bytes, now: float, at: int, dest: bool
    ) -> Plan:
        if len(args) <= at or not args[at].isdigit():
            return _wrong_args(name)
        count = int(args[at])
        keys = args[at + 1 : at + 1 + count]
        if len(keys) != count:
            return _wrong_args(name)
        if dest:
            keys = [args[1], *keys]
        if not keys:
            return Answer(
                resp.encode_error(
                    f"ERR '{name.decode('latin-1')}' with no keys cannot be routed to a shard: "
                    "give it at least one key"
                )
            )
        return self._same(name, keys, raw, now)

    def _split(self, name: bytes, args: list[bytes], now: float, step: int, how: str) -> Plan:
        if len(args) < 2 or (len(args) - 1) % step:
            return _wrong_args(name)
        keys = args[1::step]
        groups: dict[str, list[int]] = {}
        route = self.router.route
        for index, key in enumerate(keys):
            server, ok = route(key, now)
            if not ok:
                return Answer(self.unavailable(server))
            groups.setdefault(server, []).append(index)
        if len(groups) == 1:
            (server,) = groups
            return Forward(server, resp.encode_command(args))
        parts = []
        for server, positions in groups.items():
            part_args = [args[0]]
            for index in positions:
                part_args.extend(args[1 + index * step : 1 + index * step + step])
            parts.append(Part(server, resp.encode_command(part_args), positions))
        return Split(parts, how, len(keys), keys)

    def _local(self, name: bytes, args: list[bytes]) -> Plan:
        if name == b"PING":
            if len(args) > 2:
                return _wrong_args(name)
            return Answer(b"+PONG\r\n" if len(args) == 1 else resp.encode_bulk(args[1]))
        if name == b"ECHO":
            return Answer(resp.encode_bulk(args[1])) if len(args) == 2 else _wrong_args(name)
        if name == b"QUIT":
            return Answer(b"+OK\r\n", close=True)
        if name == b"SELECT":
            if len(args) != 2:
                return _wrong_args(name)
            if args[1] == b"0":
                return Answer(b"+OK\r\n")
            return Answer(
                resp.encode_error(
                    "ERR SELECT: only database 0 is served by the ambassador (keys are sharded "
                    "across servers; use key prefixes instead of databases)"
                )
            )
        if name == b"HELLO":
            return self._hello(args)
        if name == b"COMMAND":
            # Client libraries ask for the command table on connect; an empty one is valid.
            return Answer(b"*0\r\n")
        if name == b"CLIENT" and len(args) >= 2 and args[1].upper() in _CLIENT_OK:
            return Answer(b"+OK\r\n")
        why = self._refused.get(name)
        shown = name.decode("latin-1")
        if why is not None:
            return Answer(
                resp.encode_error(f"ERR '{shown}' is not supported by the ambassador: {why}")
            )
        return Answer(
            resp.encode_error(
                f"ERR unknown or unsupported command '{shown}' (the ambassador forwards only "
                "commands it can route to a shard by key)"
            )
        )

    def _hello(self, args: list[bytes]) -> Plan:
        rest = [a.upper() for a in args[1:]]
        if rest and rest[0] not in (b"2",):
            if rest[0].isdigit():
                return Answer(
                    resp.encode_error(
                        f"NOPROTO unsupported protocol version {rest[0].decode('latin-1')}: "
                        "the ambassador speaks RESP2 only; connect without HELLO 3"
                    )
                )
            return Answer(
                resp.encode_error("ERR Protocol version is not an integer or out of range")
            )
        if b"AUTH" in rest:
            return Answer(
                resp.encode_error(
                    "ERR 'AUTH' is not supported by the ambassador: server passwords are not "
                    "configurable in the ambassador yet"
                )
            )
        fields = [
            (b"server", resp.encode_bulk(b"shoal-ambassador")),
            (b"version", resp.encode_bulk(__version__.encode())),
            (b"proto", resp.encode_int(2)),
            (b"id", resp.encode_int(0)),
            (b"mode", resp.encode_bulk(b"standalone")),
            (b"role", resp.encode_bulk(b"master")),
            (b"modules", b"*0\r\n"),
        ]
        return Answer(resp.encode_array([x for k, v in fields for x in (resp.encode_bulk(k), v)]))


# --- memcached ---------------------------------------------------------------------------------


class MemcachePlanner:
    """memcached requests to plans; see the module docstring."""

    __slots__ = ("router", "servers")

    def __init__(self, router: KeyRouter, servers: dict[str, ServerSpec]) -> None:
        self.router = router
        self.servers = servers

    def unavailable(self, server: str) -> bytes:
        spec = self.servers[server]
        reason = self.router.health.reason(server) or "not reachable"
        return (
            f"SERVER_ERROR server {server} ({spec.address}) is unavailable: {reason}\r\n".encode()
        )

    def plan(self, request: memcache.Request, now: float) -> Plan:
        command, keys = request.command, request.keys
        if not keys:
            if command == b"quit":
                return Answer(b"", close=True)
            return Answer(b"VERSION shoal-ambassador-" + __version__.encode() + b"\r\n")
        retrieval = command in memcache.RETRIEVAL
        if len(keys) == 1 or not retrieval:
            server, ok = self.router.route(keys[0], now)
            if not ok:
                return Answer(self.unavailable(server) if request.reply else b"")
            return Forward(server, request.raw, retrieval, request.reply)
        groups: dict[str, list[int]] = {}
        route = self.router.route
        for index, key in enumerate(keys):
            server, ok = route(key, now)
            if not ok:
                return Answer(self.unavailable(server))
            groups.setdefault(server, []).append(index)
        if len(groups) == 1:
            (server,) = groups
            return Forward(server, request.raw, True)
        head = command + b" " + request.exptime if request.exptime else command
        parts = [
            Part(server, b" ".join([head, *(keys[i] for i in positions)]) + b"\r\n", positions)
            for server, positions in groups.items()
        ]
        return Split(parts, "values", len(keys), keys)


# --- merging -----------------------------------------------------------------------------------


def _merge_array(split: Split, replies: list[bytes]) -> bytes:
    items: list[bytes] = [b""] * split.size
    for part, reply in zip(split.parts, replies, strict=True):
        got = resp.array_items(reply)
        if got is None or len(got) != len(part.positions):
            return reply
        for position, item in zip(part.positions, got, strict=True):
            items[position] = item
    return resp.encode_array(items)


def _merge_sum(split: Split, replies: list[bytes]) -> bytes:
    total = 0
    for reply in replies:
        if not reply.startswith(b":"):
            return reply
        total += int(reply[1:-2])
    return resp.encode_int(total)


def _merge_ok(split: Split, replies: list[bytes]) -> bytes:
    for reply in replies:
        if reply != b"+OK\r\n":
            return reply
    return b"+OK\r\n"


def _merge_values(split: Split, replies: list[bytes]) -> bytes:
    blocks: dict[bytes, list[bytes]] = {}
    for reply in replies:
        got = memcache.value_blocks(reply)
        if got is None:
            return reply
        for key, found in got.items():
            blocks.setdefault(key, []).extend(found)
    # Values in the order the keys were asked for; a key asked twice is answered twice.
    out = [blocks[key][0] for key in split.keys if key in blocks]
    out.append(b"END\r\n")
    return b"".join(out)


_MERGES: Final[dict[str, Callable[[Split, list[bytes]], bytes]]] = {
    "array": _merge_array,
    "sum": _merge_sum,
    "ok": _merge_ok,
    "values": _merge_values,
}


def merge(split: Split, replies: list[bytes]) -> bytes:
    """One reply from the parts' replies (aligned with ``split.parts``); see the module docstring."""
    return _MERGES[split.merge](split, replies)
