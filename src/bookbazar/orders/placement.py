"""Placing an order: idempotent per key, all-or-nothing reservation, one database write.

The crash story, step by step:
1. The Idempotency-Key is claimed in Redis (a second request while this one runs: 409).
2. Every line is reserved in one Lua script under a fresh hold (order id + token).
3. One SQL statement inserts the order awaiting payment, its items, its `order.created`
   outbox event and its idempotent answer. If the process dies between 2 and 3, the hold
   has no order: the sweeper releases it after PENDING_GRACE_SECONDS; the client's retry
   with the same key places the order anew. If (user, key) was used already, the
   statement writes nothing and the hold is released.
4. After the commit the cart is emptied and the new stock levels are announced (best
   effort: a replay of the answer empties the cart too).

The service answers with a domain result (`Placement`): the order placed, or the short
lines, or that the key's attempt failed. What is kept for replay is that result, not an
HTTP body; the route renders it (status, envelope, `Idempotent-Replayed`).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum
from typing import Any

import structlog

from bookbazar.cart import service as cart_service
from bookbazar.cart.service import CartSnapshot, parse_snapshot
from bookbazar.errors import BadRequest, Conflict
from bookbazar.inventory.service import Hold, Reserve, ReserveResult, new_token
from bookbazar.kit import faults
from bookbazar.kit.clock import iso, utcnow
from bookbazar.kit.idempotency import (
    RUNNING_TTL_SECONDS,
    IdempotencyStore,
    StoredResponse,
    check_fingerprint,
    done_value,
    redis_key,
    request_fingerprint,
    running_value,
    stored_answer,
)
from bookbazar.models import OrderStatus as S
from bookbazar.orders import repository as repo
from bookbazar.orders.schemas import PlaceOrderIn
from bookbazar.orders.service import load_presented, present_items
from bookbazar.outbox.store import order_event
from bookbazar.realtime.emitter import stock_messages
from bookbazar.services import Services

log = structlog.get_logger(__name__)


class Outcome(StrEnum):
    PLACED = "placed"  # the order awaits payment (201)
    SHORT = "short"  # not enough stock for some lines; nothing reserved (409)
    FAILED = "failed"  # this key's attempt could not complete; use a new key (409)


@dataclass(frozen=True, slots=True)
class Placement:
    """The answer to one placement, first or replayed."""

    outcome: Outcome
    order: dict[str, Any] | None = None  # PLACED: the order as presented
    shortfalls: list[dict[str, Any]] = field(default_factory=list)  # SHORT: one per line
    replayed: bool = False
    # The answer is in Redis already (stored with the cart step): no separate write.
    answer_stored: bool = False

    def stored(self) -> StoredResponse:
        """The record kept for this key: the outcome's status and its data."""
        if self.outcome is Outcome.PLACED:
            return StoredResponse(201, {"order": self.order})
        return StoredResponse(409, {"outcome": self.outcome.value, "shortfalls": self.shortfalls})

    @classmethod
    def from_stored(cls, stored: StoredResponse) -> Placement:
        """The result a stored record replays (records written before results were kept,
        as rendered envelopes, are read too: `data` or `errors`)."""
        body = stored.body
        if stored.status == 201:
            order = body.get("order", body.get("data"))
            return cls(Outcome.PLACED, order=order, replayed=True)
        shortfalls = body.get("shortfalls", body.get("errors")) or []
        outcome = Outcome(body.get("outcome", "short" if shortfalls else "failed"))
        return cls(outcome, shortfalls=shortfalls, replayed=True)


async def place_order(
    services: Services, user_id: uuid.UUID, key: str, body: PlaceOrderIn
) -> Placement:
    """Place an order from the user's cart, once per Idempotency-Key.

    Reserves every line atomically (all or nothing): the order in PAYMENT_PENDING, or
    each short line (nothing reserved). The same key with the same body replays the first
    result; with another body: Unprocessable; while the first is running: Conflict.
    Raises BadRequest for an empty cart.
    """
    fingerprint = request_fingerprint(body.fingerprint_body())
    claimed = await _begin(services, user_id, key, fingerprint)
    if isinstance(claimed, StoredResponse):
        replayed = Placement.from_stored(claimed)
        if replayed.order is not None:
            await replay_clears_cart(services, user_id, replayed.order)
        return replayed
    try:
        placed = await _place(services, user_id, key, fingerprint, body, claimed)
    except BaseException:
        # No answer was stored for this key, so the claim goes: the client may fix the
        # cause (or wait out an outage) and retry. PostgreSQL's unique (user, key) is the
        # guard that a retry can never place or reserve a second time.
        with contextlib.suppress(Exception):
            await _store(services).abandon(user_id, key)
        raise
    if not placed.answer_stored:
        # Refusals and replays answered from PostgreSQL (Redis had forgotten the key, or
        # the first request died): left "running", every retry for a minute would get a
        # spurious 409.
        await _store(services).complete(user_id, key, fingerprint, placed.stored())
    return placed


