"""All SQL of the cart: the PostgreSQL copy that Redis is written behind to."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, exists, literal, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from bookbazar.models import Book, Cart, CartItem, User


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


async def save_snapshot(
    session: AsyncSession,
    user_id: uuid.UUID,
    version: int,
    updated_at: datetime,
    lines: Sequence[tuple[uuid.UUID, int]],
) -> bool:
    """Store this snapshot as the user's cart if it is newer than the stored one.

    One upsert guarded by `carts.version < excluded.version` (concurrent writers serialise
    on the row; the older one changes nothing), then the lines are replaced. Returns False
    when the stored cart is as new or newer, or the user no longer exists. Lines of books
    that no longer exist are dropped. The caller owns the transaction.
    """
    upsert = insert(Cart).from_select(
        [Cart.id, Cart.user_id, Cart.version, Cart.updated_at],
        select(
            literal(uuid.uuid4()),
            literal(user_id),
            literal(version),
            literal(updated_at),
        ).where(exists().where(User.id == user_id)),
    )
    guarded = upsert.on_conflict_do_update(
        index_elements=[Cart.user_id],
        set_={"version": upsert.excluded.version, "updated_at": upsert.excluded.updated_at},
        where=Cart.version < upsert.excluded.version,
    ).returning(Cart.id)
    cart_id = (await session.execute(guarded)).scalar_one_or_none()
    if cart_id is None:
        return False
    await session.execute(delete(CartItem).where(CartItem.cart_id == cart_id))
    if lines:
        book_ids = [book_id for book_id, _ in lines]
        known = set((await session.execute(select(Book.id).where(Book.id.in_(book_ids)))).scalars())
        rows = [
            {"cart_id": cart_id, "book_id": book_id, "quantity": quantity}
            for book_id, quantity in lines
            if book_id in known
        ]
        if rows:
            await session.execute(insert(CartItem), rows)
    return True
