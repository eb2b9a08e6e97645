"""Which implementation runs: shoal.dataplane.native's choice, its override and its errors."""

from __future__ import annotations

import importlib
from types import ModuleType

import pytest

from shoal.dataplane import native
from shoal.dataplane.driver import ProxyServer, ProxySettings, new_pool

from .implementations import IMPLEMENTATIONS


def test_python_is_always_available() -> None:
    assert native.resolve("python") == "python"
    assert native.compiled("driver", "python") is None


def test_auto_is_compiled_where_built_unless_the_environment_says_pure(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(native.PURE_ENV, raising=False)
    assert native.resolve("auto") == ("compiled" if "compiled" in IMPLEMENTATIONS else "python")
    monkeypatch.setenv(native.PURE_ENV, "1")
    assert native.resolve("auto") == "python"
    assert native.compiled("dispatch") is None


def test_an_unknown_choice_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown implementation 'fast'"):
        native.resolve("fast")


def test_a_missing_build_is_an_error_only_when_asked_for(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.import_module

    def without_builds(name: str) -> ModuleType:
        if name.endswith("_c"):
            raise ImportError(f"No module named {name!r}")
        return real(name)

    monkeypatch.setattr(importlib, "import_module", without_builds)
    monkeypatch.delenv(native.PURE_ENV, raising=False)
    assert native.resolve("auto") == "python"
    with pytest.raises(ImportError, match="compiled data plane is not built"):
        native.resolve("compiled")


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_the_server_and_pool_are_of_the_chosen_build(implementation: str) -> None:
    settings = ProxySettings(implementation=implementation)
    server = ProxyServer(lambda request: None, settings)
    assert server.implementation == implementation
    module = "shoal.dataplane.driver" if implementation == "python" else "shoal.dataplane._driver_c"
    assert type(server.pool).__module__ == module
    assert type(new_pool(settings)).__module__ == module
