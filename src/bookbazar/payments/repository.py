"""All SQL of the payments domain."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, literal, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from bookbazar.models import Order, OrderStatus, Payment, ProcessedWebhookEvent, User
from bookbazar.payments.schemas import OPEN_PAYMENT, PAYMENT_SOURCES, PaymentStatus


async def order_status(session: AsyncSession, order_id: uuid.UUID) -> str | None:
    value = (
        await session.execute(select(Order.status).where(Order.id == order_id))
    ).scalar_one_or_none()
    return None if value is None else str(value)


async def payment_for_order(
    session: AsyncSession, order_id: uuid.UUID, provider: str
) -> Payment | None:
    return (
        await session.execute(
            select(Payment).where(Payment.order_id == order_id, Payment.provider == provider)
        )
    ).scalar_one_or_none()


async def payments_of_order(session: AsyncSession, order_id: uuid.UUID) -> list[Payment]:
    rows = await session.execute(select(Payment).where(Payment.order_id == order_id))
    return list(rows.scalars())


async def payment_by_id(session: AsyncSession, payment_id: uuid.UUID) -> Payment | None:
    return await session.get(Payment, payment_id)


async def payment_by_intent(session: AsyncSession, provider: str, intent_id: str) -> Payment | None:
    return (
        await session.execute(
            select(Payment).where(Payment.provider == provider, Payment.intent_id == intent_id)
        )
    ).scalar_one_or_none()


async def insert_payment(
    conn: AsyncConnection | AsyncSession,
    *,
    order_id: uuid.UUID,
    provider: str,
    intent_id: str,
    client_secret: str | None,
    redirect_url: str | None,
    amount: int,
    currency: str,
) -> Payment:
    """Insert the intent unless the order already has one at this provider (the unique
    constraints make concurrent initialisations converge on the first row); returns the
    order's payment at this provider."""
    inserted = (
        await conn.execute(
            pg_insert(Payment)
            .values(
                id=uuid.uuid4(),
                order_id=order_id,
                provider=provider,
                intent_id=intent_id,
                client_secret=client_secret,
                redirect_url=redirect_url,
                amount=amount,
                currency=currency,
                status=PaymentStatus.CREATED.value,
            )
            .on_conflict_do_nothing()
            .returning(*Payment.__table__.columns)
        )
    ).one_or_none()
    if inserted is None:
        inserted = (
            await conn.execute(
                select(*Payment.__table__.columns).where(
                    Payment.order_id == order_id, Payment.provider == provider
                )
            )
        ).one()
    return _payment(inserted)


def _payment(row: Any) -> Payment:
    """A Payment built from a Core row (no session attached)."""
    return Payment(**{column.key: getattr(row, column.key) for column in Payment.__table__.columns})


@dataclass(frozen=True, slots=True)
class OrderToPay:
    status: str
    total: int
    currency: str


async def order_for_payment(
    conn: AsyncConnection, order_id: uuid.UUID, user_id: uuid.UUID, provider: str
) -> tuple[OrderToPay, Payment | None] | None:
    """The caller's order and its payment at this provider (if any), in one query; None
    for an unknown order or another user's."""
    row = (
        await conn.execute(
            select(Order.status, Order.total, Order.currency, *Payment.__table__.columns)
            .select_from(Order)
            .outerjoin(Payment, (Payment.order_id == Order.id) & (Payment.provider == provider))
            .where(Order.id == order_id, Order.user_id == user_id)
        )
    ).one_or_none()
    if row is None:
        return None
    order = OrderToPay(str(row.status), int(row.total), str(row.currency))
    payment = None if row.intent_id is None else _payment(row)
    return order, payment


async def payment_for_event(
    conn: AsyncConnection, event: tuple[str, str, str], intent_id: str
) -> tuple[Payment | None, bool]:
    """The payment an event is about, and whether the event was processed already: one
    query."""
    provider, event_id, _ = event
    processed = (
        select(ProcessedWebhookEvent.event_id)
        .where(
            ProcessedWebhookEvent.provider == provider,
            ProcessedWebhookEvent.event_id == event_id,
        )
        .exists()
    )
    one = select(literal(1).label("one")).subquery()
    row = (
        await conn.execute(
            select(processed.label("processed"), *Payment.__table__.columns).select_from(
                one.outerjoin(
                    Payment, (Payment.provider == provider) & (Payment.intent_id == intent_id)
                )
            )
        )
    ).first()
    assert row is not None
    return (_payment(row) if row.id is not None else None), bool(row.processed)


