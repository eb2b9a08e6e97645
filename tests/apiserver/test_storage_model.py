"""The store against a dict: random creates, updates, deletes, lists, compactions, reopens."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from shoal.apiserver import (
    AlreadyExistsError,
    ConflictError,
    EventType,
    ExpiredError,
    NotFoundError,
    StorageSettings,
    Store,
    collection_key,
    object_key,
)

KEYS = [object_key("", "pods", name, ns) for ns, name in [("a", "p"), ("a", "q"), ("b", "p")]]
PREFIXES = [collection_key("", "pods"), collection_key("", "pods", "a"), "/registry/", ""]

Snapshot = dict[str, tuple[dict[str, Any], int]]
"""key -> (value, revision), the live objects at one revision."""


class StoreMatchesADict(RuleBasedStateMachine):
    """Every answer of the store is what a dict with a revision counter would give."""

    def __init__(self) -> None:
        super().__init__()
        self.directory = Path(tempfile.mkdtemp(prefix="shoal-model-"))
        self.settings = StorageSettings(path=self.directory / "store.db", compaction_step=3)
        self.store = Store(self.settings)
        self.revision = 1
        self.compacted = 0
        self.state: Snapshot = {}
        self.snapshots: dict[int, Snapshot] = {1: {}}
        self.events: list[tuple[int, EventType, str, dict[str, Any]]] = []

    def teardown(self) -> None:
        self.store.close()
        shutil.rmtree(self.directory, ignore_errors=True)

    def _wrote(self, kind: EventType, key: str, value: dict[str, Any]) -> int:
        self.revision += 1
        if kind is EventType.DELETED:
            del self.state[key]
        else:
            self.state[key] = (value, self.revision)
        self.snapshots[self.revision] = dict(self.state)
        self.events.append((self.revision, kind, key, value))
        return self.revision

    @rule(key=st.sampled_from(KEYS), n=st.integers(0, 9))
    def create(self, key: str, n: int) -> None:
        if key in self.state:
            try:
                self.store.create(key, {"n": n})
            except AlreadyExistsError:
                return
            raise AssertionError("create over a live object must fail")
        entry = self.store.create(key, {"n": n})
        assert (
            entry.revision == entry.create_revision == self._wrote(EventType.ADDED, key, {"n": n})
        )

    @rule(
        key=st.sampled_from(KEYS), n=st.integers(0, 9), mode=st.sampled_from(["at", "stale", "any"])
    )
    def update(self, key: str, n: int, mode: str) -> None:
        current = self.state.get(key)
        expected = None
        if mode == "at":
            expected = current[1] if current else 5
        elif mode == "stale":
            expected = current[1] - 1 if current else 5
        try:
            entry = self.store.update(key, {"n": n}, expected)
        except NotFoundError:
            assert current is None
            return
        except ConflictError:
            assert current is not None
            assert mode == "stale"
            return
        assert current is not None
        assert mode != "stale"
        assert entry.revision == self._wrote(EventType.MODIFIED, key, {"n": n})

    @rule(key=st.sampled_from(KEYS), mode=st.sampled_from(["at", "stale", "any"]))
    def delete(self, key: str, mode: str) -> None:
        current = self.state.get(key)
        expected = None
        if mode != "any":
            expected = (current[1] if current else 5) - (mode == "stale")
        try:
            entry = self.store.delete(key, expected)
        except NotFoundError:
            assert current is None
            return
        except ConflictError:
            assert current is not None
            assert mode == "stale"
            return
        assert current is not None
        assert mode != "stale"
        assert entry.value == current[0]
        assert entry.revision == self._wrote(EventType.DELETED, key, current[0])

    @rule(key=st.sampled_from(KEYS))
    def get(self, key: str) -> None:
        try:
            entry = self.store.get(key)
        except NotFoundError:
            assert key not in self.state
            return
        assert (entry.value, entry.revision) == self.state[key]

    @rule(prefix=st.sampled_from(PREFIXES), limit=st.integers(0, 4), data=st.data())
    def list_all_pages(self, prefix: str, limit: int, data: st.DataObject) -> None:
        """Paged or not, at the latest or a kept older revision, a list is the snapshot."""
        kept = [r for r in self.snapshots if r >= self.compacted]
        oldest = max(self.compacted, 1)  # the edge of the history is where compaction bugs show
        revision = data.draw(st.sampled_from([None, oldest, *kept]))
        page = self.store.list(prefix, limit=limit, revision=revision)
        at = page.revision
        assert at == (self.revision if revision is None else revision)
        got = list(page.entries)
        while page.continue_token is not None:
            assert len(page.entries) == limit
            page = self.store.list(prefix, limit=limit, continue_token=page.continue_token)
            assert page.revision == at
            got += page.entries
        expected = sorted((k, v) for k, v in self.snapshots[at].items() if k.startswith(prefix))
        assert [(e.key, (e.value, e.revision)) for e in got] == expected

    @rule()
    def check_every_kept_revision(self) -> None:
        self.every_kept_revision_lists_right()

    def every_kept_revision_lists_right(self) -> None:
        """Each revision still in the history lists as the snapshot taken when it was written."""
        for revision, snapshot in self.snapshots.items():
            if revision >= self.compacted:
                got = self.store.list("", revision=revision).entries
                assert [(e.key, (e.value, e.revision)) for e in got] == sorted(snapshot.items())

    @precondition(lambda self: self.compacted > 1)
    @rule(data=st.data())
    def old_revisions_are_expired(self, data: st.DataObject) -> None:
        old = data.draw(st.integers(1, self.compacted - 1))
        with pytest.raises(ExpiredError) as listed:
            self.store.list("", revision=old)
        with pytest.raises(ExpiredError) as watched:
            self.store.changes("", after=old)
        assert listed.value.oldest == watched.value.oldest == self.compacted

    @rule(data=st.data(), prefix=st.sampled_from(PREFIXES))
    def changes(self, data: st.DataObject, prefix: str) -> None:
        after = data.draw(st.integers(self.compacted, self.revision))
        got = [
            (e.revision, e.type, e.key, e.value) for e in self.store.changes(prefix, after=after)
        ]
        assert got == [e for e in self.events if e[0] > after and e[2].startswith(prefix)]

    @rule(keep=st.integers(0, 6))
    def compact(self, keep: int) -> None:
        compacted = self.store.compact(keep_revisions=keep)
        self.compacted = max(self.compacted, self.revision - keep)
        assert compacted == self.compacted
        self.every_kept_revision_lists_right()

    @rule()
    def reopen(self) -> None:
        self.store.close()
        self.store = Store(self.settings)

    @invariant()
    def revisions_agree(self) -> None:
        assert self.store.current_revision() == self.revision
        assert self.store.compacted_revision() == self.compacted


StoreMatchesADict.TestCase.settings = settings(
    max_examples=60, stateful_step_count=40, deadline=None
)
TestStoreMatchesADict = StoreMatchesADict.TestCase
