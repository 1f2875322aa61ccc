"""POST /api/v1/payments/init: owner only, PAYMENT_PENDING only, one intent per order."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime

import httpx
from sqlalchemy import text

from bookbazar.services import Services
from tests.conftest import register
from tests.orders.conftest import force_deadline_passed
from tests.payments.conftest import (
    count,
    init_payment,
    order_row,
    payment_row,
    placed_order,
)


async def test_init_creates_one_sandbox_intent(
    client: httpx.AsyncClient, services: Services
) -> None:
    user, _, order_id = await placed_order(client, services, qty=2, price=30_000)
    resp = await init_payment(client, user, order_id)
    assert resp.status_code == 200, resp.text
    data = resp.json()["data"]
    assert data["orderId"] == order_id
    assert data["provider"] == "sandbox"
    intent = data["paymentIntentId"]
    assert intent.startswith("pi_sb_")
    assert data["clientSecret"].startswith(intent + "_secret_")
    assert data["redirectUrl"] == f"{services.settings.base_url}/sandbox/checkout/{intent}"
    assert (data["amount"], data["currency"]) == (60_000, "INR")

    again = await init_payment(client, user, order_id)
    assert again.status_code == 200
    assert again.json()["data"]["paymentIntentId"] == intent
    assert again.json()["data"]["clientSecret"] == data["clientSecret"]
    row = await payment_row(services, order_id)
    assert (row["status"], row["amount"], row["currency"]) == ("created", 60_000, "INR")
    # The order shows its payment.
    order = await client.get(f"/api/v1/orders/{order_id}", headers=user["headers"])
    assert order.json()["data"]["payment"]["paymentIntentId"] == intent


async def test_concurrent_inits_agree_on_one_intent(
    client: httpx.AsyncClient, services: Services
) -> None:
    user, _, order_id = await placed_order(client, services)
    responses = await asyncio.gather(*(init_payment(client, user, order_id) for _ in range(8)))
    assert {r.status_code for r in responses} == {200}
    assert len({r.json()["data"]["paymentIntentId"] for r in responses}) == 1
    assert await count(services, "payments") == 1


async def test_another_users_order_cannot_be_initialised(
    client: httpx.AsyncClient, services: Services
) -> None:
    _, _, order_id = await placed_order(client, services)
    stranger = await register(client)
    resp = await init_payment(client, stranger, order_id)
    assert resp.status_code == 404, resp.text
    assert resp.json()["success"] is False
    missing = await init_payment(client, stranger, str(uuid.uuid4()))
    assert missing.status_code == 404
    assert await count(services, "payments") == 0


async def test_init_needs_authentication_and_a_valid_body(
    client: httpx.AsyncClient, services: Services
) -> None:
    user, _, order_id = await placed_order(client, services)
    client.cookies.clear()  # register left the session cookie in the client
    anonymous = await client.post("/api/v1/payments/init", json={"orderId": order_id})
    assert anonymous.status_code == 401
    bad = await client.post(
        "/api/v1/payments/init", json={"orderId": "not-a-uuid"}, headers=user["headers"]
    )
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["field"] == "orderId"


async def test_only_orders_awaiting_payment_can_be_initialised(
    client: httpx.AsyncClient, services: Services
) -> None:
    user, _, order_id = await placed_order(client, services)
    cancel = await client.post(f"/api/v1/orders/{order_id}/cancel", headers=user["headers"])
    assert cancel.status_code == 200
    resp = await init_payment(client, user, order_id)
    assert resp.status_code == 409
    body = resp.json()
    assert "CANCELLED" in body["message"]
    assert body["errors"][0]["status"] == "CANCELLED"
    assert await count(services, "payments") == 0


async def test_init_extends_a_reservation_about_to_lapse(
    client: httpx.AsyncClient, services: Services
) -> None:
    user, _, order_id = await placed_order(client, services)
    async with services.sessionmaker() as session, session.begin():
        await session.execute(
            text("UPDATE orders SET expires_at = now() + interval '5 seconds' WHERE id = :id"),
            {"id": uuid.UUID(order_id)},
        )
    before = datetime.now().astimezone()
    resp = await init_payment(client, user, order_id)
    assert resp.status_code == 200, resp.text
    window = services.settings.payment_min_window_seconds
    expires = (await order_row(services, order_id))["expires_at"]
    assert (expires - before).total_seconds() >= window - 2
    assert resp.json()["data"]["expiresAt"] is not None


async def test_init_cannot_hold_the_copies_forever(
    client: httpx.AsyncClient, services: Services
) -> None:
    """However often init is called, the deadline never moves past placement +
    RESERVATION_TTL_SECONDS + PAYMENT_MIN_WINDOW_SECONDS."""
    user, _, order_id = await placed_order(client, services)
    settings = services.settings
    cap = settings.reservation_ttl_seconds + settings.payment_min_window_seconds
    # Placed long ago; its deadline is about to lapse.
    async with services.sessionmaker() as session, session.begin():
        await session.execute(
            text(
                "UPDATE orders SET created_at = now() - make_interval(secs => :age), "
                "expires_at = now() + interval '5 seconds' WHERE id = :id"
            ),
            {"id": uuid.UUID(order_id), "age": cap - 20},
        )
    for _ in range(5):
        resp = await init_payment(client, user, order_id)
        assert resp.status_code == 200, resp.text
        row = await order_row(services, order_id)
        assert (row["expires_at"] - row["created_at"]).total_seconds() <= cap + 0.001
    # It was extended, but only up to the cap (20 s from now, not the 300 s window).
    left = (row["expires_at"] - datetime.now().astimezone()).total_seconds()
    assert 5 < left <= 21


async def test_init_after_the_deadline_passed_is_refused(
    client: httpx.AsyncClient, services: Services
) -> None:
    user, _, order_id = await placed_order(client, services)
    await force_deadline_passed(services, order_id)
    resp = await init_payment(client, user, order_id)
    # Still PAYMENT_PENDING until the expiry job runs; init gives it a payment window.
    assert resp.status_code == 200, resp.text
    row = await order_row(services, order_id)
    assert row["status"] == "PAYMENT_PENDING"
    assert row["expires_at"] > datetime.now().astimezone()
