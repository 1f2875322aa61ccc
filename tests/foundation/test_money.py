"""Money for people to read (kit/money.py): CLDR's digits and symbol per currency."""

from __future__ import annotations

import pytest

from bookbazar.kit.money import format_money, minor_unit_digits


@pytest.mark.parametrize(
    ("amount", "currency", "shown"),
    [
        (49_900, "INR", "₹499.00"),
        (12_345_678, "INR", "₹123,456.78"),
        (-12_345, "usd", "-$123.45"),  # the code's case does not matter
        (1_500, "JPY", "¥1,500"),  # no minor unit: 1500 yen, not 15.00
        (5, "BHD", "BHD0.005"),  # three decimals
        (0, "EUR", "€0.00"),
    ],
)
def test_minor_units_are_shown_in_the_currencys_own_way(
    amount: int, currency: str, shown: str
) -> None:
    assert format_money(amount, currency) == shown


def test_minor_unit_digits() -> None:
    assert [minor_unit_digits(c) for c in ("INR", "JPY", "KWD")] == [2, 0, 3]
