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
from bookbazar.kit.queues import PAYMENT
from bookbazar.models import OrderStatus
from bookbazar.orders.settlement import mark_refunded
from bookbazar.payments import repository as repo
from bookbazar.payments.providers import ProviderUnavailable, get_provider
from bookbazar.payments.providers.base import IntentStatus
from bookbazar.payments.schemas import OPEN_PAYMENT, PaymentStatus
from bookbazar.payments.service import apply_success, enqueue_refund
from bookbazar.services import Services

log = structlog.get_logger(__name__)

VERIFY_JOB = "payment:verify"
SCAN_BATCH = 200
# A REFUND_PENDING order this old has lost its refund job (or it is failing): retry.
REFUND_RETRY_SECONDS = 600
# Orders that ended while a payment may have been under way: checked this many times.
_VERIFIABLE = frozenset(
    {OrderStatus.PAYMENT_PENDING.value, OrderStatus.EXPIRED.value, OrderStatus.CANCELLED.value}
)


async def verify_payment(services: Services, payment_id: uuid.UUID) -> str:
    """Ask the provider whether an open intent was paid; if so settle it exactly as the
    webhook would. Idempotent. Raises ProviderError (the job retries)."""
    async with services.sessionmaker() as session:
        payment = await repo.payment_by_id(session, payment_id)
        status = None if payment is None else await repo.order_status(session, payment.order_id)
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
    intent per PAYMENT_VERIFY_AFTER_SECONDS window, so several workers agree), and
    re-enqueue refunds that have waited too long. Returns how many were enqueued."""
    after = services.settings.payment_verify_after_seconds
    now = utcnow()
    async with services.sessionmaker() as session:
        due = await repo.payments_to_verify(
            session, created_before=now - timedelta(seconds=after), limit=SCAN_BATCH
        )
        refunds = await repo.refunds_outstanding(
            session,
            updated_before=now - timedelta(seconds=REFUND_RETRY_SECONDS),
            limit=SCAN_BATCH,
        )
    window = int(time.time() // after)
    for payment_id in due:
        await services.queues.add(
            PAYMENT,
            VERIFY_JOB,
            {"paymentId": str(payment_id)},
            job_id=f"verify-{payment_id}-{window}",
            attempts=3,
        )
    refund_window = int(time.time() // REFUND_RETRY_SECONDS)
    for payment_id in refunds:
        async with services.sessionmaker() as session:
            payment = await repo.payment_by_id(session, payment_id)
        if payment is not None:
            await enqueue_refund(services, payment, suffix=f"-{refund_window}")
    if due or refunds:
        log.info("payment_watchdog_scheduled", verify=len(due), refunds=len(refunds))
    return len(due) + len(refunds)


async def schedule_final_check(services: Services, order_id: uuid.UUID) -> None:
    """An order ended (expired/cancelled) with an open intent: check once, a little
    later, whether the buyer paid anyway and the webhook was lost (a late payment)."""
    async with services.sessionmaker() as session:
        payments = await repo.payments_of_order(session, order_id)
    delay_ms = services.settings.payment_verify_after_seconds * 1000
    for payment in payments:
        if PaymentStatus(payment.status) in OPEN_PAYMENT:
            await services.queues.add(
                PAYMENT,
                VERIFY_JOB,
                {"paymentId": str(payment.id), "orderId": str(order_id)},
                job_id=f"verify-{payment.id}-final",
                delay_ms=delay_ms,
                attempts=5,
            )


async def refund_payment(services: Services, payment_id: uuid.UUID) -> dict[str, Any]:
    """Refund a payment whose order is REFUND_PENDING, then REFUNDED + order.refunded.
    Idempotent: the refund id is stored before the order moves, and the provider call
    is keyed by the order, so a retry never refunds twice. Never refunds an order in any
    other state. Raises ProviderError (the job retries, then dead-letters)."""
    async with services.sessionmaker() as session:
        payment = await repo.payment_by_id(session, payment_id)
        status = None if payment is None else await repo.order_status(session, payment.order_id)
    if payment is None:
        return {"refunded": False, "reason": "no such payment"}
    structlog.contextvars.bind_contextvars(order_id=str(payment.order_id))
    if status == OrderStatus.REFUNDED.value and payment.refund_id:
        async with services.sessionmaker() as session, session.begin():
            await repo.set_payment_status(session, payment.id, PaymentStatus.REFUNDED)
        return {"refunded": True, "refundId": payment.refund_id}
    if status != OrderStatus.REFUND_PENDING.value:
        log.error("refund_refused_order_not_refund_pending", status=status)
        return {"refunded": False, "reason": f"order is {status}"}
    refund_id = payment.refund_id
    if refund_id is None:
        provider = get_provider(services, payment.provider)
        refund_id = await provider.refund(
            payment.intent_id, payment.amount, idempotency_key=f"refund-{payment.order_id}"
        )
        faults.crash_point("payment:refund-after-provider")
        async with services.sessionmaker() as session, session.begin():
            await repo.save_refund_id(session, payment.id, refund_id)
        faults.crash_point("payment:refund-after-save")
    refunded = await mark_refunded(services, payment.order_id, refund_id)
    async with services.sessionmaker() as session, session.begin():
        await repo.set_payment_status(
            session, payment.id, PaymentStatus.REFUNDED, refund_id=refund_id
        )
    log.info("payment_refunded", provider=payment.provider, refunded=refunded)
    return {"refunded": refunded, "refundId": refund_id}
