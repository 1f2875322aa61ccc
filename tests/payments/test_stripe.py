"""The Stripe provider through the official SDK, against a local stub of the Stripe API."""

from __future__ import annotations

import dataclasses
import json
import time
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
import stripe
from sqlalchemy import text

from bookbazar.config import Settings
from bookbazar.errors import BadGateway
from bookbazar.kit.queues import PAYMENT
from bookbazar.orders import service as orders
from bookbazar.payments import repository as repo
from bookbazar.payments import service as payments
from bookbazar.payments import watchdog
from bookbazar.payments.providers.base import PaymentRequest
from bookbazar.payments.providers.stripe import StripeProvider
from bookbazar.services import Services
from tests.conftest import Infra, free_port, make_settings
from tests.orders.conftest import force_deadline_passed, order_status
from tests.payments.conftest import (
    init_payment,
    pay,
    payment_row,
    placed_order,
    post_event,
    refund_job,
    run_job,
    signed,
)
from tests.payments.stubs import Stub, serve

API_KEY = "sk_test_bookbazar_stub"
WEBHOOK_SECRET = "whsec_stripe_test_secret"


@pytest.fixture
async def stripe_stub() -> AsyncIterator[Stub]:
    async with serve("stripe") as stub:
        yield stub


@pytest.fixture
def settings(infra: Infra, clean_state: None, stripe_stub: Stub) -> Settings:
    return make_settings(
        infra,
        payment_provider="stripe",
        stripe_api_key=API_KEY,
        stripe_webhook_secret=WEBHOOK_SECRET,
        stripe_api_base=stripe_stub.url,
    )


def stripe_event(intent_id: str, order_id: str, amount: int, kind: str = "succeeded") -> str:
    return json.dumps(
        {
            "id": f"evt_{uuid.uuid4().hex}",
            "object": "event",
            "type": f"payment_intent.{kind}",
            "created": int(time.time()),
            "data": {
                "object": {
                    "id": intent_id,
                    "object": "payment_intent",
                    "amount": amount,
                    "amount_received": amount if kind == "succeeded" else 0,
                    "currency": "inr",
                    "metadata": {"orderId": order_id},
                }
            },
        }
    )


def stripe_signed(payload: str, secret: str = WEBHOOK_SECRET) -> dict[str, str]:
    # Signed by the SDK's own helper, as Stripe signs its webhooks.
    header = stripe.WebhookSignature.generate_signature_header(payload, secret)
    return {"Stripe-Signature": header, "Content-Type": "application/json"}


async def test_init_creates_an_intent_with_a_deterministic_idempotency_key(
    client: httpx.AsyncClient, services: Services, stripe_stub: Stub
) -> None:
    user, _, order_id = await placed_order(client, services, qty=2, price=10_000)
    resp = await init_payment(client, user, order_id)
    assert resp.status_code == 200, resp.text
    data = resp.json()["data"]
    assert data["provider"] == "stripe"
    assert data["paymentIntentId"] == "pi_stub_1"
    assert data["clientSecret"] == "pi_stub_1_secret_stub"
    assert data["redirectUrl"] is None
    [call] = stripe_stub.posts("/v1/payment_intents")
    assert call.headers["Idempotency-Key"] == f"bookbazar-intent-{order_id}"
    assert call.headers["Authorization"] == f"Bearer {API_KEY}"
    assert call.form["amount"] == "20000" and call.form["currency"] == "inr"
    assert call.form["metadata[orderId]"] == order_id
    # Repeating init answers from our row: no second call to Stripe.
    again = await init_payment(client, user, order_id)
    assert again.json()["data"]["paymentIntentId"] == "pi_stub_1"
    assert len(stripe_stub.posts("/v1/payment_intents")) == 1
    # A retried create (e.g. after a timeout) sends the same key and gets the same intent.
    provider = StripeProvider(API_KEY, WEBHOOK_SECRET, stripe_stub.url)
    intent = await provider.create_intent(PaymentRequest(uuid.UUID(order_id), 20_000, "INR"))
    assert intent.intent_id == "pi_stub_1"
    keys = {r.headers["Idempotency-Key"] for r in stripe_stub.posts("/v1/payment_intents")}
    assert keys == {f"bookbazar-intent-{order_id}"}


async def test_provider_failure_is_a_502_and_records_nothing(
    client: httpx.AsyncClient, services: Services
) -> None:
    user, _, order_id = await placed_order(client, services)
    down = f"http://127.0.0.1:{free_port()}"
    broken = dataclasses.replace(
        services, settings=services.settings.model_copy(update={"stripe_api_base": down})
    )
    with pytest.raises(BadGateway):
        await payments.init_payment(broken, uuid.UUID(user["user"]["id"]), uuid.UUID(order_id))
    async with services.sessionmaker() as session:
        assert (await session.execute(text("SELECT count(*) FROM payments"))).scalar_one() == 0


