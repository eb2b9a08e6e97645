"""
Which implementation of the hot path runs: the compiled one (Cython) or the pure-Python one.

The driver (:mod:`~shoal.dataplane.driver`), the dispatcher (:mod:`~shoal.dataplane.dispatch`),
the fast path (:mod:`~shoal.dataplane.fastpath`), the health machines
(:mod:`~shoal.dataplane.health`), the pickers (:mod:`~shoal.dataplane.balancing`) and the shard
router (:mod:`~shoal.dataplane.routing`, :mod:`~shoal.dataplane.hashing`) are each
compiled a second time, from the same source, into ``shoal.dataplane._<name>_c`` when a C compiler
was there at install (``setup.py``; the ``.pyx`` beside each module only ``include``\\ s it). The
compiled module behaves exactly as the pure one (the same tests run over both); it only spends
less time in the interpreter. Values, events and settings types stay the pure modules' own (each
``.pyx`` binds them back after the include), so objects cross freely between the two.

:func:`compiled` answers which one to use: ``implementation`` is ``compiled`` (an error when it
was not built), ``python``, or ``auto``: compiled when importable, unless the environment variable
``SHOAL_PURE_PYTHON=1`` forces the pure path (handy to compare, or to debug with pdb).
"""

import importlib
import os
from types import ModuleType
from typing import Final

__all__ = ["IMPLEMENTATIONS", "PURE_ENV", "compiled", "resolve"]

IMPLEMENTATIONS: Final = ("auto", "compiled", "python")
"""Choices of :func:`compiled` (``ProxySettings.implementation``, ``--implementation``)."""

PURE_ENV: Final = "SHOAL_PURE_PYTHON"
"""Set to ``1`` to make ``auto`` choose the pure-Python path."""

_MODULES: Final = ("fastpath", "health", "balancing", "hashing", "routing", "dispatch", "driver")


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
            importlib.import_module(f"shoal.dataplane._{name}_c")
    except ImportError as error:
        if implementation == "compiled":
            raise ImportError(
                "the compiled data plane is not built: install a C compiler and the Python "
                "headers, then reinstall shoal (or build in place with `python setup.py "
                f"build_ext --inplace`), or use implementation 'python' ({error})"
            ) from error
        return "python"
    return "compiled"


def compiled(name: str, implementation: str = "auto") -> ModuleType | None:
    """The compiled ``shoal.dataplane._<name>_c`` if ``implementation`` resolves to it, else None."""
    if resolve(implementation) == "python":
        return None
    return importlib.import_module(f"shoal.dataplane._{name}_c")
