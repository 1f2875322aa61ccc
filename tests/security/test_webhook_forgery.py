"""Every webhook route, for every provider: a request without a signature, or with a wrong,
stale or borrowed one, is refused with 400 and changes nothing in the database (DESIGN.md
§7.4). The same body signed correctly does mark the order paid: the forgeries would have
mattered."""

from __future__ import annotations

import hashlib
import hmac
import time
import uuid

import httpx
import pytest

from bookbazar.app import BookBazarApp
from bookbazar.config import Settings
from bookbazar.services import Services
from tests.conftest import Infra, make_settings
from tests.foundation.helpers import assert_error
from tests.orders.conftest import order_status
from tests.payments.conftest import initialised, placed_order, sandbox_event, signed, snapshot

SANDBOX_SECRET = "whsec_test_secret"
STRIPE_SECRET = "whsec_stripe_test_secret"
RAZORPAY_SECRET = "razorpay_webhook_test_secret"


@pytest.fixture
def settings(infra: Infra, clean_state: None) -> Settings:
    """Every provider configured, so each webhook route checks a signature."""
    return make_settings(
        infra,
        stripe_api_key="sk_test_not_used",
        stripe_webhook_secret=STRIPE_SECRET,
        razorpay_key_id="rzp_test_not_used",
        razorpay_key_secret="not-used",
        razorpay_webhook_secret=RAZORPAY_SECRET,
    )


def test_every_webhook_route_is_covered(app: BookBazarApp) -> None:
    paths = {p for p in app.api.openapi()["paths"] if "/webhook" in p}
    assert paths == {"/api/v1/payments/webhook", "/api/v1/payments/webhook/{provider}"}


def _stripe_style(payload: str, secret: str) -> dict[str, dict[str, str]]:
    now = int(time.time())
    good = signed(payload, secret=secret)["Stripe-Signature"]
    return {
        "no signature": {},
        "empty signature": {"Stripe-Signature": ""},
        "garbage signature": {"Stripe-Signature": "t=1,v1=deadbeef"},
        "another secret": signed(payload, secret="whsec_attacker")
        | {"Content-Type": "application/json"},
        "stale (301 s)": signed(payload, secret=secret, at=now - 301),
        "another body's signature": {
            "Stripe-Signature": signed(payload + " ", secret=secret)["Stripe-Signature"]
        },
        "scheme v0 only": {"Stripe-Signature": good.replace("v1=", "v0=")},
        "other provider's header": {
            "X-Razorpay-Signature": hmac.new(
                RAZORPAY_SECRET.encode(), payload.encode(), hashlib.sha256
            ).hexdigest(),
            "X-Razorpay-Event-Id": "evt_x",
        },
    }


def _razorpay_style(payload: str) -> dict[str, dict[str, str]]:
    def sig(secret: str, body: str) -> str:
        return hmac.new(secret.encode(), body.encode(), hashlib.sha256).hexdigest()

    event = {"X-Razorpay-Event-Id": f"evt_{uuid.uuid4().hex}"}
    return {
        "no signature": event,
        "garbage signature": {**event, "X-Razorpay-Signature": "deadbeef"},
        "another secret": {**event, "X-Razorpay-Signature": sig("attacker", payload)},
        "another body's signature": {
            **event,
            "X-Razorpay-Signature": sig(RAZORPAY_SECRET, payload + " "),
        },
        "other provider's header": signed(payload, secret=RAZORPAY_SECRET),
    }


async def test_forged_webhooks_change_nothing(
    client: httpx.AsyncClient, services: Services
) -> None:
    user, _, order_id = await placed_order(client, services, price=49_900)
    intent = await initialised(client, user, order_id)
    payload = sandbox_event(intent, order_id, 49_900)
    before = await snapshot(services, order_id)

    attempts: list[tuple[str, str, dict[str, str]]] = []
    for path, secret in (
        ("/api/v1/payments/webhook", SANDBOX_SECRET),
        ("/api/v1/payments/webhook/sandbox", SANDBOX_SECRET),
        ("/api/v1/payments/webhook/stripe", STRIPE_SECRET),
    ):
        attempts += [(path, n, h) for n, h in _stripe_style(payload, secret).items()]
    razorpay = "/api/v1/payments/webhook/razorpay"
    attempts += [(razorpay, n, h) for n, h in _razorpay_style(payload).items()]

    failures = []
    for path, name, headers in attempts:
        resp = await client.post(
            path, content=payload.encode(), headers={"Content-Type": "application/json", **headers}
        )
        try:
            assert_error(resp, 400)
            assert await snapshot(services, order_id) == before
        except AssertionError as exc:
            failures.append(f"{path} with {name}: {exc}")
    assert not failures, "\n".join(failures)
    assert await order_status(services, order_id) == "PAYMENT_PENDING"

    # The control: the very same body, signed with the sandbox secret, is a payment.
    resp = await client.post(
        "/api/v1/payments/webhook/sandbox", content=payload.encode(), headers=signed(payload)
    )
    assert resp.status_code == 200, resp.text
    assert await order_status(services, order_id) == "PAID"
