"""
Which implementation of the ambassador's hot path runs: compiled (Cython) or pure Python.

The driver (:mod:`~shoal.components.ambassadors.driver`) and the memcached parser
(:mod:`~shoal.components.ambassadors.memcache`) are compiled a second time, from the same source,
into ``_driver`` and ``_memcache`` when a C compiler was there at install (``setup.py``; each
``.pyx`` only ``include``\\ s its module; ``_driver`` then binds ``_memcache`` and the RESP
scanners written in C in ``_resp``). Compiled, the driver's protocols are extension types with C
fields (Cython's pure-Python mode, see ``shoal._cyshim``). The compiled modules behave exactly as the
pure ones (the behavioural tests run over both, Hypothesis tests compare the parsers and
scanners on arbitrary input); they spend less time in the interpreter. Everything else (the
RESP parser's careful path, planner, router, settings) is shared.

:func:`resolve` answers which one runs: ``implementation`` (``AmbassadorSettings.implementation``)
is ``compiled`` (an error when it was not built), ``python``, or ``auto``: compiled when
importable, unless ``SHOAL_PURE_PYTHON=1`` (the data plane's switch too) forces the pure path.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import TYPE_CHECKING, Final

from shoal.native import IMPLEMENTATIONS, PURE_ENV
from shoal.native import resolve as resolve_part

if TYPE_CHECKING:
    from shoal.components.ambassadors.config import AmbassadorSettings
    from shoal.components.ambassadors.driver import Ambassador
    from shoal.components.ambassadors.servers import ServerSpec

__all__ = ["IMPLEMENTATIONS", "PURE_ENV", "driver_module", "make_ambassador", "resolve"]

_MODULES: Final = tuple(
    f"shoal.components.ambassadors.{m}" for m in ("_resp", "_memcache", "_driver")
)


def resolve(implementation: str = "auto") -> str:
    """``compiled`` or ``python``: what ``implementation`` means on this machine now."""
    return resolve_part(implementation, _MODULES, "ambassador")


def driver_module(implementation: str = "auto") -> ModuleType:
    """The driver module ``implementation`` resolves to (its ``Ambassador`` is the entry point)."""
    name = "_driver" if resolve(implementation) == "compiled" else "driver"
    return importlib.import_module(f"shoal.components.ambassadors.{name}")


def make_ambassador(servers: list[ServerSpec], settings: AmbassadorSettings) -> Ambassador:
    """An ``Ambassador`` of the implementation ``settings.implementation`` resolves to."""
    cls: type[Ambassador] = driver_module(settings.implementation).Ambassador
    return cls(servers, settings)
