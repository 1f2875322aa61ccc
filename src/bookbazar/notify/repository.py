"""All SQL of the notifications domain."""

from __future__ import annotations

import uuid

from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from bookbazar.models import OrderItem, SentNotification, User


async def recipient(session: AsyncSession, user_id: uuid.UUID) -> tuple[str, str] | None:
    row = (
        await session.execute(select(User.email, User.name).where(User.id == user_id))
    ).one_or_none()
    return None if row is None else (str(row.email), str(row.name))


async def order_lines(session: AsyncSession, order_id: uuid.UUID) -> list[tuple[str, int, int]]:
    """(title, quantity, line total) per order line."""
    rows = await session.execute(
        select(OrderItem.title, OrderItem.quantity, OrderItem.price)
        .where(OrderItem.order_id == order_id)
        .order_by(OrderItem.id)
    )
    return [(str(r.title), int(r.quantity), int(r.price) * int(r.quantity)) for r in rows]


async def claim(session: AsyncSession, event_id: uuid.UUID, kind: str, to: str) -> bool:
    """Claim the right to send this notification; False if it was claimed before."""
    inserted = (
        await session.execute(
            pg_insert(SentNotification)
            .values(event_id=event_id, kind=kind, recipient=to)
            .on_conflict_do_nothing()
            .returning(SentNotification.event_id)
        )
    ).scalar_one_or_none()
    return inserted is not None


async def release(session: AsyncSession, event_id: uuid.UUID, kind: str) -> None:
    await session.execute(
        delete(SentNotification).where(
            SentNotification.event_id == event_id, SentNotification.kind == kind
        )
    )
