"""The sandbox provider's hosted checkout page, and the delivery of its webhooks.

GET /sandbox/checkout/{intent} shows the amount with Pay and Decline buttons. Either
button records the buyer's action in the sandbox ledger and enqueues a `sandbox:deliver`
job, which POSTs the Stripe-signed event to this service's webhook URL and is retried
with backoff until acknowledged (2xx) — as a real provider delivers its webhooks.
"""

from __future__ import annotations

import html
import time

import structlog
from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from bookbazar.kit.money import format_money
from bookbazar.models import Payment
from bookbazar.payments import repository as repo
from bookbazar.payments.providers import get_provider, is_enabled
from bookbazar.payments.providers.sandbox import SandboxProvider, build_event
from bookbazar.payments.schemas import SandboxDeliveryJob
from bookbazar.services import Services, ServicesDep

log = structlog.get_logger(__name__)

WEBHOOK_PATH = "/api/v1/payments/webhook/sandbox"

router = APIRouter(prefix="/sandbox/checkout", tags=["sandbox"], include_in_schema=False)


class WebhookNotAcknowledged(Exception):
    """The service answered the delivery with a non-2xx status: retry later."""


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    document = (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)} · Book Bazar sandbox</title>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        "<style>body{font-family:system-ui,sans-serif;max-width:32rem;margin:3rem auto;"
        "padding:0 1rem}button{font-size:1rem;padding:.6rem 1.4rem;margin-right:.6rem}"
        ".note{color:#666;font-size:.9rem}</style></head><body>"
        f"<h1>{html.escape(title)}</h1>{body}"
        "<p class='note'>Sandbox payments move no money.</p></body></html>"
    )
    return HTMLResponse(document, status_code=status)


async def _payment(services: Services, intent_id: str) -> Payment | None:
    if not is_enabled(services.settings, SandboxProvider.name):
        return None
    return await repo.payment_by_intent(services.pg, SandboxProvider.name, intent_id)


def _not_found() -> HTMLResponse:
    return _page("Payment not found", "<p>No sandbox payment has this id.</p>", 404)


@router.get("/{intent_id}", response_class=HTMLResponse)
async def checkout_page(intent_id: str, services: ServicesDep) -> HTMLResponse:
    payment = await _payment(services, intent_id)
    if payment is None:
        return _not_found()
    action = f"/sandbox/checkout/{html.escape(payment.intent_id, quote=True)}"
    body = (
        f"<p>Order <code>{html.escape(str(payment.order_id))}</code></p>"
        f"<p><strong>{html.escape(format_money(payment.amount, payment.currency))}</strong></p>"
        f"<form method='post' action='{action}/pay' style='display:inline'>"
        "<button type='submit'>Pay</button></form>"
        f"<form method='post' action='{action}/decline' style='display:inline'>"
        "<button type='submit'>Decline</button></form>"
    )
    return _page("Book Bazar checkout", body)


@router.post("/{intent_id}/pay", response_class=HTMLResponse)
async def pay(intent_id: str, services: ServicesDep) -> HTMLResponse:
    return await _submit(services, intent_id, "succeeded")


@router.post("/{intent_id}/decline", response_class=HTMLResponse)
async def decline(intent_id: str, services: ServicesDep) -> HTMLResponse:
    return await _submit(services, intent_id, "failed")


async def _submit(services: Services, intent_id: str, outcome: str) -> HTMLResponse:
    payment = await _payment(services, intent_id)
    if payment is None:
        return _not_found()
    provider = _sandbox(services)
    charge = await provider.charge(payment.intent_id, outcome, payment.amount, payment.currency)
    if not charge.recorded and outcome == "failed":
        return _page("Already paid", "<p>This payment was completed already.</p>", 409)
    # Paying twice re-enqueues the first payment's event: same job id, one delivery.
    await services.queues.enqueue(
        SandboxDeliveryJob(
            event_id=charge.event_id,
            outcome="succeeded" if charge.status != "failed" else "failed",
            intent_id=payment.intent_id,
            order_id=payment.order_id,
            amount=payment.amount,
            currency=payment.currency,
            created=int(time.time()),
        )
    )
    log.info("sandbox_checkout", order_id=str(payment.order_id), outcome=outcome)
    back = (
        f"<p><a href='/orders/{html.escape(str(payment.order_id), quote=True)}'>"
        "Back to your order</a></p>"
    )
    if outcome == "failed":
        return _page(
            "Payment declined", "<p>The store will be told; you may try again.</p>" + back, 202
        )
    if not charge.recorded:
        return _page("Already paid", "<p>This payment was completed already.</p>" + back)
    return _page(
        "Payment accepted", "<p>The store will confirm your order shortly.</p>" + back, 202
    )


def _sandbox(services: Services) -> SandboxProvider:
    provider = get_provider(services, SandboxProvider.name)
    assert isinstance(provider, SandboxProvider)
    return provider


async def deliver_event(services: Services, job: SandboxDeliveryJob) -> int:
    """POST one signed event to the webhook URL, as a provider would (through the
    process's long-lived HTTP client). The body is rebuilt identically on every attempt;
    only the signature's timestamp is fresh. Raises until acknowledged."""
    payload = build_event(
        event_id=job.event_id,
        outcome=job.outcome,
        intent_id=job.intent_id,
        order_id=job.order_id,
        amount=job.amount,
        currency=job.currency,
        created=job.created,
    )
    headers = {
        "Content-Type": "application/json",
        "Stripe-Signature": _sandbox(services).sign(payload),
        "User-Agent": "BookBazar-Sandbox/1.0",
    }
    status = await services.http.post(
        services.settings.base_url + WEBHOOK_PATH, content=payload.encode(), headers=headers
    )
    if not 200 <= status < 300:
        raise WebhookNotAcknowledged(f"webhook answered {status}")
    return status
