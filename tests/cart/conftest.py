"""Cart test helpers: the cart as Redis and as PostgreSQL hold it, and a real BullMQ
worker for the `cart` queue built with the production processor."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest
from bullmq import Worker
from sqlalchemy import text

from bookbazar.cart import service as cart_service
from bookbazar.cart.jobs import JOBS
from bookbazar.cart.schemas import PersistCart
from bookbazar.kit.jobs import JobContext
from bookbazar.kit.queues import CART
from bookbazar.services import Services
from bookbazar.worker import make_processor

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


async def run_persist(services: Services, uid: uuid.UUID, scheduled_ms: int = 0) -> Any:
    """Run the production persistCart handler for this user, as a job would."""
    job = PersistCart(user_id=uid, scheduled_ms=scheduled_ms)
    context = JobContext(services, CART, PersistCart.name, job.job_id())
    return await JOBS.handlers[CART][PersistCart.name].handler(context, job)


async def persist_jobs(services: Services) -> list[Any]:
    """The cart queue's jobs still to run (delayed until the burst's window ends)."""
    return list(await services.queues.get(CART).getJobs(["delayed", "waiting"]))


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


@pytest.fixture
async def cart_worker(services: Services) -> AsyncIterator[Worker]:
    """A real BullMQ Worker on the `cart` queue, running the production processor."""
    redis_url = services.settings.redis_url
    worker = Worker(
        CART,
        make_processor(services, CART, JOBS.handlers[CART], {}),
        {"connection": redis_url, "concurrency": 4, "prefix": "bull"},
    )
    try:
        yield worker
    finally:
        await worker.close()
