"""The two implementations of the data plane's hot path, for tests that run over both.

``python`` is the pure-Python source; ``compiled`` its Cython build (see
:mod:`shoal.dataplane.native`). Where a C compiler exists the compiled one must be built, so it is
always listed there and a missing build fails the tests that use it (never a skip).
"""

from __future__ import annotations

import contextlib
import importlib
import shutil
from collections.abc import Iterator
from types import ModuleType
from typing import Any


def _built() -> bool:
    try:
        importlib.import_module("shoal.dataplane._driver_c")
    except ImportError:
        return False
    return True


IMPLEMENTATIONS = ["python", "compiled"] if shutil.which("cc") or _built() else ["python"]
"""Values of ``ProxySettings.implementation`` every behavioural test runs with."""


def fastpath(implementation: str) -> ModuleType:
    """The fast path scanners of ``implementation``."""
    if implementation == "python":
        return importlib.import_module("shoal.dataplane.fastpath")
    return importlib.import_module("shoal.dataplane._fastpath_c")


@contextlib.contextmanager
def names_from(
    namespace: dict[str, Any], module: str, names: list[str], implementation: str
) -> Iterator[None]:
    """Within the block, ``names`` in ``namespace`` (a test module's globals) are those of
    ``implementation``'s build of ``shoal.dataplane.<module>``; a test module's tests then run
    unchanged over the compiled build of the pure core they test."""
    if implementation == "python":
        yield
        return
    compiled = importlib.import_module(f"shoal.dataplane._{module}_c")
    saved = {name: namespace[name] for name in names}
    namespace.update({name: getattr(compiled, name) for name in names})
    try:
        yield
    finally:
        namespace.update(saved)
