"""Signed webhooks: verification on the raw body, once-only processing, every outcome."""

from __future__ import annotations

import asyncio
import time
import uuid

import httpx
import pytest
from sqlalchemy import text

from bookbazar.kit.queues import PAYMENT
from bookbazar.orders import service as orders
from bookbazar.services import Services
from tests.conftest import make_admin
from tests.orders.conftest import (
    available,
    force_deadline_passed,
    on_hand,
    order_status,
    outbox_types,
)
from tests.payments.conftest import (
    count,
    initialised,
    order_row,
    pay,
    payment_row,
    placed_order,
    post_event,
    refund_job,
    relay,
    run_job,
    sandbox_event,
    signed,
    snapshot,
)


async def test_succeeded_event_marks_the_order_paid(
    client: httpx.AsyncClient, services: Services
) -> None:
    user, book, order_id = await placed_order(client, services, stock=5, qty=2, price=10_000)
    intent = await initialised(client, user, order_id)
    resp = await pay(client, order_id, intent, 20_000)
    assert resp.status_code == 200, resp.text
    assert resp.json()["data"] == {"received": True, "result": "paid"}
    assert await order_status(services, order_id) == "PAID"
    assert await on_hand(services, book) == 3
    assert await available(services, book) == 3
    assert (await payment_row(services, order_id))["status"] == "succeeded"
    assert await outbox_types(services, order_id) == ["order.created", "order.paid"]
    assert await count(services, "processed_webhook_events") == 1
    order = (await client.get(f"/api/v1/orders/{order_id}", headers=user["headers"])).json()
    assert order["data"]["status"] == "PAID"
    assert order["data"]["payment"]["status"] == "succeeded"


def _forgeries(payload: str) -> dict[str, dict[str, str]]:
    now = int(time.time())
    tampered_sig = signed(payload)["Stripe-Signature"]
    return {
        "wrong secret": signed(payload, secret="whsec_attacker"),
        "stale timestamp": signed(payload, at=now - 301),
        "missing header": {"Content-Type": "application/json"},
        "garbage header": {"Stripe-Signature": "nonsense"},
        "no v1 signature": {"Stripe-Signature": f"t={now},v0=abc"},
        "signature of another body": {"Stripe-Signature": tampered_sig.replace("v1=", "v1=0")},
    }


@pytest.mark.parametrize(
    "case",
    [
        "wrong secret",
        "stale timestamp",
        "missing header",
        "garbage header",
        "no v1 signature",
        "signature of another body",
        "tampered body",
    ],
)
async def test_bad_signatures_change_nothing(
    client: httpx.AsyncClient, services: Services, case: str
) -> None:
    user, _, order_id = await placed_order(client, services)
    intent = await initialised(client, user, order_id)
    payload = sandbox_event(intent, order_id, 49_900)
    before = await snapshot(services, order_id)
    if case == "tampered body":
        headers = signed(payload)
        body = payload.replace('"amount": 49900', '"amount": 1')
        assert body != payload
    else:
        headers, body = _forgeries(payload)[case], payload
    resp = await post_event(client, body, headers)
    assert resp.status_code == 400, resp.text
    assert resp.json()["success"] is False
    assert "webhook" in resp.json()["message"].lower()
    assert await snapshot(services, order_id) == before
    assert await order_status(services, order_id) == "PAYMENT_PENDING"


async def test_a_body_signed_correctly_but_not_an_event_is_refused(
    client: httpx.AsyncClient, services: Services
) -> None:
    for body in ("[1, 2]", "not json", '{"id": "evt_x"}'):
        resp = await post_event(client, body, signed(body))
        assert resp.status_code == 400, (body, resp.text)
    assert await count(services, "processed_webhook_events") == 0


async def test_unknown_intent_is_acknowledged_and_changes_nothing(
    client: httpx.AsyncClient, services: Services
) -> None:
    user, _, order_id = await placed_order(client, services)
    await initialised(client, user, order_id)
    before = await snapshot(services, order_id)
    resp = await pay(client, order_id, "pi_sb_not_ours", 49_900)
    assert resp.status_code == 200, resp.text
    assert resp.json()["data"]["result"] == "unknown_intent"
    # An intent we never created for this order (the order id in metadata is ignored).
    other_user, _, other_order = await placed_order(client, services)
    other_intent = await initialised(client, other_user, other_order)
    before = await snapshot(services, order_id)
    resp = await pay(client, order_id, other_intent, 49_900)
    assert resp.json()["data"]["result"] == "ignored"
    assert await snapshot(services, order_id) == before
    assert await order_status(services, other_order) == "PAYMENT_PENDING"


async def test_unknown_provider_is_422_and_default_route_uses_configured_provider(
    client: httpx.AsyncClient, services: Services
) -> None:
    # The path's provider is an enum in the contract: anything else names the choices.
    resp = await client.post("/api/v1/payments/webhook/paypal", content=b"{}")
    assert resp.status_code == 422
    assert "'sandbox', 'stripe' or 'razorpay'" in resp.text
    # Stripe and Razorpay are not configured in this deployment: no webhook for them.
    resp = await client.post("/api/v1/payments/webhook/stripe", content=b"{}")
    assert resp.status_code == 404
    user, _, order_id = await placed_order(client, services)
    intent = await initialised(client, user, order_id)
    payload = sandbox_event(intent, order_id, 49_900)
    resp = await post_event(client, payload, signed(payload), path="/api/v1/payments/webhook")
    assert resp.status_code == 200, resp.text
    assert await order_status(services, order_id) == "PAID"


