"""
The compiled speed-ups listed in setup.py are built wherever a C compiler is present.

A machine without a compiler installs shoal without them (setup.py warns) and runs the pure-Python
paths, which every module's own tests cover too. Where ``cc`` exists (CI, a fresh developer
machine) a missing module means the build broke silently: this test fails then.
"""

from __future__ import annotations

import ast
import importlib
import shutil
from pathlib import Path

import pytest

SETUP = Path(__file__).resolve().parents[1] / "setup.py"


def native_modules() -> list[tuple[str, str]]:
    tree = ast.parse(SETUP.read_text())
    for node in tree.body:
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and node.target.id == "NATIVE_MODULES"
            and node.value is not None
        ):
            value = ast.literal_eval(node.value)
            return [(str(name), str(src)) for name, src in value]
    raise AssertionError("setup.py has no NATIVE_MODULES list")


def test_every_listed_source_exists() -> None:
    for name, src in native_modules():
        path = SETUP.parent / src
        assert path.is_file(), f"{name}: {src} is listed in setup.py but missing"
        assert path.suffix == ".pyx"
        assert path.with_suffix(".pyi").is_file(), f"{name}: add type stubs beside {src}"


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
