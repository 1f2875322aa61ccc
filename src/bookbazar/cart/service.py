"""Cart rules.

Redis holds the live cart: one hash per user (`bb:cart:{<userId>}`), changed only by
`cart_change.lua`, which makes each change atomically, bumps the version once per changed
line and marks the cart for the write-behind, in one round trip. PostgreSQL holds a copy
written behind by the `persistCart` job, coalesced: the first change after a write
schedules one job CART_PERSIST_DELAY_MS later, and every change until that job reads the
cart rides along. The job stores the cart as it is then, guarded by its version, so
PostgreSQL converges on the latest version and never goes back. When Redis has lost a
cart, the next read or write rehydrates it from PostgreSQL first. One `cart:update` event
per changed line goes to the user's room.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import structlog

from bookbazar.cart import repository
from bookbazar.cart.schemas import AdjustedOut, CartChangeOut, CartItemOut, CartOut, PersistCart
from bookbazar.errors import Conflict, NotFound, Unprocessable
from bookbazar.kit import faults
from bookbazar.kit.clock import now_ms
from bookbazar.models.commerce import MAX_LINE_QUANTITY
from bookbazar.services import Services

log = structlog.get_logger(__name__)

CART_UPDATE = "cart:update"
ITEM_UPDATED = "cart:item_updated"
ITEM_DELETED = "cart:item_deleted"
CLEARED = "cart:cleared"
# Enqueueing the write-behind job: tries, and the pause before each retry (seconds).
ENQUEUE_ATTEMPTS = 3
ENQUEUE_RETRY_PAUSE = 0.05
# A scheduled persist job not run after this long is presumed lost: the next change
# schedules another (a duplicate is harmless: the job is version-guarded).
PERSIST_STALE_MS = 30_000
# A cart that vanishes again right after being rehydrated (Redis flushed repeatedly).
_REHYDRATE_ROUNDS = 3
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def cart_key(user_id: UUID | str) -> str:
    # The user id is the hash tag: every key a cart script touches is in one slot.
    return f"bb:cart:{{{user_id}}}"


def ordered_key(user_id: UUID | str) -> str:
    """The orders this user's cart was emptied for (so that happens once per order)."""
    return f"bb:cart:{{{user_id}}}:ordered"


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


class Change(enum.StrEnum):
    OK = "OK"
    NOOP = "NOOP"
    CURRENCY = "CURRENCY"
    NO_CART = "NO_CART"


@dataclass(frozen=True, slots=True)
class ChangeResult:
    """The typed reply of cart_change.lua."""

    status: Change
    version: int = 0
    updated_at: int = 0
    schedule: bool = False
    info: str = ""
    snapshot: CartSnapshot | None = None


def _change_result(reply: Sequence[Any]) -> ChangeResult:
    status = Change(str(reply[0]))
    if status is Change.NO_CART:
        return ChangeResult(status)
    fields = [str(v) for v in reply[5:]]
    return ChangeResult(
        status=status,
        version=int(reply[1]),
        updated_at=int(reply[2]),
        schedule=int(reply[3]) == 1,
        info=str(reply[4]),
        snapshot=parse_snapshot(dict(zip(fields[::2], fields[1::2], strict=True))),
    )


async def read_snapshot(services: Services, user_id: UUID) -> CartSnapshot | None:
    """The cart as Redis holds it right now (one atomic read), or None if Redis has none."""
    raw: dict[str, str] = await services.redis.hgetall(cart_key(user_id))  # type: ignore[misc]
    return parse_snapshot(raw)


async def rehydrate(services: Services, user_id: UUID) -> bool:
    """Recreate the Redis cart from PostgreSQL (empty at version 0 for a user who never
    had one). Writes only if Redis still has no cart, so it never overwrites a newer one;
    returns whether it wrote."""
    async with services.sessionmaker() as session:
        stored = await repository.load_cart(session, user_id)
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


