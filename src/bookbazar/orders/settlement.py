"""Payment outcomes applied to orders: the only code that turns a reservation into a sale.

A succeeded payment marks the order PAID in one transaction with the on-hand stock
decrement and the outbox event; the Redis reservation is converted after the commit (a
crash in between is repaired by the sweeper). A payment that arrives after the
reservation ended re-reserves if stock allows, else the order goes to REFUND_PENDING.
"""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog
from sqlalchemy import select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from bookbazar.kit import faults
from bookbazar.kit.clock import iso, utcnow
from bookbazar.models import Order, OrderItem
from bookbazar.models import OrderStatus as S
from bookbazar.orders.service import release_and_announce, schedule_expiry
from bookbazar.orders.state import SOLD, transition
from bookbazar.outbox.store import add_order_event
from bookbazar.services import Services

log = structlog.get_logger(__name__)


class Settled(enum.StrEnum):
    PAID = "paid"  # this call marked the order PAID
    ALREADY_PAID = "already_paid"  # it was paid (or further along) already
    REFUND = "refund"  # paid too late and no stock: REFUND_PENDING, refund it
    MISMATCH = "mismatch"  # amount/currency differ: not paid, flagged for review
    UNKNOWN = "unknown"  # no such order


@dataclass(frozen=True, slots=True)
class Settlement:
    outcome: Settled
    status: str | None


async def _decrement_on_hand(session: AsyncSession, order_id: uuid.UUID) -> None:
    """Sold units leave the shelf. Rows are locked in id order (no deadlocks with
    reconcile's FOR SHARE); the CHECK (stock >= 0) is the last guard against overselling."""
    await session.execute(
        text(
            "SELECT b.id FROM books b JOIN order_items oi ON oi.book_id = b.id "
            "WHERE oi.order_id = :o ORDER BY b.id FOR UPDATE OF b"
        ),
        {"o": order_id},
    )
    await session.execute(
        text(
            "UPDATE books b SET stock = b.stock - t.units, updated_at = now() FROM "
            "(SELECT book_id, SUM(quantity) AS units FROM order_items WHERE order_id = :o "
            "GROUP BY book_id) t WHERE b.id = t.book_id"
        ),
        {"o": order_id},
    )


async def _lines(session: AsyncSession, order_id: uuid.UUID) -> list[tuple[uuid.UUID, int]]:
    rows = await session.execute(
        select(OrderItem.book_id, OrderItem.quantity).where(OrderItem.order_id == order_id)
    )
    return [(r.book_id, r.quantity) for r in rows]


async def settle_payment(
    services: Services,
    order_id: uuid.UUID,
    *,
    amount: int,
    currency: str,
    provider: str,
    intent_id: str,
) -> Settlement:
    """Apply a succeeded payment. Idempotent: a second call reports ALREADY_PAID (or the
    same REFUND/MISMATCH outcome without repeating effects). Never oversells: a late
    payment only becomes a sale if the units can be reserved again."""
    async with services.sessionmaker() as session, session.begin():
        order = (
            await session.execute(select(Order).where(Order.id == order_id))
        ).scalar_one_or_none()
        if order is None:
            return Settlement(Settled.UNKNOWN, None)
        status = S(order.status)
        if status in SOLD:
            return Settlement(Settled.ALREADY_PAID, status.value)
        if status in (S.REFUND_PENDING, S.REFUNDED):
            return Settlement(Settled.REFUND, status.value)
        if amount != order.total or currency.upper() != order.currency:
            reason = (
                f"payment {intent_id} via {provider} was {amount} {currency.upper()}, "
                f"order total is {order.total} {order.currency}"
            )
            await session.execute(
                update(Order).where(Order.id == order_id).values(review_reason=reason[:500])
            )
            log.error("payment_mismatch", order_id=str(order_id), reason=reason)
            return Settlement(Settled.MISMATCH, status.value)
        paid_now = status == S.PAYMENT_PENDING and await _mark_paid(
            session, order_id, S.PAYMENT_PENDING, provider, intent_id
        )
    if paid_now:
        faults.crash_point("payment:after-paid-commit")
        await services.inventory.convert(order_id)
        log.info("order_paid", order_id=str(order_id), provider=provider)
        return Settlement(Settled.PAID, S.PAID.value)
    # The reservation ended first (expiry or cancel won the race), or it never existed.
    return await _settle_late(services, order_id, provider, intent_id)


async def _status(session: AsyncSession, order_id: uuid.UUID) -> str:
    value = (await session.execute(select(Order.status).where(Order.id == order_id))).scalar_one()
    return str(value)