def _store(services: Services) -> IdempotencyStore:
    return IdempotencyStore(services.redis, services.settings.idempotency_ttl_seconds)


async def _begin(
    services: Services, user_id: uuid.UUID, key: str, fingerprint: str
) -> StoredResponse | CartSnapshot:
    """Claim the key and read the cart in one round trip: the answer to replay, or the
    cart to order from (rehydrated from PostgreSQL first if Redis lost it)."""
    script_keys = [redis_key(user_id, key), cart_service.cart_key(user_id)]
    args = [running_value(fingerprint), RUNNING_TTL_SECONDS]
    for _ in range(2):
        reply = await services.scripts.run("order_begin", script_keys, args)
        if reply[0] == "TAKEN":
            if reply[1]:
                return stored_answer(str(reply[1]), fingerprint)
            continue  # the record expired between the two steps: claim again
        values = [str(v) for v in reply[2:]]
        snapshot = parse_snapshot(dict(zip(values[::2], values[1::2], strict=True)))
        if snapshot is None:
            return await cart_service.load_snapshot(services, user_id)
        return snapshot
    raise Conflict("A request with this Idempotency-Key is still being processed; retry shortly")


async def _place(
    services: Services,
    user_id: uuid.UUID,
    key: str,
    fingerprint: str,
    body: PlaceOrderIn,
    cart: CartSnapshot,
) -> Placement:
    lines = sorted(cart.lines.items(), key=lambda line: str(line[0]))
    cart_version = cart.version
    if not lines:
        # A replay after Redis forgot the key finds the cart already emptied by the order.
        async with services.sessionmaker() as session:
            used = await repo.order_by_key(session, user_id, key)
            recorded = await repo.idempotency_record(session, user_id, key)
        if used is not None or recorded is not None:
            return await _replay_from_database(services, user_id, key, fingerprint)
        raise BadRequest("Your cart is empty: add books before placing an order")
    book_ids = list(dict.fromkeys(b for b, _ in lines))
    books = await services.books.get_many(book_ids)
    gone = [str(b) for b in book_ids if b not in books]
    if gone:
        raise Conflict(
            "Some books in your cart are no longer sold; remove them and retry",
            errors=[{"bookId": b} for b in gone],
        )
    currencies = {books[b].currency for b in book_ids}
    if len(currencies) > 1:
        raise Conflict("Your cart mixes currencies; one order takes one currency")
    currency = currencies.pop()
    items = [(b, books[b].title, books[b].price, q) for b, q in lines]

    hold = Hold(uuid.uuid4(), new_token())
    reserved = await services.inventory.reserve(hold, lines)
    faults.crash_point("order:after-reserve")
    if reserved.status is Reserve.SHORT:
        return await _refuse(services, user_id, key, fingerprint, items, reserved)
    if reserved.status is not Reserve.OK:
        raise RuntimeError(f"a fresh hold could not be made: {reserved.status}")
    structlog.contextvars.bind_contextvars(order_id=str(hold.order_id))

    now = utcnow()
    settings = services.settings
    expires_at = now + timedelta(seconds=settings.reservation_ttl_seconds)
    total = sum(price * quantity for _, _, price, quantity in items)
    presented_items = present_items(
        [{"book_id": b, "title": t, "price": p, "quantity": q} for b, t, p, q in items]
    )
    address = body.fingerprint_body()["shippingAddress"]
    data = {
        "orderId": str(hold.order_id),
        "status": S.PAYMENT_PENDING.value,
        "total": total,
        "currency": currency,
        "expiresAt": iso(expires_at),
        "createdAt": iso(now),
        "items": presented_items,
        "shippingAddress": address,
        "payment": None,
    }
    placed = Placement(Outcome.PLACED, order=data)
    event_id = uuid.uuid4()
    new_order = repo.NewOrder(
        order_id=hold.order_id,
        user_id=user_id,
        key=key,
        total=total,
        currency=currency,
        shipping_address=address,
        expires_at=expires_at,
        created_at=now,
        hold_token=hold.token,
        cart_version=cart_version,
        items=items,
        event_id=event_id,
        event=order_event(
            event_id,
            "order.created",
            order_id=hold.order_id,
            user_id=user_id,
            status=S.PAYMENT_PENDING.value,
            total=total,
            currency=currency,
            occurred_at=now,
            data={"expiresAt": iso(expires_at), "items": presented_items},
        ),
        request_hash=fingerprint,
        response=placed.stored().body,
        answer_expires_at=now + timedelta(seconds=settings.idempotency_ttl_seconds),
    )
    try:
        inserted = await repo.insert_placed_order(services.pg, new_order)
    except BaseException:
        # Nothing was stored: give the units back now rather than after the grace period.
        with contextlib.suppress(Exception):
            await asyncio.shield(services.inventory.release(hold))
        raise
    if not inserted:
        # This (user, key) placed an order before (Redis had forgotten the key).
        await services.inventory.release(hold)
        return await _replay_from_database(services, user_id, key, fingerprint)
    faults.crash_point("order:after-payment-pending")
    log.info("order_placed", total=total, lines=len(items))
    # One round trip: empty the cart, store this key's answer, announce the stock levels.
    answer = (
        redis_key(user_id, key),
        done_value(fingerprint, placed.stored()),
        settings.idempotency_ttl_seconds,
    )
    stored = await _clear_cart(
        services,
        user_id,
        hold.order_id,
        cart_version,
        book_ids,
        store=answer,
        publish=stock_messages(reserved.levels),
    )
    return Placement(Outcome.PLACED, order=data, answer_stored=stored)