async def load_snapshot(services: Services, user_id: UUID) -> CartSnapshot:
    """The live cart, rehydrated from PostgreSQL first if Redis lost it."""
    for _ in range(_REHYDRATE_ROUNDS):
        snapshot = await read_snapshot(services, user_id)
        if snapshot is not None:
            return snapshot
        await rehydrate(services, user_id)
    raise RuntimeError("the cart kept disappearing from Redis while being read")


async def _change(
    services: Services, user_id: UUID, op: str, args: Sequence[str | int]
) -> ChangeResult:
    """Run one change; if Redis has no cart, rehydrate it and run the change again. Then
    schedule the write-behind if the script asked for it."""
    script_keys = [cart_key(user_id), ordered_key(user_id)]
    argv: list[str | int] = [op, now_ms(), PERSIST_STALE_MS, *args]
    for _ in range(_REHYDRATE_ROUNDS):
        result = _change_result(await services.scripts.run("cart_change", script_keys, argv))
        if result.status is not Change.NO_CART:
            if result.schedule:
                await schedule_persist(services, user_id, result.updated_at)
            return result
        await rehydrate(services, user_id)
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


async def schedule_persist(services: Services, user_id: UUID, scheduled_ms: int) -> bool:
    """Enqueue the one write-behind job of this burst of changes, to run
    CART_PERSIST_DELAY_MS from now. A failed enqueue is retried, then reported as an error
    (never dropped silently); Redis still holds the cart, and a change made once the
    mark is stale schedules again. Returns success."""
    job = PersistCart(user_id=user_id, scheduled_ms=scheduled_ms)
    delay_ms = services.settings.cart_persist_delay_ms
    for attempt in range(1, ENQUEUE_ATTEMPTS + 1):
        try:
            await services.queues.enqueue(job, delay_ms=delay_ms)
            return True
        except Exception as exc:
            if attempt == ENQUEUE_ATTEMPTS:
                log.error(
                    "cart_persist_enqueue_failed",
                    user_id=str(user_id),
                    attempts=attempt,
                    error=repr(exc),
                )
                return False
            log.warning(
                "cart_persist_enqueue_retry",
                user_id=str(user_id),
                attempt=attempt,
                error=repr(exc),
            )
            await asyncio.sleep(ENQUEUE_RETRY_PAUSE * 4 ** (attempt - 1))
    return False  # pragma: no cover - the loop always returns


async def _announce(services: Services, user_id: UUID, events: Sequence[dict[str, Any]]) -> None:
    for payload in events:
        try:
            await services.emitter.emit_to_user(user_id, CART_UPDATE, payload)
        except Exception as exc:
            # The change is made and marked for PostgreSQL; a client that missed it re-reads.
            log.error(
                "cart_event_failed",
                user_id=str(user_id),
                version=payload["version"],
                error=repr(exc),
            )


# ------------------------------------------------------------------ reading


async def render(services: Services, snapshot: CartSnapshot) -> CartOut:
    books = await services.books.get_many(list(snapshot.lines))
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


async def view(services: Services, user_id: UUID) -> CartOut:
    """The user's cart with titles, unit prices and totals (an empty cart is not an
    error). Rehydrates from PostgreSQL if Redis lost it."""
    return await render(services, await load_snapshot(services, user_id))


async def _rendered(services: Services, user_id: UUID, result: ChangeResult) -> CartOut:
    if result.snapshot is None:  # pragma: no cover - a change always returns the cart
        return await view(services, user_id)
    return await render(services, result.snapshot)


# ------------------------------------------------------------------ changing


