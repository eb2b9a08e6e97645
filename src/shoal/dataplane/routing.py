"""
The shard router's core: from a request path to a shard and one of its replicas.

Theory of operation
-------------------
Three steps, each pure:

1. **Key.** :func:`shard_key` applies the compiled ``shardRegexp`` to the request path with
   ``re.search`` (not anchored). The key is the first capture group; the whole match when the
   regexp has no group; the whole path when the regexp does not match, when the first group did
   not take part in the match (``/users/(\\d+)?/`` on ``/users//``), or when there is no regexp.
   Groups are greedy as Python's ``re`` makes them: ``/users/(.*)/.*`` takes ``alice/photos``
   from ``/users/alice/photos/1``; write ``/users/([^/]+)`` for one segment. The driver passes the
   path without the query string.
2. **Shard.** The :class:`RoutingTable`'s hasher (:mod:`shoal.dataplane.hashing`, Maglev by
   default) maps the key to a shard name.
3. **Replica.** The shard's picker (:mod:`shoal.dataplane.balancing`, round robin by default)
   chooses among the shard's endpoints, skipping the addresses the driver excludes.

The proxy takes steps 1 and 2 on the request target's bytes: :meth:`Router.target_hash` gives the
key's hash (:func:`~shoal.dataplane.hashing.key_hash`), read in place for the usual
regexps (:func:`plain_form`, :func:`plain_hash`), and :meth:`Router.choose_hash` goes from the hash
to the shard and replica; the answers are those of the steps above, without making the strings.

A :class:`RoutingTable` is an immutable value. To change shards, endpoints or the regexp, build a
new table and hand it to :meth:`Router.swap`, which replaces one reference: a request routed
before the swap finished with the old table, every later one sees the new one, and nothing is
ever half-updated. :meth:`RoutingTable.build` with ``previous=`` keeps the :class:`Endpoint`
objects of addresses that stay (their in-flight counts go on) and the hasher when the shard set
is unchanged (a Maglev table is not rebuilt for an endpoint change). The :class:`Router` holds
what does change per request: the pickers' state and the per-shard counters, kept by shard name
across swaps.
"""

import random
import re
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Final

from shoal.dataplane.balancing import Endpoint, Picker, make_picker
from shoal.dataplane.hashing import Hasher, HashingSettings, key_hash, make_hasher

if TYPE_CHECKING:
    from shoal import _cyshim as cython
else:
    try:
        import cython
    except ImportError:  # no Cython: the decorators below mean nothing then
        from shoal import _cyshim as cython

__all__ = [
    "FORM_SEGMENT",
    "FORM_SEGMENT_THEN_SLASH",
    "FORM_TO_LAST_SLASH",
    "Route",
    "Router",
    "RoutingSettings",
    "RoutingTable",
    "Shard",
    "ShardCounters",
    "plain_form",
    "plain_hash",
    "plain_key",
    "request_path",
    "shard_key",
]


@dataclass(frozen=True, slots=True)
class RoutingSettings:
    """How the shard router turns a path into a shard and a replica."""

    shard_regexp: str | None = None
    """Searched in the path; its first group (or whole match) is the key. None: the whole path."""
    hashing: HashingSettings = field(default_factory=HashingSettings)
    """How keys map to shards."""
    policy: str = "round-robin"
    """How a shard's replicas share its requests (a name from ``balancing.POLICIES``)."""


@cython.ccall  # compiled: a C call from the router, still a Python function
def request_path(target: bytes) -> str:
    """The path of a request target, without the query (origin or absolute form)."""
    if target[:1] != b"/":
        scheme = target.find(b"://")
        if scheme >= 0:
            slash = target.find(b"/", scheme + 3)
            target = target[slash:] if slash >= 0 else b"/"
    query = target.find(b"?")
    if query >= 0:
        target = target[:query]
    return target.decode("latin-1")


@cython.ccall  # compiled: a C call from the router, still a Python function
def shard_key(pattern: re.Pattern[str] | None, path: str) -> str:
    """The shard key of ``path`` under ``pattern``, by the rules in the module docstring."""
    if pattern is None:
        return path
    match = pattern.search(path)
    if match is None:
        return path
    if pattern.groups == 0:
        return match.group(0)
    key = match.group(1)
    return path if key is None else key


