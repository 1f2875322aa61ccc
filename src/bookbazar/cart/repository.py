"""All SQL of the cart: the PostgreSQL copy that Redis is written behind to."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bookbazar.models import Book, Cart, CartItem
from bookbazar.pg import Executor


@dataclass(frozen=True, slots=True)
class StoredCart:
    version: int
    updated_at: datetime
    # (book id, quantity, the book's currency)
    lines: list[tuple[uuid.UUID, int, str]]


async def load_cart(session: AsyncSession, user_id: uuid.UUID) -> StoredCart | None:
    row = (
        await session.execute(
            select(Cart.id, Cart.version, Cart.updated_at).where(Cart.user_id == user_id)
        )
    ).one_or_none()
    if row is None:
        return None
    items = await session.execute(
        select(CartItem.book_id, CartItem.quantity, Book.currency)
        .join(Book, Book.id == CartItem.book_id)
        .where(CartItem.cart_id == row.id)
        .order_by(CartItem.book_id)
    )
    return StoredCart(
        version=int(row.version),
        updated_at=row.updated_at,
        lines=[(r.book_id, int(r.quantity), r.currency) for r in items],
    )


@dataclass(frozen=True, slots=True)
class CartRow:
    """A cart as Redis held it, to be stored."""

    user_id: uuid.UUID
    version: int
    updated_at: datetime
    lines: Sequence[tuple[uuid.UUID, int]]


_UPSERT_CARTS = """
INSERT INTO carts (id, user_id, version, updated_at)
SELECT gen_random_uuid(), u.user_id, u.version, u.updated_at
FROM unnest($1::uuid[], $2::bigint[], $3::timestamptz[]) AS u(user_id, version, updated_at)
WHERE EXISTS (SELECT 1 FROM users WHERE users.id = u.user_id)
ON CONFLICT (user_id) DO UPDATE
  SET version = excluded.version, updated_at = excluded.updated_at
  WHERE carts.version < excluded.version
RETURNING id, user_id
"""
# Lines of books that no longer exist are dropped.
_INSERT_LINES = """
INSERT INTO cart_items (cart_id, book_id, quantity)
SELECT l.cart_id, l.book_id, l.quantity
FROM unnest($1::uuid[], $2::uuid[], $3::integer[]) AS l(cart_id, book_id, quantity)
WHERE EXISTS (SELECT 1 FROM books WHERE books.id = l.book_id)
"""


async def save_snapshots(db: Executor, rows: Sequence[CartRow]) -> set[uuid.UUID]:
    """Store each row as its user's cart if it is newer than the stored one: three
    statements for any number of carts, in the caller's transaction (on the asyncpg pool:
    bookbazar/pg.py). The upsert is guarded by `carts.version < excluded.version`
    (concurrent writers serialise on the row; the older one changes nothing), then the
    written carts' lines are replaced. Users that no longer exist are skipped, and lines
    of books that no longer exist are dropped. Rows are written in user order, so two
    batches never deadlock. Returns the users written."""
    ordered = sorted(rows, key=lambda row: str(row.user_id))
    result = await db.fetch(
        _UPSERT_CARTS,
        [row.user_id for row in ordered],
        [row.version for row in ordered],
        [row.updated_at for row in ordered],
    )
    written = {r.user_id: r.id for r in result}
    if not written:
        return set()
    lines = [
        (written[row.user_id], book_id, quantity)
        for row in ordered
        if row.user_id in written
        for book_id, quantity in row.lines
    ]
    await db.execute("DELETE FROM cart_items WHERE cart_id = ANY($1)", list(written.values()))
    if lines:
        await db.execute(
            _INSERT_LINES,
            [cart for cart, _, _ in lines],
            [book for _, book, _ in lines],
            [quantity for _, _, quantity in lines],
        )
    return set(written)


async def save_snapshot(
    db: Executor,
    user_id: uuid.UUID,
    version: int,
    updated_at: datetime,
    lines: Sequence[tuple[uuid.UUID, int]],
) -> bool:
    """Store one cart (see `save_snapshots`); False when the stored one is as new or
    newer, or the user no longer exists."""
    return bool(await save_snapshots(db, [CartRow(user_id, version, updated_at, lines)]))