async def set_line(
    services: Services, user_id: UUID, book_id: UUID, quantity: int
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
    # The book first: an unknown id must cost nothing more (no counter rebuild).
    book = await services.books.get(book_id)
    if book is None:
        raise NotFound("Book not found")
    available = max(0, (await services.inventory.available([book_id])).get(book_id, 0))
    if available == 0:
        raise Conflict(
            f"'{book.title}' is not available right now",
            errors=[{"bookId": str(book_id), "requested": quantity, "available": 0}],
        )
    granted = min(quantity, available)
    result = await _change(
        services, user_id, "set", [str(book_id), granted, book.currency, MAX_LINE_QUANTITY]
    )
    if result.status is Change.CURRENCY:
        raise Conflict(
            f"Your cart holds books priced in {result.info}; this book is priced in "
            f"{book.currency}. Order them separately.",
            errors=[
                {"bookId": str(book_id), "currency": book.currency, "cartCurrency": result.info}
            ],
        )
    line_quantity = int(result.info)
    log.debug("cart_line_set", book_id=str(book_id), quantity=line_quantity, requested=quantity)
    await _announce(
        services,
        user_id,
        [
            _event(
                ITEM_UPDATED,
                user_id,
                result.version,
                result.updated_at,
                book_id=book_id,
                quantity=line_quantity,
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
    cart = await _rendered(services, user_id, result)
    return CartChangeOut(**cart.model_dump(), adjusted=adjusted)


async def remove_line(services: Services, user_id: UUID, book_id: UUID) -> CartOut:
    """Remove one line, atomically. Raises NotFound if the cart has no such line."""
    result = await _change(services, user_id, "remove", [str(book_id)])
    if result.status is not Change.OK:
        raise NotFound("This book is not in your cart")
    log.info("cart_line_removed", book_id=str(book_id), version=result.version)
    await _announce(
        services,
        user_id,
        [_event(ITEM_DELETED, user_id, result.version, result.updated_at, book_id=book_id)],
    )
    return await _rendered(services, user_id, result)


async def clear(services: Services, user_id: UUID) -> CartOut:
    """Remove every line, atomically. Clearing an empty cart changes nothing (no new
    version, no event) and is not an error."""
    result = await _change(services, user_id, "clear", [])
    if result.status is Change.OK:
        log.info("cart_cleared", version=result.version, lines=int(result.info))
        await _announce(
            services, user_id, [_event(CLEARED, user_id, result.version, result.updated_at)]
        )
    return await _rendered(services, user_id, result)


# ------------------------------------------------------------------ for orders


async def cart_lines(services: Services, user_id: UUID) -> tuple[list[tuple[UUID, int]], int]:
    """The cart's (book id, quantity) lines, ordered by book id, and its version, read
    atomically. Rehydrates from PostgreSQL if Redis lost the cart."""
    snapshot = await load_snapshot(services, user_id)
    return sorted(snapshot.lines.items(), key=lambda line: str(line[0])), snapshot.version


async def clear_ordered(
    services: Services,
    user_id: UUID,
    order_id: UUID,
    version: int,
    book_ids: Sequence[UUID],
) -> None:
    """After an order took the cart's items: atomically, if the cart is still at
    `version` clear it (one `cart:cleared`), else remove only the ordered books' lines
    (one `cart:item_deleted` and one version per line: the buyer changed the cart
    meanwhile). Once per order: a second call for the same order changes nothing, even
    if the buyer put those books in the cart again since."""
    args: list[str | int] = [
        version,
        str(order_id),
        services.settings.idempotency_ttl_seconds * 2,
        *(str(b) for b in dict.fromkeys(book_ids)),
    ]
    result = await _change(services, user_id, "ordered", args)
    if result.status is not Change.OK:
        return
    if result.info == "cleared":
        events = [_event(CLEARED, user_id, result.version, result.updated_at)]
    else:
        removed = result.info.split(",")
        first = result.version - len(removed) + 1
        events = [
            _event(ITEM_DELETED, user_id, first + i, result.updated_at, book_id=b)
            for i, b in enumerate(removed)
        ]
    log.info("cart_cleared_after_order", outcome=result.info, version=result.version)
    await _announce(services, user_id, events)


# ------------------------------------------------------------------ write-behind


async def persist_cart(services: Services, user_id: UUID) -> dict[str, Any]:
    """Write the user's current Redis cart to PostgreSQL if it is newer than the stored
    copy (one transaction, version-guarded). Idempotent and order-insensitive: a retried,
    duplicated or late job stores the current cart or changes nothing. Nothing to do when
    Redis has no cart (a later change is what needs storing) or it never changed."""
    fields = await services.scripts.run("cart_take", [cart_key(user_id)], [])
    snapshot = parse_snapshot(dict(zip(fields[::2], fields[1::2], strict=True)))
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
