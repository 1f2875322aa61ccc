"""All SQL of the orders domain.

The statements of the order flow (placement, settlement, expiry, cancel) run on the
asyncpg pool (`Executor`: bookbazar/pg.py); reads for pages and rare repairs use the
SQLAlchemy session."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.dialects.postgresql import distinct_on
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from bookbazar.models import IdempotencyRecord, Order, OrderItem, OrderStatus, Payment
from bookbazar.pg import Executor


@dataclass(frozen=True, slots=True)
class NewOrder:
    """An order as placement inserts it: awaiting payment, its hold already made."""

    order_id: uuid.UUID
    user_id: uuid.UUID
    key: str
    total: int
    currency: str
    shipping_address: dict[str, Any] | None
    expires_at: datetime
    created_at: datetime
    hold_token: str
    cart_version: int
    # (book id, title, unit price, quantity) in cart order
    items: list[tuple[uuid.UUID, str, int, int]]
    event_id: uuid.UUID
    event: dict[str, Any]
    # The idempotent answer for (user, key): fingerprint, body, kept until
    request_hash: str
    response: dict[str, Any]  # the placement kept for replay (its data, not an HTTP body)
    answer_expires_at: datetime


_INSERT_PLACED = """
WITH new_order AS (
  INSERT INTO orders (id, user_id, status, total, currency, idempotency_key,
                      shipping_address, expires_at, hold_token, cart_version,
                      created_at, updated_at)
  VALUES ($1, $2, 'PAYMENT_PENDING', $3, $4, $5, $6::jsonb, $7, $8, $9, $10, $10)
  ON CONFLICT ON CONSTRAINT uq_orders_user_idempotency_key DO NOTHING
  RETURNING id
), items AS (
  INSERT INTO order_items (order_id, book_id, title, price, quantity)
  SELECT new_order.id, l.book_id, l.title, l.price, l.quantity
  FROM new_order,
       unnest($11::uuid[], $12::text[], $13::bigint[], $14::integer[])
         WITH ORDINALITY AS l(book_id, title, price, quantity, n)
  ORDER BY l.n
), event AS (
  INSERT INTO outbox_events (id, type, order_id, user_id, payload, attempts,
                             next_attempt_at, created_at)
  SELECT $15, 'order.created', new_order.id, $2, $16::jsonb, 0, $10, $10
  FROM new_order
), answer AS (
  INSERT INTO idempotency_records (user_id, key, request_hash, response_status,
                                   response_body, created_at, expires_at)
  SELECT $2, $5, $17, 201, $18::jsonb, $10, $19
  FROM new_order
  ON CONFLICT DO NOTHING
)
SELECT id FROM new_order
"""


async def insert_placed_order(db: Executor, order: NewOrder) -> bool:
    """Insert the order awaiting payment with its items, its `order.created` outbox
    event and its idempotent answer: one statement, so it is atomic on its own and costs
    one round trip. False if (user, key) was used already (the database's unique
    constraint is the last idempotency guard); then nothing was written."""
    inserted = await db.fetchval(
        _INSERT_PLACED,
        order.order_id,
        order.user_id,
        order.total,
        order.currency,
        order.key,
        order.shipping_address,
        order.expires_at,
        order.hold_token,
        order.cart_version,
        order.created_at,
        [i[0] for i in order.items],
        [i[1] for i in order.items],
        [i[2] for i in order.items],
        [i[3] for i in order.items],
        order.event_id,
        order.event,
        order.request_hash,
        order.response,
        order.answer_expires_at,
    )
    return inserted is not None


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
) -> bool:
    """Keep the answer for (user, key); False if the key has an answer already."""
    saved = (
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
            .returning(IdempotencyRecord.key)
        )
    ).scalar_one_or_none()
    return saved is not None


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


async def abandoned_pending(
    session: AsyncSession, *, before: datetime, limit: int
) -> list[uuid.UUID]:
    """PENDING orders older than `before` (left by a placement of an earlier release,
    which inserted the order before reserving, and died in between)."""
    rows = await session.execute(
        select(Order.id)
        .where(Order.status == OrderStatus.PENDING.value, Order.created_at < before)
        .order_by(Order.created_at)
        .limit(limit)
    )
    return list(rows.scalars())


async def counts_by_status(session: AsyncSession) -> dict[str, int]:
    rows = await session.execute(select(Order.status, func.count()).group_by(Order.status))
    return {str(row[0]): int(row[1]) for row in rows}


# ---------------------------------------------------------------- ending orders


@dataclass(frozen=True, slots=True)
class DueOrder:
    order_id: uuid.UUID
    user_id: uuid.UUID
    total: int
    currency: str
    hold_token: str
    expires_at: datetime


async def claim_due(db: Executor, now: datetime, limit: int) -> list[DueOrder]:
    """Move up to `limit` orders awaiting payment whose deadline passed to EXPIRED, in the
    caller's transaction. Rows another transaction holds (a payment being settled) are
    skipped: the next run sees how that ended."""
    rows = await db.fetch(
        "WITH due AS (SELECT id FROM orders WHERE status = 'PAYMENT_PENDING' "
        "AND expires_at <= $1 ORDER BY expires_at LIMIT $2 FOR UPDATE SKIP LOCKED) "
        "UPDATE orders o SET status = 'EXPIRED', updated_at = now() FROM due "
        "WHERE o.id = due.id "
        "RETURNING o.id, o.user_id, o.total, o.currency, o.hold_token, o.expires_at",
        now,
        limit,
    )
    return [
        DueOrder(r.id, r.user_id, int(r.total), str(r.currency), str(r.hold_token), r.expires_at)
        for r in rows
    ]


@dataclass(frozen=True, slots=True)
class LockedOrder:
    id: uuid.UUID
    user_id: uuid.UUID
    status: str
    total: int
    currency: str
    hold_token: str
    expires_at: datetime | None
    # The payment the order was sold with (provider, intent id), once it was.
    paid_with: tuple[str, str] | None = None


async def lock_order(db: Executor, order_id: uuid.UUID) -> LockedOrder | None:
    """The order's row, locked FOR UPDATE until the caller's transaction ends: every path
    that decides what happens to an order's stock holds this lock (or updates the row)."""
    row = await db.fetchrow(
        "SELECT id, user_id, status, total, currency, hold_token, expires_at, "
        "payment_provider, payment_intent_id FROM orders WHERE id = $1 FOR UPDATE",
        order_id,
    )
    if row is None:
        return None
    return LockedOrder(
        row.id,
        row.user_id,
        str(row.status),
        int(row.total),
        str(row.currency),
        row.hold_token,
        row.expires_at,
        (row.payment_provider, row.payment_intent_id)
        if row.payment_provider and row.payment_intent_id
        else None,
    )


