"""Order rules: reading orders, cancellation, expiry and the repair of holds."""

from __future__ import annotations

import uuid
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from bookbazar.errors import Conflict, NotFound
from bookbazar.inventory import repository as inventory_repo
from bookbazar.inventory.service import Hold
from bookbazar.kit import faults
from bookbazar.kit.clock import iso, utcnow
from bookbazar.kit.pagination import PageParams
from bookbazar.metrics import (
    ACTIVE_RESERVATIONS,
    EXPIRY_LAG,
    ORDERS_BY_STATUS,
    RESERVED_UNITS,
)
from bookbazar.models import Order, OrderItem, OrderStatus, Payment
from bookbazar.orders import repository as repo
from bookbazar.orders.state import RESERVING, SOLD, transition
from bookbazar.outbox.store import OrderEvent, add_order_events
from bookbazar.services import Services

log = structlog.get_logger(__name__)

S = OrderStatus
EXPIRE_BATCH = 500

# ---------------------------------------------------------------- presentation


def present_items(items: list[OrderItem] | list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for item in items:
        if isinstance(item, OrderItem):
            book_id, title, price, qty = item.book_id, item.title, item.price, item.quantity
        else:
            book_id, title, price, qty = (
                item["book_id"],
                item["title"],
                int(item["price"]),
                int(item["quantity"]),
            )
        out.append(
            {
                "bookId": str(book_id),
                "title": title,
                "price": price,
                "quantity": qty,
                "lineTotal": price * qty,
            }
        )
    return out


def present_payment(payment: Payment | None) -> dict[str, Any] | None:
    if payment is None:
        return None
    return {
        "provider": payment.provider,
        "paymentIntentId": payment.intent_id,
        "status": payment.status,
        "amount": payment.amount,
        "currency": payment.currency,
    }


def present(order: Order, items: list[OrderItem], payment: Payment | None) -> dict[str, Any]:
    return {
        "orderId": str(order.id),
        "status": order.status,
        "total": order.total,
        "currency": order.currency,
        "expiresAt": iso(order.expires_at),
        "createdAt": iso(order.created_at),
        "items": present_items(items),
        "shippingAddress": order.shipping_address,
        "payment": present_payment(payment),
    }


async def load_presented(session: AsyncSession, order: Order) -> dict[str, Any]:
    items = await repo.items_of(session, [order.id])
    payments = await repo.latest_payments(session, [order.id])
    return present(order, items[order.id], payments.get(order.id))


# ---------------------------------------------------------------- reads


async def get_order(
    session: AsyncSession, user_id: uuid.UUID, order_id: uuid.UUID
) -> dict[str, Any]:
    """The caller's order; NotFound for an unknown id or another user's order."""
    order = await repo.get_order(session, order_id, user_id)
    if order is None:
        raise NotFound("Order not found")
    return await load_presented(session, order)


async def list_orders(
    session: AsyncSession, user_id: uuid.UUID, page: PageParams
) -> dict[str, Any]:
    orders, total = await repo.list_orders(
        session, user_id, offset=page.offset, limit=page.page_size
    )
    ids = [o.id for o in orders]
    items = await repo.items_of(session, ids)
    payments = await repo.latest_payments(session, ids)
    return page.wrap([present(o, items[o.id], payments.get(o.id)) for o in orders], total)


# ---------------------------------------------------------------- ending orders


async def cancel_order(
    services: Services, user_id: uuid.UUID, order_id: uuid.UUID
) -> dict[str, Any]:
    """Owner cancels an order awaiting payment: CANCELLED, its hold released. Cancelling
    a cancelled order is a success; any other state -> Conflict; others' orders ->
    NotFound."""
    async with services.pg.tx() as conn:
        if await repo.status_of(conn, order_id, user_id) is None:
            raise NotFound("Order not found")
        moved = await transition(
            conn,
            order_id,
            S.CANCELLED,
            from_=frozenset({S.PAYMENT_PENDING}),
            event_data={"reason": "cancelled by the buyer"},
        )
        if not moved.ok:
            raise Conflict(
                f"Only an order awaiting payment can be cancelled; this one is {moved.status}"
            )
    await faults.gate("cancel:after-commit")
    # Also on a repeat: the token is the cancelled hold's until a late payment is sold
    # (and then the order is PAID, not CANCELLED), so this can only end that hold.
    assert moved.hold is not None
    await release_and_announce(services, moved.hold)
    async with services.sessionmaker() as session:
        fresh = await repo.get_order(session, order_id, user_id)
        assert fresh is not None
        return await load_presented(session, fresh)


async def expire_due(services: Services, *, limit: int = EXPIRE_BATCH) -> int:
    """Expire every order awaiting payment whose deadline passed (up to `limit`): EXPIRED
    with order.expired in one transaction, then each one's hold released. Safe in any
    number of workers at once (rows are claimed with SKIP LOCKED). A crash between the
    commit and the release is repaired by the sweeper and the audit. Returns how many."""
    now = utcnow()
    async with services.pg.tx() as conn:
        due = await repo.claim_due(conn, now, limit)
        await add_order_events(
            conn,
            [
                OrderEvent(
                    "order.expired",
                    order.order_id,
                    order.user_id,
                    S.EXPIRED.value,
                    order.total,
                    order.currency,
                    {"reason": "reservation lapsed"},
                )
                for order in due
            ],
        )
    if not due:
        return 0
    faults.crash_point("expire:after-commit")
    await faults.gate("expire:after-commit")
    levels = await services.inventory.release_many([Hold(o.order_id, o.hold_token) for o in due])
    await _announce(services, levels)
    for order in due:
        EXPIRY_LAG.observe(max(0.0, (now - order.expires_at).total_seconds()))
    log.info("orders_expired", count=len(due))
    return len(due)


async def expire_order(services: Services, order_id: uuid.UUID) -> bool:
    """Expire one order if it is awaiting payment and its deadline passed. Idempotent;
    returns True if this call expired it (the scheduled `expire_due` is the usual path)."""
    now = utcnow()
    async with services.pg.tx() as conn:
        moved = await transition(
            conn,
            order_id,
            S.EXPIRED,
            from_=frozenset({S.PAYMENT_PENDING}),
            due_by=now,
            event_data={"reason": "reservation lapsed"},
        )
    if moved.applied:
        faults.crash_point("expire:after-commit")
        await faults.gate("expire:after-commit")
        assert moved.hold is not None
        await release_and_announce(services, moved.hold)
        log.info("order_expired", order_id=str(order_id))
    return moved.applied


async def fail_abandoned(services: Services, order_id: uuid.UUID) -> bool:
    """A PENDING order whose placement never finished (an earlier release inserted the
    order before reserving): FAILED and any hold it made released. True if this call
    failed it."""
    async with services.pg.tx() as conn:
        moved = await transition(conn, order_id, S.FAILED, from_=frozenset({S.PENDING}))
    if moved.ok and moved.hold is not None:
        await release_and_announce(services, moved.hold)
        log.warning("abandoned_order_failed", order_id=str(order_id))
    return moved.applied


async def release_and_announce(services: Services, hold: Hold) -> None:
    result = await services.inventory.release(hold)
    await _announce(services, result.levels)


async def _announce(services: Services, levels: dict[uuid.UUID, int]) -> None:
    if levels:
        try:
            await services.emitter.emit_stock(levels)
        except Exception:
            log.exception("stock_emit_failed")


async def repair_holds(services: Services, older_than_ms: int) -> int:
    """End holds PostgreSQL says are over (a process died between an order's change and
    its Redis step), and orphans no order owns (a placement died before inserting its
    order, or a late payment before settling). Only holds older than `older_than_ms`
    (epoch ms) are looked at, so no placement or payment in flight is touched. Each hold
    is ended under its own token. Returns how many were repaired."""
    holds = await services.inventory.holds(older_than_ms)
    if not holds:
        return 0
    async with services.sessionmaker() as session:
        known = await inventory_repo.order_states(session, list({h.order_id for h in holds}))
    repaired = 0
    for hold in holds:
        status, token = known.get(hold.order_id, (None, None))
        if token == hold.token and status is not None and S(status) in RESERVING:
            continue
        if token == hold.token and status is not None and S(status) in SOLD:
            await services.inventory.convert(hold)
        else:
            await faults.gate("sweeper:before-release")
            await release_and_announce(services, hold)
        repaired += 1
        log.warning("hold_repaired", order_id=str(hold.order_id), token=hold.token, status=status)
    return repaired


async def refresh_metrics(services: Services) -> None:
    """Orders by status, live holds and held units (exported by the worker)."""
    async with services.sessionmaker() as session:
        counts = await repo.counts_by_status(session)
    for status in OrderStatus:
        ORDERS_BY_STATUS.labels(status.value).set(counts.get(status.value, 0))
    holds = await services.inventory.holds()
    ACTIVE_RESERVATIONS.set(len(holds))
    RESERVED_UNITS.set(await services.inventory.held_units())
