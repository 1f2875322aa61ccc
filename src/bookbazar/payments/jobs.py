"""Payment jobs in the worker: sandbox webhook delivery, the watchdog, refunds."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from typing import Any

import structlog

from bookbazar.kit.jobs import JobContext, JobRegistry
from bookbazar.kit.queues import PAYMENT
from bookbazar.payments import watchdog
from bookbazar.payments.sandbox_page import DELIVER_JOB, deliver_event
from bookbazar.payments.service import REFUND_JOB
from bookbazar.services import Services

log = structlog.get_logger(__name__)
JOBS = JobRegistry()


@JOBS.job(PAYMENT, DELIVER_JOB)
async def deliver_sandbox_webhook(ctx: JobContext) -> dict[str, Any]:
    """data: {eventId, outcome, intentId, orderId, amount, currency, created}. Raises
    until the service acknowledges; BullMQ retries with exponential backoff."""
    status = await deliver_event(ctx.services, ctx.data)
    return {"status": status}


@JOBS.job(PAYMENT, watchdog.VERIFY_JOB)
async def verify_payment(ctx: JobContext) -> dict[str, Any]:
    """data: {paymentId}. Asks the provider; settles like the webhook would."""
    result = await watchdog.verify_payment(ctx.services, uuid.UUID(str(ctx.data["paymentId"])))
    return {"result": result}


@JOBS.job(PAYMENT, REFUND_JOB)
async def refund_payment(ctx: JobContext) -> dict[str, Any]:
    """data: {orderId, paymentId}. Refund through the provider, then REFUNDED."""
    return await watchdog.refund_payment(ctx.services, uuid.UUID(str(ctx.data["paymentId"])))


@JOBS.on_event("order.expired", "order.cancelled")
async def check_for_late_payment(services: Services, event: dict[str, Any]) -> None:
    await watchdog.schedule_final_check(services, uuid.UUID(event["orderId"]))


@JOBS.loop
async def payment_watchdog(services: Services, stop: asyncio.Event) -> None:
    after = services.settings.payment_verify_after_seconds
    interval = max(1.0, min(30.0, after / 2))
    while not stop.is_set():
        try:
            await watchdog.schedule_verifications(services)
        except Exception:
            log.exception("payment_watchdog_failed")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=interval)
