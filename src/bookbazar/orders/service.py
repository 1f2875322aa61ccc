"""Order rules: placement (idempotent, all-or-nothing reservation), expiry, cancellation."""

from __future__ import annotations

import contextlib
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from bookbazar.cart import service as cart_service
from bookbazar.errors import BadRequest, Conflict, NotFound, error_body
from bookbazar.inventory.service import ReserveOutcome
from bookbazar.kit import faults
from bookbazar.kit.clock import iso, utcnow
from bookbazar.kit.idempotency import (
    IdempotencyStore,
    StoredResponse,
    check_fingerprint,
    request_fingerprint,
)
from bookbazar.kit.pagination import PageParams
from bookbazar.kit.queues import RESERVATION
from bookbazar.kit.responses import envelope
from bookbazar.metrics import (
    ACTIVE_RESERVATIONS,
    EXPIRY_LAG,
    ORDERS_BY_STATUS,
    RESERVED_UNITS,
)
from bookbazar.models import Order, OrderItem, OrderStatus, Payment
from bookbazar.orders import repository as repo
from bookbazar.orders.schemas import PlaceOrderIn
from bookbazar.orders.state import RESERVING, SOLD, transition
from bookbazar.services import Services

log = structlog.get_logger(__name__)

EXPIRE_JOB = "reservation:expire"
S = OrderStatus


@dataclass(frozen=True, slots=True)
class PlacedOrder:
    status: int
    body: dict[str, Any]
    replayed: bool = False


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


# ---------------------------------------------------------------- placement


async def place_order(
    services: Services, user_id: uuid.UUID, key: str, body: PlaceOrderIn
) -> PlacedOrder:
    """Place an order from the user's cart, once per Idempotency-Key.

    Reserves every line atomically (all or nothing) and answers 201 with the order in
    PAYMENT_PENDING, or 409 listing each short line (nothing reserved, order FAILED).
    The same key with the same body replays the first answer; with another body -> 422;
    while the first is running -> 409. Raises BadRequest for an empty cart.
    """
    fingerprint = request_fingerprint(body.fingerprint_body())
    store = IdempotencyStore(services.redis, services.settings.idempotency_ttl_seconds)
    stored = await store.claim(user_id, key, fingerprint)
    if stored is not None:
        return PlacedOrder(stored.status, stored.body, replayed=True)
    try:
        placed = await _place(services, user_id, key, fingerprint, body)
    except BaseException:
        # No answer was stored for this key, so the claim goes: the client may fix the
        # cause (or wait out an outage) and retry. PostgreSQL's unique (user, key) is the
        # guard that a retry can never place or reserve a second time.
        with contextlib.suppress(Exception):
            await store.abandon(user_id, key)
        raise
    # Also a replay answered from PostgreSQL (Redis had forgotten the key, or the first
    # request died): left "running", every retry for a minute would get a spurious 409.
    await store.complete(user_id, key, fingerprint, StoredResponse(placed.status, placed.body))
    return placed


async def _place(
    services: Services, user_id: uuid.UUID, key: str, fingerprint: str, body: PlaceOrderIn
) -> PlacedOrder:
    lines, cart_version = await cart_service.cart_lines(services, user_id)
    if not lines:
        # A replay after Redis forgot the key finds the cart already emptied by the order.
        async with services.sessionmaker() as session:
            used = await repo.order_by_key(session, user_id, key)
        if used is not None:
            return await _replay_from_database(services, user_id, key, fingerprint)
        raise BadRequest("Your cart is empty: add books before placing an order")
    book_ids = list(dict.fromkeys(b for b, _ in lines))
    order_id = uuid.uuid4()
    created_at = utcnow()
    async with services.sessionmaker() as session, session.begin():
        books = await repo.books_for_order(session, book_ids)
        gone = [str(b) for b in book_ids if b not in books]
        if gone:
            raise Conflict(
                "Some books in your cart are no longer sold; remove them and retry",
                errors=[{"bookId": b} for b in gone],
            )
        currencies = {books[b][2] for b in book_ids}
        if len(currencies) > 1:
            raise Conflict("Your cart mixes currencies; one order takes one currency")
        items: list[dict[str, Any]] = [
            {"book_id": b, "title": books[b][0], "price": books[b][1], "quantity": q}
            for b, q in lines
        ]
        total = sum(books[b][1] * q for b, q in lines)
        inserted = await repo.insert_pending_order(
            session,
            order_id=order_id,
            user_id=user_id,
            key=key,
            total=total,
            currency=currencies.pop(),
            shipping_address=body.fingerprint_body()["shippingAddress"],
            items=items,
            created_at=created_at,
        )
    if not inserted:
        return await _replay_from_database(services, user_id, key, fingerprint)
    structlog.contextvars.bind_contextvars(order_id=str(order_id))
    faults.crash_point("order:after-pending")

    outcome = await services.inventory.reserve(order_id, lines)
    faults.crash_point("order:after-reserve")
    if not outcome.reserved:
        return await _fail_placement(services, order_id, user_id, key, fingerprint, items, outcome)

    expires_at = utcnow() + timedelta(seconds=services.settings.reservation_ttl_seconds)
    async with services.sessionmaker() as session, session.begin():
        moved = await transition(
            session,
            order_id,
            S.PAYMENT_PENDING,
            from_=frozenset({S.PENDING}),
            values={"expires_at": expires_at},
            event_data={"expiresAt": iso(expires_at), "items": present_items(items)},
        )
        if moved.applied:
            data = {
                "orderId": str(order_id),
                "status": S.PAYMENT_PENDING.value,
                "total": total,
                "currency": moved.currency,
                "expiresAt": iso(expires_at),
                "createdAt": iso(created_at),
                "items": present_items(items),
                "shippingAddress": body.fingerprint_body()["shippingAddress"],
                "payment": None,
            }
            response = envelope(data, "Order placed: complete payment before it expires", 201)
            await _store_answer(session, services, user_id, key, fingerprint, 201, response)
    if not moved.applied:
        # The sweeper gave up on this order while we were reserving: give the units back.
        await services.inventory.release(order_id)
        raise Conflict("The order could not be completed in time; please place it again")
    faults.crash_point("order:after-payment-pending")
    log.info("order_placed", total=total, lines=len(items))

    await schedule_expiry(services, order_id, expires_at)
    await _after_placement(services, user_id, cart_version, book_ids, outcome.available)
    return PlacedOrder(201, response)


