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
from types import ModuleType
from typing import Final

from shoal.native import IMPLEMENTATIONS, PURE_ENV
from shoal.native import resolve as resolve_part

__all__ = ["IMPLEMENTATIONS", "PURE_ENV", "compiled", "resolve"]

_MODULES: Final = tuple(
    f"shoal.dataplane._{name}_c"
    for name in (
        "fastpath",
        "health",
        "balancing",
        "hashing",
        "keyhash",
        "routing",
        "dispatch",
        "driver",
    )
)


def resolve(implementation: str = "auto") -> str:
    """``compiled`` or ``python``: what ``implementation`` means on this machine now."""
    return resolve_part(implementation, _MODULES, "data plane")


def compiled(name: str, implementation: str = "auto") -> ModuleType | None:
    """The compiled ``shoal.dataplane._<name>_c`` if ``implementation`` resolves to it, else None."""
    if resolve(implementation) == "python":
        return None
    return importlib.import_module(f"shoal.dataplane._{name}_c")
