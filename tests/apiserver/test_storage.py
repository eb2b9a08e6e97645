"""The revision log: create, get, update, delete with compare-and-swap; lists; compaction."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from shoal.apiserver import (
    AlreadyExistsError,
    ConflictError,
    Delete,
    EventType,
    ExpiredError,
    InvalidContinueError,
    NotFoundError,
    RevisionTooLargeError,
    StorageSettings,
    StorageUnavailableError,
    Store,
    Update,
    collection_key,
    object_key,
)
from shoal.apiserver.records import Create, encode
from shoal.errors import PermanentError, RetryableError

PODS = collection_key("", "pods", "default")


@pytest.fixture
def settings(tmp_path: Path) -> StorageSettings:
    return StorageSettings(path=tmp_path / "store.db", compaction_interval=3600.0)


@pytest.fixture
def store(settings: StorageSettings) -> Iterator[Store]:
    with Store(settings) as opened:
        yield opened


def pod(name: str) -> str:
    return object_key("", "pods", name, "default")


class TestKeys:
    def test_namespaced_and_cluster_scoped(self) -> None:
        """Keys spell the group (``core`` for the core group), resource, namespace and name."""
        assert object_key("", "pods", "web", "prod") == "/registry/core/pods/prod/web"
        assert object_key("apps", "deployments", "web", "prod") == (
            "/registry/apps/deployments/prod/web"
        )
        assert object_key("", "namespaces", "prod") == "/registry/core/namespaces/prod"
        assert collection_key("shoal.dev", "loadtests") == "/registry/shoal.dev/loadtests/"
        assert collection_key("", "pods", "prod") == "/registry/core/pods/prod/"

    @pytest.mark.parametrize("bad", ["", "a/b", "..", "."])
    def test_bad_segments_are_refused(self, bad: str) -> None:
        """A segment that would break the key's structure is a ValueError naming it."""
        with pytest.raises(ValueError, match="must not contain"):
            object_key("", "pods", bad, "default")
        with pytest.raises(ValueError, match="namespace"):
            collection_key("", "pods", bad)


