"""
Which implementation of the ambassador's hot path runs: compiled (Cython) or pure Python.

The driver (:mod:`~shoal.components.ambassadors.driver`) and the memcached parser
(:mod:`~shoal.components.ambassadors.memcache`) are compiled a second time, from the same source,
into ``_driver`` and ``_memcache`` when a C compiler was there at install (``setup.py``; each
``.pyx`` only ``include``\\ s its module; ``_driver`` then binds ``_memcache`` and the RESP
scanners written in C in ``_resp``). Compiled, the driver's protocols are extension types with C
fields (Cython's pure-Python mode, see ``_cyshim``). The compiled modules behave exactly as the
pure ones (the behavioural tests run over both, Hypothesis tests compare the parsers and
scanners on arbitrary input); they spend less time in the interpreter. Everything else (the
RESP parser's careful path, planner, router, settings) is shared.

:func:`resolve` answers which one runs: ``implementation`` (``AmbassadorSettings.implementation``)
is ``compiled`` (an error when it was not built), ``python``, or ``auto``: compiled when
importable, unless ``SHOAL_PURE_PYTHON=1`` (the data plane's switch too) forces the pure path.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from shoal.components.ambassadors.config import AmbassadorSettings
    from shoal.components.ambassadors.driver import Ambassador
    from shoal.components.ambassadors.servers import ServerSpec

__all__ = ["IMPLEMENTATIONS", "PURE_ENV", "driver_module", "make_ambassador", "resolve"]

IMPLEMENTATIONS: Final = ("auto", "compiled", "python")
"""Choices of :func:`resolve` (``AmbassadorSettings.implementation``)."""

PURE_ENV: Final = "SHOAL_PURE_PYTHON"
"""Set to ``1`` to make ``auto`` choose the pure-Python path."""

_MODULES: Final = ("_resp", "_memcache", "_driver")


def resolve(implementation: str = "auto") -> str:
    """``compiled`` or ``python``: what ``implementation`` means on this machine now."""
    if implementation not in IMPLEMENTATIONS:
        raise ValueError(
            f"unknown implementation {implementation!r}: must be one of {list(IMPLEMENTATIONS)}"
        )
    if implementation == "python":
        return "python"
    if implementation == "auto" and os.environ.get(PURE_ENV) == "1":
        return "python"
    try:
        for name in _MODULES:
            importlib.import_module(f"shoal.components.ambassadors.{name}")
    except ImportError as error:
        if implementation == "compiled":
            raise ImportError(
                "the compiled ambassador is not built: install a C compiler and the Python "
                "headers, then reinstall shoal (or build in place with `python setup.py "
                f"build_ext --inplace`), or use implementation 'python' ({error})"
            ) from error
        return "python"
    return "compiled"


def driver_module(implementation: str = "auto") -> ModuleType:
    """The driver module ``implementation`` resolves to (its ``Ambassador`` is the entry point)."""
    name = "_driver" if resolve(implementation) == "compiled" else "driver"
    return importlib.import_module(f"shoal.components.ambassadors.{name}")


def make_ambassador(servers: list[ServerSpec], settings: AmbassadorSettings) -> Ambassador:
    """An ``Ambassador`` of the implementation ``settings.implementation`` resolves to."""
    cls: type[Ambassador] = driver_module(settings.implementation).Ambassador
    return cls(servers, settings)
