"""Payment rules: initialising an intent, and applying what providers report.

Every payment outcome goes through `orders.settlement` (the only code that sells stock);
this module decides which outcome a provider event means and keeps the `payments` row in
step. Nothing here holds a database transaction across a call to a provider.
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

import structlog
from prometheus_client import Counter

from bookbazar.errors import BadGateway, BadRequest, Conflict, NotFound, ServiceUnavailable
from bookbazar.kit.clock import iso, utcnow
from bookbazar.models import OrderStatus, Payment
from bookbazar.orders import repository as orders_repo
from bookbazar.orders.settlement import (
    Settled,
    Settlement,
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
from bookbazar.pg import Executor
from bookbazar.services import Services

log = structlog.get_logger(__name__)

WEBHOOKS = Counter(
    "bookbazar_payment_webhooks_total",
    "Provider webhooks by provider and result",
    ["provider", "result"],
)


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
    reservation so at least PAYMENT_MIN_WINDOW_SECONDS remain to pay (within the cap of
    `extend_reservation`). The provider is called with no database transaction open.
    Raises BadGateway if the provider fails.
    """
    try:
        provider = configured_provider(services)
    except ProviderUnavailable:
        raise ServiceUnavailable("The payment provider is not configured") from None
    found = await repo.order_for_payment(services.pg, order_id, user_id, provider.name)
    if found is None:
        raise NotFound("Order not found")
    order, payment = found
    if order.status != OrderStatus.PAYMENT_PENDING.value:
        raise _not_awaiting_payment(order.status)
    window = services.settings.payment_min_window_seconds
    deadline = await extend_reservation(services, order_id, min_window_seconds=window)
    if deadline is None:
        raise _not_awaiting_payment(await _status(services, order_id))
    if payment is not None:
        return present(payment, deadline)

    request = PaymentRequest(order_id, order.total, order.currency, f"Book Bazar order {order_id}")
    try:
        intent = await provider.create_intent(request)
    except ProviderError as exc:
        log.warning("payment_intent_failed", order_id=str(order_id), error=str(exc))
        raise BadGateway("The payment provider did not answer, please retry") from exc
    payment = await repo.insert_payment(
        services.pg,
        order_id=order_id,
        provider=provider.name,
        intent_id=intent.intent_id,
        client_secret=intent.client_secret,
        redirect_url=intent.redirect_url,
        amount=order.total,
        currency=order.currency,
    )
    log.info("payment_initialised", order_id=str(order_id), provider=provider.name)
    if deadline - utcnow() < timedelta(seconds=window / 2):
        # The provider call took long: make sure the window still holds.
        deadline = await extend_reservation(services, order_id, min_window_seconds=window)
        if deadline is None:
            raise _not_awaiting_payment(await _status(services, order_id))
    return present(payment, deadline)


async def _status(services: Services, order_id: uuid.UUID) -> str | None:
    return await orders_repo.status_of(services.pg, order_id)


# ---------------------------------------------------------------- outcomes


class DuplicateEvent(Exception):
    """The provider event was applied already (by another delivery of it): whatever this
    delivery was about to do is rolled back."""


EventRef = tuple[str, str, str]  # (provider, event id, event type)