FORM_SEGMENT: Final = 0
"""``P([^/]+)``: the path segment right after ``P``."""
FORM_SEGMENT_THEN_SLASH: Final = 1
"""``P([^/]+)/.*``: the path segment right after ``P``, when a ``/`` follows it."""
FORM_TO_LAST_SLASH: Final = 2
"""``P(.*)/.*`` (the talk's ``/users/(.*)/.*``): all after ``P`` up to the last ``/`` of its line."""
_FORMS: Final = (
    ("([^/]+)/.*", FORM_SEGMENT_THEN_SLASH),
    ("(.*)/.*", FORM_TO_LAST_SLASH),
    ("([^/]+)", FORM_SEGMENT),
)
_PLAIN = re.compile(r"[A-Za-z0-9/_-]+")


def plain_form(pattern: re.Pattern[str] | None) -> tuple[str, int] | None:
    """``(P, form)`` when ``pattern`` is exactly ``P`` followed by one of the three usual key
    groups (``FORM_*``), with ``P`` plain text (letters, digits, ``/``, ``_``, ``-``) and no
    flags beyond the default; else None.

    Those are the shard regexps people write (``/users/([^/]+)``, ``/users/([^/]+)/.*``, the
    talk's ``/users/(.*)/.*``), and :func:`plain_key` finds their key with ``str.find`` instead
    of a regular-expression search, giving the same answer.
    """
    if pattern is None or pattern.flags != re.UNICODE:
        return None
    source = pattern.pattern
    for group, form in _FORMS:
        if source.endswith(group):
            prefix = source[: -len(group)]
            return (prefix, form) if _PLAIN.fullmatch(prefix) else None
    return None


@cython.ccall  # compiled: a C call from the router, still a Python function
def plain_key(prefix: str, form: int, path: str) -> str:
    """:func:`shard_key` for the pattern ``prefix`` + the group of ``form`` (see
    :func:`plain_form`).

    ``re.search`` takes the leftmost position where the prefix matches and the rest can follow:
    for ``([^/]+)``, at least one character other than ``/`` (the group takes them all); for
    ``([^/]+)/.*``, the same run and then a ``/``; for ``(.*)/.*``, a ``/`` before the line's end
    (``.`` stops at a newline; the greedy group runs to the last such ``/``). So does this.
    """
    width = len(prefix)
    at = path.find(prefix)
    while at >= 0:
        start = at + width
        if form == FORM_TO_LAST_SLASH:
            line_end = path.find("\n", start)
            end = path.rfind("/", start, len(path) if line_end < 0 else line_end)
            if end >= 0:
                return path[start:end]
        else:
            end = path.find("/", start)
            if end < 0:
                if form == FORM_SEGMENT and len(path) > start:
                    return path[start:]
            elif end > start:
                return path[start:end]
        at = path.find(prefix, at + 1)
    return path


def plain_hash(target: bytes, prefix: bytes, form: int) -> int:
    """``key_hash(plain_key(prefix, form, request_path(target)))``, or -1 where the compiled
    build cannot read it in place byte for byte: a target not in origin form, an empty prefix
    (:func:`plain_form` never gives one), or a key with a byte above 127 (the path's string is
    its Latin-1 decoding, and the hash is of UTF-8).

    The compiled build swaps in a C version (``shoal.dataplane._keyhash_c``) that reads the key's
    hash from the target's bytes where they lie (no string made); this is its definition.
    """
    if target[:1] != b"/" or not prefix:
        return -1
    key = plain_key(prefix.decode("ascii"), form, request_path(target))
    return key_hash(key) if key.isascii() else -1


@dataclass(frozen=True, slots=True)
class Shard:
    """One shard: a name the hasher knows and the endpoints that serve it."""

    name: str
    endpoints: tuple[Endpoint, ...]


@dataclass(frozen=True, slots=True)
class Route:
    """A routing decision: the key found, the shard it hashes to, the replica chosen.

    ``endpoint`` is ``None`` when the shard has no endpoint left after exclusions (answer 503).
    """

    key: str
    shard: str
    endpoint: Endpoint | None


@cython.cclass
class ShardCounters:
    """What one shard has seen since the router started (plain numbers for /metrics).

    An extension type when compiled (C fields, bumped once per request)."""

    routed: int = cython.declare(cython.long, visibility="public")
    """Requests given an endpoint of this shard."""
    unavailable: int = cython.declare(cython.long, visibility="public")
    """Requests for this shard that found no endpoint (every one excluded or none configured)."""
    failed: int = cython.declare(cython.long, visibility="public")
    """Requests the driver reported as failed (5xx or no response)."""

    def __init__(self, routed: int = 0, unavailable: int = 0, failed: int = 0) -> None:
        self.routed = routed
        self.unavailable = unavailable
        self.failed = failed

    def __repr__(self) -> str:
        return (
            f"ShardCounters(routed={self.routed}, unavailable={self.unavailable}, "
            f"failed={self.failed})"
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ShardCounters):
            return NotImplemented
        return (self.routed, self.unavailable, self.failed) == (
            other.routed,
            other.unavailable,
            other.failed,
        )

    __hash__ = None  # type: ignore[assignment]  # mutable, as the dataclass it replaces


