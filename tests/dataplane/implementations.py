"""The two implementations of the data plane's hot path, for tests that run over both.

``python`` is the pure-Python source; ``compiled`` its Cython build (see
:mod:`shoal.dataplane.native`). Where a C compiler exists the compiled one must be built, so it is
always listed there and a missing build fails the tests that use it (never a skip).
"""

from __future__ import annotations

import importlib
import shutil
from types import ModuleType


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
