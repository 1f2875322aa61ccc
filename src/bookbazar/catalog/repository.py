from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import func, or_, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from bookbazar.models import Book, Order, OrderItem, OrderStatus, Restock


def like_pattern(term: str) -> str:
    """`term` anywhere, its LIKE wildcards taken literally."""
    escaped = term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


async def search(
    session: AsyncSession, q: str | None, *, offset: int, limit: int
) -> tuple[list[Book], int]:
    stmt = select(Book, func.count().over().label("total"))
    if q:
        pattern = like_pattern(q)
        stmt = stmt.where(or_(Book.title.ilike(pattern), Book.author.ilike(pattern)))
    stmt = stmt.order_by(Book.title, Book.id).offset(offset).limit(limit)
    rows = (await session.execute(stmt)).all()
    if rows:
        return [r[0] for r in rows], int(rows[0][1])
    if offset == 0:
        return [], 0
    # Past the last page: still report the true total.
    count = select(func.count()).select_from(Book)
    if q:
        count = count.where(
            or_(Book.title.ilike(like_pattern(q)), Book.author.ilike(like_pattern(q)))
        )
    return [], int((await session.execute(count)).scalar_one())


async def get(session: AsyncSession, book_id: uuid.UUID) -> Book | None:
    return await session.get(Book, book_id)


async def get_many(session: AsyncSession, book_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, Book]:
    if not book_ids:
        return {}
    rows = await session.execute(select(Book).where(Book.id.in_(book_ids)))
    return {b.id: b for b in rows.scalars()}


async def insert_book(session: AsyncSession, values: dict[str, object]) -> Book | None:
    """Insert; None when the ISBN is already used."""
    stmt = (
        insert(Book)
        .values(id=uuid.uuid4(), **values)
        .on_conflict_do_nothing(index_elements=[Book.isbn])
        .returning(Book)
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def add_stock(session: AsyncSession, book_id: uuid.UUID, quantity: int) -> Book | None:
    stmt = (
        update(Book)
        .where(Book.id == book_id)
        .values(stock=Book.stock + quantity, updated_at=func.now())
        .returning(Book)
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def record_restock(
    session: AsyncSession,
    book_id: uuid.UUID,
    quantity: int,
    admin_id: uuid.UUID | None,
    key: str | None,
) -> Restock | None:
    """Record a restock; None if this admin used this Idempotency-Key before (then the
    first one is returned by `restock_by_key`)."""
    stmt = (
        insert(Restock)
        .values(
            id=uuid.uuid4(),
            book_id=book_id,
            quantity=quantity,
            admin_id=admin_id,
            idempotency_key=key,
        )
        .on_conflict_do_nothing(constraint="uq_restocks_admin_key")
        .returning(Restock)
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def restock_by_key(session: AsyncSession, admin_id: uuid.UUID, key: str) -> Restock | None:
    return (
        await session.execute(
            select(Restock).where(Restock.admin_id == admin_id, Restock.idempotency_key == key)
        )
    ).scalar_one_or_none()


async def units_held(session: AsyncSession, book_id: uuid.UUID) -> int:
    """Units of the book held by orders awaiting payment (PostgreSQL's view)."""
    value = (
        await session.execute(
            select(func.coalesce(func.sum(OrderItem.quantity), 0))
            .join(Order, Order.id == OrderItem.order_id)
            .where(OrderItem.book_id == book_id, Order.status == OrderStatus.PAYMENT_PENDING.value)
        )
    ).scalar_one()
    return int(value)
