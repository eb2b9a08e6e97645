"""Fixtures for the storage tests: a store in a fresh temporary directory."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from shoal.apiserver import AsyncStore, StorageSettings, Store


@pytest.fixture
def settings(tmp_path: Path) -> StorageSettings:
    """Settings for a store in ``tmp_path``; no automatic compaction, no bookmarks."""
    return StorageSettings(
        path=tmp_path / "store.db", compaction_interval=3600.0, bookmark_interval=None
    )


@pytest.fixture
def store(settings: StorageSettings) -> Iterator[Store]:
    with Store(settings) as opened:
        yield opened


@pytest.fixture
async def astore(settings: StorageSettings) -> AsyncIterator[AsyncStore]:
    async with AsyncStore.open(settings) as opened:
        yield opened
