"""Payment rules: initialising an intent, and applying what providers report.

Every payment outcome goes through `orders.settlement` (the only code that sells stock);
this module decides which outcome a provider event means and keeps the `payments` row in
step. Nothing here holds a database transaction across a call to a provider.
"""

from __future__ import annotations

import enum
import secrets
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import structlog
from prometheus_client import Counter

from bookbazar.errors import BadGateway, BadRequest, Conflict, NotFound, ServiceUnavailable
from bookbazar.kit import faults
from bookbazar.kit.clock import iso
from bookbazar.models import OrderStatus, Payment
from bookbazar.orders import repository as orders_repo
from bookbazar.orders.settlement import (
    Settled,
    extend_reservation,
    record_payment_failure,
    settle_payment,
)
from bookbazar.payments import repository as repo
from bookbazar.payments.providers import (
    ProviderUnavailable,
    configured_provider,
    get_provider,
)
from bookbazar.payments.providers.base import (
    EventKind,
    PaymentProvider,
    PaymentRequest,
    ProviderError,
    SignatureError,
    WebhookEvent,
)
from bookbazar.payments.schemas import OPEN_PAYMENT, PaymentStatus, RefundJob
from bookbazar.services import Services

log = structlog.get_logger(__name__)

WEBHOOKS = Counter(
    "bookbazar_payment_webhooks_total",
    "Provider webhooks by provider and result",
    ["provider", "result"],
)
# A second delivery of an event while the first is still being applied waits this long
# at most (then the provider's retry finds it processed).
_INFLIGHT_MS = 60_000


class WebhookResult(enum.StrEnum):
    PAID = "paid"
    ALREADY_PAID = "already_paid"
    REFUND = "refund"
    MISMATCH = "mismatch"
    FAILED = "payment_failed"
    STALE = "stale"  # e.g. failed after succeeded: nothing to do
    DUPLICATE = "duplicate"
    IGNORED = "ignored"
    UNKNOWN_INTENT = "unknown_intent"


# ---------------------------------------------------------------- init


def present(payment: Payment, expires_at: datetime | None) -> dict[str, Any]:
    return {
        "orderId": str(payment.order_id),
        "provider": payment.provider,
        "paymentIntentId": payment.intent_id,
        "clientSecret": payment.client_secret,
        "redirectUrl": payment.redirect_url,
        "amount": payment.amount,
        "currency": payment.currency,
        "status": payment.status,
        "expiresAt": iso(expires_at),
    }


def _not_awaiting_payment(status: str | None) -> Conflict:
    return Conflict(
        f"Only an order awaiting payment can be paid; this one is {status}",
        errors=[{"field": "orderId", "status": status}],
    )


async def init_payment(
    services: Services, user_id: uuid.UUID, order_id: uuid.UUID
) -> dict[str, Any]:
    """Create (once) the configured provider's intent for the caller's order.

    Owner only (another user's order -> NotFound), PAYMENT_PENDING only (else Conflict
    naming the status). Calling it again returns the same intent. Extends the
    reservation so at least PAYMENT_MIN_WINDOW_SECONDS remain to pay. The provider is
    called with no database transaction open. Raises BadGateway if the provider fails.
    """
    try:
        provider = configured_provider(services)
    except ProviderUnavailable:
        raise ServiceUnavailable("The payment provider is not configured") from None
    async with services.sessionmaker() as session:
        order = await orders_repo.get_order(session, order_id, user_id)
        if order is None:
            raise NotFound("Order not found")
        payment = await repo.payment_for_order(session, order_id, provider.name)
    if order.status != OrderStatus.PAYMENT_PENDING.value:
        raise _not_awaiting_payment(order.status)
    window = services.settings.payment_min_window_seconds
    deadline = await extend_reservation(services, order_id, min_window_seconds=window)
    if deadline is None:
        raise _not_awaiting_payment(await _status(services, order_id))
    if payment is not None:
        return present(payment, deadline)

    request = PaymentRequest(order.id, order.total, order.currency, f"Book Bazar order {order.id}")
    try:
        intent = await provider.create_intent(request)
    except ProviderError as exc:
        log.warning("payment_intent_failed", order_id=str(order_id), error=str(exc))
        raise BadGateway("The payment provider did not answer, please retry") from exc
    async with services.sessionmaker() as session, session.begin():
        await repo.insert_payment(
            session,
            order_id=order.id,
            provider=provider.name,
            intent_id=intent.intent_id,
            client_secret=intent.client_secret,
            redirect_url=intent.redirect_url,
            amount=order.total,
            currency=order.currency,
        )
        payment = await repo.payment_for_order(session, order_id, provider.name)
    assert payment is not None
    log.info("payment_initialised", order_id=str(order_id), provider=provider.name)
    # The provider call took time: make sure the window still holds.
    deadline = await extend_reservation(services, order_id, min_window_seconds=window)
    if deadline is None:
        raise _not_awaiting_payment(await _status(services, order_id))
    return present(payment, deadline)


