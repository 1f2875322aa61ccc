"""Redis failover under traffic: a primary, a replica and a Sentinel; `bookbazar up --api 2
--workers 2` follows the primary through the Sentinel. The primary is SIGKILLed while
buyers are buying: requests fail fast (503) during the switch and recover, the queues
resume, and whatever the asynchronous replication lost is repaired by the audit: nothing
oversold, no order stuck, no event left unpublished."""

from __future__ import annotations

import asyncio
import os
import signal
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from bookbazar.config import Settings
from bookbazar.embedded import EmbeddedRedisSentinel
from bookbazar.services import Services
from tests.conftest import Infra, create_book, make_settings
from tests.faults.harness import all_relayed, assert_nothing_stuck, assert_stock_exact
from tests.orders.conftest import quick_users
from tests.scale.conftest import Fleet

DONE = {"PAID", "FULFILLING", "SHIPPED", "DELIVERED"}


@pytest.fixture
def redis_sentinel() -> Iterator[EmbeddedRedisSentinel]:
    with tempfile.TemporaryDirectory(prefix="bb-sentinel-") as root:
        topology = EmbeddedRedisSentinel(Path(root) / "redis")
        topology.start()
        try:
            yield topology
        finally:
            topology.stop()


@pytest.fixture
def settings(infra: Infra, clean_state: None, redis_sentinel: EmbeddedRedisSentinel) -> Settings:
    return make_settings(infra, redis_url=redis_sentinel.url)


async def _until_ok(
    call: Any, statuses: Counter[int], slow: list[float], deadline: float
) -> httpx.Response:
    """Call until the answer is not a 503 (the switch) nor "still being processed" (a
    placement whose claim on its key the switch left behind), counting what came back."""
    while True:
        started = time.monotonic()
        resp: httpx.Response = await call()
        statuses[resp.status_code] += 1
        if resp.status_code == 503:
            slow.append(time.monotonic() - started)
        elif not (resp.status_code == 409 and "still being processed" in resp.text):
            return resp
        assert time.monotonic() < deadline, f"still {resp.status_code} after the failover"
        await asyncio.sleep(0.2)


async def _buy(
    http: httpx.AsyncClient,
    buyer: dict[str, Any],
    book: uuid.UUID,
    statuses: Counter[int],
    slow: list[float],
    deadline: float,
) -> str:
    headers = buyer["headers"]
    key = uuid.uuid4().hex  # one key: a retried placement is the same order

    async def add() -> httpx.Response:
        body = {"bookId": str(book), "quantity": 1}
        return await http.post("/api/v1/cart/add", json=body, headers=headers)

    async def order() -> httpx.Response:
        return await http.post("/api/v1/orders", headers={**headers, "Idempotency-Key": key})

    assert (await _until_ok(add, statuses, slow, deadline)).status_code == 200
    placed = await _until_ok(order, statuses, slow, deadline)
    assert placed.status_code == 201, placed.text
    order_id: str = placed.json()["data"]["orderId"]

    async def init() -> httpx.Response:
        body = {"orderId": order_id}
        return await http.post("/api/v1/payments/init", json=body, headers=headers)

    started = await _until_ok(init, statuses, slow, deadline)
    assert started.status_code == 200, started.text
    checkout = started.json()["data"]["redirectUrl"]

    async def pay() -> httpx.Response:
        return await http.post(checkout + "/pay")

    paid = await _until_ok(pay, statuses, slow, deadline)
    assert paid.status_code in (200, 202, 409), paid.text  # 200: "already paid" on a retry
    return order_id


async def _statuses(services: Services, orders: list[str]) -> Counter[str]:
    async with services.sessionmaker() as session:
        rows = await session.execute(
            text("SELECT status FROM orders WHERE id = ANY(:ids)"),
            {"ids": [uuid.UUID(o) for o in orders]},
        )
        return Counter(status for (status,) in rows)


async def test_the_app_follows_a_redis_failover_and_repairs_what_it_lost(
    fleet: Fleet, services: Services, redis_sentinel: EmbeddedRedisSentinel
) -> None:
    book = await create_book(services, title="The Lathe of Heaven", stock=40, price=20_000)
    buyers = await quick_users(services, 24)
    statuses: Counter[int] = Counter()
    slow: list[float] = []
    async with httpx.AsyncClient(base_url=fleet.url, timeout=30) as http:
        deadline = time.monotonic() + 90
        # Before: a few purchases go through.
        orders = [await _buy(http, b, book, statuses, slow, deadline) for b in buyers[:4]]
        # During: buyers keep buying while the primary dies.
        assert redis_sentinel.primary.process is not None
        primary_pid = redis_sentinel.primary.process.pid
        traffic = [
            asyncio.create_task(_buy(http, b, book, statuses, slow, deadline)) for b in buyers[4:20]
        ]
        await asyncio.sleep(0.3)
        os.kill(primary_pid, signal.SIGKILL)
        orders += await asyncio.gather(*traffic)
        # After: the promoted replica serves, and a new purchase goes all the way.
        later = [await _buy(http, b, book, statuses, slow, deadline) for b in buyers[20:]]
        orders += later
        recovered = datetime.now(UTC)

        loop = asyncio.get_running_loop()
        finish = loop.time() + 60
        while (now := await _statuses(services, later)) != {"DELIVERED": len(later)}:
            assert loop.time() < finish, f"queues did not resume: {now}\n{fleet.tail()}"
            await asyncio.sleep(0.3)

    assert statuses[503] > 0, f"the switch was never seen: {statuses}"
    assert set(statuses) <= {200, 201, 202, 409, 503}, statuses  # never a 500
    assert max(slow) < 3.0, slow  # failing fast, not hanging
    assert redis_sentinel.primary.process.poll() is not None  # the old primary is gone

    # Whatever the switch lost is repaired: every order settles or awaits payment with
    # its units held, every event is published, and an audit that ran after the switch
    # left every counter exact.
    async def audited_since(moment: datetime) -> bool:
        async with services.sessionmaker() as session:
            query = text("SELECT count(*) FROM stock_audits WHERE started_at > :t")
            return bool((await session.execute(query, {"t": moment})).scalar_one())

    finish = asyncio.get_running_loop().time() + 60
    while True:
        states = await _statuses(services, orders)
        done = set(states) <= DONE | {"PAYMENT_PENDING"} and await all_relayed(services)
        if done and await audited_since(recovered):
            break
        assert asyncio.get_running_loop().time() < finish, f"{states}\n{fleet.tail()}"
        await asyncio.sleep(0.5)
    await assert_nothing_stuck(services)
    await assert_stock_exact(services, [book])
