"""The shard router: key extraction rules, shard and replica choice, counters, atomic swaps."""

from __future__ import annotations

import random
import re
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shoal.dataplane.balancing import Endpoint
from shoal.dataplane.hashing import HashingSettings
from shoal.dataplane.routing import (
    Router,
    RoutingSettings,
    RoutingTable,
    segment_key,
    segment_prefix,
    shard_key,
)

from .implementations import IMPLEMENTATIONS, names_from


@pytest.fixture(scope="module", params=IMPLEMENTATIONS, autouse=True)
def implementation(request: pytest.FixtureRequest) -> Iterator[str]:
    """Every test here runs on the pure source and on its compiled build (module-scoped, so
    Hypothesis's tests can share it)."""
    names = ["Router", "RoutingTable", "segment_key", "segment_prefix", "shard_key"]
    with names_from(globals(), "routing", names, request.param):
        yield request.param


FAST = RoutingSettings(shard_regexp="/users/([^/]+)", hashing=HashingSettings("maglev", 1009))
segments = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_.", min_size=1, max_size=12)


def shards(count: int, replicas: int = 1) -> dict[str, list[str]]:
    return {f"shard-{s}": [f"10.0.{s}.{r}:8080" for r in range(replicas)] for s in range(count)}


# Paths made of the characters that matter to ``prefix([^/]+)``: slashes, pieces of the prefix.
tricky_paths = st.lists(
    st.sampled_from(["/", "/users/", "/users", "users/", "u", "a", "-", "é", "\n", "//"]),
    max_size=8,
).map("".join)


class TestSegmentKey:
    """The router's regexp-free key for ``prefix([^/]+)`` gives exactly ``shard_key``'s answer."""

    @given(path=tricky_paths | st.text(max_size=30))
    def test_same_key_as_the_regexp(self, path: str) -> None:
        pattern = re.compile("/users/([^/]+)")
        prefix = segment_prefix(pattern)
        assert prefix == "/users/"
        assert segment_key(prefix, path) == shard_key(pattern, path)

    @given(
        prefix=st.text(alphabet="ab/_-", min_size=1, max_size=4),
        path=st.text(alphabet="ab/_-x", max_size=16),
    )
    def test_any_plain_prefix(self, prefix: str, path: str) -> None:
        pattern = re.compile(prefix + "([^/]+)")
        assert segment_prefix(pattern) == prefix
        assert segment_key(prefix, path) == shard_key(pattern, path)

    @pytest.mark.parametrize(
        "source",
        ["([^/]+)", "/users/(.+)", "/users/([^/]+)/", "/u.ers/([^/]+)", "(?i)/users/([^/]+)"],
    )
    def test_other_regexps_keep_the_regexp(self, source: str) -> None:
        """Anything but a plain prefix and ``([^/]+)`` is searched with the regexp itself."""
        assert segment_prefix(re.compile(source)) is None

    def test_no_regexp(self) -> None:
        assert segment_prefix(None) is None

    @given(path=tricky_paths)
    def test_router_key_is_shard_key(self, path: str) -> None:
        for source in ("/users/([^/]+)", "/users/(.*)", None):
            settings = RoutingSettings(shard_regexp=source, hashing=FAST.hashing)
            router = Router(RoutingTable.build(shards(3), settings=settings))
            assert router.key(path) == shard_key(router.table.pattern, path)


class TestShardKey:
    @given(user=segments, rest=st.text(max_size=20))
    def test_first_group_is_the_key(self, user: str, rest: str) -> None:
        """``/users/([^/]+)`` takes the user segment wherever it sits in the path."""
        pattern = re.compile("/users/([^/]+)")
        assert shard_key(pattern, f"/api/users/{user}/{rest}") == user

    @given(path=st.text(max_size=30))
    def test_no_match_is_the_whole_path(self, path: str) -> None:
        """A path the regexp does not match is routed by the whole path."""
        pattern = re.compile("/users/([^/]+)")
        if pattern.search(path) is None:
            assert shard_key(pattern, path) == path

    @given(digits=st.text(alphabet="0123456789", min_size=1, max_size=6))
    def test_no_group_is_the_whole_match(self, digits: str) -> None:
        """Without a group the key is the matched text."""
        assert shard_key(re.compile(r"/n/\d+"), f"/x/n/{digits}/y") == f"/n/{digits}"

    @given(path=st.text(max_size=30))
    def test_no_regexp_is_the_whole_path(self, path: str) -> None:
        """No shardRegexp: the path is the key."""
        assert shard_key(None, path) == path

    def test_group_outside_the_match_is_the_whole_path(self) -> None:
        """An optional first group that did not take part counts as no key: the whole path."""
        assert shard_key(re.compile(r"/users/(\d+)?/"), "/users//x") == "/users//x"

    def test_groups_are_greedy_as_python_makes_them(self) -> None:
        """The talk's ``/users/(.*)/.*`` takes everything up to the last slash."""
        assert shard_key(re.compile("/users/(.*)/.*"), "/users/alice/photos/1") == "alice/photos"


