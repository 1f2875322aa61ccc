"""The Razorpay provider through the official SDK: orders API against a local stub,
webhook signatures checked with the SDK's own utility, dedupe by event id."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
import razorpay
from sqlalchemy import text

from bookbazar.config import Settings
from bookbazar.payments import repository as repo
from bookbazar.payments.providers.base import IntentStatus, PaymentRequest, SignatureError
from bookbazar.payments.providers.razorpay import RazorpayProvider
from bookbazar.services import Services
from tests.conftest import Infra, make_settings
from tests.orders.conftest import order_status
from tests.payments.conftest import payment_row, placed_order, post_event
from tests.payments.stubs import Stub, serve

KEY_ID, KEY_SECRET = "rzp_test_bookbazar", "rzp_key_secret_for_tests"
WEBHOOK_SECRET = "rzp_webhook_secret_for_tests"
WEBHOOK = "/api/v1/payments/webhook/razorpay"


@pytest.fixture
async def razorpay_stub() -> AsyncIterator[Stub]:
    async with serve("razorpay") as stub:
        yield stub


@pytest.fixture
def settings(infra: Infra, clean_state: None) -> Settings:
    # Sandbox stays the default provider; Razorpay is configured, so its webhook is live.
    return make_settings(
        infra,
        razorpay_key_id=KEY_ID,
        razorpay_key_secret=KEY_SECRET,
        razorpay_webhook_secret=WEBHOOK_SECRET,
    )


def provider(stub: Stub) -> RazorpayProvider:
    return RazorpayProvider(KEY_ID, KEY_SECRET, WEBHOOK_SECRET, base_url=stub.url)


def captured(
    razorpay_order: str,
    order_id: str,
    amount: int,
    event: str = "payment.captured",
    created_at: int | None = None,
) -> str:
    payment = {
        "id": "pay_stub1",
        "entity": "payment",
        "amount": amount,
        "currency": "INR",
        "status": "captured" if event != "payment.failed" else "failed",
        "order_id": razorpay_order,
        "notes": {"orderId": order_id},
        "error_description": "Card declined" if event == "payment.failed" else None,
    }
    return json.dumps(
        {
            "entity": "event",
            "account_id": "acc_test",
            "event": event,
            "contains": ["payment"],
            "payload": {"payment": {"entity": payment}},
            "created_at": int(time.time()) if created_at is None else created_at,
        }
    )


def sign(body: str, secret: str = WEBHOOK_SECRET) -> str:
    return hmac.new(secret.encode(), body.encode(), hashlib.sha256).hexdigest()


def headers(body: str, event_id: str | None = None, secret: str = WEBHOOK_SECRET) -> dict[str, str]:
    return {
        "X-Razorpay-Signature": sign(body, secret),
        "X-Razorpay-Event-Id": event_id or f"evt_{uuid.uuid4().hex[:14]}",
        "Content-Type": "application/json",
    }


async def _razorpay_payment(
    services: Services, stub: Stub, client: httpx.AsyncClient, price: int = 49_900
) -> tuple[str, str]:
    """An order awaiting payment with a Razorpay order created through the SDK."""
    _, _, order_id = await placed_order(client, services, price=price)
    intent = await provider(stub).create_intent(PaymentRequest(uuid.UUID(order_id), price, "INR"))
    await repo.insert_payment(
        services.pg,
        order_id=uuid.UUID(order_id),
        provider="razorpay",
        intent_id=intent.intent_id,
        client_secret=intent.client_secret,
        redirect_url=intent.redirect_url,
        amount=price,
        currency="INR",
    )
    return order_id, intent.intent_id


async def test_orders_api_through_the_sdk(
    client: httpx.AsyncClient, services: Services, razorpay_stub: Stub
) -> None:
    order_id, razorpay_order = await _razorpay_payment(services, razorpay_stub, client)
    assert razorpay_order == "order_stub1"
    [call] = razorpay_stub.posts("/v1/orders")
    assert call.json == {
        "amount": 49_900,
        "currency": "INR",
        "receipt": order_id,
        "notes": {"orderId": order_id},
    }
    assert call.headers["Authorization"].startswith("Basic ")
    rzp = provider(razorpay_stub)
    assert (await rzp.retrieve(razorpay_order)).status is IntentStatus.PENDING
    razorpay_stub.objects[razorpay_order].update(status="paid", amount_paid=49_900)
    state = await rzp.retrieve(razorpay_order)
    assert (state.status, state.amount, state.currency) == (IntentStatus.SUCCEEDED, 49_900, "INR")
    refund_id = await rzp.refund(razorpay_order, 49_900, idempotency_key=f"refund-{order_id}")
    assert refund_id == "rfnd_stub1"
    # Refunding again finds the existing refund instead of refunding twice.
    assert await rzp.refund(razorpay_order, 49_900, idempotency_key="again") == "rfnd_stub1"
    assert len(razorpay_stub.posts("/v1/payments/pay_stub1/refund")) == 1


def test_our_signature_check_agrees_with_the_sdk_utility() -> None:
    body = captured("order_x", str(uuid.uuid4()), 100)
    signature = sign(body)
    sdk = razorpay.Client(auth=(KEY_ID, KEY_SECRET))
    # The SDK's own utility accepts what Razorpay would send ...
    assert sdk.utility.verify_webhook_signature(body, signature, WEBHOOK_SECRET)
    rzp = RazorpayProvider(KEY_ID, KEY_SECRET, WEBHOOK_SECRET)
    event = rzp.verify_webhook(body.encode(), headers(body, "evt_1"))
    # The dedupe id comes from signed fields, not from the unsigned event-id header.
    assert (event.event_id, event.intent_id, event.amount) == (
        "payment.captured:pay_stub1",
        "order_x",
        100,
    )
    assert rzp.verify_webhook(body.encode(), headers(body, "evt_2")).event_id == event.event_id
    # ... and both refuse a tampered body or a signature made with another secret.
    with pytest.raises(razorpay.errors.SignatureVerificationError):
        sdk.utility.verify_webhook_signature(body + " ", signature, WEBHOOK_SECRET)
    with pytest.raises(SignatureError):
        rzp.verify_webhook((body + " ").encode(), headers(body, "evt_1"))
    with pytest.raises(SignatureError):
        rzp.verify_webhook(body.encode(), headers(body, "evt_1", secret="other"))
    # Signed but old: a captured body replayed long after is refused.
    stale = captured("order_x", str(uuid.uuid4()), 100, created_at=int(time.time()) - 27 * 3600)
    with pytest.raises(SignatureError, match="too old"):
        rzp.verify_webhook(stale.encode(), headers(stale, "evt_3"))


async def test_captured_webhook_pays_once_per_event_id(
    client: httpx.AsyncClient, services: Services, razorpay_stub: Stub
) -> None:
    order_id, razorpay_order = await _razorpay_payment(services, razorpay_stub, client)
    body = captured(razorpay_order, order_id, 49_900)
    forged = await post_event(client, body, headers(body, secret="guessed"), WEBHOOK)
    assert forged.status_code == 400
    missing = await client.post(WEBHOOK, content=body.encode())
    assert missing.status_code == 400
    assert await order_status(services, order_id) == "PAYMENT_PENDING"

    first = await post_event(client, body, headers(body, "evt_rzp_1"), WEBHOOK)
    assert first.status_code == 200, first.text
    assert first.json()["data"]["result"] == "paid"
    assert await order_status(services, order_id) == "PAID"
    assert (await payment_row(services, order_id))["status"] == "succeeded"
    # A replay is a duplicate, whatever (unsigned) event id header it carries.
    replay = await post_event(client, body, headers(body, "evt_rzp_1"), WEBHOOK)
    assert replay.json()["data"]["result"] == "duplicate"
    renamed = await post_event(client, body, headers(body, "evt_rzp_new"), WEBHOOK)
    assert renamed.json()["data"]["result"] == "duplicate"
    # order.paid for the same payment (another event id) is acknowledged, nothing repeats.
    paid = captured(razorpay_order, order_id, 49_900, "order.paid")
    also = await post_event(client, paid, headers(paid, "evt_rzp_2"), WEBHOOK)
    assert also.json()["data"]["result"] == "already_paid"
    async with services.sessionmaker() as session:
        outbox = (
            await session.execute(
                text("SELECT count(*) FROM outbox_events WHERE type = 'order.paid'")
            )
        ).scalar_one()
    assert outbox == 1


async def test_failed_payment_webhook(
    client: httpx.AsyncClient, services: Services, razorpay_stub: Stub
) -> None:
    order_id, razorpay_order = await _razorpay_payment(services, razorpay_stub, client)
    body = captured(razorpay_order, order_id, 49_900, "payment.failed")
    resp = await post_event(client, body, headers(body), WEBHOOK)
    assert resp.json()["data"]["result"] == "payment_failed"
    assert await order_status(services, order_id) == "PAYMENT_PENDING"
    assert (await payment_row(services, order_id))["status"] == "failed"