async def _mark_paid(
    session: AsyncSession, order_id: uuid.UUID, source: S, provider: str, intent_id: str
) -> bool:
    moved = await transition(
        session,
        order_id,
        S.PAID,
        from_=frozenset({source}),
        values={"paid_at": utcnow(), "payment_provider": provider, "payment_intent_id": intent_id},
        event_data={"provider": provider, "paymentIntentId": intent_id},
    )
    if moved.applied:
        await _decrement_on_hand(session, order_id)
    return moved.applied


async def _settle_late(
    services: Services, order_id: uuid.UUID, provider: str, intent_id: str
) -> Settlement:
    """The order EXPIRED or was CANCELLED before the payment arrived."""
    async with services.sessionmaker() as session:
        lines = await _lines(session, order_id)
        status = S(await _status(session, order_id))
    if status in SOLD:
        return Settlement(Settled.ALREADY_PAID, status.value)
    if status not in (S.EXPIRED, S.CANCELLED):
        return Settlement(Settled.REFUND, status.value)
    outcome = await services.inventory.reserve(order_id, lines, after_release=True)
    async with services.sessionmaker() as session, session.begin():
        if outcome.reserved and await _mark_paid(session, order_id, status, provider, intent_id):
            paid = True
        else:
            paid = False
            await transition(
                session,
                order_id,
                S.REFUND_PENDING,
                from_=frozenset({status}),
                values={"payment_provider": provider, "payment_intent_id": intent_id},
            )
    if paid:
        await services.inventory.convert(order_id)
        if outcome.available:
            await services.emitter.emit_stock(outcome.available)
        log.info("late_payment_sold", order_id=str(order_id), was=status.value)
        return Settlement(Settled.PAID, S.PAID.value)
    if outcome.reserved:
        # Reserved but the order moved on meanwhile: give the units back.
        await release_and_announce(services, order_id)
    final = await _current(services, order_id)
    log.warning("late_payment_refund", order_id=str(order_id), status=final)
    if final in {s.value for s in SOLD}:
        return Settlement(Settled.ALREADY_PAID, final)
    return Settlement(Settled.REFUND, final)


async def _current(services: Services, order_id: uuid.UUID) -> str:
    async with services.sessionmaker() as session:
        return await _status(session, order_id)


async def record_payment_failure(services: Services, order_id: uuid.UUID, reason: str) -> bool:
    """A declined payment: the order stays PAYMENT_PENDING (the buyer may pay again until
    the reservation lapses); emits order.payment_failed. Returns False if the order is not
    awaiting payment (nothing to report)."""
    async with services.sessionmaker() as session, session.begin():
        order = (
            await session.execute(select(Order).where(Order.id == order_id).with_for_update())
        ).scalar_one_or_none()
        if order is None or order.status != S.PAYMENT_PENDING.value:
            return False
        await add_order_event(
            session,
            "order.payment_failed",
            order_id=order.id,
            user_id=order.user_id,
            status=order.status,
            total=order.total,
            currency=order.currency,
            data={"reason": reason[:300], "expiresAt": iso(order.expires_at)},
        )
    return True


async def mark_refunded(services: Services, order_id: uuid.UUID, refund_id: str) -> bool:
    """REFUND_PENDING -> REFUNDED with order.refunded. Idempotent (True if refunded)."""
    async with services.sessionmaker() as session, session.begin():
        moved = await transition(
            session,
            order_id,
            S.REFUNDED,
            from_=frozenset({S.REFUND_PENDING}),
            event_data={"refundId": refund_id},
        )
    return moved.ok


async def extend_reservation(
    services: Services, order_id: uuid.UUID, *, min_window_seconds: int
) -> datetime | None:
    """Make sure an order awaiting payment has at least `min_window_seconds` left (the
    buyer is about to pay); schedules the matching expiry job. Returns the deadline, or
    None if the order is not awaiting payment."""
    target = utcnow() + timedelta(seconds=min_window_seconds)
    async with services.sessionmaker() as session, session.begin():
        row = (
            await session.execute(
                update(Order)
                .where(
                    Order.id == order_id,
                    Order.status == S.PAYMENT_PENDING.value,
                    Order.expires_at < target,
                )
                .values(expires_at=target)
                .returning(Order.expires_at)
            )
        ).scalar_one_or_none()
        if row is None:
            current = (
                await session.execute(
                    select(Order.status, Order.expires_at).where(Order.id == order_id)
                )
            ).one_or_none()
            if current is None or current.status != S.PAYMENT_PENDING.value:
                return None
            deadline: datetime = current.expires_at
            return deadline
    await schedule_expiry(services, order_id, row)
    log.info("reservation_extended", order_id=str(order_id), until=iso(row))
    return row
