"""All SQL of the payments domain.

Payments are read and written on the asyncpg pool (`Executor`: bookbazar/pg.py), in the
transaction that settles their order when there is one; the admin's review list uses the
SQLAlchemy session."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from bookbazar.models import Order, Payment, User
from bookbazar.payments.schemas import OPEN_PAYMENT, PAYMENT_SOURCES, PaymentStatus
from bookbazar.pg import Executor

_COLUMNS = tuple(column.key for column in Payment.__table__.columns)
_SELECT = "SELECT " + ", ".join(f"p.{c}" for c in _COLUMNS)


def _payment(row: Any) -> Payment:
    """A Payment built from a row (a plain value: no session attached)."""
    return Payment(**{c: row[c] for c in _COLUMNS})


async def payments_of_order(db: Executor, order_id: uuid.UUID) -> list[Payment]:
    rows = await db.fetch(f"{_SELECT} FROM payments p WHERE p.order_id = $1", order_id)
    return [_payment(r) for r in rows]


async def payment_by_id(db: Executor, payment_id: uuid.UUID) -> Payment | None:
    row = await db.fetchrow(f"{_SELECT} FROM payments p WHERE p.id = $1", payment_id)
    return None if row is None else _payment(row)


async def payment_by_intent(db: Executor, provider: str, intent_id: str) -> Payment | None:
    row = await db.fetchrow(
        f"{_SELECT} FROM payments p WHERE p.provider = $1 AND p.intent_id = $2",
        provider,
        intent_id,
    )
    return None if row is None else _payment(row)


async def insert_payment(
    db: Executor,
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
    row = await db.fetchrow(
        "INSERT INTO payments (id, order_id, provider, intent_id, client_secret, "
        "redirect_url, amount, currency, status, created_at, updated_at) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, now(), now()) "
        f"ON CONFLICT DO NOTHING RETURNING {', '.join(_COLUMNS)}",
        uuid.uuid4(),
        order_id,
        provider,
        intent_id,
        client_secret,
        redirect_url,
        amount,
        currency,
        PaymentStatus.CREATED.value,
    )
    if row is None:
        # Another initialisation inserted first (it may have committed after this
        # statement began, so it is read by a statement of its own).
        row = await db.fetchrow(
            f"{_SELECT} FROM payments p WHERE p.order_id = $1 AND p.provider = $2",
            order_id,
            provider,
        )
    assert row is not None, "the order's payment at this provider exists"
    return _payment(row)


@dataclass(frozen=True, slots=True)
class OrderToPay:
    status: str
    total: int
    currency: str


async def order_for_payment(
    db: Executor, order_id: uuid.UUID, user_id: uuid.UUID, provider: str
) -> tuple[OrderToPay, Payment | None] | None:
    """The caller's order and its payment at this provider (if any), in one query; None
    for an unknown order or another user's."""
    row = await db.fetchrow(
        f"SELECT o.status AS order_status, o.total AS order_total, "
        f"o.currency AS order_currency, {_SELECT[len('SELECT ') :]} "
        "FROM orders o LEFT JOIN payments p ON p.order_id = o.id AND p.provider = $3 "
        "WHERE o.id = $1 AND o.user_id = $2",
        order_id,
        user_id,
        provider,
    )
    if row is None:
        return None
    order = OrderToPay(str(row.order_status), int(row.order_total), str(row.order_currency))
    payment = None if row.intent_id is None else _payment(row)
    return order, payment


async def payment_for_event(
    db: Executor, event: tuple[str, str, str], intent_id: str
) -> tuple[Payment | None, bool]:
    """The payment an event is about, and whether the event was processed already: one
    query."""
    provider, event_id, _ = event
    row = await db.fetchrow(
        "SELECT EXISTS (SELECT 1 FROM processed_webhook_events "
        "WHERE provider = $1 AND event_id = $2) AS processed, "
        f"{_SELECT[len('SELECT ') :]} FROM (SELECT 1) AS one "
        "LEFT JOIN payments p ON p.provider = $1 AND p.intent_id = $3",
        provider,
        event_id,
        intent_id,
    )
    assert row is not None
    return (_payment(row) if row.id is not None else None), bool(row.processed)


async def set_payment_status(
    db: Executor,
    payment_id: uuid.UUID,
    target: PaymentStatus,
    *,
    refund_id: str | None = None,
    review_reason: str | None = None,
) -> bool:
    """Guarded: only from the statuses `target` may follow. True if it moved (or was
    already there)."""
    moved = await db.fetchval(
        "UPDATE payments SET status = $2, updated_at = now(), "
        "refund_id = coalesce($4, refund_id), review_reason = coalesce($5, review_reason) "
        "WHERE id = $1 AND status = ANY($3::text[]) RETURNING id",
        payment_id,
        target.value,
        [s.value for s in PAYMENT_SOURCES[target]],
        refund_id,
        None if review_reason is None else review_reason[:500],
    )
    if moved is not None:
        return True
    current = await db.fetchval("SELECT status FROM payments WHERE id = $1", payment_id)
    return bool(current == target.value)


async def save_refund_id(db: Executor, payment_id: uuid.UUID, refund_id: str) -> None:
    await db.execute(
        "UPDATE payments SET refund_id = $2, updated_at = now() "
        "WHERE id = $1 AND refund_id IS NULL",
        payment_id,
        refund_id,
    )


async def record_event(db: Executor, provider: str, event_id: str, event_type: str) -> bool:
    """Mark a provider event processed; False if it already was."""
    inserted = await db.fetchval(
        "INSERT INTO processed_webhook_events (provider, event_id, event_type, received_at) "
        "VALUES ($1, $2, $3, now()) ON CONFLICT DO NOTHING RETURNING event_id",
        provider,
        event_id,
        event_type,
    )
    return inserted is not None


async def payments_to_verify(
    db: Executor, *, created_before: datetime, limit: int
) -> list[uuid.UUID]:
    """Open intents of orders still awaiting payment, old enough that a webhook should
    have arrived."""
    rows = await db.fetch(
        "SELECT p.id FROM payments p JOIN orders o ON o.id = p.order_id "
        "WHERE o.status = 'PAYMENT_PENDING' AND p.status = ANY($1::text[]) "
        "AND p.created_at < $2 ORDER BY p.created_at LIMIT $3",
        [s.value for s in OPEN_PAYMENT],
        created_before,
        limit,
    )
    return [r.id for r in rows]


async def refunds_outstanding(
    db: Executor, *, updated_before: datetime, limit: int
) -> list[Payment]:
    """Payments waiting for their refund for a while (a lost or failing refund job)."""
    rows = await db.fetch(
        f"{_SELECT} FROM payments p WHERE p.status = $1 AND p.updated_at < $2 "
        "ORDER BY p.updated_at LIMIT $3",
        PaymentStatus.REFUND_PENDING.value,
        updated_before,
        limit,
    )
    return [_payment(r) for r in rows]


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
