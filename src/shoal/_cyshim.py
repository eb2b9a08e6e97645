"""
The names of Cython's pure-Python mode that shoal's twice-built sources use, for a Python without Cython.

:mod:`shoal.dataplane.driver` (and the data plane's other hot modules, and the ambassadors'
driver) is written once and runs two ways: interpreted, and compiled by Cython into
``shoal.dataplane._driver_c`` (see :mod:`shoal.native`). Its decorators
(``@cython.cclass``: an extension type with C attributes; ``@cython.cfunc``: a method callable
only from compiled code) and type names (``cython.bint``, ``cython.long``, ``cython.double``)
steer the compiler and mean nothing to the interpreter. When Cython is installed its own
``cython`` module provides them; this one stands in when it is not (a runtime install without the
build tools), and it is what mypy reads.
"""

from collections.abc import Callable
from typing import Any, TypeVar

__all__ = [
    "annotation_typing",
    "bint",
    "ccall",
    "cclass",
    "cfunc",
    "compiled",
    "declare",
    "double",
    "freelist",
    "inline",
    "int",
    "locals",
    "long",
    "longlong",
]

_T = TypeVar("_T")

compiled = False
"""True only inside a compiled module (Cython's own module says so there)."""

bint = bool
"""A C int used as a truth value."""
int = int
"""A C int."""
long = int
"""A C long (64 bits here): counters that cannot overflow it."""
double = float
"""A C double."""


class _CArrayable:
    """A C scalar type whose ``T[n]`` names a C array of ``n`` of them (for :func:`declare`)."""

    def __getitem__(self, size: int) -> "_CArrayable":
        return self


longlong = _CArrayable()
"""A C long long; ``longlong[n]`` in :func:`declare` is a C array (a field the compiled build
keeps as ``n`` C numbers, the interpreted one as whatever its ``__init__`` assigns)."""


def cclass(cls: _T) -> _T:
    """An extension type: attributes annotated in the class body become C fields."""
    return cls


def ccall(function: _T) -> _T:
    """A method callable from Python and, fast, from compiled code that knows the type."""
    return function


def cfunc(function: _T) -> _T:
    """A C-level method: fast to call from compiled code, invisible to Python there."""
    return function


def declare(kind: object, value: Any = None, *, visibility: str = "private") -> Any:
    """A C variable of type ``kind`` (here: just ``value``); in a class body, a C field
    (``visibility="public"``: readable and writable from Python code too)."""
    return value


def inline(function: _T) -> _T:
    """Ask the C compiler to inline a C function (a decorator)."""
    return function


def freelist(size: int) -> Callable[[_T], _T]:
    """Keep up to ``size`` freed instances of an extension type for reuse (a decorator)."""
    return lambda cls: cls


def locals(**types: object) -> Callable[[_T], _T]:  # Cython's own name
    """C types for a function's local variables (a decorator)."""
    return lambda function: function


def annotation_typing(enabled: bool) -> Callable[[_T], _T]:
    """Whether the compiler takes a function's annotations as C types (a decorator)."""
    return lambda function: function
