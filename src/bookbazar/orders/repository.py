"""All SQL of the orders domain."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, insert, select, text
from sqlalchemy.dialects.postgresql import distinct_on
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from bookbazar.models import Book, IdempotencyRecord, Order, OrderItem, Payment


async def books_for_order(
    session: AsyncSession, book_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, tuple[str, int, str]]:
    rows = await session.execute(
        select(Book.id, Book.title, Book.price, Book.currency).where(Book.id.in_(book_ids))
    )
    return {r.id: (r.title, r.price, r.currency) for r in rows}


async def insert_pending_order(
    session: AsyncSession,
    *,
    order_id: uuid.UUID,
    user_id: uuid.UUID,
    key: str,
    total: int,
    currency: str,
    shipping_address: dict[str, Any] | None,
    items: list[dict[str, Any]],
    created_at: datetime,
) -> bool:
    """Insert the order as PENDING with its items; False if (user, key) already exists
    (the database constraint is the last idempotency guard)."""
    inserted = (
        await session.execute(
            pg_insert(Order)
            .values(
                id=order_id,
                user_id=user_id,
                status="PENDING",
                total=total,
                currency=currency,
                idempotency_key=key,
                shipping_address=shipping_address,
                created_at=created_at,
                updated_at=created_at,
            )
            .on_conflict_do_nothing(constraint="uq_orders_user_idempotency_key")
            .returning(Order.id)
        )
    ).scalar_one_or_none()
    if inserted is None:
        return False
    await session.execute(insert(OrderItem), [{"order_id": order_id, **item} for item in items])
    return True


async def order_by_key(session: AsyncSession, user_id: uuid.UUID, key: str) -> Order | None:
    return (
        await session.execute(
            select(Order).where(Order.user_id == user_id, Order.idempotency_key == key)
        )
    ).scalar_one_or_none()


async def idempotency_record(
    session: AsyncSession, user_id: uuid.UUID, key: str
) -> IdempotencyRecord | None:
    return await session.get(IdempotencyRecord, (user_id, key))


async def save_idempotency_record(
    session: AsyncSession,
    *,
    user_id: uuid.UUID,
    key: str,
    fingerprint: str,
    status: int,
    body: dict[str, Any],
    expires_at: datetime,
) -> None:
    await session.execute(
        pg_insert(IdempotencyRecord)
        .values(
            user_id=user_id,
            key=key,
            request_hash=fingerprint,
            response_status=status,
            response_body=body,
            expires_at=expires_at,
        )
        .on_conflict_do_nothing()
    )


async def delete_expired_idempotency_records(session: AsyncSession, now: datetime) -> int:
    result = await session.execute(
        delete(IdempotencyRecord).where(IdempotencyRecord.expires_at < now)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


async def get_order(
    session: AsyncSession, order_id: uuid.UUID, user_id: uuid.UUID | None = None
) -> Order | None:
    stmt = select(Order).where(Order.id == order_id)
    if user_id is not None:
        stmt = stmt.where(Order.user_id == user_id)
    return (await session.execute(stmt)).scalar_one_or_none()


async def items_of(
    session: AsyncSession, order_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, list[OrderItem]]:
    out: dict[uuid.UUID, list[OrderItem]] = {oid: [] for oid in order_ids}
    if not order_ids:
        return out
    rows = await session.execute(
        select(OrderItem).where(OrderItem.order_id.in_(order_ids)).order_by(OrderItem.id)
    )
    for item in rows.scalars():
        out[item.order_id].append(item)
    return out


async def latest_payments(
    session: AsyncSession, order_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, Payment]:
    if not order_ids:
        return {}
    rows = await session.execute(
        select(Payment)
        .where(Payment.order_id.in_(order_ids))
        .order_by(Payment.order_id, Payment.created_at.desc())
        .ext(distinct_on(Payment.order_id))
    )
    return {p.order_id: p for p in rows.scalars()}


async def list_orders(
    session: AsyncSession, user_id: uuid.UUID, *, offset: int, limit: int
) -> tuple[list[Order], int]:
    rows = (
        await session.execute(
            select(Order, func.count().over().label("total"))
            .where(Order.user_id == user_id)
            .order_by(Order.created_at.desc(), Order.id.desc())
            .offset(offset)
            .limit(limit)
        )
    ).all()
    if rows:
        return [r[0] for r in rows], int(rows[0][1])
    total = (
        await session.execute(select(func.count()).where(Order.user_id == user_id))
    ).scalar_one()
    return [], int(total)


async def stale_orders(
    session: AsyncSession, *, pending_before: datetime, expired_before: datetime, limit: int
) -> list[tuple[uuid.UUID, str]]:
    """PENDING orders older than the grace period and PAYMENT_PENDING orders past expiry."""
    rows = await session.execute(
        text(
            "SELECT id, status FROM orders WHERE "
            "(status = 'PENDING' AND created_at < :pending_before) OR "
            "(status = 'PAYMENT_PENDING' AND expires_at < :expired_before) "
            "ORDER BY created_at LIMIT :limit"
        ),
        {"pending_before": pending_before, "expired_before": expired_before, "limit": limit},
    )
    return [(r.id, r.status) for r in rows]


async def statuses(session: AsyncSession, order_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, str]:
    if not order_ids:
        return {}
    rows = await session.execute(select(Order.id, Order.status).where(Order.id.in_(order_ids)))
    return {r.id: r.status for r in rows}


async def counts_by_status(session: AsyncSession) -> dict[str, int]:
    rows = await session.execute(select(Order.status, func.count()).group_by(Order.status))
    return {str(row[0]): int(row[1]) for row in rows}
