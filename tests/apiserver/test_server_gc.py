"""The serving process's garbage-collector tuning (``ServerSettings.tune_gc``)."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path

import pytest

from shoal.apiserver.server import GC_THRESHOLDS, ServerSettings, serve, tune_gc


@pytest.fixture
def restored_gc() -> Iterator[None]:
    """The test process's collector as it was, whatever the test did to it."""
    thresholds = gc.get_threshold()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)


def test_tune_gc_freezes_the_start_up_heap_and_raises_the_thresholds(restored_gc: None) -> None:
    tune_gc()
    assert gc.get_threshold() == GC_THRESHOLDS
    assert gc.get_freeze_count() > 0
    # Cycles made after start-up are still collected.
    cycle: list[object] = []
    cycle.append(cycle)
    del cycle
    assert gc.collect() >= 1


async def test_serve_tunes_only_when_asked(tmp_path: Path, restored_gc: None) -> None:
    before = gc.get_threshold()
    async with serve(ServerSettings(tmp_path / "a", port=0)):
        assert gc.get_threshold() == before
    async with serve(ServerSettings(tmp_path / "b", port=0, tune_gc=True)):
        assert gc.get_threshold() == GC_THRESHOLDS
        assert gc.get_freeze_count() > 0
