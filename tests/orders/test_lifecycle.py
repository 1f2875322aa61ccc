"""Expiry, cancellation, their races, the outbox relay and the real worker."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from prometheus_client import generate_latest
from sqlalchemy import text
from tests.conftest import create_book, free_port, register
from tests.orders.conftest import (
    add_to_cart,
    available,
    force_deadline_passed,
    order_status,
    outbox_types,
    place,
    reservation_exists,
)

from bookbazar.config import Settings
from bookbazar.metrics import WORKER
from bookbazar.orders import service
from bookbazar.orders.jobs import EXPIRE_JOB, sweep_once
from bookbazar.outbox.relay import ORDER_EVENTS_CHANNEL, relay_once
from bookbazar.realtime.emitter import stream_key
from bookbazar.services import Services
from bookbazar.worker import WorkerProcess, load_registry


async def _placed(client: httpx.AsyncClient, services: Services, stock: int = 5, qty: int = 2):
    user = await register(client)
    book = await create_book(services, stock=stock)
    await add_to_cart(client, user, book, qty)
    resp = await place(client, user)
    assert resp.status_code == 201, resp.text
    return user, book, resp.json()["data"]["orderId"]


async def test_expiry_releases_stock_once_and_emits_once(
    client: httpx.AsyncClient, services: Services
) -> None:
    _, book, order_id = await _placed(client, services)
    assert await available(services, book) == 3
    # Not yet due: nothing happens.
    assert await service.expire_order(services, uuid.UUID(order_id)) is False
    assert await order_status(services, order_id) == "PAYMENT_PENDING"

    await force_deadline_passed(services, order_id)
    assert await service.expire_order(services, uuid.UUID(order_id)) is True
    assert await service.expire_order(services, uuid.UUID(order_id)) is False

    assert await order_status(services, order_id) == "EXPIRED"
    assert await available(services, book) == 5
    assert await outbox_types(services, order_id) == ["order.created", "order.expired"]
    assert not await reservation_exists(services, order_id)


async def test_cancel_releases_stock_and_rules(
    client: httpx.AsyncClient, services: Services
) -> None:
    user, book, order_id = await _placed(client, services)
    resp = await client.post(f"/api/v1/orders/{order_id}/cancel", headers=user["headers"])
    assert resp.status_code == 200, resp.text
    assert resp.json()["data"]["status"] == "CANCELLED"
    assert await available(services, book) == 5
    again = await client.post(f"/api/v1/orders/{order_id}/cancel", headers=user["headers"])
    assert again.status_code == 200
    assert await available(services, book) == 5
    assert await outbox_types(services, order_id) == ["order.created", "order.cancelled"]

    _, book2, expired_id = await _placed(client, services)
    await force_deadline_passed(services, expired_id)
    await service.expire_order(services, uuid.UUID(expired_id))
    user2 = await register(client)
    del user2
    async with services.sessionmaker() as session:
        owner = (
            await session.execute(
                text("SELECT user_id FROM orders WHERE id = :id"), {"id": uuid.UUID(expired_id)}
            )
        ).scalar_one()
    with pytest.raises(Exception) as refused:
        await service.cancel_order(services, owner, uuid.UUID(expired_id))
    assert getattr(refused.value, "status_code", None) == 409
    assert await available(services, book2) == 5


async def test_expiry_racing_cancel_has_one_winner(
    client: httpx.AsyncClient, services: Services
) -> None:
    for _ in range(15):
        user, book, order_id = await _placed(client, services, stock=4, qty=3)
        await force_deadline_passed(services, order_id)
        oid = uuid.UUID(order_id)
        results = await asyncio.gather(
            service.expire_order(services, oid),
            service.cancel_order(services, uuid.UUID(user["user"]["id"]), oid),
            service.expire_order(services, oid),
            return_exceptions=True,
        )
        final = await order_status(services, order_id)
        assert final in {"EXPIRED", "CANCELLED"}
        types = await outbox_types(services, order_id)
        assert types.count("order.expired") + types.count("order.cancelled") == 1
        assert await available(services, book) == 4, results
        assert not await reservation_exists(services, order_id)


async def test_relay_publishes_each_event_once_to_the_owner(
    client: httpx.AsyncClient, services: Services
) -> None:
    user, _, order_id = await _placed(client, services)
    pubsub = services.redis.pubsub()
    await pubsub.subscribe(ORDER_EVENTS_CHANNEL)
    # Two relays racing over the same rows must not both send an event.
    counts = await asyncio.gather(relay_once(services, {}), relay_once(services, {}))
    assert sum(counts) == 1
    assert await relay_once(services, {}) == 0
    messages = []
    for _ in range(20):
        msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.2)
        if msg:
            messages.append(json.loads(msg["data"]))
    await pubsub.aclose()
    assert [m["type"] for m in messages] == ["order.created"]
    event = messages[0]
    assert event["orderId"] == order_id and event["userId"] == user["user"]["id"]
    assert event["status"] == "PAYMENT_PENDING" and event["id"]
    # The owner's recent-events stream (what their sockets receive) has it, exactly once.
    entries = await services.redis.xrange(stream_key(user["user"]["id"]))
    order_events = [e[1]["event"] for e in entries if e[1]["event"].startswith("order.")]
    assert order_events == ["order.created"]
    async with services.sessionmaker() as session:
        unsent = (
            await session.execute(text("SELECT count(*) FROM outbox_events WHERE sent_at IS NULL"))
        ).scalar_one()
    assert unsent == 0


async def test_relay_retries_a_failed_event(client: httpx.AsyncClient, services: Services) -> None:
    _, _, order_id = await _placed(client, services)
    calls = []

    async def flaky(_: Services, event: dict[str, object]) -> None:
        calls.append(event["id"])
        if len(calls) == 1:
            raise RuntimeError("downstream unavailable")

    assert await relay_once(services, {"order.created": [flaky]}) == 1
    async with services.sessionmaker() as session, session.begin():
        row = (
            await session.execute(
                text("SELECT attempts, sent_at, last_error FROM outbox_events WHERE order_id=:o"),
                {"o": uuid.UUID(order_id)},
            )
        ).one()
        assert row.attempts == 1 and row.sent_at is None and "downstream" in row.last_error
        await session.execute(text("UPDATE outbox_events SET next_attempt_at = now()"))
    assert await relay_once(services, {"order.created": [flaky]}) == 1
    assert len(calls) == 2 and calls[0] == calls[1]


async def test_sweeper_expires_overdue_orders_too(
    client: httpx.AsyncClient, services: Services
) -> None:
    """The scheduled expiry is the usual path; the sweeper expires what it finds overdue
    as well (a backstop when the expiry ticks stopped)."""
    _, book, order_id = await _placed(client, services)
    await force_deadline_passed(services, order_id)
    async with services.sessionmaker() as session, session.begin():
        await session.execute(
            text("UPDATE orders SET expires_at = now() - interval '10 seconds' WHERE id = :id"),
            {"id": uuid.UUID(order_id)},
        )
    result = await sweep_once(services)
    assert result["expired"] == 1
    assert await order_status(services, order_id) == "EXPIRED"
    assert await available(services, book) == 5


# ---------------------------------------------------------------- the real worker


@pytest.fixture
async def worker_settings(settings: Settings) -> Settings:
    # Expiry must come from the scheduled expiry job (not the sweeper) in these tests.
    settings.sweeper_interval_seconds = 3600
    settings.reservation_ttl_seconds = 6
    settings.worker_metrics_port = free_port()
    return settings


@pytest.fixture
async def running_worker(worker_settings: Settings) -> AsyncIterator[WorkerProcess]:
    process = WorkerProcess(worker_settings, concurrency=4)
    task = asyncio.create_task(process.run())
    await asyncio.sleep(0.5)
    yield process
    process.stop.set()
    await asyncio.wait_for(task, timeout=30)


async def test_scheduled_expiry_runs_in_the_worker(
    client: httpx.AsyncClient, services: Services, running_worker: WorkerProcess
) -> None:
    """The once-per-deployment expiry job expires an order soon after its deadline."""
    assert any(t.name == EXPIRE_JOB for t in load_registry().ticks)
    user, book, order_id = await _placed(client, services, stock=3, qty=1)
    assert services.settings.reservation_ttl_seconds == 6
    for _ in range(200):  # due after 6 s; generous for a loaded machine
        if await order_status(services, order_id) == "EXPIRED":
            break
        await asyncio.sleep(0.2)
    assert await order_status(services, order_id) == "EXPIRED"
    assert await available(services, book) == 3
    # The worker's relay delivered the events to the owner's stream.
    events: list[str] = []
    for _ in range(100):
        entries = await services.redis.xrange(stream_key(user["user"]["id"]))
        events = [e[1]["event"] for e in entries if e[1]["event"].startswith("order.")]
        if len(events) >= 2:
            break
        await asyncio.sleep(0.1)
    assert events == ["order.created", "order.expired"]
    # The worker serves its own metrics: the job and the expiry lag were counted.
    port = services.settings.worker_metrics_port
    async with httpx.AsyncClient() as http:
        metrics = (await http.get(f"http://127.0.0.1:{port}/metrics")).text
    assert f'name="{EXPIRE_JOB}"' in metrics and 'outcome="ok"' in metrics
    assert "bookbazar_build_info{" in metrics
    assert "bookbazar_http_requests_total" not in metrics  # the API's, not the worker's
    assert "_created" not in metrics
    lag_count = next(
        line
        for line in metrics.splitlines()
        if line.startswith("bookbazar_expiry_lag_seconds_count")
    )
    assert float(lag_count.split()[-1]) >= 1


async def test_order_gauges_come_from_the_worker_refresh(
    client: httpx.AsyncClient, services: Services
) -> None:
    await _placed(client, services, stock=5, qty=2)
    await service.refresh_metrics(services)  # what the worker's sweeper does
    body = generate_latest(WORKER).decode()
    assert 'bookbazar_orders{status="PAYMENT_PENDING"} 1.0' in body
    assert "bookbazar_active_reservations 1.0" in body
    assert "bookbazar_reserved_units 2.0" in body
    assert "bookbazar_expiry_lag_seconds_bucket" in body
    # The API's /metrics runs no query per scrape: it only renders what is in memory.
    assert (await client.get("/metrics")).status_code == 200
