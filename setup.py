"""
Build of shoal's optional compiled speed-ups (everything else is in pyproject.toml).

Every ``src/shoal/**/*.pyx`` is a Cython module beside the pure-Python code it speeds up (a
``.pyx`` may also ``include`` a ``.py`` file to compile that same source as a second module); the
pure-Python path stays complete and tested, so a machine without a C compiler still installs and
runs shoal (slower). Set ``SHOAL_REQUIRE_NATIVE=1`` to make a failed build an error (CI does, so
the compiled paths are always built and tested there), and ``SHOAL_NATIVE_ONLY=a.b,c.d`` to build
only the named modules (handy while working on one of them:
``SHOAL_NATIVE_ONLY=shoal.loadgen._engine python setup.py build_ext --inplace``).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

SRC = Path(__file__).resolve().parent / "src"


def native_modules() -> list[tuple[str, str]]:
    """(module name, source path relative to this file) of every .pyx under src/."""
    found = []
    for pyx in sorted(SRC.rglob("*.pyx")):
        relative = pyx.relative_to(SRC).with_suffix("")
        found.append((".".join(relative.parts), str(pyx.relative_to(SRC.parent))))
    return found


class OptionalBuildExt(build_ext):
    """Build every extension it can; warn (or fail under SHOAL_REQUIRE_NATIVE=1) on the rest."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:  # no compiler at all: distutils raises before any module
            self._failed("all compiled speed-ups", exc)

    def build_extension(self, ext: Extension) -> None:
        try:
            super().build_extension(ext)
        except Exception as exc:
            self._failed(ext.name, exc)

    @staticmethod
    def _failed(what: str, exc: Exception) -> None:
        if os.environ.get("SHOAL_REQUIRE_NATIVE") == "1":
            raise exc
        print(
            f"warning: could not build {what} ({exc}); shoal installs without it and uses its "
            "pure-Python path (install a C compiler and the Python headers for the speed-up)",
            file=sys.stderr,
        )


def _extensions() -> list[Extension]:
    only = {name for name in os.environ.get("SHOAL_NATIVE_ONLY", "").split(",") if name}
    chosen = [(name, src) for name, src in native_modules() if not only or name in only]
    if not chosen:
        return []
    from Cython.Build import cythonize

    extensions = [
        Extension(name, [src], extra_compile_args=["-O3"], optional=True) for name, src in chosen
    ]
    return list(
        cythonize(
            extensions,
            compiler_directives={"language_level": "3", "boundscheck": False, "wraparound": False},
            include_path=[str(SRC)],  # a module's .pxd is found by its package path (cimport)
            quiet=True,
        )
    )


setup(ext_modules=_extensions(), cmdclass={"build_ext": OptionalBuildExt})