async def _status(services: Services, order_id: uuid.UUID) -> str | None:
    async with services.sessionmaker() as session:
        return await repo.order_status(session, order_id)


# ---------------------------------------------------------------- outcomes


async def apply_success(
    services: Services, payment: Payment, amount: int, currency: str
) -> WebhookResult:
    """A provider says this intent was paid `amount` `currency`: settle the order (PAID,
    or a late re-reservation), and when the money cannot be applied (wrong amount or
    currency, a second payment for a paid order, paid too late with no stock left) give
    it back: the payment goes to REFUND_PENDING with the reason, and a refund job runs.
    Idempotent: a repeat reports the same outcome without repeating any effect."""
    settlement = await settle_payment(
        services,
        payment.order_id,
        amount=amount,
        currency=currency,
        provider=payment.provider,
        intent_id=payment.intent_id,
    )
    outcome = settlement.outcome
    if outcome is Settled.UNKNOWN:
        log.warning("payment_for_missing_order", order_id=str(payment.order_id))
        return WebhookResult.IGNORED
    reason: str | None = None
    if outcome is Settled.REFUND:
        reason = f"paid while the order was {settlement.status}: no stock to sell it again"
        result = WebhookResult.REFUND
    elif outcome is Settled.MISMATCH:
        reason = (
            f"paid {amount} {currency.upper()} for an order of {payment.amount} {payment.currency}"
        )
        result = WebhookResult.MISMATCH
    elif outcome is Settled.ALREADY_PAID and not await _paid_by(services, payment):
        reason = "a second payment for an order that was paid already"
        result = WebhookResult.MISMATCH
    else:
        result = WebhookResult.PAID if outcome is Settled.PAID else WebhookResult.ALREADY_PAID
    async with services.sessionmaker() as session, session.begin():
        if reason is None:
            await repo.set_payment_status(session, payment.id, PaymentStatus.SUCCEEDED)
        else:
            await repo.set_payment_status(
                session, payment.id, PaymentStatus.REFUND_PENDING, review_reason=reason
            )
    if reason is not None:
        log.error("payment_refunded_for_review", provider=payment.provider, reason=reason)
        await enqueue_refund(services, payment)
    return result


async def _paid_by(services: Services, payment: Payment) -> bool:
    """Whether the order's recorded payment is this intent."""
    async with services.sessionmaker() as session:
        order = await orders_repo.get_order(session, payment.order_id)
    return order is not None and (order.payment_provider, order.payment_intent_id) == (
        payment.provider,
        payment.intent_id,
    )


async def apply_failure(services: Services, payment: Payment, reason: str) -> WebhookResult:
    """A declined attempt: the order stays PAYMENT_PENDING with order.payment_failed. A
    failure reported after the payment succeeded (out of order) changes nothing."""
    if PaymentStatus(payment.status) not in OPEN_PAYMENT:
        log.info("payment_failure_ignored", order_id=str(payment.order_id), status=payment.status)
        return WebhookResult.STALE
    reported = await record_payment_failure(services, payment.order_id, reason)
    async with services.sessionmaker() as session, session.begin():
        await repo.set_payment_status(session, payment.id, PaymentStatus.FAILED)
    if not reported:
        return WebhookResult.STALE
    log.info("payment_declined", order_id=str(payment.order_id))
    return WebhookResult.FAILED


