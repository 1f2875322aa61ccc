"""Money for people to read: the one place amounts are formatted in Python (emails, the
sandbox checkout page). Amounts are integer minor units everywhere else; Babel (CLDR)
knows each currency's decimals and symbol."""

from __future__ import annotations

from decimal import Decimal

from babel.numbers import format_currency, get_currency_precision

# English with the currency's own symbol (the storefront's Intl.NumberFormat("en") alike).
LOCALE = "en"


def minor_unit_digits(currency: str) -> int:
    """How many decimals the currency's minor unit has: 2 for INR, 0 for JPY."""
    return int(get_currency_precision(currency.upper()))


def format_money(amount: int, currency: str, locale: str = LOCALE) -> str:
    """Integer minor units as a display amount: (49900, "INR") -> "₹499.00"."""
    code = currency.upper()
    major = Decimal(amount).scaleb(-minor_unit_digits(code))
    return str(format_currency(major, code, locale=locale))
