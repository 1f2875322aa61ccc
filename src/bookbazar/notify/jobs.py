"""Notification jobs: order events become `notify` jobs, each sending one email."""

from __future__ import annotations

from typing import Any

from bookbazar.kit.jobs import JobContext, JobRegistry
from bookbazar.notify import service
from bookbazar.notify.render import KIND_FOR_EVENT
from bookbazar.notify.schemas import NotifyJob
from bookbazar.services import Services

JOBS = JobRegistry()


@JOBS.job(NotifyJob)
async def send_notification(ctx: JobContext, job: NotifyJob) -> dict[str, Any]:
    return {"result": await service.notify(ctx.services, job)}


@JOBS.on_event(*KIND_FOR_EVENT)
async def notify_on_event(services: Services, event: dict[str, Any]) -> None:
    await service.enqueue_notification(services, event)
