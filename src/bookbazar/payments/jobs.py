"""Payment jobs in the worker: sandbox webhook delivery, the watchdog, refunds."""

from __future__ import annotations

import uuid
from typing import Any

from bookbazar.kit.jobs import JobContext, JobRegistry
from bookbazar.kit.queues import PAYMENT
from bookbazar.payments import watchdog
from bookbazar.payments.sandbox_page import deliver_event
from bookbazar.payments.schemas import RefundJob, SandboxDeliveryJob, VerifyJob
from bookbazar.services import Services

JOBS = JobRegistry()


@JOBS.job(SandboxDeliveryJob)
async def deliver_sandbox_webhook(ctx: JobContext, job: SandboxDeliveryJob) -> dict[str, Any]:
    """Raises until the service acknowledges; BullMQ retries with exponential backoff."""
    return {"status": await deliver_event(ctx.services, job)}


@JOBS.job(VerifyJob)
async def verify_payment(ctx: JobContext, job: VerifyJob) -> dict[str, Any]:
    """Asks the provider; settles like the webhook would."""
    return {"result": await watchdog.verify_payment(ctx.services, job.payment_id)}


@JOBS.job(RefundJob)
async def refund_payment(ctx: JobContext, job: RefundJob) -> dict[str, Any]:
    """Refund through the provider, then REFUNDED."""
    return await watchdog.refund_payment(ctx.services, job.payment_id)


@JOBS.on_event("order.expired", "order.cancelled")
async def check_for_late_payment(services: Services, event: dict[str, Any]) -> None:
    await watchdog.schedule_final_check(services, uuid.UUID(event["orderId"]))


@JOBS.every(
    PAYMENT,
    "payment:watchdog",
    lambda settings: max(1.0, min(30.0, settings.payment_verify_after_seconds / 2)),
)
async def payment_watchdog(services: Services) -> dict[str, int]:
    return {"enqueued": await watchdog.schedule_verifications(services)}