async def test_stripe_webhook_signed_by_the_sdk_settles_the_order(
    client: httpx.AsyncClient, services: Services
) -> None:
    user, _, order_id = await placed_order(client, services)
    intent = (await init_payment(client, user, order_id)).json()["data"]["paymentIntentId"]
    payload = stripe_event(intent, order_id, 49_900)
    # Tampered, or signed with the sandbox's secret: refused.
    tampered = payload.replace("49900", "49901")
    bad = await post_event(client, tampered, stripe_signed(payload), "/api/v1/payments/webhook")
    assert bad.status_code == 400
    sandbox = await post_event(client, payload, signed(payload), "/api/v1/payments/webhook/stripe")
    assert sandbox.status_code == 400
    assert await order_status(services, order_id) == "PAYMENT_PENDING"
    # The configured provider's route and the named route both take Stripe's signature.
    ok = await post_event(client, payload, stripe_signed(payload), "/api/v1/payments/webhook")
    assert ok.status_code == 200, ok.text
    assert ok.json()["data"]["result"] == "paid"
    assert await order_status(services, order_id) == "PAID"
    dup = await post_event(
        client, payload, stripe_signed(payload), "/api/v1/payments/webhook/stripe"
    )
    assert dup.json()["data"]["result"] == "duplicate"


async def test_watchdog_retrieves_the_intent_from_stripe(
    client: httpx.AsyncClient, services: Services, stripe_stub: Stub
) -> None:
    user, _, order_id = await placed_order(client, services)
    intent = (await init_payment(client, user, order_id)).json()["data"]["paymentIntentId"]
    payment = await payment_row(services, order_id)
    assert await watchdog.verify_payment(services, payment["id"]) == "pending"
    stripe_stub.objects[intent].update(status="succeeded", amount_received=49_900)
    assert await watchdog.verify_payment(services, payment["id"]) == "paid"
    assert await order_status(services, order_id) == "PAID"


async def test_late_payment_is_refunded_through_stripe(
    client: httpx.AsyncClient, services: Services, stripe_stub: Stub
) -> None:
    user, book, order_id = await placed_order(client, services, stock=1)
    intent = (await init_payment(client, user, order_id)).json()["data"]["paymentIntentId"]
    await force_deadline_passed(services, order_id)
    await orders.expire_order(services, uuid.UUID(order_id))
    await placed_order(client, services, book=book)  # the last copy is taken meanwhile
    payload = stripe_event(intent, order_id, 49_900)
    resp = await post_event(client, payload, stripe_signed(payload), "/api/v1/payments/webhook")
    assert resp.json()["data"]["result"] == "refund"
    await run_job(services, PAYMENT, await refund_job(services, order_id))
    assert await order_status(services, order_id) == "REFUNDED"
    [call] = stripe_stub.posts("/v1/refunds")
    payment_id = (await payment_row(services, order_id))["id"]
    assert call.headers["Idempotency-Key"] == f"bookbazar-refund-{payment_id}"
    assert call.form == {"payment_intent": intent, "amount": "49900"}
    row = await payment_row(services, order_id)
    assert row["status"] == "refunded" and row["refund_id"].startswith("re_stub_")


async def test_a_second_payment_for_a_paid_order_is_refunded_not_kept(
    client: httpx.AsyncClient, services: Services, stripe_stub: Stub
) -> None:
    user, _, order_id = await placed_order(client, services)
    stripe_intent = (await init_payment(client, user, order_id)).json()["data"]["paymentIntentId"]
    # The buyer also paid through the sandbox (e.g. the provider was switched meanwhile).
    await repo.insert_payment(
        services.pg,
        order_id=uuid.UUID(order_id),
        provider="sandbox",
        intent_id="pi_sb_other",
        client_secret=None,
        redirect_url=None,
        amount=49_900,
        currency="INR",
    )
    assert (await pay(client, order_id, "pi_sb_other")).json()["data"]["result"] == "paid"
    payload = stripe_event(stripe_intent, order_id, 49_900)
    resp = await post_event(client, payload, stripe_signed(payload), "/api/v1/payments/webhook")
    assert resp.json()["data"]["result"] == "mismatch"
    async with services.sessionmaker() as session:
        rows = await session.execute(text("SELECT provider, status FROM payments"))
        statuses = {r.provider: r.status for r in rows}
    assert statuses == {"sandbox": "succeeded", "stripe": "refund_pending"}
    assert await order_status(services, order_id) == "PAID"
    # The second payment's money goes back through Stripe; the order stays PAID.
    async with services.sessionmaker() as session:
        stripe_payment = (
            await session.execute(text("SELECT id FROM payments WHERE provider = 'stripe'"))
        ).scalar_one()
    result = await run_job(services, PAYMENT, f"refund-{stripe_payment}")
    assert result["refunded"] is True and result["orderRefunded"] is False
    [call] = stripe_stub.posts("/v1/refunds")
    assert call.form == {"payment_intent": stripe_intent, "amount": "49900"}
    assert await order_status(services, order_id) == "PAID"