class TestCrud:
    def test_create_get(self, store: Store) -> None:
        """A create returns the stored version; get returns the same; revisions start at 2."""
        assert store.current_revision() == 1
        entry = store.create(pod("a"), {"kind": "Pod", "metadata": {"name": "a"}})
        assert entry.revision == entry.create_revision == 2
        assert store.get(pod("a")) == entry
        assert entry.value == {"kind": "Pod", "metadata": {"name": "a"}}
        assert store.current_revision() == 2

    def test_value_is_a_fresh_dict(self, store: Store) -> None:
        """Mutating a decoded value does not change the entry."""
        entry = store.create(pod("a"), {"spec": {"x": 1}})
        entry.value["spec"] = "changed"
        assert entry.value == {"spec": {"x": 1}}

    def test_create_existing_is_already_exists(self, store: Store) -> None:
        store.create(pod("a"), {"v": 1})
        with pytest.raises(AlreadyExistsError) as caught:
            store.create(pod("a"), {"v": 2})
        assert (caught.value.reason, caught.value.code, caught.value.key) == (
            "AlreadyExists",
            409,
            pod("a"),
        )
        assert store.get(pod("a")).value == {"v": 1}

    def test_get_missing_is_not_found(self, store: Store) -> None:
        with pytest.raises(NotFoundError) as caught:
            store.get(pod("nothing"))
        assert (caught.value.reason, caught.value.code) == ("NotFound", 404)

    def test_update_with_current_revision(self, store: Store) -> None:
        """An update at the current revision appends a version and keeps the creation revision."""
        created = store.create(pod("a"), {"v": 1})
        updated = store.update(pod("a"), {"v": 2}, created.revision)
        assert updated.revision > created.revision
        assert updated.create_revision == created.revision
        assert store.get(pod("a")) == updated

    def test_update_with_stale_revision_conflicts(self, store: Store) -> None:
        """The compare-and-swap: a stale expected revision is a Conflict, and nothing changes."""
        created = store.create(pod("a"), {"v": 1})
        store.update(pod("a"), {"v": 2}, created.revision)
        with pytest.raises(ConflictError) as caught:
            store.update(pod("a"), {"v": 3}, created.revision)
        assert (caught.value.reason, caught.value.code) == ("Conflict", 409)
        assert "the object has been modified" in str(caught.value)
        assert store.get(pod("a")).value == {"v": 2}

    def test_unconditional_update(self, store: Store) -> None:
        """``expected_revision=None`` replaces whatever is there."""
        store.create(pod("a"), {"v": 1})
        assert store.update(pod("a"), {"v": 2}, None).value == {"v": 2}

    def test_update_missing_is_not_found(self, store: Store) -> None:
        with pytest.raises(NotFoundError):
            store.update(pod("a"), {"v": 1}, None)

    def test_delete(self, store: Store) -> None:
        """A delete returns the last value at the delete's revision; the key is then free."""
        created = store.create(pod("a"), {"v": 1})
        deleted = store.delete(pod("a"))
        assert deleted.value == {"v": 1}
        assert deleted.revision > created.revision
        with pytest.raises(NotFoundError):
            store.get(pod("a"))
        with pytest.raises(NotFoundError):
            store.delete(pod("a"))
        again = store.create(pod("a"), {"v": 2})
        assert again.create_revision == again.revision > deleted.revision

    def test_delete_with_stale_revision_conflicts(self, store: Store) -> None:
        created = store.create(pod("a"), {"v": 1})
        store.update(pod("a"), {"v": 2}, None)
        with pytest.raises(ConflictError):
            store.delete(pod("a"), created.revision)
        assert store.get(pod("a")).value == {"v": 2}

    def test_batch_results_are_per_write(self, store: Store) -> None:
        """One failing write in a batch does not fail the others; later writes see earlier ones."""
        results = store.apply(
            [
                Create(pod("a"), encode({"v": 1})),
                Create(pod("a"), encode({"v": 2})),
                Update(pod("a"), encode({"v": 3}), 2),
                Delete(pod("b")),
            ]
        )
        kinds = [type(result).__name__ for result in results]
        assert kinds == ["Event", "AlreadyExistsError", "Event", "NotFoundError"]
        assert store.get(pod("a")).value == {"v": 3}
        assert store.current_revision() == 3

    def test_non_json_values_are_refused(self, store: Store) -> None:
        with pytest.raises(ValueError, match="JSON"):
            store.create(pod("a"), {"x": float("nan")})

    def test_unique_index_is_the_compare_and_swap(
        self, store: Store, settings: StorageSettings
    ) -> None:
        """Two rows after the same predecessor cannot exist, even if the checks were bypassed."""
        store.create(pod("a"), {"v": 1})
        with (
            sqlite3.connect(settings.path) as db,
            pytest.raises(sqlite3.IntegrityError, match="UNIQUE"),
        ):
            db.execute(
                "INSERT INTO log (key, created, deleted, create_revision, prev_revision, "
                "written, value) VALUES (?, 1, 0, 2, 0, 0, '{}')",
                (pod("a"),),
            )


class TestErrors:
    def test_retry_policy_and_reasons(self) -> None:
        """Each error carries its Kubernetes reason and code, and its retry policy by type."""
        expired = ExpiredError(5, 9)
        assert (expired.reason, expired.code, expired.requested, expired.oldest) == (
            "Expired",
            410,
            5,
            9,
        )
        assert str(expired) == "too old resource version: 5 (9)"
        assert isinstance(expired, PermanentError)
        unavailable = StorageUnavailableError("closed", retry_after=2.0)
        assert isinstance(unavailable, RetryableError)
        assert (unavailable.reason, unavailable.code, unavailable.retry_after) == (
            "ServiceUnavailable",
            503,
            2.0,
        )
        assert RevisionTooLargeError(9, 3).code == 504


