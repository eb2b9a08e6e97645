"""Kubernetes quantities (``10k``, ``500m``, ``1Gi``, ``1e3``) and Go-style durations (``1m30s``).

Both keep the text the user wrote, so an object serializes back as it came in, and expose an exact
value (``Decimal`` for quantities, integer nanoseconds for durations) for arithmetic.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from pydantic import GetCoreSchemaHandler, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import core_schema

__all__ = ["Duration", "Quantity"]

_BINARY_SUFFIXES = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL_SUFFIXES = {
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "": Decimal(1),
    "k": Decimal("1e3"),
    "M": Decimal("1e6"),
    "G": Decimal("1e9"),
    "T": Decimal("1e12"),
    "P": Decimal("1e15"),
    "E": Decimal("1e18"),
}
_QUANTITY = re.compile(
    r"(?P<number>[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))(?P<suffix>[A-Za-z]*[-+]?[0-9]*)"
)
_EXPONENT = re.compile(r"[eE](?P<exp>[-+]?[0-9]+)")

QUANTITY_HELP = "suffixes: k M G T P E, Ki Mi Gi Ti Pi Ei, m u n, or an exponent such as e3"


@dataclass(frozen=True, slots=True)
class Quantity:
    """A Kubernetes resource quantity: ``Quantity.parse("10k").value == Decimal(10000)``."""

    value: Decimal
    text: str

    @classmethod
    def parse(cls, raw: str | int | float | Decimal) -> Quantity:
        """Parse the Kubernetes quantity syntax; raise ``ValueError`` naming what is wrong."""
        if isinstance(raw, bool):
            raise ValueError(f"must be a quantity such as 10k or 500m, got {raw!r}")
        if isinstance(raw, int | Decimal):
            return cls(Decimal(raw), str(raw))
        if isinstance(raw, float):
            if raw != raw or raw in (float("inf"), float("-inf")):
                raise ValueError(f"must be a finite quantity such as 10k or 500m, got {raw!r}")
            text = repr(raw)
            return cls(Decimal(text), text)
        text = raw.strip()
        match = _QUANTITY.fullmatch(text)
        if not match:
            raise ValueError(
                f"must be a quantity such as 10k or 500m ({QUANTITY_HELP}), got {raw!r}"
            )
        number = Decimal(match["number"])
        suffix = match["suffix"]
        if suffix in _BINARY_SUFFIXES:
            value = number * _BINARY_SUFFIXES[suffix]
        elif suffix in _DECIMAL_SUFFIXES:
            value = number * _DECIMAL_SUFFIXES[suffix]
        elif exp := _EXPONENT.fullmatch(suffix):
            try:
                value = number.scaleb(int(exp["exp"]))
            except InvalidOperation as error:  # an absurd exponent
                raise ValueError(f"quantity {raw!r} is out of range") from error
        else:
            raise ValueError(
                f"must be a quantity such as 10k or 500m ({QUANTITY_HELP}), got {raw!r}: "
                f"unknown suffix {suffix!r}"
            )
        return cls(value, text)

    def __int__(self) -> int:
        return int(self.value)

    def __float__(self) -> float:
        return float(self.value)

    def __str__(self) -> str:
        return self.text

    def __repr__(self) -> str:
        return f"Quantity({self.text!r})"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Quantity):
            return self.value == other.value
        if isinstance(other, int | float | Decimal) and not isinstance(other, bool):
            return self.value == Decimal(str(other))
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.value)

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: type[Any], handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.no_info_plain_validator_function(
            _validate_quantity,
            serialization=core_schema.plain_serializer_function_ser_schema(_serialize_quantity),
        )

    @classmethod
    def __get_pydantic_json_schema__(
        cls, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return {
            "anyOf": [{"type": "integer"}, {"type": "string"}],
            "x-kubernetes-int-or-string": True,
            "description": "A Kubernetes quantity such as 10k, 500m or 1Gi.",
        }


def _validate_quantity(raw: Any) -> Quantity:
    if isinstance(raw, Quantity):
        return raw
    if isinstance(raw, str | int | float | Decimal) and not isinstance(raw, bool):
        return Quantity.parse(raw)
    raise ValueError(f"must be a quantity such as 10k or 500m, got {type(raw).__name__}")


def _serialize_quantity(value: Quantity) -> int | str:
    # Integers stay integers so manifests read naturally (replicas-like quantities).
    if value.text.lstrip("+-").isdigit():
        return int(value.text)
    return value.text


_DURATION_UNITS = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,
    "μs": 1_000,
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60 * 1_000_000_000,
    "h": 3600 * 1_000_000_000,
}
_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]*)?|\.[0-9]+)(ns|us|µs|μs|ms|s|m|h)")
DURATION_HELP = "units: ns us ms s m h"


@dataclass(frozen=True, slots=True)
class Duration:
    """A non-negative Go-style duration (``30s``, ``1m30s``, ``250ms``); a bare number is seconds."""

    nanoseconds: int
    text: str

    @classmethod
    def parse(cls, raw: str | int | float) -> Duration:
        """Parse Go's duration syntax (without a sign); raise ``ValueError`` naming what is wrong."""
        if isinstance(raw, bool):
            raise ValueError(f"must be a duration such as 30s ({DURATION_HELP}), got {raw!r}")
        if isinstance(raw, int | float):
            if raw < 0:
                raise ValueError(f"must not be negative, got {raw!r}")
            return cls(int(Decimal(str(raw)) * 1_000_000_000), f"{raw}s")
        text = raw.strip()
        if text == "0":
            return cls(0, text)
        total = Decimal(0)
        position = 0
        for match in _DURATION_PART.finditer(text):
            if match.start() != position:
                break
            total += Decimal(match[1]) * _DURATION_UNITS[match[2]]
            position = match.end()
        if position != len(text) or not text:
            raise ValueError(
                f"must be a duration such as 30s or 1m30s ({DURATION_HELP}), got {raw!r}"
            )
        return cls(int(total), text)

    @property
    def seconds(self) -> float:
        return self.nanoseconds / 1e9

    def __str__(self) -> str:
        return self.text

    def __repr__(self) -> str:
        return f"Duration({self.text!r})"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Duration):
            return self.nanoseconds == other.nanoseconds
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.nanoseconds)

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: type[Any], handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.no_info_plain_validator_function(
            _validate_duration,
            serialization=core_schema.plain_serializer_function_ser_schema(str),
        )

    @classmethod
    def __get_pydantic_json_schema__(
        cls, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return {
            "type": "string",
            "pattern": r"^(([0-9]+(\.[0-9]*)?|\.[0-9]+)(ns|us|µs|μs|ms|s|m|h))+$|^0$",
            "description": "A duration such as 30s, 1m30s or 250ms.",
        }


def _validate_duration(raw: Any) -> Duration:
    if isinstance(raw, Duration):
        return raw
    if isinstance(raw, str | int | float) and not isinstance(raw, bool):
        return Duration.parse(raw)
    raise ValueError(f"must be a duration such as 30s, got {type(raw).__name__}")
