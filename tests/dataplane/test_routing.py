"""The shard router: key extraction rules, shard and replica choice, counters, atomic swaps."""

from __future__ import annotations

import random
import re
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shoal.dataplane.balancing import Endpoint
from shoal.dataplane.hashing import HashingSettings, key_hash
from shoal.dataplane.routing import (
    FORM_SEGMENT,
    FORM_SEGMENT_THEN_SLASH,
    FORM_TO_LAST_SLASH,
    Router,
    RoutingSettings,
    RoutingTable,
    plain_form,
    plain_hash,
    plain_key,
    request_path,
    shard_key,
)

from .implementations import IMPLEMENTATIONS, names_from


@pytest.fixture(scope="module", params=IMPLEMENTATIONS, autouse=True)
def implementation(request: pytest.FixtureRequest) -> Iterator[str]:
    """Every test here runs on the pure source and on its compiled build (module-scoped, so
    Hypothesis's tests can share it)."""
    names = [
        "Router",
        "RoutingTable",
        "plain_form",
        "plain_hash",
        "plain_key",
        "request_path",
        "shard_key",
    ]
    with names_from(globals(), "routing", names, request.param):
        yield request.param


FAST = RoutingSettings(shard_regexp="/users/([^/]+)", hashing=HashingSettings("maglev", 1009))
segments = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_.", min_size=1, max_size=12)


def shards(count: int, replicas: int = 1) -> dict[str, list[str]]:
    return {f"shard-{s}": [f"10.0.{s}.{r}:8080" for r in range(replicas)] for s in range(count)}


# Paths made of the characters that matter to the usual regexps: slashes, pieces of the prefix,
# a newline (``.`` stops there, ``[^/]`` does not).
tricky_paths = st.lists(
    st.sampled_from(["/", "/users/", "/users", "users/", "u", "a", "-", "é", "\n", "//"]),
    max_size=8,
).map("".join)

# The group each FORM_* stands for, after the prefix.
FORMS = {
    FORM_SEGMENT: "([^/]+)",
    FORM_SEGMENT_THEN_SLASH: "([^/]+)/.*",
    FORM_TO_LAST_SLASH: "(.*)/.*",
}
forms = st.sampled_from(sorted(FORMS))


class TestPlainKey:
    """The router's regexp-free key for the usual regexps gives exactly ``shard_key``'s answer."""

    @given(path=tricky_paths | st.text(max_size=30), form=forms)
    def test_same_key_as_the_regexp(self, path: str, form: int) -> None:
        pattern = re.compile("/users/" + FORMS[form])
        assert plain_form(pattern) == ("/users/", form)
        assert plain_key("/users/", form, path) == shard_key(pattern, path)

    @given(
        prefix=st.text(alphabet="ab/_-", min_size=1, max_size=4),
        path=st.text(alphabet="ab/_-x\n", max_size=16),
        form=forms,
    )
    def test_any_plain_prefix(self, prefix: str, path: str, form: int) -> None:
        pattern = re.compile(prefix + FORMS[form])
        assert plain_form(pattern) == (prefix, form)
        assert plain_key(prefix, form, path) == shard_key(pattern, path)

    def test_the_talks_regexp(self) -> None:
        """``/users/(.*)/.*`` is greedy: the key runs to the last ``/`` (of the line)."""
        pattern = re.compile("/users/(.*)/.*")
        assert plain_form(pattern) == ("/users/", FORM_TO_LAST_SLASH)
        for path, key in [
            ("/users/alice/photos/1", "alice/photos"),
            ("/users/alice/", "alice"),
            ("/users//x", ""),
            ("/users/alice", "/users/alice"),
            ("/users/al\nice/x", "/users/al\nice/x"),
        ]:
            assert plain_key("/users/", FORM_TO_LAST_SLASH, path) == shard_key(pattern, path) == key

    @pytest.mark.parametrize(
        "source",
        [
            "([^/]+)",
            "/users/(.+)",
            "/users/([^/]+)/",
            "/users/(.*)",
            "/users/(.*)/.+",
            "/u.ers/([^/]+)",
            "(?i)/users/([^/]+)",
            "/users/([^/]+)(.*)/.*",
        ],
    )
    def test_other_regexps_keep_the_regexp(self, source: str) -> None:
        """Anything but a plain prefix and one of the three groups is searched as a regexp."""
        assert plain_form(re.compile(source)) is None

    def test_no_regexp(self) -> None:
        assert plain_form(None) is None

    @given(path=tricky_paths)
    def test_router_key_is_shard_key(self, path: str) -> None:
        for source in (
            "/users/([^/]+)",
            "/users/([^/]+)/.*",
            "/users/(.*)/.*",
            "/users/(.*)",
            None,
        ):
            settings = RoutingSettings(shard_regexp=source, hashing=FAST.hashing)
            router = Router(RoutingTable.build(shards(3), settings=settings))
            assert router.key(path) == shard_key(router.table.pattern, path)