class TestPersistence:
    def test_reopen_keeps_everything(self, settings: StorageSettings) -> None:
        with Store(settings) as store:
            entry = store.create(pod("a"), {"v": 1})
        with Store(settings) as store:
            assert store.get(pod("a")) == entry
            assert store.current_revision() == entry.revision

    def test_one_writer_per_file(self, store: Store, settings: StorageSettings) -> None:
        """A second writer is refused with an error that says what to do."""
        with pytest.raises(StorageUnavailableError, match="in use by another process"):
            Store(settings)

    def test_readers_cannot_write(self, store: Store, settings: StorageSettings) -> None:
        with Store(settings, exclusive=False) as reader:
            store.create(pod("a"), {"v": 1})
            assert reader.get(pod("a")).value == {"v": 1}
            with pytest.raises(StorageUnavailableError, match="readonly"):
                reader.create(pod("b"), {"v": 1})

    def test_wal_and_full_sync(self, store: Store, settings: StorageSettings) -> None:
        """The durability settings are in force on the store's connection."""
        assert store._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert store._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL

    def test_newer_schema_is_refused(self, settings: StorageSettings) -> None:
        Store(settings).close()
        with sqlite3.connect(settings.path) as db:
            db.execute("PRAGMA user_version = 99")
        with pytest.raises(StorageUnavailableError, match="newer shoal"):
            Store(settings)


class TestList:
    def test_prefix_and_key_order(self, store: Store) -> None:
        """A list holds the live objects under the prefix only, in key order."""
        for name in ["b", "a", "c"]:
            store.create(pod(name), {"name": name})
        store.create(object_key("", "pods", "a", "default2"), {"other": True})
        store.create(object_key("", "pods", "x", "defaul"), {"other": True})
        store.delete(pod("c"))
        page = store.list(PODS)
        assert [entry.key for entry in page.entries] == [pod("a"), pod("b")]
        assert page.revision == store.current_revision()
        assert page.continue_token is None
        assert len(store.list("").entries) == 4

    def test_paging_is_one_snapshot(self, store: Store) -> None:
        """Pages after the first are read at the first page's revision, whatever happened since."""
        for i in range(10):
            store.create(pod(f"p{i}"), {"i": i})
        first = store.list(PODS, limit=4)
        assert [e.key for e in first.entries] == [pod(f"p{i}") for i in range(4)]
        assert first.continue_token is not None
        store.update(pod("p5"), {"i": "changed"}, None)
        store.delete(pod("p6"))
        store.create(pod("p55"), {"i": 55})
        store.delete(pod("p1"))
        entries = list(first.entries)
        token: str | None = first.continue_token
        while token is not None:
            page = store.list(PODS, limit=4, continue_token=token)
            assert page.revision == first.revision
            entries += page.entries
            token = page.continue_token
        assert [e.key for e in entries] == [pod(f"p{i}") for i in range(10)]
        assert all(e.value == {"i": int(e.key[-1])} for e in entries)
        latest = [e.key for e in store.list(PODS).entries]
        assert pod("p55") in latest
        assert pod("p6") not in latest
        assert pod("p1") not in latest

    def test_exact_page_size_has_no_token(self, store: Store) -> None:
        for i in range(4):
            store.create(pod(f"p{i}"), {})
        assert store.list(PODS, limit=4).continue_token is None
        assert store.list(PODS, limit=0).continue_token is None

    def test_list_at_an_old_revision(self, store: Store) -> None:
        a = store.create(pod("a"), {"v": 1})
        store.update(pod("a"), {"v": 2}, None)
        store.create(pod("b"), {})
        old = store.list(PODS, revision=a.revision)
        assert [e.value for e in old.entries] == [{"v": 1}]
        with pytest.raises(RevisionTooLargeError):
            store.list(PODS, revision=store.current_revision() + 1)

    @pytest.mark.parametrize("token", ["", "%%%", "bm90IGpzb24", "eyJ2IjoxfQ"])
    def test_invalid_tokens(self, store: Store, token: str) -> None:
        """A token this store did not issue is a 400 that says to start over."""
        with pytest.raises(InvalidContinueError, match="continue token") as caught:
            store.list(PODS, limit=1, continue_token=token)
        assert caught.value.code == 400

    def test_token_and_revision_together_are_refused(self, store: Store) -> None:
        for i in range(3):
            store.create(pod(f"p{i}"), {})
        token = store.list(PODS, limit=1).continue_token
        with pytest.raises(InvalidContinueError, match="may not be given"):
            store.list(PODS, limit=1, continue_token=token, revision=2)

    def test_token_stays_inside_its_prefix(self, store: Store) -> None:
        """A token is relative to the prefix: replayed under another prefix it stays there."""
        for ns in ["a", "b"]:
            for i in range(3):
                store.create(object_key("", "pods", f"p{i}", ns), {})
        token = store.list(collection_key("", "pods", "a"), limit=1).continue_token
        page = store.list(collection_key("", "pods", "b"), limit=5, continue_token=token)
        assert [e.key for e in page.entries] == [
            object_key("", "pods", "p1", "b"),
            object_key("", "pods", "p2", "b"),
        ]