async def enqueue_refund(services: Services, payment: Payment, *, window: str = "") -> None:
    await services.queues.enqueue(
        RefundJob(payment_id=payment.id, order_id=payment.order_id, attempt_window=window)
    )


# ---------------------------------------------------------------- webhooks


async def handle_webhook(
    services: Services, provider_name: str, raw_body: bytes, headers: Mapping[str, str]
) -> WebhookResult:
    """Verify, then apply a provider event once.

    The signature is checked on the raw body before anything else (BadRequest, nothing
    changed). Each (provider, event id) is applied once: a duplicate answers DUPLICATE
    and changes nothing; the same event arriving while it is being applied gets Conflict
    (the provider retries). The event is recorded as processed only after its effect,
    and every effect is idempotent, so a crash in between is repaired by the retry.
    Events for intents we never created change nothing (logged, acknowledged).
    """
    try:
        provider = get_provider(services, provider_name)
    except ProviderUnavailable:
        raise NotFound(f"Unknown payment provider: {provider_name}") from None
    try:
        event = provider.verify_webhook(raw_body, headers)
    except SignatureError as exc:
        WEBHOOKS.labels(provider.name, "rejected").inc()
        log.warning("webhook_rejected", provider=provider.name, reason=str(exc))
        raise BadRequest(f"Invalid webhook: {exc}") from None
    structlog.contextvars.bind_contextvars(
        provider=provider.name, event_id=event.event_id, event_type=event.event_type
    )
    result = await _handle_verified(services, provider, event)
    WEBHOOKS.labels(provider.name, result.value).inc()
    log.info("webhook_handled", result=result.value)
    return result


async def _handle_verified(
    services: Services, provider: PaymentProvider, event: WebhookEvent
) -> WebhookResult:
    if event.kind is EventKind.OTHER:
        async with services.sessionmaker() as session, session.begin():
            fresh = await repo.record_event(
                session, provider.name, event.event_id, event.event_type
            )
        return WebhookResult.IGNORED if fresh else WebhookResult.DUPLICATE
    key = f"webhook:inflight:{provider.name}:{event.event_id}"
    token = secrets.token_hex(8)
    if not await services.redis.set(key, token, nx=True, px=_INFLIGHT_MS):
        raise Conflict("This event is being processed; retry later")
    try:
        return await _apply_once(services, provider, event)
    finally:
        await services.scripts.run("lock_release", [key], [token])


async def _apply_once(
    services: Services, provider: PaymentProvider, event: WebhookEvent
) -> WebhookResult:
    assert event.intent_id is not None
    async with services.sessionmaker() as session:
        if await repo.event_processed(session, provider.name, event.event_id):
            return WebhookResult.DUPLICATE
        payment = await repo.payment_by_intent(session, provider.name, event.intent_id)
    if payment is None:
        # Not ours (or not yet recorded): acknowledge so the provider stops, change nothing.
        log.warning("webhook_unknown_intent", intent_id=event.intent_id)
        return WebhookResult.UNKNOWN_INTENT
    structlog.contextvars.bind_contextvars(order_id=str(payment.order_id))
    if event.order_id is not None and event.order_id != payment.order_id:
        log.warning("webhook_order_mismatch", metadata_order_id=str(event.order_id))
        return WebhookResult.IGNORED
    if event.kind is EventKind.SUCCEEDED:
        assert event.amount is not None and event.currency is not None
        result = await apply_success(services, payment, event.amount, event.currency)
    else:
        result = await apply_failure(services, payment, event.failure_reason or "declined")
    faults.crash_point("payment:webhook-before-record")
    async with services.sessionmaker() as session, session.begin():
        await repo.record_event(session, provider.name, event.event_id, event.event_type)
    return result
