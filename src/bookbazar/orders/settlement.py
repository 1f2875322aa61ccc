"""Payment outcomes applied to orders: the only code that turns a hold into a sale.

A sale is decided under the order's row lock (FOR UPDATE) and its books' row locks: the
hold the order owns is converted in Redis, and only if that conversion succeeded is the
order marked PAID, its on-hand stock decremented and `order.paid` written, in the same
transaction. So exactly one path decides what happens to a hold: an expiry or a cancel
(which update the same row) commits first and the sale sees it, or the sale commits
first and they find the order PAID. If the process dies between the conversion and the
commit, the hold is converted but nothing sold: the retried webhook converts it again
(idempotent for its token), or the audit brings it back while the order awaits payment.

A payment that arrives after the order EXPIRED or was CANCELLED makes a new hold under a
fresh token (never the old one, which its ending path may be releasing right now), then
sells with it the same way; without stock the order goes to REFUND_PENDING.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog

from bookbazar.inventory.service import Hold, ReserveResult, new_token
from bookbazar.kit import faults
from bookbazar.kit.clock import iso, utcnow
from bookbazar.models import OrderStatus as S
from bookbazar.orders import repository as repo
from bookbazar.orders.state import SOLD, transition
from bookbazar.outbox.store import add_order_event
from bookbazar.pg import Executor
from bookbazar.services import Services

log = structlog.get_logger(__name__)
ENDED = frozenset({S.EXPIRED, S.CANCELLED})
# A late payment's new hold may be taken by the orphan repair if it waits too long; one
# more try with a fresh hold is then made before refunding.
_LATE_ATTEMPTS = 2
# No units for a late payment: maybe another delivery of the same payment holds them right
# now (it sells them in a moment). Look again this often before refunding.
_SHORT_RETRIES = 3
_SHORT_PAUSE_SECONDS = 0.25


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
    # The payment the order was sold with (provider, intent id), when it is sold.
    paid_with: tuple[str, str] | None = None


# Called inside the transaction that decides a settlement, before it commits (the
# webhook records its event as processed and sets its payment's status there, so the
# decision, its effects and the record commit together). It may raise to undo them all.
OnDecided = Callable[[Executor, Settlement], Awaitable[None]]


async def _decided(
    conn: Executor, on_decided: OnDecided | None, settlement: Settlement
) -> Settlement:
    if on_decided is not None:
        await on_decided(conn, settlement)
    return settlement


async def settle_payment(
    services: Services,
    order_id: uuid.UUID,
    *,
    amount: int,
    currency: str,
    provider: str,
    intent_id: str,
    on_decided: OnDecided | None = None,
) -> Settlement:
    """Apply a succeeded payment. Idempotent: a second call reports ALREADY_PAID (or the
    same REFUND/MISMATCH outcome without repeating effects). Never oversells: a sale is
    recorded only with a hold that was converted, and a late payment only becomes a sale
    if units can be held again. `on_decided` runs in the deciding transaction."""
    async with services.pg.tx() as conn:
        order = await repo.lock_order(conn, order_id)
        if order is None:
            return await _decided(conn, on_decided, Settlement(Settled.UNKNOWN, None))
        status = S(order.status)
        if status in SOLD:
            decided = Settlement(Settled.ALREADY_PAID, status.value, order.paid_with)
            return await _decided(conn, on_decided, decided)
        if status in (S.REFUND_PENDING, S.REFUNDED):
            return await _decided(conn, on_decided, Settlement(Settled.REFUND, status.value))
        if amount != order.total or currency.upper() != order.currency:
            reason = (
                f"payment {intent_id} via {provider} was {amount} {currency.upper()}, "
                f"order total is {order.total} {order.currency}"
            )
            await repo.flag_for_review(conn, order_id, reason)
            log.error("payment_mismatch", order_id=str(order_id), reason=reason)
            return await _decided(conn, on_decided, Settlement(Settled.MISMATCH, status.value))
        if status is S.PAYMENT_PENDING and await _sell(
            conn, services, order, Hold(order_id, order.hold_token), provider, intent_id
        ):
            paid = Settlement(Settled.PAID, S.PAID.value, (provider, intent_id))
            await _decided(conn, on_decided, paid)
            sold = True
        elif status in ENDED or status is S.PAYMENT_PENDING:
            sold = False
        else:  # PENDING or FAILED: never placed, so never payable
            return await _decided(conn, on_decided, Settlement(Settled.REFUND, status.value))
    if sold:
        faults.crash_point("payment:after-paid-commit")
        log.info("order_paid", order_id=str(order_id), provider=provider)
        return paid
    # The order ended first (expiry or cancel won the race), or its hold was gone.
    return await _settle_late(services, order_id, provider, intent_id, on_decided)


async def _sell(
    conn: Executor,
    services: Services,
    order: repo.LockedOrder,
    hold: Hold,
    provider: str,
    intent_id: str,
) -> bool:
    """With the order's row locked: lock its books, convert `hold` in Redis, and if that
    worked mark the order PAID (owning `hold`) and take the units off the shelf. False
    (nothing written) if the hold had been released."""
    await repo.lock_books_of(conn, order.id)
    await faults.gate("settle:before-convert")
    converted = await services.inventory.convert(hold)
    if not converted.sold:
        log.warning("hold_gone_at_sale", order_id=str(order.id), token=hold.token)
        return False
    faults.crash_point("payment:after-convert")
    moved = await transition(
        conn,
        order.id,
        S.PAID,
        from_=frozenset({S(order.status)}),
        values={
            "paid_at": utcnow(),
            "payment_provider": provider,
            "payment_intent_id": intent_id,
            "hold_token": hold.token,
        },
        event_data={"provider": provider, "paymentIntentId": intent_id},
    )
    # The row is locked by this transaction: the guarded update cannot miss.
    assert moved.applied, f"order {order.id} moved under its row lock"
    await repo.decrement_on_hand(conn, order.id)
    return True


async def _settle_late(
    services: Services,
    order_id: uuid.UUID,
    provider: str,
    intent_id: str,
    on_decided: OnDecided | None,
) -> Settlement:
    """The order EXPIRED or was CANCELLED before the payment arrived: sell it again if
    units can be held under a new token, else REFUND_PENDING."""
    lines = await repo.lines_of(services.pg, order_id)
    for _ in range(_LATE_ATTEMPTS):
        hold = Hold(order_id, new_token())
        reserved = await _reserve_again(services, hold, lines)
        await faults.gate("settle:after-reserve")
        try:
            settlement = await _decide_late(
                services, order_id, hold, reserved, provider, intent_id, on_decided
            )
        except BaseException:
            if reserved.held:
                with contextlib.suppress(Exception):
                    await services.inventory.release(hold)  # ours, unused
            raise
        outcome = None if settlement is None else settlement.outcome
        if outcome is not Settled.PAID and reserved.held:
            await services.inventory.release(hold)  # ours, unused: only this token
        if settlement is None:
            continue  # our new hold was released before we could sell with it
        if outcome is Settled.PAID:
            if reserved.levels:
                await services.emitter.emit_stock(reserved.levels)
            log.info("late_payment_sold", order_id=str(order_id))
        elif outcome is Settled.REFUND:
            log.warning("late_payment_refund", order_id=str(order_id), status=settlement.status)
        return settlement
    return await _refund_late(services, order_id, provider, intent_id, on_decided)


async def _reserve_again(
    services: Services, hold: Hold, lines: list[tuple[uuid.UUID, int]]
) -> ReserveResult:
    """Reserve for a late payment; when short, look again a few times (another delivery of
    the same payment may hold the units and be about to sell them) before giving up."""
    for attempt in range(_SHORT_RETRIES):
        reserved = await services.inventory.reserve(hold, lines)
        if reserved.held or attempt == _SHORT_RETRIES - 1:
            return reserved
        status = await repo.status_of(services.pg, hold.order_id)
        if status is None or S(status) in SOLD:
            return reserved  # sold meanwhile: the decision reports it
        await asyncio.sleep(_SHORT_PAUSE_SECONDS)
    raise AssertionError("unreachable")  # pragma: no cover


async def _decide_late(
    services: Services,
    order_id: uuid.UUID,
    hold: Hold,
    reserved: ReserveResult,
    provider: str,
    intent_id: str,
    on_decided: OnDecided | None,
) -> Settlement | None:
    """Under the order's row lock: sell with the new hold, or go to REFUND_PENDING, or
    report what another path decided. None: the hold was lost; try again."""
    async with services.pg.tx() as conn:
        order = await repo.lock_order(conn, order_id)
        assert order is not None
        status = S(order.status)
        if status in SOLD:
            decided = Settlement(Settled.ALREADY_PAID, status.value, order.paid_with)
        elif status not in ENDED and status is not S.PAYMENT_PENDING:
            decided = Settlement(Settled.REFUND, status.value)
        elif reserved.held:
            if not await _sell(conn, services, order, hold, provider, intent_id):
                return None
            decided = Settlement(Settled.PAID, S.PAID.value, (provider, intent_id))
        else:
            await _to_refund(conn, order_id, status, provider, intent_id)
            decided = Settlement(Settled.REFUND, S.REFUND_PENDING.value)
        return await _decided(conn, on_decided, decided)


async def _refund_late(
    services: Services,
    order_id: uuid.UUID,
    provider: str,
    intent_id: str,
    on_decided: OnDecided | None,
) -> Settlement:
    async with services.pg.tx() as conn:
        order = await repo.lock_order(conn, order_id)
        assert order is not None
        status = S(order.status)
        if status in SOLD:
            decided = Settlement(Settled.ALREADY_PAID, status.value, order.paid_with)
            return await _decided(conn, on_decided, decided)
        if status in ENDED or status is S.PAYMENT_PENDING:
            await _to_refund(conn, order_id, status, provider, intent_id)
            status = S.REFUND_PENDING
        settlement = await _decided(conn, on_decided, Settlement(Settled.REFUND, status.value))
    log.warning("late_payment_refund", order_id=str(order_id), status=status.value)
    return settlement


async def _to_refund(
    conn: Executor, order_id: uuid.UUID, status: S, provider: str, intent_id: str
) -> None:
    await transition(
        conn,
        order_id,
        S.REFUND_PENDING,
        from_=frozenset({status}),
        values={"payment_provider": provider, "payment_intent_id": intent_id},
    )


async def record_payment_failure(
    services: Services,
    order_id: uuid.UUID,
    reason: str,
    *,
    before_commit: Callable[[Executor], Awaitable[None]] | None = None,
) -> bool:
    """A declined payment: the order stays PAYMENT_PENDING (the buyer may pay again until
    the reservation lapses); emits order.payment_failed. Returns False if the order is not
    awaiting payment (nothing to report). `before_commit` runs in the same transaction."""
    async with services.pg.tx() as conn:
        order = await repo.lock_order(conn, order_id)
        if before_commit is not None:
            await before_commit(conn)
        if order is None or order.status != S.PAYMENT_PENDING.value:
            return False
        await add_order_event(
            conn,
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
    async with services.pg.tx() as conn:
        moved = await transition(
            conn,
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
    buyer is about to pay), but never beyond RESERVATION_TTL_SECONDS +
    PAYMENT_MIN_WINDOW_SECONDS after it was placed: calling it again and again cannot
    hold the copies forever. Returns the deadline, or None if the order is not awaiting
    payment. The scheduled expiry reads the deadline from the order, so nothing else
    needs rescheduling."""
    settings = services.settings
    deadline = await repo.extend_deadline(
        services.pg,
        order_id,
        target=utcnow() + timedelta(seconds=min_window_seconds),
        cap_seconds=settings.reservation_ttl_seconds + settings.payment_min_window_seconds,
    )
    if deadline is not None:
        log.debug("reservation_deadline", order_id=str(order_id), until=iso(deadline))
    return deadline