class TestRouter:
    def test_same_key_same_shard_whatever_the_rest_of_the_path(self) -> None:
        """Every path of one user goes to one shard; replicas inside it take turns."""
        router = Router(RoutingTable.build(shards(4, replicas=3), settings=FAST))
        routes = [router.route(f"/users/alice/item/{i}") for i in range(6)]
        assert {r.shard for r in routes} == {routes[0].shard}
        assert {r.key for r in routes} == {"alice"}
        addresses = [r.endpoint.address for r in routes if r.endpoint]
        assert len(set(addresses)) == 3
        assert addresses[:3] == addresses[3:]

    def test_counters_count_per_shard(self) -> None:
        """Routed, unavailable and failed requests are counted by shard."""
        router = Router(RoutingTable.build(shards(2), settings=FAST))
        first = router.route("/users/bob")
        assert first.endpoint is not None
        router.record_failure(first)
        again = router.route("/users/bob", exclude={first.endpoint.address})
        assert again.endpoint is None
        counters = router.counters[first.shard]
        assert (counters.routed, counters.unavailable, counters.failed) == (1, 1, 1)

    def test_swap_is_atomic_and_keeps_endpoint_state(self) -> None:
        """A swap replaces the table in one step; surviving endpoints keep their counts."""
        old = RoutingTable.build(shards(2, replicas=2), settings=FAST)
        router = Router(old, rng=random.Random(0))
        route = router.route("/users/carol")
        assert route.endpoint is not None
        route.endpoint.in_flight += 1
        grown = {name: [*members, f"{name}-new:8080"] for name, members in shards(2, 2).items()}
        new = RoutingTable.build(grown, settings=FAST, previous=old)
        assert router.swap(new) is old
        assert router.table is new
        assert new.version == old.version + 1
        assert new.hasher is old.hasher  # same shards: the table is not rebuilt
        survivors = {e.address: e for s in new.shards.values() for e in s.endpoints}
        assert survivors[route.endpoint.address] is route.endpoint
        assert survivors[route.endpoint.address].in_flight == 1
        assert route.shard in old.shards  # the decision taken before the swap is untouched

    def test_swap_to_more_shards_rebuilds_the_hasher(self) -> None:
        """Adding a shard builds a new hasher and keeps counters of every shard seen."""
        old = RoutingTable.build(shards(2), settings=FAST)
        router = Router(old)
        router.route("/users/dave")
        new = RoutingTable.build(shards(3), settings=FAST, previous=old)
        router.swap(new)
        assert new.hasher is not old.hasher
        assert set(router.counters) == {"shard-0", "shard-1", "shard-2"}
        assert router.route("/users/dave").shard in new.shards

    @given(users=st.lists(segments, min_size=1, max_size=50, unique=True))
    def test_table_and_router_agree(self, users: list[str]) -> None:
        """The router's shard is the table's shard for the same path."""
        table = RoutingTable.build(shards(5), settings=FAST)
        router = Router(table)
        for user in users:
            path = f"/users/{user}/x"
            assert router.route(path).shard == table.shard_of(path).name

    def test_settings_and_errors(self) -> None:
        """An empty table is refused; the defaults are whole-path keys, Maglev and round robin."""
        with pytest.raises(ValueError, match="at least one shard"):
            RoutingTable.build({})
        defaults = RoutingSettings()
        assert (defaults.shard_regexp, defaults.hashing.algorithm, defaults.policy) == (
            None,
            "maglev",
            "round-robin",
        )
        table = RoutingTable.build({"only": [Endpoint("a:1")]}, settings=FAST)
        assert table.key_of("/no/user/here") == "/no/user/here"