async def _fail_placement(
    services: Services,
    order_id: uuid.UUID,
    user_id: uuid.UUID,
    key: str,
    fingerprint: str,
    items: list[dict[str, Any]],
    outcome: ReserveOutcome,
) -> PlacedOrder:
    titles = {i["book_id"]: i["title"] for i in items}
    if outcome.shortfalls:
        errors = [
            {
                "bookId": str(s.book_id),
                "title": titles.get(s.book_id, ""),
                "requested": s.requested,
                "available": s.available,
            }
            for s in outcome.shortfalls
        ]
        message = "Not enough stock for some items; nothing was reserved"
    else:
        errors = []
        message = "The order could not be completed in time; please place it again"
    body = error_body(409, message, errors)
    async with services.sessionmaker() as session, session.begin():
        await transition(session, order_id, S.FAILED, from_=frozenset({S.PENDING}))
        await _store_answer(session, services, user_id, key, fingerprint, 409, body)
    log.info("order_refused_stock", short=len(errors))
    return PlacedOrder(409, body)


async def _store_answer(
    session: AsyncSession,
    services: Services,
    user_id: uuid.UUID,
    key: str,
    fingerprint: str,
    status: int,
    body: dict[str, Any],
) -> None:
    """Keep the answer for this key in PostgreSQL (the durable copy of the Redis one), in
    the caller's transaction, for at least IDEMPOTENCY_TTL_SECONDS."""
    await repo.save_idempotency_record(
        session,
        user_id=user_id,
        key=key,
        fingerprint=fingerprint,
        status=status,
        body=body,
        expires_at=utcnow() + timedelta(seconds=services.settings.idempotency_ttl_seconds),
    )


async def _replay_from_database(
    services: Services, user_id: uuid.UUID, key: str, fingerprint: str
) -> PlacedOrder:
    """The key was used before (Redis forgot it): answer from PostgreSQL."""
    async with services.sessionmaker() as session:
        record = await repo.idempotency_record(session, user_id, key)
        if record is not None:
            check_fingerprint(record.request_hash, fingerprint)
            return PlacedOrder(record.response_status, record.response_body, replayed=True)
        order = await repo.order_by_key(session, user_id, key)
        if order is None or order.status == S.PENDING.value:
            raise Conflict(
                "A request with this Idempotency-Key is still being processed; retry shortly"
            )
        if order.status == S.FAILED.value:
            body = error_body(409, "This order could not be completed; use a new Idempotency-Key")
            return PlacedOrder(409, body, replayed=True)
        data = await load_presented(session, order)
        return PlacedOrder(201, envelope(data, "Order placed", 201), replayed=True)


async def _after_placement(
    services: Services,
    user_id: uuid.UUID,
    cart_version: int,
    book_ids: list[uuid.UUID],
    levels: dict[uuid.UUID, int],
) -> None:
    """Best-effort follow-ups: a failure here never undoes the placed order."""
    try:
        await cart_service.clear_ordered(services, user_id, cart_version, book_ids)
    except Exception:
        log.exception("cart_clear_after_order_failed")
    try:
        await services.emitter.emit_stock(levels)
    except Exception:
        log.exception("stock_emit_failed")


