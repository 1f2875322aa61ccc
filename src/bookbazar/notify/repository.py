"""All SQL of the notifications domain."""

from __future__ import annotations

import enum
import uuid
from datetime import timedelta

from sqlalchemy import delete, func, select, update
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


class Claim(enum.Enum):
    TAKEN = "taken"  # this run may send
    HELD = "held"  # another run claimed it and its lease has not run out
    SENT = "sent"  # it was sent


async def claim(
    session: AsyncSession, event_id: uuid.UUID, kind: str, to: str, lease_seconds: int
) -> Claim:
    """Claim the right to send this notification: a new claim, or one whose sender died
    (unsent, its lease run out) taken over."""
    inserted = (
        await session.execute(
            pg_insert(SentNotification)
            .values(event_id=event_id, kind=kind, recipient=to)
            .on_conflict_do_nothing()
            .returning(SentNotification.event_id)
        )
    ).scalar_one_or_none()
    if inserted is not None:
        return Claim.TAKEN
    taken_over = (
        await session.execute(
            update(SentNotification)
            .where(
                SentNotification.event_id == event_id,
                SentNotification.kind == kind,
                SentNotification.sent_at.is_(None),
                SentNotification.claimed_at < func.now() - timedelta(seconds=lease_seconds),
            )
            .values(claimed_at=func.now(), recipient=to)
            .returning(SentNotification.event_id)
        )
    ).scalar_one_or_none()
    if taken_over is not None:
        return Claim.TAKEN
    sent_at = (
        await session.execute(
            select(SentNotification.sent_at).where(
                SentNotification.event_id == event_id, SentNotification.kind == kind
            )
        )
    ).scalar_one_or_none()
    return Claim.SENT if sent_at is not None else Claim.HELD


async def mark_sent(session: AsyncSession, event_id: uuid.UUID, kind: str) -> None:
    await session.execute(
        update(SentNotification)
        .where(SentNotification.event_id == event_id, SentNotification.kind == kind)
        .values(sent_at=func.now())
    )


async def release(session: AsyncSession, event_id: uuid.UUID, kind: str) -> None:
    """Give up an unsent claim (the send failed), so the retry may claim it at once."""
    await session.execute(
        delete(SentNotification).where(
            SentNotification.event_id == event_id,
            SentNotification.kind == kind,
            SentNotification.sent_at.is_(None),
        )
    )
