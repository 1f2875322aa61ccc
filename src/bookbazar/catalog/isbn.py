"""ISBNs: checked and kept in one form (ISBN-13, digits only)."""

from __future__ import annotations

import re

_SEPARATORS = re.compile(r"[\s-]")


def isbn13_check_digit(first12: str) -> str:
    """The 13th digit of an ISBN-13 whose first twelve digits are `first12`."""
    total = sum(int(d) * (3 if i % 2 else 1) for i, d in enumerate(first12))
    return str((10 - total % 10) % 10)


def _isbn10_valid(isbn10: str) -> bool:
    total = sum((10 - i) * (10 if c in "Xx" else int(c)) for i, c in enumerate(isbn10))
    return total % 11 == 0


def normalize_isbn(raw: str) -> str:
    """An ISBN-13 (digits only) from an ISBN-13 or ISBN-10, hyphens and spaces allowed.
    Raises ValueError when it is neither, or its check digit is wrong."""
    value = _SEPARATORS.sub("", raw)
    if re.fullmatch(r"97[89]\d{10}", value):
        if isbn13_check_digit(value[:12]) != value[12]:
            raise ValueError("the ISBN-13 check digit is wrong")
        return value
    if re.fullmatch(r"\d{9}[\dXx]", value):
        if not _isbn10_valid(value):
            raise ValueError("the ISBN-10 check digit is wrong")
        first12 = "978" + value[:9]
        return first12 + isbn13_check_digit(first12)
    raise ValueError("must be an ISBN-13 (978… or 979…, 13 digits) or an ISBN-10")


def looks_like_isbn(term: str) -> str | None:
    """The normalized ISBN when a search term is one, else None."""
    try:
        return normalize_isbn(term)
    except ValueError:
        return None