class TestCompaction:
    def test_compaction_keeps_latest_and_expires_history(self, store: Store) -> None:
        """After compaction the state is intact; older revisions answer Expired with the oldest."""
        a = store.create(pod("a"), {"v": 1})
        for v in range(2, 6):
            store.update(pod("a"), {"v": v}, None)
        store.create(pod("b"), {})
        store.delete(pod("b"))
        store.create(pod("c"), {})
        token = store.list(PODS, limit=1).continue_token
        assert token is not None
        store.update(pod("c"), {"v": 2}, None)
        before = store.list(PODS)
        compacted = store.compact(keep_revisions=0)
        assert compacted == store.current_revision() == store.compacted_revision()
        after = store.list(PODS)
        assert after == before
        rows = store._db.execute("SELECT COUNT(*) FROM log").fetchone()[0]
        assert rows == 2  # the latest versions of a and c; b's history and tombstone are gone
        with pytest.raises(ExpiredError) as caught:
            store.list(PODS, revision=a.revision)
        assert caught.value.oldest == compacted
        with pytest.raises(ExpiredError, match="continue token"):
            store.list(PODS, limit=1, continue_token=token)
        with pytest.raises(ExpiredError):
            store.changes(PODS, after=a.revision)
        assert store.changes(PODS, after=compacted) == []

    def test_keep_revisions_bounds_history(self, store: Store) -> None:
        store.create(pod("a"), {"v": 0})
        for v in range(1, 20):
            store.update(pod("a"), {"v": v}, None)
        current = store.current_revision()
        assert store.compact(keep_revisions=5) == current - 5
        events = store.changes(PODS, after=current - 5)
        assert [e.value["v"] for e in events] == list(range(15, 20))
        assert store.get(pod("a")).value == {"v": 19}

    def test_keep_seconds_uses_write_times(self, store: Store) -> None:
        """Compaction by age goes to the newest revision written before the cutoff."""
        first = store.create(pod("a"), {"v": 1})
        second = store.update(pod("a"), {"v": 2}, None)
        for revision, written in [(first.revision, 1000.0), (second.revision, 2000.0)]:
            store._db.execute("UPDATE log SET written = ? WHERE revision = ?", (written, revision))
        assert store.compact(keep_seconds=10, now=1500.0) == first.revision
        assert store.compact(keep_seconds=10, now=900.0) == first.revision  # never backwards
        assert store.compact(keep_seconds=10, now=2010.0) == second.revision
        assert store.get(pod("a")) == second

    def test_compaction_in_small_steps(self, store: Store, settings: StorageSettings) -> None:
        """Step by step, a tombstone and its whole history go; a re-create starts a new chain."""
        for round_ in range(3):
            store.create(pod("a"), {"round": round_})
            store.update(pod("a"), {"round": round_, "updated": True}, None)
            store.delete(pod("a"))
        store.create(pod("a"), {"final": True})
        target = store.current_revision()
        compacted = store.compacted_revision()
        while compacted < target:
            compacted = store.compact_step(target, 1)
        assert store.get(pod("a")).value == {"final": True}
        assert store.integrity_check() == "ok"
        store.delete(pod("a"))
        assert store.create(pod("a"), {"again": True}).value == {"again": True}

    def test_changes_are_typed(self, store: Store) -> None:
        store.create(pod("a"), {"v": 1})
        store.update(pod("a"), {"v": 2}, None)
        store.delete(pod("a"))
        store.create(pod("a"), {"v": 3})
        events = store.changes(PODS, after=1)
        assert [e.type for e in events] == [
            EventType.ADDED,
            EventType.MODIFIED,
            EventType.DELETED,
            EventType.ADDED,
        ]
        assert events[2].value == {"v": 2}
        assert [e.revision for e in events] == [2, 3, 4, 5]
        assert store.changes(PODS, after=2, upto=3) == events[1:2]
        assert store.changes(PODS, after=1, limit=2) == events[:2]