# Request targets as they arrive (bytes), made of the pieces that matter to the key's hash.
tricky_targets = st.lists(
    st.sampled_from(
        [
            b"/",
            b"/users/",
            b"/users",
            b"u",
            b"a",
            b"?",
            b"?x=/users/b",
            b"\xe9",
            b"\n",
            b"http://h",
            b"%2F",
        ]
    ),
    max_size=8,
).map(b"".join)


class TestPlainHash:
    """The hash of the shard key read in place from the target's bytes (compiled: in C) is the
    hash of the key the regexp finds in the path, or -1 where the bytes would not be the same."""

    @staticmethod
    def expected(target: bytes, prefix: bytes, form: int) -> int:
        if target[:1] != b"/":
            return -1
        key = shard_key(re.compile(prefix.decode() + FORMS[form]), request_path(target))
        return key_hash(key) if key.isascii() else -1

    @given(target=tricky_targets | st.binary(max_size=30), form=forms)
    def test_users_prefix(self, target: bytes, form: int) -> None:
        assert plain_hash(target, b"/users/", form) == self.expected(target, b"/users/", form)

    @given(
        prefix=st.text(alphabet="ab/_-", min_size=1, max_size=3).map(str.encode),
        target=st.lists(st.sampled_from([b"/", b"a", b"b", b"?", b"\n", b"\x80"]), max_size=12).map(
            b"".join
        ),
        form=forms,
    )
    def test_any_prefix(self, prefix: bytes, target: bytes, form: int) -> None:
        assert plain_hash(target, prefix, form) == self.expected(target, prefix, form)

    def test_known_values(self) -> None:
        """The key, not the path, is hashed; the query and other segments do not count."""
        alice = key_hash("alice")
        segment = FORM_SEGMENT
        assert plain_hash(b"/users/alice", b"/users/", segment) == alice
        assert plain_hash(b"/users/alice/photos?x=/users/bob", b"/users/", segment) == alice
        assert plain_hash(b"/a/users//users/alice/", b"/users/", segment) == alice
        assert plain_hash(b"/nobody/here?q=1", b"/users/", segment) == key_hash("/nobody/here")
        assert plain_hash(b"/users/alice/photos/1", b"/users/", FORM_TO_LAST_SLASH) == key_hash(
            "alice/photos"
        )
        assert plain_hash(b"/users/al\xe9", b"/users/", segment) == -1  # UTF-8 of Latin-1 text
        assert plain_hash(b"http://h/users/alice", b"/users/", segment) == -1  # absolute form
        assert plain_hash(b"/users/alice", b"", segment) == -1  # no prefix

    @given(target=tricky_targets)
    def test_router_target_hash_is_the_keys_hash(self, target: bytes) -> None:
        """Whatever the regexp and the target's form, ``target_hash`` is the key's hash."""
        for source in ("/users/([^/]+)", "/users/(.*)/.*", "/users/(.*)", None):
            settings = RoutingSettings(shard_regexp=source, hashing=FAST.hashing)
            router = Router(RoutingTable.build(shards(3), settings=settings))
            assert router.target_hash(target) == key_hash(router.key(request_path(target)))


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

    @given(users=st.lists(segments, min_size=1, max_size=30))
    def test_choose_hash_is_choose(self, users: list[str]) -> None:
        """Choosing by the key's hash is choosing by the key: same shards, endpoints, counters
        (every hasher through ``index_of_hash``)."""
        for algorithm in ("maglev", "ring", "rendezvous"):
            settings = RoutingSettings(
                shard_regexp="/users/([^/]+)", hashing=HashingSettings(algorithm, 1009)
            )
            table = RoutingTable.build(shards(4, replicas=2), settings=settings)
            by_key, by_hash = Router(table), Router(table)
            for user in users:
                assert by_hash.choose_hash(key_hash(user), None) == by_key.choose(user)
            assert by_hash.counters == by_key.counters

    def test_one_endpoint_shards(self) -> None:
        """A round-robin shard of one endpoint is answered without its picker, the same way:
        the endpoint, or none (counted unavailable) when it is excluded."""
        router = Router(RoutingTable.build(shards(2), settings=FAST))
        name, endpoint = router.choose("erin")
        assert endpoint is not None
        assert router.choose("erin", {"elsewhere:1"}) == (name, endpoint)
        assert router.choose("erin", {endpoint.address}) == (name, None)
        counters = router.counters[name]
        assert (counters.routed, counters.unavailable) == (2, 1)

    def test_hash_policy_inside_shards_reads_the_key(self) -> None:
        """With ``hash`` among a shard's replicas the router says it needs the key, and the
        same key always reaches the same replica."""
        router = Router(RoutingTable.build(shards(2, replicas=4), settings=FAST), policy="hash")
        assert router.keyed
        assert not Router(RoutingTable.build(shards(2), settings=FAST)).keyed
        picks = {router.choose_hash(key_hash("frank"), "frank")[1] for _ in range(5)}
        assert len(picks) == 1

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
