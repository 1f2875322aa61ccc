"""Cart rules.

Redis holds the live cart: one hash per user (`bb:cart:{<userId>}`), changed only by the
cart_*.lua scripts, each of which does its whole change atomically and bumps the version
once per change. PostgreSQL holds a copy written behind by the `persistCart` job; when
Redis has lost a cart, the next read or write rehydrates it from that copy first.
After each change: one `persistCart` job is enqueued and one `cart:update` event per
change is sent to the user's room.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from bookbazar.cart import repository
from bookbazar.cart.schemas import AdjustedOut, CartChangeOut, CartItemOut, CartOut
from bookbazar.errors import Conflict, NotFound, Unprocessable
from bookbazar.kit import faults
from bookbazar.kit.clock import now_ms
from bookbazar.kit.queues import CART, job_id
from bookbazar.models.commerce import MAX_LINE_QUANTITY
from bookbazar.services import Services

log = structlog.get_logger(__name__)

PERSIST_JOB = "persistCart"
CART_UPDATE = "cart:update"
ITEM_UPDATED = "cart:item_updated"
ITEM_DELETED = "cart:item_deleted"
CLEARED = "cart:cleared"
# Enqueueing the write-behind job: tries, and the pause before each retry (seconds).
ENQUEUE_ATTEMPTS = 3
ENQUEUE_RETRY_PAUSE = 0.05
# A cart that vanishes again right after being rehydrated (Redis flushed repeatedly).
_REHYDRATE_ROUNDS = 3
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def cart_key(user_id: UUID | str) -> str:
    # The user id is the hash tag: every key a cart script touches is in one slot.
    return f"bb:cart:{{{user_id}}}"


def ms_to_datetime(ms: int) -> datetime:
    return _EPOCH + timedelta(milliseconds=ms)


def datetime_to_ms(value: datetime) -> int:
    return (value - _EPOCH) // timedelta(milliseconds=1)


@dataclass(frozen=True, slots=True)
class CartSnapshot:
    version: int
    updated_at: int | None  # epoch ms of the last change; None when never changed
    currency: str | None  # set exactly when the cart has lines
    lines: dict[UUID, int]


def parse_snapshot(raw: dict[str, str]) -> CartSnapshot | None:
    """Decode the Redis hash; None when there is no cart in Redis."""
    if not raw:
        return None
    return CartSnapshot(
        version=int(raw.get("v") or 0),
        updated_at=int(raw.get("u") or 0) or None,
        currency=raw.get("c") or None,
        lines={UUID(f[2:]): int(q) for f, q in raw.items() if f.startswith("b:")},
    )


async def read_snapshot(services: Services, user_id: UUID) -> CartSnapshot | None:
    """The cart as Redis holds it right now (one atomic read), or None if Redis has none."""
    raw: dict[str, str] = await services.redis.hgetall(cart_key(user_id))  # type: ignore[misc]
    return parse_snapshot(raw)


async def rehydrate(services: Services, user_id: UUID, session: AsyncSession | None = None) -> bool:
    """Recreate the Redis cart from PostgreSQL (empty at version 0 for a user who never
    had one). Writes only if Redis still has no cart, so it never overwrites a newer one;
    returns whether it wrote. Reads through `session` when given: a request that already
    holds a connection must not wait for a second one (pool exhaustion deadlock)."""
    if session is not None:
        stored = await repository.load_cart(session, user_id)
    else:
        async with services.sessionmaker() as own_session:
            stored = await repository.load_cart(own_session, user_id)
    args: list[str | int]
    if stored is None:
        args = [0, 0, ""]
    else:
        currency = stored.lines[0][2] if stored.lines else ""
        args = [stored.version, datetime_to_ms(stored.updated_at), currency]
        for book_id, quantity, _ in stored.lines:
            args += [str(book_id), quantity]
    result = await services.scripts.run("cart_rehydrate", [cart_key(user_id)], args)
    written = bool(result[0] == "OK")
    if written and stored is not None:
        log.info(
            "cart_rehydrated",
            user_id=str(user_id),
            version=stored.version,
            lines=len(stored.lines),
        )
    return written


async def load_snapshot(
    services: Services, user_id: UUID, session: AsyncSession | None = None
) -> CartSnapshot:
    """The live cart, rehydrated from PostgreSQL first if Redis lost it."""
    for _ in range(_REHYDRATE_ROUNDS):
        snapshot = await read_snapshot(services, user_id)
        if snapshot is not None:
            return snapshot
        await rehydrate(services, user_id, session)
    raise RuntimeError("the cart kept disappearing from Redis while being read")


async def _run(
    services: Services,
    user_id: UUID,
    script: str,
    args: list[Any],
    session: AsyncSession | None = None,
) -> list[Any]:
    """Run a cart script; if Redis has no cart, rehydrate it and run the script again."""
    for _ in range(_REHYDRATE_ROUNDS):
        result = list(await services.scripts.run(script, [cart_key(user_id)], args))
        if result[0] != "NO_CART":
            return result
        await rehydrate(services, user_id, session)
    raise RuntimeError("the cart kept disappearing from Redis while being changed")


# ------------------------------------------------------------------ after a change


def _event(
    kind: str,
    user_id: UUID,
    version: int,
    updated_at: int,
    *,
    book_id: UUID | str | None = None,
    quantity: int | None = None,
) -> dict[str, Any]:
    payload: dict[str, Any] = {"event": kind, "userId": str(user_id)}
    if book_id is not None:
        payload["bookId"] = str(book_id)
    if quantity is not None:
        payload["quantity"] = quantity
    payload["version"] = version
    payload["updatedAt"] = updated_at
    return payload


async def enqueue_persist(services: Services, user_id: UUID, version: int, updated_at: int) -> bool:
    """Enqueue the write-behind job for the change that produced `version`.

    The job id is unique per change, so a retried enqueue never makes two jobs. A failed
    enqueue is retried, then reported as an error (never dropped silently); Redis still
    holds the change and the next change's job writes the whole cart. Returns success.
    """
    data = {"userId": str(user_id), "version": version}
    jid = job_id("persist", user_id, version, updated_at)
    for attempt in range(1, ENQUEUE_ATTEMPTS + 1):
        try:
            await services.queues.add(CART, PERSIST_JOB, data, job_id=jid)
            return True
        except Exception as exc:
            if attempt == ENQUEUE_ATTEMPTS:
                log.error(
                    "cart_persist_enqueue_failed",
                    user_id=str(user_id),
                    version=version,
                    attempts=attempt,
                    error=repr(exc),
                )
                return False
            log.warning(
                "cart_persist_enqueue_retry",
                user_id=str(user_id),
                version=version,
                attempt=attempt,
                error=repr(exc),
            )
            await asyncio.sleep(ENQUEUE_RETRY_PAUSE * 4 ** (attempt - 1))
    return False  # pragma: no cover - the loop always returns


async def _after_change(
    services: Services,
    user_id: UUID,
    version: int,
    updated_at: int,
    events: Sequence[dict[str, Any]],
) -> None:
    await enqueue_persist(services, user_id, version, updated_at)
    for payload in events:
        try:
            await services.emitter.emit_to_user(user_id, CART_UPDATE, payload)
        except Exception as exc:
            # The change is made and queued for PostgreSQL; a client that missed it re-reads.
            log.error(
                "cart_event_failed",
                user_id=str(user_id),
                version=payload["version"],
                error=repr(exc),
            )


# ------------------------------------------------------------------ reading


async def _render(services: Services, session: AsyncSession, snapshot: CartSnapshot) -> CartOut:
    books = await services.books.get_many(session, list(snapshot.lines))
    items = [
        CartItemOut(
            book_id=book.id,
            title=book.title,
            price=book.price,
            quantity=quantity,
            line_total=book.price * quantity,
        )
        for book_id, quantity in snapshot.lines.items()
        if (book := books.get(book_id)) is not None
    ]
    items.sort(key=lambda item: (item.title.casefold(), str(item.book_id)))
    return CartOut(
        items=items,
        total=sum(item.line_total for item in items),
        currency=snapshot.currency if items else None,
        version=snapshot.version,
        updated_at=snapshot.updated_at,
    )


async def view(services: Services, session: AsyncSession, user_id: UUID) -> CartOut:
    """The user's cart with titles, unit prices and totals (an empty cart is not an
    error). Rehydrates from PostgreSQL if Redis lost it."""
    return await _render(services, session, await load_snapshot(services, user_id, session))


# ------------------------------------------------------------------ changing


async def set_line(
    services: Services,
    session: AsyncSession,
    user_id: UUID,
    book_id: UUID,
    quantity: int,
) -> CartChangeOut:
    """Set one line's quantity, atomically. Above what is available the line gets what
    is available and `adjusted` says so.

    Raises Unprocessable (quantity not an integer 1..MAX_LINE_QUANTITY), NotFound
    (unknown book), Conflict (nothing available, or the cart holds books priced in
    another currency). Nothing changes when it raises.
    """
    if isinstance(quantity, bool) or not 1 <= quantity <= MAX_LINE_QUANTITY:
        raise Unprocessable(
            f"quantity must be an integer from 1 to {MAX_LINE_QUANTITY}",
            errors=[{"field": "quantity", "message": "out of range"}],
        )
    # Availability first: rebuilding a missing counter takes a pooled connection of its
    # own, which must not happen while this request's session holds one (under load every
    # request would hold one and wait for a second: pool exhaustion).
    levels = await services.inventory.available([book_id])
    book = await services.books.get(session, book_id)
    if book is None:
        raise NotFound("Book not found")
    available = max(0, levels.get(book_id, 0))
    if available == 0:
        raise Conflict(
            f"'{book.title}' is not available right now",
            errors=[{"bookId": str(book_id), "requested": quantity, "available": 0}],
        )
    granted = min(quantity, available)
    result = await _run(
        services,
        user_id,
        "cart_set_line",
        [str(book_id), granted, book.currency, now_ms(), MAX_LINE_QUANTITY],
        session,
    )
    if result[0] == "CURRENCY":
        raise Conflict(
            f"Your cart holds books priced in {result[1]}; this book is priced in "
            f"{book.currency}. Order them separately.",
            errors=[{"bookId": str(book_id), "currency": book.currency, "cartCurrency": result[1]}],
        )
    if result[0] != "OK":
        raise RuntimeError(f"unexpected cart_set_line result {result[0]!r}")
    line_quantity, version, updated_at = int(result[1]), int(result[2]), int(result[3])
    log.debug(
        "cart_line_set",
        user_id=str(user_id),
        book_id=str(book_id),
        quantity=line_quantity,
        requested=quantity,
        version=version,
    )
    await _after_change(
        services,
        user_id,
        version,
        updated_at,
        [
            _event(
                ITEM_UPDATED, user_id, version, updated_at, book_id=book_id, quantity=line_quantity
            )
        ],
    )
    adjusted = (
        AdjustedOut(
            book_id=book_id, requested=quantity, available=available, quantity=line_quantity
        )
        if granted < quantity
        else None
    )
    cart = await view(services, session, user_id)
    return CartChangeOut(**cart.model_dump(), adjusted=adjusted)


async def remove_line(
    services: Services, session: AsyncSession, user_id: UUID, book_id: UUID
) -> CartOut:
    """Remove one line, atomically. Raises NotFound if the cart has no such line."""
    result = await _run(services, user_id, "cart_remove_line", [str(book_id), now_ms()], session)
    if result[0] == "NOT_FOUND":
        raise NotFound("This book is not in your cart")
    if result[0] != "OK":
        raise RuntimeError(f"unexpected cart_remove_line result {result[0]!r}")
    version, updated_at = int(result[1]), int(result[2])
    log.info("cart_line_removed", user_id=str(user_id), book_id=str(book_id), version=version)
    await _after_change(
        services,
        user_id,
        version,
        updated_at,
        [_event(ITEM_DELETED, user_id, version, updated_at, book_id=book_id)],
    )
    return await view(services, session, user_id)


async def clear(services: Services, session: AsyncSession, user_id: UUID) -> CartOut:
    """Remove every line, atomically. Clearing an empty cart changes nothing (no new
    version, no event) and is not an error."""
    result = await _run(services, user_id, "cart_clear", [now_ms()], session)
    if result[0] == "OK":
        version, updated_at = int(result[1]), int(result[2])
        log.info("cart_cleared", user_id=str(user_id), version=version, lines=int(result[3]))
        await _after_change(
            services, user_id, version, updated_at, [_event(CLEARED, user_id, version, updated_at)]
        )
    elif result[0] != "EMPTY":
        raise RuntimeError(f"unexpected cart_clear result {result[0]!r}")
    return await view(services, session, user_id)


# ------------------------------------------------------------------ for orders


async def cart_lines(
    services: Services, user_id: UUID, session: AsyncSession | None = None
) -> tuple[list[tuple[UUID, int]], int]:
    """The cart's (book id, quantity) lines, ordered by book id, and its version, read
    atomically. Rehydrates from PostgreSQL if Redis lost the cart (through `session` if
    given, so a caller holding a connection does not need a second one)."""
    snapshot = await load_snapshot(services, user_id, session)
    return sorted(snapshot.lines.items(), key=lambda line: str(line[0])), snapshot.version


async def clear_ordered(
    services: Services, user_id: UUID, version: int, book_ids: Sequence[UUID]
) -> None:
    """After an order took the cart's items: atomically, if the cart is still at
    `version` clear it (one `cart:cleared`), else remove only the ordered books' lines
    (one `cart:item_deleted` and one version per line: the buyer changed the cart
    meanwhile). Safe to call twice: the second call finds nothing to remove."""
    args: list[str | int] = [version, now_ms(), *(str(b) for b in dict.fromkeys(book_ids))]
    result = await _run(services, user_id, "cart_clear_ordered", args)
    tag = result[0]
    if tag == "NOOP":
        return
    final, updated_at = int(result[1]), int(result[2])
    if tag == "CLEARED":
        events = [_event(CLEARED, user_id, final, updated_at)]
    elif tag == "REMOVED":
        removed = [str(b) for b in result[3:]]
        first = final - len(removed) + 1
        events = [
            _event(ITEM_DELETED, user_id, first + i, updated_at, book_id=b)
            for i, b in enumerate(removed)
        ]
    else:
        raise RuntimeError(f"unexpected cart_clear_ordered result {tag!r}")
    log.info("cart_cleared_after_order", user_id=str(user_id), outcome=tag, version=final)
    await _after_change(services, user_id, final, updated_at, events)


# ------------------------------------------------------------------ write-behind


async def persist_cart(services: Services, user_id: UUID) -> dict[str, Any]:
    """Write the user's current Redis cart to PostgreSQL if it is newer than the stored
    copy (one transaction, version-guarded). Idempotent and order-insensitive: a retried,
    duplicated or late job stores the current cart or changes nothing. Nothing to do when
    Redis has no cart (a later change is what needs storing) or it never changed."""
    snapshot = await read_snapshot(services, user_id)
    if snapshot is None or snapshot.version == 0:
        log.info("cart_persist_skipped", user_id=str(user_id), reason="no cart in Redis")
        return {"written": False, "version": None}
    faults.crash_point("cart:persist-before-write")
    async with services.sessionmaker() as session, session.begin():
        written = await repository.save_snapshot(
            session,
            user_id,
            snapshot.version,
            ms_to_datetime(snapshot.updated_at or 0),
            sorted(snapshot.lines.items(), key=lambda line: str(line[0])),
        )
    log.info(
        "cart_persisted" if written else "cart_persist_not_newer",
        user_id=str(user_id),
        version=snapshot.version,
        lines=len(snapshot.lines),
    )
    return {"written": written, "version": snapshot.version}
