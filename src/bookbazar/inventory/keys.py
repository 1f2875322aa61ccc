from __future__ import annotations

from uuid import UUID

PREFIX = "bb:{stock}:"
AVAIL_PREFIX = PREFIX + "avail:"
INDEX = PREFIX + "resv-index"
TOMBSTONE_TTL_SECONDS = 7 * 86_400


def avail(book_id: UUID | str) -> str:
    return f"{AVAIL_PREFIX}{book_id}"


def reservation(order_id: UUID | str) -> str:
    return f"{PREFIX}resv:{order_id}"


def tombstone(order_id: UUID | str) -> str:
    return f"{PREFIX}done:{order_id}"
