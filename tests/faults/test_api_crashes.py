"""The API process SIGKILLed at each crash point of placement and of the payment webhook,
restarted without the fault: the worker and the client's retries repair everything.

(`order:after-reserve` and the worker's `expire:after-commit` are covered in
tests/orders/test_recovery.py.)"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis
from sqlalchemy import text

from bookbazar.services import Services
from tests.conftest import create_book, register
from tests.faults.harness import (
    FAST_SWEEPER,
    Launcher,
    Listener,
    assert_nothing_stuck,
    assert_stock_exact,
    caught_up,
    eventually,
    ids_by_type,
    outbox_events,
)
from tests.notify.smtp import MailServer
from tests.orders.conftest import add_to_cart, on_hand, order_status
from tests.payments.conftest import sandbox_event, signed

WEBHOOK = "/api/v1/payments/webhook/sandbox"


async def _forget_running_claims(redis: Redis) -> None:
    """The Idempotency-Key claim of the killed request lapses after 60 s: now."""
    async for key in redis.scan_iter(match="bb:idem:*"):
        await redis.delete(key)


async def _order_by_key(services: Services, key: str) -> tuple[str, str]:
    async with services.sessionmaker() as session:
        row = (
            await session.execute(
                text("SELECT id, status FROM orders WHERE idempotency_key = :k"), {"k": key}
            )
        ).one()
    return str(row.id), str(row.status)


async def _post_dying(http: httpx.AsyncClient, path: str, **kw: Any) -> None:
    with contextlib.suppress(httpx.TransportError):  # the process dies mid-request
        await http.post(path, **kw)


async def test_api_killed_before_writing_the_order(
    launch: Launcher, services: Services, raw_redis: Redis
) -> None:
    """Killed after reserving, before the order was written: the hold has no order. The
    sweeper releases it after the grace period; the client's retry with the same key
    places the order, once."""
    book = await create_book(services, stock=3)
    api = await launch.api(faults="order:after-reserve")
    listener = Listener()
    async with httpx.AsyncClient(base_url=api.url, timeout=10) as http:
        user = await register(http)
        await listener.connect(api.url, user["accessToken"])
        await add_to_cart(http, user, book, 2)
        await eventually(lambda: _has_events(listener), "cart:update", launch)
        await _post_dying(
            http, "/api/v1/orders", headers={**user["headers"], "Idempotency-Key": "first"}
        )
    await api.killed()
    await listener.close()
    assert await services.inventory.available([book]) == {book: 1}  # an orphan hold
    async with services.sessionmaker() as session:
        orders = (await session.execute(text("SELECT count(*) FROM orders"))).scalar_one()
    assert orders == 0

    api = await launch.api()
    await launch.worker(**FAST_SWEEPER)

    async def released() -> bool:
        return await services.inventory.holds() == []

    await eventually(released, "the sweeper to release the orphan hold", launch)
    assert await services.inventory.available([book]) == {book: 3}
    await _forget_running_claims(raw_redis)
    async with httpx.AsyncClient(base_url=api.url, timeout=10) as http:
        retry = await http.post(
            "/api/v1/orders", headers={**user["headers"], "Idempotency-Key": "first"}
        )
        assert retry.status_code == 201, retry.text
        again = await http.post(
            "/api/v1/orders", headers={**user["headers"], "Idempotency-Key": "first"}
        )
        assert (again.status_code, again.json()) == (201, retry.json())
        assert again.headers["Idempotent-Replayed"] == "true"
    new_order = retry.json()["data"]["orderId"]
    assert await services.inventory.available([book]) == {book: 1}

    await assert_stock_exact(services, [book])
    await assert_nothing_stuck(services)
    await eventually(lambda: _relayed(services, new_order), "order.created relayed", launch)
    seen = ids_by_type(await caught_up(listener, api.url, user["accessToken"]), new_order)
    assert set(seen) == {"order.created"}


async def _has_events(listener: Listener) -> bool:
    return listener.last_id is not None


async def _relayed(services: Services, order_id: str) -> bool:
    events = await outbox_events(services, order_id)
    return bool(events) and all(sent for _, _, sent in events)


async def test_api_killed_after_payment_pending(
    launch: Launcher, services: Services, raw_redis: Redis, smtp: MailServer
) -> None:
    """Killed after committing PAYMENT_PENDING, before emptying the cart and answering:
    the retry replays the order and empties the cart the order was made from (so the
    next checkout cannot order those lines again); the scheduled expiry expires it on
    time (no sweeper needed), the units come back, the client's resume has both
    events, one email is sent."""
    book = await create_book(services, stock=4)
    api = await launch.api(faults="order:after-payment-pending", RESERVATION_TTL_SECONDS="5")
    listener = Listener()
    async with httpx.AsyncClient(base_url=api.url, timeout=10) as http:
        user = await register(http)
        await listener.connect(api.url, user["accessToken"])
        await add_to_cart(http, user, book, 3)
        await eventually(lambda: _has_events(listener), "cart:update", launch)
        await _post_dying(
            http, "/api/v1/orders", headers={**user["headers"], "Idempotency-Key": "k"}
        )
    await api.killed()
    await listener.close()
    order_id, status = await _order_by_key(services, "k")
    assert status == "PAYMENT_PENDING"
    assert await services.inventory.available([book]) == {book: 1}

    api = await launch.api()
    await launch.worker(SMTP_URL=smtp.url)  # its sweeper stays idle: the job must do it
    await _forget_running_claims(raw_redis)
    async with httpx.AsyncClient(base_url=api.url, timeout=10) as http:
        retry = await http.post(
            "/api/v1/orders", headers={**user["headers"], "Idempotency-Key": "k"}
        )
    assert retry.status_code == 201, retry.text
    assert retry.headers.get("Idempotent-Replayed") == "true"
    assert retry.json()["data"]["orderId"] == order_id
    async with httpx.AsyncClient(base_url=api.url, timeout=10) as http:
        cart = (await http.get("/api/v1/cart", headers=user["headers"])).json()["data"]
        assert cart["items"] == [], cart
        checkout = await http.post(
            "/api/v1/orders", headers={**user["headers"], "Idempotency-Key": "next"}
        )
        assert checkout.status_code == 400, checkout.text  # nothing ordered twice
    # Not reserved a second time (1 while held; 4 if it already expired, on a slow box).
    assert (await services.inventory.available([book]))[book] in (1, 4)

    async def expired() -> bool:
        return await order_status(services, order_id) == "EXPIRED"

    await eventually(expired, "the scheduled expiry", launch)
    await assert_stock_exact(services, [book])
    assert await services.inventory.available([book]) == {book: 4}
    await assert_nothing_stuck(services)
    await eventually(lambda: _relayed(services, order_id), "order.expired relayed", launch)
    seen = ids_by_type(await caught_up(listener, api.url, user["accessToken"]), order_id)
    types = [t for _, t, _ in await outbox_events(services, order_id)]
    assert types == ["order.created", "order.expired"]
    assert set(seen) == set(types) and all(len(ids) == 1 for ids in seen.values())
    await smtp.wait_for(1)
    await asyncio.sleep(0.5)
    assert [m.subject for m in smtp.messages] == [f"Order {order_id[:8].upper()} expired"]


@pytest.mark.parametrize(
    ("point", "status_after_crash"),
    [
        ("payment:after-convert", "PAYMENT_PENDING"),
        ("payment:after-paid-commit", "PAID"),
    ],
)
async def test_api_killed_while_applying_a_payment(
    launch: Launcher,
    services: Services,
    raw_redis: Redis,
    smtp: MailServer,
    point: str,
    status_after_crash: str,
) -> None:
    """Killed after the hold was converted but before the sale committed (the event is
    recorded in that same transaction: not recorded either), or after it committed: the
    provider's retry of the same event is applied once, stock is decremented once, no
    hold is left, the buyer gets order.paid on resume and one confirmation email."""
    book = await create_book(services, stock=5, price=20_000)
    await launch.worker(SMTP_URL=smtp.url, FULFILLMENT_SHIP_DELAY_SECONDS="3600", **FAST_SWEEPER)
    api = await launch.api(faults=point)
    listener = Listener()
    async with httpx.AsyncClient(base_url=api.url, timeout=10) as http:
        user = await register(http)
        await listener.connect(api.url, user["accessToken"])
        await add_to_cart(http, user, book, 2)
        placed = await http.post(
            "/api/v1/orders", headers={**user["headers"], "Idempotency-Key": uuid.uuid4().hex}
        )
        assert placed.status_code == 201, placed.text
        order_id = placed.json()["data"]["orderId"]
        await listener.wait_for("order.created", order_id)
        init = await http.post(
            "/api/v1/payments/init", json={"orderId": order_id}, headers=user["headers"]
        )
        assert init.status_code == 200, init.text
        intent = init.json()["data"]["paymentIntentId"]
        event_id = f"evt_crash_{uuid.uuid4().hex}"
        payload = sandbox_event(intent, order_id, 40_000, event_id=event_id)
        await _post_dying(http, WEBHOOK, content=payload.encode(), headers=signed(payload))
    await api.killed()
    await listener.close()
    assert await order_status(services, order_id) == status_after_crash
    assert await _processed(services, event_id) == (status_after_crash == "PAID")

    api = await launch.api()
    async with httpx.AsyncClient(base_url=api.url, timeout=10) as http:
        results = []
        for _ in range(2):  # the provider's retry (re-signed), then a duplicate
            resp = await http.post(WEBHOOK, content=payload.encode(), headers=signed(payload))
            assert resp.status_code == 200, resp.text
            results.append(resp.json()["data"]["result"])
        assert results[-1] == "duplicate"

    async def converted() -> bool:
        return await services.inventory.holds() == []

    await eventually(converted, "no hold left", launch)
    assert await on_hand(services, book) == 3  # sold once
    await assert_stock_exact(services, [book])
    await assert_nothing_stuck(services)
    assert await _processed(services, event_id) == 1
    async with services.sessionmaker() as session:
        payment = (
            await session.execute(
                text("SELECT status FROM payments WHERE order_id = :o"),
                {"o": uuid.UUID(order_id)},
            )
        ).scalar_one()
    assert payment == "succeeded"
    await eventually(lambda: _relayed(services, order_id), "order.paid relayed", launch)
    paid = [i for i, t, _ in await outbox_events(services, order_id) if t == "order.paid"]
    assert len(paid) == 1
    seen = ids_by_type(await caught_up(listener, api.url, user["accessToken"]), order_id)
    assert seen.get("order.paid") == set(paid)
    await smtp.wait_for(1)
    await asyncio.sleep(0.5)
    assert [m.subject for m in smtp.messages] == [f"Order {order_id[:8].upper()} confirmed"]


async def _processed(services: Services, event_id: str) -> int:
    async with services.sessionmaker() as session:
        value = (
            await session.execute(
                text("SELECT count(*) FROM processed_webhook_events WHERE event_id = :e"),
                {"e": event_id},
            )
        ).scalar_one()
    return int(value)