async def _refuse(
    services: Services,
    user_id: uuid.UUID,
    key: str,
    fingerprint: str,
    items: list[tuple[uuid.UUID, str, int, int]],
    reserved: ReserveResult,
) -> Placement:
    """Not enough stock: each short line, kept as this key's answer."""
    titles = {book_id: title for book_id, title, _, _ in items}
    shortfalls = [
        {
            "bookId": str(s.book_id),
            "title": titles.get(s.book_id, ""),
            "requested": s.requested,
            "available": s.available,
        }
        for s in reserved.shortfalls
    ]
    refused = Placement(Outcome.SHORT, shortfalls=shortfalls)
    answer = refused.stored()
    async with services.sessionmaker() as session, session.begin():
        saved = await repo.save_idempotency_record(
            session,
            user_id=user_id,
            key=key,
            fingerprint=fingerprint,
            status=answer.status,
            body=answer.body,
            expires_at=utcnow() + timedelta(seconds=services.settings.idempotency_ttl_seconds),
        )
    if not saved:
        # This key placed an order before (Redis had forgotten it): that is the answer.
        return await _replay_from_database(services, user_id, key, fingerprint)
    log.info("order_refused_stock", short=len(shortfalls))
    return refused


async def _replay_from_database(
    services: Services, user_id: uuid.UUID, key: str, fingerprint: str
) -> Placement:
    """The key was used before (Redis forgot it): answer from PostgreSQL, and finish what
    the first request may not have (emptying the cart the order was made from)."""
    async with services.sessionmaker() as session:
        record = await repo.idempotency_record(session, user_id, key)
        order = await repo.order_by_key(session, user_id, key)
        if record is not None:
            check_fingerprint(record.request_hash, fingerprint)
            stored = StoredResponse(record.response_status, record.response_body)
            placed = Placement.from_stored(stored)
        elif order is None or order.status == S.PENDING.value:
            raise Conflict(
                "A request with this Idempotency-Key is still being processed; retry shortly"
            )
        elif order.status == S.FAILED.value:
            placed = Placement(Outcome.FAILED, replayed=True)
        else:
            data = await load_presented(session, order)
            placed = Placement(Outcome.PLACED, order=data, replayed=True)
    lines = await repo.lines_of(services.pg, order.id) if order is not None else []
    if order is not None and order.cart_version is not None and lines:
        await _clear_cart(services, user_id, order.id, order.cart_version, [b for b, _ in lines])
    return placed


async def replay_clears_cart(
    services: Services, user_id: uuid.UUID, order_data: dict[str, Any]
) -> None:
    """A placement replayed from Redis: empty the order's cart if the first request
    could not."""
    order_id = order_data.get("orderId")
    if not isinstance(order_id, str):
        return
    async with services.sessionmaker() as session:
        order = await repo.get_order(session, uuid.UUID(order_id), user_id)
    lines = await repo.lines_of(services.pg, order.id) if order is not None else []
    if order is not None and order.cart_version is not None and lines:
        await _clear_cart(services, user_id, order.id, order.cart_version, [b for b, _ in lines])


async def _clear_cart(
    services: Services,
    user_id: uuid.UUID,
    order_id: uuid.UUID,
    cart_version: int,
    book_ids: list[uuid.UUID],
    *,
    store: tuple[str, str, int] | None = None,
    publish: Sequence[str] = (),
) -> bool:
    """Best effort: a failure here never undoes the placed order (a replay of the answer
    empties the cart; the answer is in PostgreSQL). Returns whether it was done."""
    try:
        await cart_service.clear_ordered(
            services, user_id, order_id, cart_version, book_ids, store=store, publish=publish
        )
    except Exception:
        log.exception("cart_clear_after_order_failed")
        return False
    return True
