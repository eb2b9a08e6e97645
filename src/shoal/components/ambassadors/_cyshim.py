"""
The few names of Cython's pure-Python mode that the ambassador's driver uses, for a Python
without Cython (and for mypy).

:mod:`~shoal.components.ambassadors.driver` is written once and runs two ways: interpreted, and
compiled by Cython into ``_driver`` (see :mod:`~shoal.components.ambassadors.native`). Its
decorators and declarations steer the compiler and mean nothing to the interpreter:
``@cython.cclass`` makes an extension type whose attributes are C fields; ``@cython.ccall``
a method that compiled code calls directly;
``cython.declare(object, visibility="public")`` in its body declares one such field, readable
and writable from Python too; ``@cython.annotation_typing(True)`` lets the compiler take a hot
method's annotations as C types (so a local annotated with a class reads that class's fields
directly). When Cython is installed its own ``cython`` module provides them.
"""

from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["annotation_typing", "bint", "ccall", "cclass", "compiled", "declare"]

_T = TypeVar("_T")

compiled = False
"""True only inside a compiled module (Cython's own module says so there)."""

bint = bool
"""A C int used as a truth value."""


def cclass(cls: _T) -> _T:
    """An extension type (compiled); the class itself (interpreted)."""
    return cls


def ccall(function: _T) -> _T:
    """A method callable from Python and, compiled, straight from C (no attribute lookup)."""
    return function


def declare(kind: object, value: Any = None, **options: object) -> Any:
    """A typed C field or variable (compiled); ``value`` (interpreted)."""
    return value


def annotation_typing(enabled: bool) -> Callable[[_T], _T]:
    """Whether the compiler takes the function's annotations as C types; nothing interpreted."""

    def decorate(function: _T) -> _T:
        return function

    return decorate