async def schedule_expiry(services: Services, order_id: uuid.UUID, expires_at: datetime) -> None:
    """Enqueue the delayed expiry job (one per order and deadline). If this fails the
    sweeper still expires the order: a lost job never leaks stock."""
    delay_ms = max(0, int((expires_at - utcnow()).total_seconds() * 1000))
    try:
        await services.queues.add(
            RESERVATION,
            EXPIRE_JOB,
            {"orderId": str(order_id)},
            job_id=f"expire-{order_id}-{int(expires_at.timestamp())}",
            delay_ms=delay_ms,
        )
    except Exception:
        log.exception("expiry_enqueue_failed", order_id=str(order_id))


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


# ---------------------------------------------------------------- ending reservations


async def cancel_order(
    services: Services, user_id: uuid.UUID, order_id: uuid.UUID
) -> dict[str, Any]:
    """Owner cancels an order awaiting payment: CANCELLED, stock released. Cancelling a
    cancelled order is a success; any other state -> Conflict; others' orders -> NotFound."""
    async with services.sessionmaker() as session, session.begin():
        order = await repo.get_order(session, order_id, user_id)
        if order is None:
            raise NotFound("Order not found")
        moved = await transition(
            session,
            order_id,
            S.CANCELLED,
            from_=frozenset({S.PAYMENT_PENDING}),
            event_data={"reason": "cancelled by the buyer"},
        )
        if not moved.ok:
            raise Conflict(
                f"Only an order awaiting payment can be cancelled; this one is {moved.status}"
            )
    await release_and_announce(services, order_id)
    async with services.sessionmaker() as session:
        fresh = await repo.get_order(session, order_id, user_id)
        assert fresh is not None
        return await load_presented(session, fresh)


async def expire_order(services: Services, order_id: uuid.UUID) -> bool:
    """If the order is still awaiting payment and its deadline passed: EXPIRED, stock
    released, event. Idempotent; returns True if this call expired it."""
    now = utcnow()
    async with services.sessionmaker() as session, session.begin():
        order = await repo.get_order(session, order_id)
        if order is None:
            return False
        deadline = order.expires_at
        if order.status == S.PAYMENT_PENDING.value and deadline is not None and deadline > now:
            return False  # extended (payment in progress); a later job or the sweeper ends it
        moved = await transition(
            session,
            order_id,
            S.EXPIRED,
            from_=frozenset({S.PAYMENT_PENDING}),
            extra_where=[Order.expires_at <= now],
            event_data={"reason": "reservation lapsed"},
        )
    faults.crash_point("expire:after-commit")
    if moved.ok:
        await release_and_announce(services, order_id)
    if moved.applied and deadline is not None:
        EXPIRY_LAG.observe((now - deadline).total_seconds())
        log.info("order_expired", order_id=str(order_id))
    return moved.applied


async def fail_abandoned(services: Services, order_id: uuid.UUID) -> bool:
    """A PENDING order whose placement never finished (process killed): FAILED and any
    reservation it made released. Returns True if this call failed it."""
    async with services.sessionmaker() as session, session.begin():
        moved = await transition(session, order_id, S.FAILED, from_=frozenset({S.PENDING}))
    if moved.ok:
        await release_and_announce(services, order_id)
        log.warning("abandoned_order_failed", order_id=str(order_id))
    return moved.applied


async def release_and_announce(services: Services, order_id: uuid.UUID) -> None:
    levels = await services.inventory.release(order_id)
    if levels:
        try:
            await services.emitter.emit_stock(levels)
        except Exception:
            log.exception("stock_emit_failed")


async def repair_reservations(services: Services, older_than_ms: int) -> int:
    """Finish reservations whose order already ended (a process died between the state
    change and the Redis step). Returns how many were repaired."""
    held = await services.inventory.held_orders(older_than_ms)
    if not held:
        return 0
    async with services.sessionmaker() as session:
        known = await repo.statuses(session, held)
    repaired = 0
    for order_id in held:
        status = known.get(order_id)
        if status is not None and S(status) in RESERVING:
            continue
        if status is not None and S(status) in SOLD:
            await services.inventory.convert(order_id)
        else:
            await release_and_announce(services, order_id)
        repaired += 1
        log.warning("reservation_repaired", order_id=str(order_id), status=status)
    return repaired


async def refresh_metrics(services: Services) -> None:
    """Orders by status, live reservations and reserved units, for /metrics."""
    async with services.sessionmaker() as session:
        counts = await repo.counts_by_status(session)
    for status in OrderStatus:
        ORDERS_BY_STATUS.labels(status.value).set(counts.get(status.value, 0))
    held = await services.inventory.held_orders()
    ACTIVE_RESERVATIONS.set(len(held))
    RESERVED_UNITS.set(await services.inventory.held_units())
