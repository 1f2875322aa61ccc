"""Stock keys in Redis. One hash tag, so every stock script's keys live in one Cluster slot.

    bb:{stock}:avail:<bookId>                 units available = on hand - units held
    bb:{stock}:hold:<orderId>:<token>         hash bookId -> units held by that hold
    bb:{stock}:holds                          zset "<orderId>:<token>" -> created at (ms)
    bb:{stock}:ended:<orderId>:<token>        'released' | 'converted' once the hold ended

A hold is named by its order AND a fencing token: an order's first hold is made at
placement; a late payment makes a new one under a fresh token. Every release or
conversion names the token it means, so it can never end another hold of the order.
"""

from __future__ import annotations

from uuid import UUID

PREFIX = "bb:{stock}:"
AVAIL_PREFIX = PREFIX + "avail:"
INDEX = PREFIX + "holds"
ENDED_TTL_SECONDS = 7 * 86_400


def avail(book_id: UUID | str) -> str:
    return f"{AVAIL_PREFIX}{book_id}"


def member(order_id: UUID | str, token: str) -> str:
    return f"{order_id}:{token}"


def hold(order_id: UUID | str, token: str) -> str:
    return f"{PREFIX}hold:{order_id}:{token}"


def ended(order_id: UUID | str, token: str) -> str:
    return f"{PREFIX}ended:{order_id}:{token}"