@dataclass(frozen=True, slots=True, eq=False)
class RoutingTable:
    """An immutable routing table; build with :meth:`build`, install with :meth:`Router.swap`."""

    pattern: re.Pattern[str] | None
    hasher: Hasher
    shards: Mapping[str, Shard]
    hashing: HashingSettings = field(default_factory=HashingSettings)
    """The settings the hasher was built with."""
    version: int = 0
    """Counts swaps: one more than the table it was built from."""

    @classmethod
    def build(
        cls,
        shards: Mapping[str, Sequence[str | Endpoint]],
        *,
        settings: RoutingSettings | None = None,
        previous: "RoutingTable | None" = None,
    ) -> "RoutingTable":
        """A table for ``shards`` (shard name → addresses or endpoints) under ``settings``.

        With ``previous``, endpoints of unchanged addresses are the previous table's objects and
        the hasher is reused when the shard names and algorithm are the same.
        """
        settings = settings or RoutingSettings()
        if not shards:
            raise ValueError("a routing table needs at least one shard")
        known: dict[str, Endpoint] = {}
        if previous is not None:
            for old in previous.shards.values():
                for endpoint in old.endpoints:
                    known[endpoint.address] = endpoint
        built: dict[str, Shard] = {}
        for name, members in shards.items():
            endpoints = []
            for member in members:
                if isinstance(member, Endpoint):
                    endpoints.append(member)
                else:
                    endpoints.append(known.get(member) or Endpoint(member))
            built[name] = Shard(name, tuple(endpoints))
        names = tuple(shards)
        hashing = settings.hashing
        if previous is not None and previous.hasher.shards == names and previous.hashing == hashing:
            hasher = previous.hasher
        else:
            hasher = make_hasher(hashing.algorithm, names, settings=hashing)
        pattern = None if settings.shard_regexp is None else re.compile(settings.shard_regexp)
        version = 0 if previous is None else previous.version + 1
        return cls(pattern, hasher, MappingProxyType(built), hashing, version)

    def key_of(self, path: str) -> str:
        """The shard key of ``path`` (see :func:`shard_key`)."""
        return shard_key(self.pattern, path)

    def shard_of(self, path: str) -> Shard:
        """The shard that owns ``path``'s key."""
        return self.shards[self.hasher.lookup(self.key_of(path))]


@cython.cclass
class _Slot:
    """One shard as :meth:`Router.choose` needs it, at the shard's position in the hasher."""

    name: str = cython.declare(object, visibility="public")
    endpoints: tuple[Endpoint, ...] = cython.declare(tuple, visibility="public")
    picker: Picker = cython.declare(object, visibility="public")
    pick_from: Callable[..., Endpoint | None] = cython.declare(object, visibility="public")
    """``picker.pick``, bound once."""
    only: Endpoint | None = cython.declare(object, visibility="public")
    """The one endpoint of a round-robin shard that has one: no picker to ask (its answer is
    always that endpoint unless excluded, and it keeps no state then)."""
    counters: ShardCounters = cython.declare(ShardCounters, visibility="public")

    def __init__(
        self, name: str, endpoints: tuple[Endpoint, ...], picker: Picker, counters: ShardCounters
    ) -> None:
        self.name = name
        self.endpoints = endpoints
        self.picker = picker
        self.pick_from = picker.pick
        self.only = endpoints[0] if len(endpoints) == 1 and picker.policy == "round-robin" else None
        self.counters = counters


