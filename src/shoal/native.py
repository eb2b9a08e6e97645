"""
Which implementation of a twice-built part runs: its compiled modules or its pure-Python source.

Parts with optional compiled speed-ups (the data plane's hot modules, the sharding ambassadors;
setup.py builds every ``.pyx``) each name the modules their compiled path needs and call
:func:`resolve`. ``auto`` means compiled when every one of them imports, unless
``SHOAL_PURE_PYTHON=1``; ``compiled`` asked for where they are not built is an ImportError that
says how to build them; ``python`` is always the pure path.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Sequence
from typing import Final

__all__ = ["IMPLEMENTATIONS", "PURE_ENV", "resolve"]

IMPLEMENTATIONS: Final = ("auto", "compiled", "python")
"""The choices (``ProxySettings.implementation``, ``AmbassadorSettings.implementation``,
``--implementation``)."""

PURE_ENV: Final = "SHOAL_PURE_PYTHON"
"""Set to ``1`` to make ``auto`` choose the pure-Python path (every part honours it)."""


def resolve(implementation: str, modules: Sequence[str], what: str) -> str:
    """``compiled`` or ``python``: what ``implementation`` means for the part ``what`` (named in
    the error), whose compiled path needs ``modules`` (dotted names), on this machine now."""
    if implementation not in IMPLEMENTATIONS:
        raise ValueError(
            f"unknown implementation {implementation!r}: must be one of {list(IMPLEMENTATIONS)}"
        )
    if implementation == "python":
        return "python"
    if implementation == "auto" and os.environ.get(PURE_ENV) == "1":
        return "python"
    try:
        for name in modules:
            importlib.import_module(name)
    except ImportError as error:
        if implementation == "compiled":
            raise ImportError(
                f"the compiled {what} is not built: install a C compiler and the Python "
                "headers, then reinstall shoal (or build in place with `python setup.py "
                f"build_ext --inplace`), or use implementation 'python' ({error})"
            ) from error
        return "python"
    return "compiled"