async def test_duplicate_event_is_acknowledged_once(
    client: httpx.AsyncClient, services: Services
) -> None:
    user, _, order_id = await placed_order(client, services)
    intent = await initialised(client, user, order_id)
    payload = sandbox_event(intent, order_id, 49_900, succeeded=False)
    first = await post_event(client, payload, signed(payload))
    assert first.json()["data"]["result"] == "payment_failed"
    before = await snapshot(services, order_id)
    again = await post_event(client, payload, signed(payload))
    assert again.status_code == 200
    assert again.json()["data"]["result"] == "duplicate"
    assert await snapshot(services, order_id) == before
    assert (await outbox_types(services, order_id)).count("order.payment_failed") == 1


async def test_concurrent_deliveries_of_one_event_apply_it_once(
    client: httpx.AsyncClient, services: Services
) -> None:
    user, _, order_id = await placed_order(client, services)
    intent = await initialised(client, user, order_id)
    payload = sandbox_event(intent, order_id, 49_900, succeeded=False)
    responses = await asyncio.gather(
        *(post_event(client, payload, signed(payload)) for _ in range(6))
    )
    # Each delivery is either applied, a duplicate, or told to retry (409) while in flight.
    assert {r.status_code for r in responses} <= {200, 409}
    assert (await outbox_types(services, order_id)).count("order.payment_failed") == 1
    assert await count(services, "processed_webhook_events") == 1


async def test_failed_after_succeeded_changes_nothing(
    client: httpx.AsyncClient, services: Services
) -> None:
    user, _, order_id = await placed_order(client, services)
    intent = await initialised(client, user, order_id)
    assert (await pay(client, order_id, intent)).json()["data"]["result"] == "paid"
    before = await snapshot(services, order_id)
    late = sandbox_event(intent, order_id, 49_900, succeeded=False)
    resp = await post_event(client, late, signed(late))
    assert resp.status_code == 200
    assert resp.json()["data"]["result"] == "stale"
    after = await snapshot(services, order_id)
    # Only the processed-event record is new.
    assert after[:-1] == before[:-1]
    assert await order_status(services, order_id) == "PAID"
    assert (await payment_row(services, order_id))["status"] == "succeeded"
    assert "order.payment_failed" not in await outbox_types(services, order_id)


async def test_amount_mismatch_is_not_paid_but_refunded_and_shown_for_review(
    client: httpx.AsyncClient, services: Services
) -> None:
    user, book, order_id = await placed_order(client, services, stock=4)
    intent = await initialised(client, user, order_id)
    resp = await pay(client, order_id, intent, 100)
    assert resp.status_code == 200
    assert resp.json()["data"]["result"] == "mismatch"
    order = await order_row(services, order_id)
    assert order["status"] == "PAYMENT_PENDING"
    assert "100 INR" in order["review_reason"] and "49900 INR" in order["review_reason"]
    payment = await payment_row(services, order_id)
    assert payment["status"] == "refund_pending"
    assert "paid 100 INR" in payment["review_reason"]
    assert await on_hand(services, book) == 4
    # The money is not kept: the refund job gives it back.
    result = await run_job(services, PAYMENT, await refund_job(services, order_id))
    assert result["refunded"] is True and result["orderRefunded"] is False
    payment = await payment_row(services, order_id)
    assert payment["status"] == "refunded" and payment["refund_id"]
    assert await order_status(services, order_id) == "PAYMENT_PENDING"
    # Operators see it, with the reason.
    admin = await make_admin(client, services)
    listed = await client.get("/api/v1/admin/payments/review", headers=admin["headers"])
    assert listed.status_code == 200, listed.text
    [entry] = listed.json()["data"]["items"]
    assert entry["orderId"] == order_id and entry["status"] == "refunded"
    assert "paid 100 INR" in entry["reason"] and entry["refundId"] == payment["refund_id"]
    # Wrong currency is a mismatch too.
    user2, _, order2 = await placed_order(client, services, book=book)
    intent2 = await initialised(client, user2, order2)
    resp = await pay(client, order2, intent2, 49_900, currency="usd")
    assert resp.json()["data"]["result"] == "mismatch"
    assert await order_status(services, order2) == "PAYMENT_PENDING"


