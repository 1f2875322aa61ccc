"""After the fact: asking providers about webhooks that never came, and refunds.

`payment:verify` applies exactly what the webhook would have applied (same settlement,
same idempotent effects), so a webhook and the watchdog racing is harmless.
"""

from __future__ import annotations

import time
import uuid
from datetime import timedelta
from typing import Any

import structlog

from bookbazar.kit import faults
from bookbazar.kit.clock import utcnow
from bookbazar.models import OrderStatus
from bookbazar.orders import repository as orders_repo
from bookbazar.orders.settlement import mark_refunded
from bookbazar.payments import repository as repo
from bookbazar.payments.providers import ProviderUnavailable, get_provider
from bookbazar.payments.providers.base import IntentStatus
from bookbazar.payments.schemas import OPEN_PAYMENT, PaymentStatus, VerifyJob
from bookbazar.payments.service import apply_success, enqueue_refund
from bookbazar.services import Services

log = structlog.get_logger(__name__)

SCAN_BATCH = 200
# A REFUND_PENDING payment this old has lost its refund job (or it is failing): retry.
REFUND_RETRY_SECONDS = 600
# Orders that ended while a payment may have been under way: checked this many times.
_VERIFIABLE = frozenset(
    {OrderStatus.PAYMENT_PENDING.value, OrderStatus.EXPIRED.value, OrderStatus.CANCELLED.value}
)


async def verify_payment(services: Services, payment_id: uuid.UUID) -> str:
    """Ask the provider whether an open intent was paid; if so settle it exactly as the
    webhook would. Idempotent. Raises ProviderError (the job retries)."""
    payment = await repo.payment_by_id(services.pg, payment_id)
    status = None if payment is None else await orders_repo.status_of(services.pg, payment.order_id)
    if payment is None or status not in _VERIFIABLE:
        return "settled"
    if PaymentStatus(payment.status) not in OPEN_PAYMENT:
        return "settled"
    structlog.contextvars.bind_contextvars(order_id=str(payment.order_id))
    try:
        provider = get_provider(services, payment.provider)
    except ProviderUnavailable:
        log.warning("verify_provider_unavailable", provider=payment.provider)
        return "unavailable"
    state = await provider.retrieve(payment.intent_id)
    if state.status is not IntentStatus.SUCCEEDED:
        return state.status.value
    result = await apply_success(
        services,
        payment,
        state.amount if state.amount is not None else payment.amount,
        state.currency or payment.currency,
    )
    log.warning("payment_recovered_by_watchdog", provider=payment.provider, result=result.value)
    return result.value


async def schedule_verifications(services: Services) -> int:
    """Enqueue `payment:verify` for every intent that is overdue a webhook (one job per
    intent per PAYMENT_VERIFY_AFTER_SECONDS window), and re-enqueue refunds that have
    waited too long. Returns how many were enqueued."""
    after = services.settings.payment_verify_after_seconds
    now = utcnow()
    due = await repo.payments_to_verify(
        services.pg, created_before=now - timedelta(seconds=after), limit=SCAN_BATCH
    )
    waiting = await repo.refunds_outstanding(
        services.pg,
        updated_before=now - timedelta(seconds=REFUND_RETRY_SECONDS),
        limit=SCAN_BATCH,
    )
    window = str(int(time.time() // after))
    for payment_id in due:
        await services.queues.enqueue(VerifyJob(payment_id=payment_id, window=window), attempts=3)
    refund_window = str(int(time.time() // REFUND_RETRY_SECONDS))
    for payment in waiting:
        await enqueue_refund(services, payment, window=refund_window)
    if due or waiting:
        log.info("payment_watchdog_scheduled", verify=len(due), refunds=len(waiting))
    return len(due) + len(waiting)


async def schedule_final_check(services: Services, order_id: uuid.UUID) -> None:
    """An order ended (expired/cancelled) with an open intent: check once, a little
    later, whether the buyer paid anyway and the webhook was lost (a late payment)."""
    payments = await repo.payments_of_order(services.pg, order_id)
    delay_ms = services.settings.payment_verify_after_seconds * 1000
    for payment in payments:
        if PaymentStatus(payment.status) in OPEN_PAYMENT:
            await services.queues.enqueue(
                VerifyJob(payment_id=payment.id, window="final"), delay_ms=delay_ms, attempts=5
            )


async def refund_payment(services: Services, payment_id: uuid.UUID) -> dict[str, Any]:
    """Give a REFUND_PENDING payment's money back, then mark it REFUNDED; if the order is
    REFUND_PENDING through this payment (a late payment without stock), it becomes
    REFUNDED with order.refunded. Idempotent: the refund id is stored before anything
    moves, and the provider call is keyed by the payment, so a retry never refunds twice.
    Never refunds a payment that is not REFUND_PENDING. Raises ProviderError (the job
    retries, then dead-letters)."""
    payment = await repo.payment_by_id(services.pg, payment_id)
    if payment is None:
        return {"refunded": False, "reason": "no such payment"}
    structlog.contextvars.bind_contextvars(order_id=str(payment.order_id))
    status = PaymentStatus(payment.status)
    if status not in (PaymentStatus.REFUND_PENDING, PaymentStatus.REFUNDED):
        log.error("refund_refused_payment_not_refund_pending", status=status.value)
        return {"refunded": False, "reason": f"payment is {status.value}"}
    refund_id = payment.refund_id
    if refund_id is None:
        provider = get_provider(services, payment.provider)
        refund_id = await provider.refund(
            payment.intent_id, payment.amount, idempotency_key=f"refund-{payment.id}"
        )
        faults.crash_point("payment:refund-after-provider")
        await repo.save_refund_id(services.pg, payment.id, refund_id)
        faults.crash_point("payment:refund-after-save")
    await repo.set_payment_status(
        services.pg, payment.id, PaymentStatus.REFUNDED, refund_id=refund_id
    )
    paid_with = await orders_repo.refundable_through(services.pg, payment.order_id)
    order_refunded = False
    if paid_with == (payment.provider, payment.intent_id):
        order_refunded = await mark_refunded(services, payment.order_id, refund_id)
    log.info("payment_refunded", provider=payment.provider, order_refunded=order_refunded)
    return {"refunded": True, "refundId": refund_id, "orderRefunded": order_refunded}
