"""Cart rules.

Redis holds the live cart: one hash per user (`bb:cart:{<userId>}`), changed only by
`cart_change.lua`, which makes each change atomically, bumps the version once per changed
line and sends one `cart:update` event per changed line to the user's room (and their
recent-events stream), in one round trip together with the write-behind mark.

PostgreSQL holds a copy written behind, coalesced: a change puts the user in the dirty
set (`bb:cart-dirty`, due CART_PERSIST_DELAY_MS after the first change of a burst; later
changes keep the earliest due time), and the `cart:persist` job, scheduled once per
deployment, stores every due cart as it is then, many in one transaction, each guarded by
its version: PostgreSQL converges on the latest version and never goes back. When Redis
has lost a cart, the next read or write rehydrates it from PostgreSQL first.
"""

from __future__ import annotations

import enum
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import structlog
from redis.asyncio.client import Pipeline

from bookbazar.cart import repository
from bookbazar.cart.schemas import AdjustedOut, CartChangeOut, CartItemOut, CartOut
from bookbazar.errors import Conflict, NotFound, Unprocessable
from bookbazar.kit import faults
from bookbazar.kit.clock import now_ms
from bookbazar.metrics import EVENTS_EMITTED
from bookbazar.models.commerce import MAX_LINE_QUANTITY
from bookbazar.realtime import user_room
from bookbazar.realtime.adapter import lua_config
from bookbazar.realtime.stream import STREAM_MAXLEN, STREAM_RETENTION_MS, stream_key
from bookbazar.services import Services

log = structlog.get_logger(__name__)

CART_UPDATE = "cart:update"
# Users whose cart changed since it was last written to PostgreSQL: zset user -> due (ms).
DIRTY_KEY = "bb:cart-dirty"
# How many carts one persist round takes, and how long it holds them (a worker that dies
# holding them lets them come due again after this).
PERSIST_BATCH = 500
PERSIST_LEASE_MS = 60_000
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
    info: str = ""
    events: int = 0  # cart:update events sent
    snapshot: CartSnapshot | None = None


def _change_result(reply: Sequence[Any]) -> ChangeResult:
    status = Change(str(reply[0]))
    if status is Change.NO_CART:
        return ChangeResult(status)
    return ChangeResult(
        status=status,
        version=int(reply[1]),
        updated_at=int(reply[2]),
        info=str(reply[3]),
        events=int(reply[4]),
        snapshot=_fields(reply[5:]),
    )


def _fields(flat: Sequence[Any]) -> CartSnapshot | None:
    values = [str(v) for v in flat]
    return parse_snapshot(dict(zip(values[::2], values[1::2], strict=True)))


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
    services: Services,
    user_id: UUID,
    op: str,
    args: Sequence[str | int],
    *,
    store: tuple[str, str, int] | None = None,
    publish: Sequence[str] = (),
) -> ChangeResult:
    """Run one change (with its events and the write-behind mark) in one round trip; if
    Redis has no cart, rehydrate it and run the change again. `store` (key, value, TTL s)
    and `publish` (Socket.IO messages) are done in the same step, once."""
    now = now_ms()
    extras: dict[str, Any] = {
        "emit": {
            **lua_config(user_room(user_id)),
            "user": str(user_id),
            "id": uuid.uuid4().hex,
            "maxlen": STREAM_MAXLEN,
            "keep": STREAM_RETENTION_MS,
        },
        "publish": list(publish),
    }
    script_keys = [cart_key(user_id), ordered_key(user_id), stream_key(user_id)]
    if store is not None:
        extras["store"] = {"value": store[1], "ttl": store[2]}
        script_keys.append(store[0])
    else:
        script_keys.append(cart_key(user_id))
    argv: list[str | int] = [op, now, json.dumps(extras, separators=(",", ":")), *args]
    due = now + services.settings.cart_persist_delay_ms

    def mark_dirty(pipe: Pipeline) -> None:
        # LT: a burst keeps its first due time, and a change made while the persist job
        # holds the entry (its score moved into the future) brings it due again.
        pipe.zadd(DIRTY_KEY, {str(user_id): due}, lt=True)

    for _ in range(_REHYDRATE_ROUNDS):
        replies = await services.scripts.run_with("cart_change", script_keys, argv, mark_dirty)
        result = _change_result(replies[0])
        if result.status is not Change.NO_CART:
            if result.events:
                EVENTS_EMITTED.labels(CART_UPDATE).inc(result.events)
            return result
        await rehydrate(services, user_id)
    raise RuntimeError("the cart kept disappearing from Redis while being changed")


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
    return await _rendered(services, user_id, result)


