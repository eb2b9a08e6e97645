"""The compiled engine and the pure-Python one, on the same plan against the same real server:
the same requests per path, the same errors and failures, and results of the same shape."""

from __future__ import annotations

import os
from typing import Any

import pytest

from shoal.loadgen import (
    ArrivalSchedule,
    LoadPlan,
    LoadSettings,
    PlanError,
    RequestSpec,
    parse_target,
    run_load,
    summarize,
)
from shoal.loadgen.driver import ENGINE_ENV, choose_engine, native_available
from shoal.loadgen.stats import RunStats
from shoal.native import PURE_ENV

from .loadgen_server import serving


def shape(value: Any) -> Any:
    """The keys and nesting of a JSON-ready document, without its numbers."""
    if isinstance(value, dict):
        return {key: shape(item) for key, item in value.items()}
    if isinstance(value, list):
        return [shape(value[0])] if value else []
    return type(value).__name__ if value is not None else None


async def test_both_engines_count_the_same_run_alike() -> None:
    async with serving() as base:
        target, _ = parse_target(base)
        plan = LoadPlan(
            target,
            (
                RequestSpec("/ok", weight=3),
                RequestSpec("/fail"),
                RequestSpec("/close"),
                RequestSpec("/chunked"),
                RequestSpec("/echo", "POST", body=b"a body"),
                RequestSpec("/ok", "HEAD"),
                RequestSpec("/reset"),
            ),
            ArrivalSchedule.constant(270, 1),
            LoadSettings(connections=8, drop_after=30.0, timeout=30.0),
        )
        results: dict[str, RunStats] = {}
        for engine in ("python", "native"):
            results[engine] = await run_load(plan, engine=engine)
    python, native = results["python"], results["native"]
    for stats in (python, native):
        assert stats.scheduled == stats.requests == stats.sent == 270
        assert stats.dropped == 0
    assert [p.requests for p in native.paths] == [p.requests for p in python.paths]
    assert [p.requests for p in native.paths] == [90, 30, 30, 30, 30, 30, 30]
    assert [p.errors for p in native.paths] == [p.errors for p in python.paths]
    assert native.errors == python.errors == 60
    assert native.statuses == python.statuses == {200: 210, 500: 30}
    assert native.failures == python.failures == {"reset": 30}
    # Latency for every answered request (errors with a status included), none for resets.
    assert [p.latency.count for p in native.paths] == [p.latency.count for p in python.paths]
    assert [w.requests for w in native.windows] == [w.requests for w in python.windows]
    assert native.latency.percentile(50) is not None
    # Same documents: the stats, and the summary that reports and LoadTest status come from.
    assert shape(native.to_dict()) == shape(python.to_dict())
    assert shape(summarize(plan, native)) == shape(summarize(plan, python))
    assert RunStats.from_dict(native.to_dict()).to_dict() == native.to_dict()


def choose_native(plan: LoadPlan) -> str:
    """``native`` asked for explicitly: chosen where built, a clear PlanError elsewhere."""
    if native_available():
        return choose_engine(plan, "native")
    with pytest.raises(PlanError, match="not built"):
        choose_engine(plan, "native")
    return "native"


def test_the_engine_is_chosen_by_argument_then_setting_then_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    target, _ = parse_target("http://127.0.0.1:9/")
    auto = LoadPlan(target, (RequestSpec("/"),), ArrivalSchedule.constant(1, 1))
    python = LoadPlan(
        target, (RequestSpec("/"),), ArrivalSchedule.constant(1, 1), LoadSettings(engine="python")
    )
    monkeypatch.delenv(ENGINE_ENV, raising=False)
    monkeypatch.delenv(PURE_ENV, raising=False)
    # Built wherever cc is (tests/test_native.py fails otherwise).
    assert choose_engine(auto) == ("native" if native_available() else "python")
    monkeypatch.setenv(PURE_ENV, "1")  # shoal's switch for every compiled path
    assert choose_engine(auto) == "python"
    monkeypatch.delenv(PURE_ENV)
    assert choose_engine(auto, parser="pure") == "python"  # the parsers are the Python engine's
    assert choose_engine(python) == "python"
    assert choose_native(python) == "native"
    monkeypatch.setenv(ENGINE_ENV, "python")
    assert choose_engine(auto) == "python"
    assert choose_native(auto) == "native"
    monkeypatch.setenv(ENGINE_ENV, "turbo")
    with pytest.raises(PlanError, match=ENGINE_ENV):
        choose_engine(auto)
    with pytest.raises(PlanError, match="unknown engine"):
        LoadSettings(engine="turbo")
    assert os.environ[ENGINE_ENV] == "turbo"
