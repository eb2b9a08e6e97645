"""
The compiled speed-ups (every src/shoal/**/*.pyx, see setup.py) are built wherever a C compiler is present.

A machine without a compiler installs shoal without them (setup.py warns) and runs the pure-Python
paths, which every module's own tests cover too. Where ``cc`` exists (CI, a fresh developer
machine) a missing module means the build broke silently: this test fails then.
"""

from __future__ import annotations

import importlib
import shutil
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"


def native_modules() -> list[tuple[str, Path]]:
    """The same discovery as setup.py: every .pyx under src/ is a compiled module."""
    return [
        (".".join(pyx.relative_to(SRC).with_suffix("").parts), pyx)
        for pyx in sorted(SRC.rglob("*.pyx"))
    ]


def test_every_compiled_module_has_type_stubs() -> None:
    for name, pyx in native_modules():
        assert pyx.with_suffix(".pyi").is_file(), f"{name}: add type stubs beside {pyx}"


@pytest.mark.parametrize("name", [name for name, _ in native_modules()] or ["<none listed>"])
def test_compiled_module_is_built_where_a_compiler_exists(name: str) -> None:
    if name == "<none listed>":
        assert native_modules() == []
        return
    if shutil.which("cc") is None:
        with pytest.raises(ImportError):
            importlib.import_module(name)
        return
    module = importlib.import_module(name)
    assert Path(str(module.__file__)).suffix == ".so", f"{name} is not the compiled module"