@cython.cclass
class Router:
    """The mutable half of the router: the current table, pickers and counters.

    Not thread-safe by design: one event loop owns a router, as one nginx worker owns its state.
    An extension type when compiled (C fields; ``choose`` runs once per request).
    """

    _table: RoutingTable = cython.declare(object)
    _policy: str = cython.declare(object)
    _rng: random.Random = cython.declare(object)
    _pickers: dict[str, Picker] = cython.declare(dict)
    _counters: dict[str, ShardCounters] = cython.declare(dict)
    _slots: tuple[_Slot, ...] = cython.declare(tuple)
    _prefix: str | None = cython.declare(object)
    """The regexp's plain prefix when it has one of the usual forms (:func:`plain_form`)."""
    _prefix_bytes: bytes | None = cython.declare(object)
    _form: int = cython.declare(cython.int)
    _index_of_hash: Callable[[int], int] = cython.declare(object)
    """The table's ``hasher.index_of_hash``, bound once per table."""
    keyed: bool = cython.declare(cython.bint, visibility="public")
    """The shards' picker reads the key (``hash``): :meth:`choose_hash` needs it then."""

    def __init__(
        self,
        table: RoutingTable,
        *,
        policy: str = "round-robin",
        rng: random.Random | None = None,
    ) -> None:
        self._policy = policy
        self._rng = rng or random.Random()  # noqa: S311 -- load balancing, not cryptography
        self._pickers = {}
        self._counters = {name: ShardCounters() for name in table.shards}
        self.keyed = policy == "hash"
        self._use(table)

    def _use(self, table: RoutingTable) -> None:
        """Route by ``table`` from now on (what a request reads of it, found once)."""
        self._table = table
        self._slots = self._slots_of(table)
        plain = plain_form(table.pattern)
        self._prefix, self._form = (None, FORM_SEGMENT) if plain is None else plain
        self._prefix_bytes = None if plain is None else plain[0].encode("ascii")
        self._index_of_hash = table.hasher.index_of_hash

    def _slots_of(self, table: RoutingTable) -> tuple[_Slot, ...]:
        """Each shard's endpoints, picker and counters, in the hasher's order: a request then
        finds its shard by one index (:meth:`Hasher.index`) instead of three lookups by name."""
        slots = []
        for name in table.hasher.shards:
            picker = self._pickers.get(name)
            if picker is None:
                picker = self._pickers[name] = make_picker(self._policy, self._rng)
            counters = self._counters[name]
            slots.append(_Slot(name, table.shards[name].endpoints, picker, counters))
        return tuple(slots)

    @property
    def table(self) -> RoutingTable:
        """The table every new request is routed by."""
        return self._table

    @property
    def counters(self) -> Mapping[str, ShardCounters]:
        """Counters by shard name, including shards that have since left the table."""
        return MappingProxyType(self._counters)

    def swap(self, table: RoutingTable) -> RoutingTable:
        """Install ``table`` for every later request; returns the table it replaced."""
        old = self._table
        for name in table.shards:
            self._counters.setdefault(name, ShardCounters())
        for name in list(self._pickers):
            if name not in table.shards:
                del self._pickers[name]
        self._use(table)
        return old

    def key(self, path: str) -> str:
        """The shard key of ``path`` under the current table (:func:`shard_key`, faster for the
        usual regexps: :func:`plain_form`)."""
        prefix = self._prefix
        if prefix is not None:
            return plain_key(prefix, self._form, path)
        return shard_key(self._table.pattern, path)

    def route(self, path: str, exclude: Collection[str] = ()) -> Route:
        """Route a request for ``path``, avoiding the endpoint addresses in ``exclude``."""
        key = self.key(path)
        name, endpoint = self.choose(key, exclude)
        return Route(key, name, endpoint)

    def target_hash(self, target: bytes) -> int:
        """``key_hash(self.key(request_path(target)))``: what :meth:`choose_hash` wants, read
        from the target's bytes in place when the regexp has one of the usual forms."""
        prefix = self._prefix_bytes
        if prefix is not None:
            hashed: int = plain_hash(target, prefix, self._form)
            if hashed >= 0:
                return hashed
        return key_hash(self.key(request_path(target)))

    def choose(self, key: str, exclude: Collection[str] = ()) -> tuple[str, Endpoint | None]:
        """:meth:`route` for a key already found, without the :class:`Route`: the shard's name
        and the endpoint chosen in it, counted the same way."""
        return self.choose_hash(key_hash(key), key, exclude)

    @cython.locals(slot=_Slot)
    def choose_hash(
        self, hashed: int, key: str | None, exclude: Collection[str] = ()
    ) -> tuple[str, Endpoint | None]:
        """:meth:`choose` for a key whose :func:`~shoal.dataplane.hashing.key_hash` is ``hashed``
        (the proxy's hot path, with :meth:`target_hash`); ``key`` only when :attr:`keyed`."""
        slot = self._slots[self._index_of_hash(hashed)]
        endpoint = slot.only
        if endpoint is None or (exclude and endpoint.address in exclude):
            endpoint = slot.pick_from(slot.endpoints, key, exclude)
        if endpoint is None:
            slot.counters.unavailable += 1
        else:
            slot.counters.routed += 1
        return slot.name, endpoint

    def record_failure(self, route: Route) -> None:
        """Count a routed request that failed (the driver decides what failed means)."""
        self._counters[route.shard].failed += 1

    def count_failure(self, shard: str) -> None:
        """Count a failed request of ``shard`` (as :meth:`record_failure`, by name)."""
        counters = self._counters.get(shard)
        if counters is not None:
            counters.failed += 1