async def clear(services: Services, user_id: UUID) -> CartOut:
    """Remove every line, atomically. Clearing an empty cart changes nothing (no new
    version, no event) and is not an error."""
    result = await _change(services, user_id, "clear", [])
    if result.status is Change.OK:
        log.info("cart_cleared", version=result.version, lines=int(result.info))
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
    *,
    store: tuple[str, str, int] | None = None,
    publish: Sequence[str] = (),
) -> None:
    """After an order took the cart's items: atomically, if the cart is still at
    `version` clear it (one `cart:cleared`), else remove only the ordered books' lines
    (one `cart:item_deleted` and one version per line: the buyer changed the cart
    meanwhile). Once per order: a second call for the same order changes nothing, even
    if the buyer put those books in the cart again since. `store` and `publish` ride
    along in the same round trip (the order's idempotent answer, its stock levels)."""
    args: list[str | int] = [
        version,
        str(order_id),
        services.settings.idempotency_ttl_seconds * 2,
        *(str(b) for b in dict.fromkeys(book_ids)),
    ]
    result = await _change(services, user_id, "ordered", args, store=store, publish=publish)
    if result.status is Change.OK:
        log.info("cart_cleared_after_order", outcome=result.info, version=result.version)


# ------------------------------------------------------------------ write-behind


async def persist_cart(services: Services, user_id: UUID) -> dict[str, Any]:
    """Write one user's current Redis cart to PostgreSQL if it is newer than the stored
    copy (see `persist_carts`)."""
    written = await persist_carts(services, [user_id])
    return written.get(user_id, {"written": False, "version": None})


async def persist_carts(services: Services, user_ids: Sequence[UUID]) -> dict[UUID, dict[str, Any]]:
    """Write these users' current Redis carts to PostgreSQL, in one transaction, each only
    if it is newer than the stored copy (version-guarded). Idempotent and
    order-insensitive: a retried, duplicated or late run stores the current carts or
    changes nothing. Users with no cart in Redis (or one that never changed) are left out."""
    async with services.redis.pipeline(transaction=False) as pipe:
        for user_id in user_ids:
            pipe.hgetall(cart_key(user_id))
        raw: list[dict[str, str]] = await pipe.execute()
    snapshots = {
        uid: snap
        for uid, fields in zip(user_ids, raw, strict=True)
        if (snap := parse_snapshot(fields)) is not None and snap.version > 0
    }
    if not snapshots:
        return {}
    faults.crash_point("cart:persist-before-write")
    rows = [
        repository.CartRow(
            uid,
            snap.version,
            ms_to_datetime(snap.updated_at or 0),
            sorted(snap.lines.items(), key=lambda line: str(line[0])),
        )
        for uid, snap in snapshots.items()
    ]
    async with services.pg.tx() as conn:
        written = await repository.save_snapshots(conn, rows)
    log.debug("carts_persisted", carts=len(rows), written=len(written))
    return {
        uid: {"written": uid in written, "version": snap.version} for uid, snap in snapshots.items()
    }


async def persist_due(services: Services) -> int:
    """Write every cart whose write-behind is due (the `cart:persist` job). Takes up to
    PERSIST_BATCH at a time under a lease (a worker that dies holding them lets them come
    due again), and lets go of each only if it did not change again meanwhile. Returns
    how many carts were looked at."""
    done = 0
    while True:
        now = now_ms()
        taken = await services.scripts.run(
            "dirty_take", [DIRTY_KEY], [now, now + PERSIST_LEASE_MS, PERSIST_BATCH]
        )
        if not taken:
            return done
        user_ids = [UUID(str(u)) for u in taken]
        await persist_carts(services, user_ids)
        await services.scripts.run(
            "dirty_release", [DIRTY_KEY], [now + PERSIST_LEASE_MS, *map(str, user_ids)]
        )
        done += len(user_ids)
        if len(user_ids) < PERSIST_BATCH:
            return done