async def set_payment_status(
    session: AsyncSession,
    payment_id: uuid.UUID,
    target: PaymentStatus,
    *,
    refund_id: str | None = None,
    review_reason: str | None = None,
) -> bool:
    """Guarded: only from the statuses `target` may follow. True if it moved (or was
    already there)."""
    values: dict[str, object] = {"status": target.value, "updated_at": func.now()}
    if refund_id is not None:
        values["refund_id"] = refund_id
    if review_reason is not None:
        values["review_reason"] = review_reason[:500]
    sources = [s.value for s in PAYMENT_SOURCES[target]]
    moved = (
        await session.execute(
            update(Payment)
            .where(Payment.id == payment_id, Payment.status.in_(sources))
            .values(**values)
            .returning(Payment.id)
        )
    ).scalar_one_or_none()
    if moved is not None:
        return True
    current = (
        await session.execute(select(Payment.status).where(Payment.id == payment_id))
    ).scalar_one_or_none()
    return current == target.value


async def save_refund_id(session: AsyncSession, payment_id: uuid.UUID, refund_id: str) -> None:
    await session.execute(
        update(Payment)
        .where(Payment.id == payment_id, Payment.refund_id.is_(None))
        .values(refund_id=refund_id, updated_at=func.now())
    )


async def event_processed(session: AsyncSession, provider: str, event_id: str) -> bool:
    found = await session.get(ProcessedWebhookEvent, (provider, event_id))
    return found is not None


async def record_event(
    session: AsyncConnection | AsyncSession, provider: str, event_id: str, event_type: str
) -> bool:
    """Mark a provider event processed; False if it already was."""
    inserted = (
        await session.execute(
            pg_insert(ProcessedWebhookEvent)
            .values(provider=provider, event_id=event_id, event_type=event_type)
            .on_conflict_do_nothing()
            .returning(ProcessedWebhookEvent.event_id)
        )
    ).scalar_one_or_none()
    return inserted is not None


async def payments_to_verify(
    session: AsyncSession, *, created_before: datetime, limit: int
) -> list[uuid.UUID]:
    """Open intents of orders still awaiting payment, old enough that a webhook should
    have arrived."""
    rows = await session.execute(
        select(Payment.id)
        .join(Order, Order.id == Payment.order_id)
        .where(
            Order.status == OrderStatus.PAYMENT_PENDING.value,
            Payment.status.in_([s.value for s in OPEN_PAYMENT]),
            Payment.created_at < created_before,
        )
        .order_by(Payment.created_at)
        .limit(limit)
    )
    return list(rows.scalars())


async def refunds_outstanding(
    session: AsyncSession, *, updated_before: datetime, limit: int
) -> list[uuid.UUID]:
    """Payments waiting for their refund for a while (a lost or failing refund job)."""
    rows = await session.execute(
        select(Payment.id)
        .where(
            Payment.status == PaymentStatus.REFUND_PENDING.value,
            Payment.updated_at < updated_before,
        )
        .order_by(Payment.updated_at)
        .limit(limit)
    )
    return list(rows.scalars())


async def payments_for_review(
    session: AsyncSession, *, offset: int, limit: int
) -> tuple[list[tuple[Payment, str]], int]:
    """Payments whose money is (being) given back, newest first, with the buyer's email."""
    statuses = [
        PaymentStatus.MISMATCH.value,
        PaymentStatus.REFUND_PENDING.value,
        PaymentStatus.REFUNDED.value,
    ]
    rows = (
        await session.execute(
            select(Payment, User.email, func.count().over().label("total"))
            .join(Order, Order.id == Payment.order_id)
            .join(User, User.id == Order.user_id)
            .where(Payment.status.in_(statuses))
            .order_by(Payment.updated_at.desc(), Payment.id)
            .offset(offset)
            .limit(limit)
        )
    ).all()
    total = int(rows[0].total) if rows else 0
    if not rows and offset:
        total = int(
            (
                await session.execute(
                    select(func.count()).select_from(Payment).where(Payment.status.in_(statuses))
                )
            ).scalar_one()
        )
    return [(r[0], str(r[1])) for r in rows], total