async def apply_success(
    services: Services,
    payment: Payment,
    amount: int,
    currency: str,
    *,
    event: EventRef | None = None,
) -> WebhookResult:
    """A provider says this intent was paid `amount` `currency`: settle the order (PAID,
    or a late re-reservation), and when the money cannot be applied (wrong amount or
    currency, a second payment for a paid order, paid too late with no stock left) give
    it back: the payment goes to REFUND_PENDING with the reason, and a refund job runs.
    The payment's status and the event's record (when from a webhook) are written in the
    transaction that decides the settlement. Raises DuplicateEvent if `event` was applied
    already. Idempotent: a repeat reports the same outcome without repeating any effect."""
    reasons: list[str | None] = []

    async def on_decided(conn: Executor, settlement: Settlement) -> None:
        if event is not None and not await repo.record_event(conn, *event):
            raise DuplicateEvent(event[1])
        reason = _refund_reason(payment, settlement, amount, currency)
        reasons.append(reason)
        if settlement.outcome is Settled.UNKNOWN:
            return
        if reason is None:
            await repo.set_payment_status(conn, payment.id, PaymentStatus.SUCCEEDED)
        else:
            await repo.set_payment_status(
                conn, payment.id, PaymentStatus.REFUND_PENDING, review_reason=reason
            )

    settlement = await settle_payment(
        services,
        payment.order_id,
        amount=amount,
        currency=currency,
        provider=payment.provider,
        intent_id=payment.intent_id,
        on_decided=on_decided,
    )
    outcome = settlement.outcome
    if outcome is Settled.UNKNOWN:
        log.warning("payment_for_missing_order", order_id=str(payment.order_id))
        return WebhookResult.IGNORED
    reason = reasons[-1] if reasons else None
    if reason is not None:
        log.error("payment_refunded_for_review", provider=payment.provider, reason=reason)
        await enqueue_refund(services, payment)
    if outcome is Settled.REFUND:
        return WebhookResult.REFUND
    if reason is not None:
        return WebhookResult.MISMATCH
    return WebhookResult.PAID if outcome is Settled.PAID else WebhookResult.ALREADY_PAID


def _refund_reason(
    payment: Payment, settlement: Settlement, amount: int, currency: str
) -> str | None:
    """Why this payment's money must go back, or None when it paid the order."""
    if settlement.outcome is Settled.REFUND:
        return f"paid while the order was {settlement.status}: no stock to sell it again"
    if settlement.outcome is Settled.MISMATCH:
        return (
            f"paid {amount} {currency.upper()} for an order of {payment.amount} {payment.currency}"
        )
    if settlement.outcome is Settled.ALREADY_PAID and settlement.paid_with != (
        payment.provider,
        payment.intent_id,
    ):
        return "a second payment for an order that was paid already"
    return None


async def apply_failure(
    services: Services, payment: Payment, reason: str, *, event: EventRef | None = None
) -> WebhookResult:
    """A declined attempt: the order stays PAYMENT_PENDING with order.payment_failed. A
    failure reported after the payment succeeded (out of order) changes nothing. One
    transaction, with the event's record. Raises DuplicateEvent if it was applied."""
    open_payment = PaymentStatus(payment.status) in OPEN_PAYMENT

    async def before_commit(conn: Executor) -> None:
        if event is not None and not await repo.record_event(conn, *event):
            raise DuplicateEvent(event[1])
        if open_payment:
            await repo.set_payment_status(conn, payment.id, PaymentStatus.FAILED)

    if not open_payment:
        async with services.pg.tx() as conn:
            await before_commit(conn)
        log.info("payment_failure_ignored", order_id=str(payment.order_id), status=payment.status)
        return WebhookResult.STALE
    reported = await record_payment_failure(
        services, payment.order_id, reason, before_commit=before_commit
    )
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
    changed). Each (provider, event id) is applied once: the event is recorded as
    processed in the very transaction that applies it, so a duplicate (even one arriving
    while the first is being applied: it waits on the record's key) answers DUPLICATE and
    changes nothing, and a crash before that commit leaves the event unapplied for the
    provider's retry. Events for intents we never created change nothing (logged,
    acknowledged).
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
    try:
        result = await _apply_once(services, provider, event)
    except DuplicateEvent:
        result = WebhookResult.DUPLICATE
    WEBHOOKS.labels(provider.name, result.value).inc()
    log.info("webhook_handled", result=result.value)
    return result


async def _apply_once(
    services: Services, provider: PaymentProvider, event: WebhookEvent
) -> WebhookResult:
    ref: EventRef = (provider.name, event.event_id, event.event_type)
    if event.kind is EventKind.OTHER:
        fresh = await repo.record_event(services.pg, *ref)
        return WebhookResult.IGNORED if fresh else WebhookResult.DUPLICATE
    assert event.intent_id is not None
    payment, processed = await repo.payment_for_event(services.pg, ref, event.intent_id)
    if processed:
        return WebhookResult.DUPLICATE
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
        return await apply_success(services, payment, event.amount, event.currency, event=ref)
    return await apply_failure(services, payment, event.failure_reason or "declined", event=ref)