async def lock_books_of(db: Executor, order_id: uuid.UUID) -> None:
    """Lock the order's books FOR UPDATE in id order (no deadlock with reconcile's FOR
    SHARE, which takes them in the same order)."""
    await db.execute(
        "SELECT b.id FROM books b WHERE b.id IN "
        "(SELECT book_id FROM order_items WHERE order_id = $1) ORDER BY b.id FOR UPDATE",
        order_id,
    )


async def decrement_on_hand(db: Executor, order_id: uuid.UUID) -> None:
    """Sold units leave the shelf; the CHECK (stock >= 0) is the last guard."""
    await db.execute(
        "UPDATE books b SET stock = b.stock - t.units, updated_at = now() FROM "
        "(SELECT book_id, SUM(quantity) AS units FROM order_items WHERE order_id = $1 "
        "GROUP BY book_id) t WHERE b.id = t.book_id",
        order_id,
    )


async def lines_of(db: Executor, order_id: uuid.UUID) -> list[tuple[uuid.UUID, int]]:
    rows = await db.fetch(
        "SELECT book_id, quantity FROM order_items WHERE order_id = $1 ORDER BY id", order_id
    )
    return [(r.book_id, int(r.quantity)) for r in rows]


async def status_of(
    db: Executor, order_id: uuid.UUID, user_id: uuid.UUID | None = None
) -> str | None:
    """The order's status (None for an unknown order, or another user's when `user_id`
    is given)."""
    status = await db.fetchval(
        "SELECT status FROM orders WHERE id = $1 AND ($2::uuid IS NULL OR user_id = $2)",
        order_id,
        user_id,
    )
    return None if status is None else str(status)


async def refundable_through(db: Executor, order_id: uuid.UUID) -> tuple[str, str] | None:
    """The payment (provider, intent id) a REFUND_PENDING or REFUNDED order is being
    refunded through, else None."""
    row = await db.fetchrow(
        "SELECT payment_provider, payment_intent_id FROM orders WHERE id = $1 "
        "AND status IN ('REFUND_PENDING', 'REFUNDED')",
        order_id,
    )
    if row is None or row.payment_provider is None or row.payment_intent_id is None:
        return None
    return str(row.payment_provider), str(row.payment_intent_id)


async def flag_for_review(db: Executor, order_id: uuid.UUID, reason: str) -> None:
    await db.execute("UPDATE orders SET review_reason = $2 WHERE id = $1", order_id, reason[:500])


async def extend_deadline(
    db: Executor, order_id: uuid.UUID, *, target: datetime, cap_seconds: int
) -> datetime | None:
    """Move an order's deadline to `target`, but never past `created_at + cap_seconds`,
    if it is awaiting payment. Returns the deadline it has now, or None if the order is not
    awaiting payment. One statement."""
    row = await db.fetchrow(
        "WITH moved AS (UPDATE orders SET expires_at = least($2, created_at + $3::interval) "
        "WHERE id = $1 AND status = 'PAYMENT_PENDING' "
        "AND expires_at < least($2, created_at + $3::interval) RETURNING expires_at) "
        "SELECT (SELECT expires_at FROM moved) AS moved, o.status, o.expires_at "
        "FROM orders o WHERE o.id = $1",
        order_id,
        target,
        timedelta(seconds=cap_seconds),
    )
    if row is None:
        return None
    if row.moved is not None:
        deadline: datetime = row.moved
        return deadline
    if row.status != OrderStatus.PAYMENT_PENDING.value:
        return None
    current: datetime = row.expires_at
    return current
