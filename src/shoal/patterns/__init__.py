"""Patterns: the pure compile step from pattern objects to the primitives they stand for."""

from shoal.patterns.compile import CompileSettings, compile_objects, compile_pattern

__all__ = ["CompileSettings", "compile_objects", "compile_pattern"]