async def test_declined_then_paid(client: httpx.AsyncClient, services: Services) -> None:
    user, book, order_id = await placed_order(client, services, stock=3)
    intent = await initialised(client, user, order_id)
    resp = await pay(client, order_id, intent, succeeded=False)
    assert resp.json()["data"]["result"] == "payment_failed"
    assert await order_status(services, order_id) == "PAYMENT_PENDING"
    assert await available(services, book) == 2  # still held for the buyer
    assert (await payment_row(services, order_id))["status"] == "failed"
    assert await outbox_types(services, order_id) == ["order.created", "order.payment_failed"]
    # The buyer tries again: same intent, and this time it goes through.
    again = await client.post(
        "/api/v1/payments/init", json={"orderId": order_id}, headers=user["headers"]
    )
    assert again.json()["data"]["paymentIntentId"] == intent
    assert (await pay(client, order_id, intent)).json()["data"]["result"] == "paid"
    assert await order_status(services, order_id) == "PAID"
    assert (await payment_row(services, order_id))["status"] == "succeeded"


async def test_late_payment_with_stock_is_sold(
    client: httpx.AsyncClient, services: Services
) -> None:
    user, book, order_id = await placed_order(client, services, stock=3, qty=2)
    intent = await initialised(client, user, order_id)
    await force_deadline_passed(services, order_id)
    assert await orders.expire_order(services, uuid.UUID(order_id))
    assert await available(services, book) == 3
    resp = await pay(client, order_id, intent, 2 * 49_900)
    assert resp.json()["data"]["result"] == "paid"
    assert await order_status(services, order_id) == "PAID"
    assert await on_hand(services, book) == 1
    assert await available(services, book) == 1
    assert (await payment_row(services, order_id))["status"] == "succeeded"


async def test_late_payment_without_stock_is_refunded(
    client: httpx.AsyncClient, services: Services
) -> None:
    user, book, order_id = await placed_order(client, services, stock=1)
    intent = await initialised(client, user, order_id)
    await force_deadline_passed(services, order_id)
    assert await orders.expire_order(services, uuid.UUID(order_id))
    # Someone else buys the last copy meanwhile.
    _, _, rival = await placed_order(client, services, book=book)
    assert await available(services, book) == 0

    resp = await pay(client, order_id, intent)
    assert resp.status_code == 200
    assert resp.json()["data"]["result"] == "refund"
    assert await order_status(services, order_id) == "REFUND_PENDING"
    assert (await payment_row(services, order_id))["status"] == "refund_pending"
    assert await available(services, book) == 0
    assert await order_status(services, rival) == "PAYMENT_PENDING"

    result = await run_job(services, PAYMENT, await refund_job(services, order_id))
    assert result["refunded"] is True
    assert await order_status(services, order_id) == "REFUNDED"
    row = await payment_row(services, order_id)
    assert row["status"] == "refunded" and row["refund_id"].startswith("re_sb_")
    assert await outbox_types(services, order_id) == [
        "order.created",
        "order.expired",
        "order.refunded",
    ]
    # Running the refund job again changes nothing.
    assert (await run_job(services, PAYMENT, await refund_job(services, order_id)))[
        "refundId"
    ] == row["refund_id"]
    assert (await outbox_types(services, order_id)).count("order.refunded") == 1
    # The same payment reported again is acknowledged without a second refund.
    resp = await pay(client, order_id, intent)
    assert resp.json()["data"]["result"] == "refund"
    assert await order_status(services, order_id) == "REFUNDED"


async def test_refund_job_never_refunds_a_paid_order(
    client: httpx.AsyncClient, services: Services
) -> None:
    user, _, order_id = await placed_order(client, services)
    intent = await initialised(client, user, order_id)
    await pay(client, order_id, intent)
    payment = await payment_row(services, order_id)
    await services.queues.add(
        PAYMENT,
        "payment:refund",
        {"orderId": order_id, "paymentId": str(payment["id"])},
        job_id="refund-bogus",
    )
    result = await run_job(services, PAYMENT, "refund-bogus")
    assert result["refunded"] is False
    assert await order_status(services, order_id) == "PAID"
    assert (await payment_row(services, order_id))["refund_id"] is None


async def test_other_event_types_are_acknowledged_and_ignored(
    client: httpx.AsyncClient, services: Services
) -> None:
    body = '{"id": "evt_other", "type": "charge.refund.updated", "created": 1, "data": {}}'
    resp = await post_event(client, body, signed(body))
    assert resp.status_code == 200
    assert resp.json()["data"]["result"] == "ignored"
    again = await post_event(client, body, signed(body))
    assert again.json()["data"]["result"] == "duplicate"


async def test_the_paid_transaction_owes_the_confirmation_email(
    client: httpx.AsyncClient, services: Services
) -> None:
    """The sale, its event and the email it owes commit together (no job to lose); the
    relay has nothing to enqueue for them, and relaying again changes nothing."""
    user, _, order_id = await placed_order(client, services)
    intent = await initialised(client, user, order_id)
    await pay(client, order_id, intent)
    async with services.sessionmaker() as session:
        owed = (
            await session.execute(
                text(
                    "SELECT n.kind FROM notifications n JOIN outbox_events e "
                    "ON e.id = n.event_id WHERE e.order_id = :o AND e.type = 'order.paid'"
                ),
                {"o": uuid.UUID(order_id)},
            )
        ).scalar_one()
    assert owed == "confirmation"
    assert await relay(services) == 2  # order.created, order.paid
    assert await relay(services) == 0
