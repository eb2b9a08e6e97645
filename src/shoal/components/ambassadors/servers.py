"""
The shard servers behind an ambassador: how they are named, which one owns a key, and which are up.

Theory of operation
-------------------
:class:`ServerSpec` is one server as configured (``HOST:PORT[:WEIGHT][ NAME]``, twemproxy's form).
The *name* is what the hash places (``host:port`` when none is given), so a server can move to
another address without its keys moving, as with twemproxy's named servers.

:class:`ServerHealth` is twemproxy's passive failure handling as a pure state machine (the driver
passes ``now`` in and acts on the events that come out). Every failed exchange with a server (a
refused or lost connection, a timeout) counts; ``failure_limit`` in a row mark the server *down*
for ``retry_timeout`` seconds, and a reply or a new connection marks it *up* again. While a server
is down its keys are answered at once with an error naming it, without waiting on a connect; the
driver probes it again when the retry time comes (``due``), so it comes back without traffic.
With ``auto_eject`` (twemproxy's ``auto_eject_hosts``) a down server's keys go instead to the next
server in the key's order of preference, the way a cache client skips a dead node; keys of the
servers that are up never move.

:class:`KeyRouter` puts the two together with a :mod:`shoal.dataplane.hashing` hasher: the part of
the key that is hashed (a ``{hash tag}`` when there is one), then the owner, or the error.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Final
from zlib import crc32

from shoal.dataplane.hashing import Hasher, HashingSettings, MaglevHasher, make_hasher

__all__ = [
    "DEFAULT_HASH_TAG",
    "HealthSettings",
    "KeyRouter",
    "ServerDown",
    "ServerHealth",
    "ServerSpec",
    "ServerUp",
    "hashed_part",
    "parse_server",
]

DEFAULT_HASH_TAG: Final = "{}"
"""Like Redis Cluster: in ``user:{42}:name`` only ``42`` is hashed."""


@dataclass(frozen=True, slots=True)
class ServerSpec:
    """One shard server."""

    host: str
    port: int
    weight: int = 1
    """Relative share of the keys (the hasher's weight)."""
    name: str = ""
    """What the hash places; ``host:port`` when empty."""

    @property
    def address(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def key(self) -> str:
        """The name the hash places and errors, logs and metrics use."""
        return self.name or self.address


def parse_server(text: str) -> ServerSpec:
    """``HOST:PORT[:WEIGHT][ NAME]`` (``[v6]:PORT`` too), twemproxy's server syntax."""
    address, _, name = text.strip().partition(" ")
    name = name.strip()
    if address.startswith("["):
        host, sep, rest = address[1:].partition("]")
        if not sep or not rest.startswith(":"):
            raise ValueError(f"expected [HOST]:PORT[:WEIGHT][ NAME], got {text!r}")
        fields = rest[1:].split(":")
    else:
        host, *fields = address.split(":")
    if not host or not 1 <= len(fields) <= 2 or not all(f.isdigit() for f in fields):
        raise ValueError(f"expected HOST:PORT[:WEIGHT][ NAME], got {text!r}")
    port = int(fields[0])
    weight = int(fields[1]) if len(fields) == 2 else 1
    if not 1 <= port <= 65535:
        raise ValueError(f"port must be 1-65535 in {text!r}")
    if weight < 1:
        raise ValueError(f"weight must be a positive integer in {text!r}")
    return ServerSpec(host, port, weight, name)


def hashed_part(key: bytes, tag: bytes) -> bytes:
    """The part of ``key`` that is hashed: what is between the tag's two characters, if not empty."""
    if tag:
        start = key.find(tag[:1])
        if start >= 0:
            stop = key.find(tag[1:2], start + 1)
            if stop > start + 1:
                return key[start + 1 : stop]
    return key


@dataclass(frozen=True, slots=True)
class HealthSettings:
    """Passive failure handling (twemproxy's names in brackets)."""

    failure_limit: int = 2
    """Failures in a row that mark a server down (``server_failure_limit``)."""
    retry_timeout: float = 2.0
    """Seconds a down server is left alone before it is tried again (``server_retry_timeout``)."""
    auto_eject: bool = False
    """Send a down server's keys to the next server instead of failing them (``auto_eject_hosts``)."""


@dataclass(frozen=True, slots=True)
class ServerDown:
    """``server`` is now down until ``until`` (monotonic seconds) because of ``reason``."""

    server: str
    reason: str
    until: float
    ejected: bool


@dataclass(frozen=True, slots=True)
class ServerUp:
    """``server`` answered again after being down."""

    server: str


class ServerHealth:
    """Which servers are up; see the module docstring."""

    __slots__ = ("_down_until", "_failures", "_reason", "any_down", "settings")

    def __init__(self, servers: Iterable[str], settings: HealthSettings | None = None) -> None:
        self.settings = settings or HealthSettings()
        names = list(servers)
        self._failures = dict.fromkeys(names, 0)
        self._down_until: dict[str, float] = {}
        self._reason: dict[str, str] = {}
        self.any_down = False
        """True when some server is down: the router's fast path checks only this."""

    def failed(self, server: str, reason: str, now: float) -> ServerDown | None:
        """A failed exchange with ``server``; the event if it is now (again) down."""
        self._reason[server] = reason
        count = self._failures[server] + 1
        self._failures[server] = count
        if count < self.settings.failure_limit and server not in self._down_until:
            return None
        until = now + self.settings.retry_timeout
        self._down_until[server] = until
        self.any_down = True
        return ServerDown(server, reason, until, self.settings.auto_eject)

    def succeeded(self, server: str) -> ServerUp | None:
        """``server`` answered; the event if it was down."""
        self._failures[server] = 0
        if self._down_until.pop(server, None) is None:
            return None
        self.any_down = bool(self._down_until)
        return ServerUp(server)

    def available(self, server: str, now: float) -> bool:
        """May a request go to ``server`` now? (Down, but due a retry, counts as available.)"""
        until = self._down_until.get(server)
        return until is None or now >= until

    def down(self) -> dict[str, float]:
        """The servers that are down and until when."""
        return dict(self._down_until)

    def reason(self, server: str) -> str:
        """The last failure seen for ``server``."""
        return self._reason.get(server, "")

    def due(self, now: float) -> list[str]:
        """Down servers whose retry time has come (the driver probes them)."""
        return [name for name, until in self._down_until.items() if now >= until]


class KeyRouter:
    """Key to server: hash tag, hasher, health. ``route`` answers ``(server, usable)``."""

    __slots__ = ("_eject", "_lookup", "_open", "_tag", "hasher", "health", "lookup", "table")

    def __init__(
        self,
        servers: Sequence[ServerSpec],
        *,
        algorithm: str = "maglev",
        hash_tag: str = DEFAULT_HASH_TAG,
        health: HealthSettings | None = None,
        hashing: HashingSettings | None = None,
    ) -> None:
        if hash_tag and len(hash_tag) != 2:
            raise ValueError(f"a hash tag is two characters, like '{{}}', not {hash_tag!r}")
        names = [s.key for s in servers]
        self.hasher: Hasher = make_hasher(
            algorithm, names, [s.weight for s in servers], settings=hashing
        )
        self.health = ServerHealth(names, health)
        self._tag = hash_tag.encode()
        self._open = self._tag[:1]
        self._eject = self.health.settings.auto_eject
        self.lookup: Callable[[bytes], str] = self.hasher.lookup
        """The hasher's lookup: the server of a (hashed part of a) key."""
        self.table: tuple[str, ...] = ()
        """Maglev's table, empty with other hashers: a key's server is
        ``table[crc32(key) % len(table)]`` (the drivers' hot path indexes it directly)."""
        self._lookup: Callable[[bytes], str] = self.lookup
        if isinstance(self.hasher, MaglevHasher):
            # The hot path: Maglev's lookup is one index into its table (the same answer as
            # hasher.lookup, without the method call and the str check).
            table, size = self.hasher.table, len(self.hasher.table)
            self.table = table
            self._lookup = lambda key: table[crc32(key) % size]

    @property
    def tag(self) -> bytes:
        """The hash tag's two characters (empty: tags off)."""
        return self._tag

    @property
    def tag_open(self) -> bytes:
        """The tag's first character: keys without it are hashed whole."""
        return self._open

    def owner(self, key: bytes) -> str:
        """The server the hash gives ``key`` when every server is up."""
        return self._lookup(
            hashed_part(key, self._tag) if self._open and self._open[0] in key else key
        )

    def usable_owner(self, key: bytes, now: float) -> str | None:
        """The hot path of :meth:`route`: the key's server when it may be used now, else None."""
        if self._open and self._open[0] in key:
            key = hashed_part(key, self._tag)
        server = self._lookup(key)
        health = self.health
        if not health.any_down or health.available(server, now):
            return server
        return None

    def route(self, key: bytes, now: float) -> tuple[str, bool]:
        """The server for ``key`` and whether it may be used now (if not, it is the one to name)."""
        part = hashed_part(key, self._tag) if self._open and self._open[0] in key else key
        server = self._lookup(part)
        health = self.health
        if not health.any_down or health.available(server, now):
            return server, True
        if self._eject:
            for candidate in self.hasher.candidates(part):
                if health.available(candidate, now):
                    return candidate, True
        return server, False
