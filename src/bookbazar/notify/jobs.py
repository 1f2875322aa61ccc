"""Notification jobs: order events become `notify` jobs, each sending one email."""

from __future__ import annotations

from typing import Any

from bookbazar.kit.jobs import JobContext, JobRegistry
from bookbazar.kit.queues import NOTIFY
from bookbazar.notify import service
from bookbazar.notify.render import KIND_FOR_EVENT
from bookbazar.services import Services

JOBS = JobRegistry()


@JOBS.job(NOTIFY, service.NOTIFY_JOB)
async def send_notification(ctx: JobContext) -> dict[str, Any]:
    """data: the order event (id, type, orderId, userId, total, currency, data)."""
    return {"result": await service.notify(ctx.services, ctx.data)}


@JOBS.on_event(*KIND_FOR_EVENT)
async def notify_on_event(services: Services, event: dict[str, Any]) -> None:
    await service.enqueue_notification(services, event)
