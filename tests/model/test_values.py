"""Quantities and durations: the Kubernetes and Go syntaxes, exactly."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shoal.model import Duration, Quantity


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("10k", Decimal(10_000)),
        ("500m", Decimal("0.5")),
        ("1Gi", Decimal(2**30)),
        ("1.5Mi", Decimal("1.5") * 2**20),
        ("1e3", Decimal(1000)),
        ("2E-2", Decimal("0.02")),
        ("100", Decimal(100)),
        (".5", Decimal("0.5")),
        ("+3", Decimal(3)),
        ("-2", Decimal(-2)),
        ("7n", Decimal("7e-9")),
        ("3u", Decimal("3e-6")),
        ("4M", Decimal(4_000_000)),
        ("1Ei", Decimal(2**60)),
    ],
)
def test_quantity_parses_kubernetes_syntax(text: str, value: Decimal) -> None:
    quantity = Quantity.parse(text)
    assert quantity.value == value
    assert str(quantity) == text


@pytest.mark.parametrize("text", ["", "k", "10x", "1.2.3", "1 k", "Gi", "10KB", "1e"])
def test_quantity_rejects_bad_syntax(text: str) -> None:
    with pytest.raises(ValueError, match="must be a quantity such as 10k or 500m"):
        Quantity.parse(text)


@given(st.integers(min_value=0, max_value=10**12), st.sampled_from(["", "k", "M", "G", "Ki", "Mi"]))
def test_quantity_value_is_number_times_suffix(number: int, suffix: str) -> None:
    factor = {"": 1, "k": 10**3, "M": 10**6, "G": 10**9, "Ki": 2**10, "Mi": 2**20}[suffix]
    assert Quantity.parse(f"{number}{suffix}").value == number * factor


def test_integer_quantities_serialize_as_integers() -> None:
    from shoal.model.quantity import _serialize_quantity

    assert _serialize_quantity(Quantity.parse("100")) == 100
    assert _serialize_quantity(Quantity.parse("10k")) == "10k"
    assert Quantity.parse("10k") == 10_000
    assert Quantity.parse("10k") == Quantity.parse("10000")


@pytest.mark.parametrize(
    ("text", "nanoseconds"),
    [
        ("30s", 30 * 10**9),
        ("1m30s", 90 * 10**9),
        ("1.5h", 5400 * 10**9),
        ("250ms", 250 * 10**6),
        ("10us", 10_000),
        ("10µs", 10_000),
        ("7ns", 7),
        ("2h45m", (2 * 3600 + 45 * 60) * 10**9),
        ("0", 0),
    ],
)
def test_duration_parses_go_syntax(text: str, nanoseconds: int) -> None:
    assert Duration.parse(text).nanoseconds == nanoseconds


def test_duration_numbers_are_seconds() -> None:
    assert Duration.parse(2).seconds == 2.0
    assert Duration.parse(0.5).nanoseconds == 500_000_000


@pytest.mark.parametrize("text", ["", "30", "s", "30 s", "-1s", "1d", "1m-30s", "30seconds"])
def test_duration_rejects_bad_syntax(text: str) -> None:
    with pytest.raises(ValueError, match="must be a duration"):
        Duration.parse(text)


@given(
    st.lists(
        st.tuples(st.integers(0, 10_000), st.sampled_from(["h", "m", "s", "ms"])),
        min_size=1,
        max_size=4,
    )
)
def test_duration_sums_its_parts(parts: list[tuple[int, str]]) -> None:
    unit = {"h": 3600 * 10**9, "m": 60 * 10**9, "s": 10**9, "ms": 10**6}
    text = "".join(f"{n}{u}" for n, u in parts)
    assert Duration.parse(text).nanoseconds == sum(n * unit[u] for n, u in parts)
