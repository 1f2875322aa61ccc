"""Cart test helpers: the cart as Redis and as PostgreSQL hold it, and its write-behind."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
from sqlalchemy import text

from bookbazar.cart import service as cart_service
from bookbazar.services import Services

CartState = tuple[int, int | None, dict[uuid.UUID, int]]


async def add(
    client: httpx.AsyncClient, user: dict[str, Any], book_id: uuid.UUID | str, quantity: Any
) -> httpx.Response:
    return await client.post(
        "/api/v1/cart/add",
        json={"bookId": str(book_id), "quantity": quantity},
        headers=user["headers"],
    )


def user_id(user: dict[str, Any]) -> uuid.UUID:
    return uuid.UUID(user["user"]["id"])


async def redis_state(services: Services, uid: uuid.UUID) -> CartState | None:
    snap = await cart_service.read_snapshot(services, uid)
    if snap is None:
        return None
    return snap.version, snap.updated_at, dict(snap.lines)


async def pg_state(services: Services, uid: uuid.UUID) -> CartState | None:
    async with services.sessionmaker() as session:
        row = (
            await session.execute(
                text("SELECT id, version, updated_at FROM carts WHERE user_id = :u"), {"u": uid}
            )
        ).one_or_none()
        if row is None:
            return None
        items = await session.execute(
            text("SELECT book_id, quantity FROM cart_items WHERE cart_id = :c"), {"c": row.id}
        )
        lines = {r.book_id: int(r.quantity) for r in items}
    return int(row.version), cart_service.datetime_to_ms(row.updated_at), lines


async def run_persist(services: Services, uid: uuid.UUID) -> Any:
    """Write this user's cart behind, as the `cart:persist` job does for every due cart."""
    return await cart_service.persist_cart(services, uid)


async def dirty(services: Services) -> dict[str, float]:
    """The carts waiting for their write-behind: user id -> due (ms)."""
    rows = await services.redis.zrange(cart_service.DIRTY_KEY, 0, -1, withscores=True)
    return {str(member): float(score) for member, score in rows}


async def eventually(
    check: Callable[[], Awaitable[bool]], timeout: float = 10.0, interval: float = 0.05
) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if await check():
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(interval)
