"""Notification work in the worker: the email outbox's sender, a tick under the worker
lease (once per deployment)."""

from __future__ import annotations

from typing import Any

from bookbazar.kit.jobs import JobRegistry
from bookbazar.kit.queues import NOTIFY
from bookbazar.notify import service
from bookbazar.services import Services

JOBS = JobRegistry()
SEND_JOB = "notify:send"


@JOBS.tick(NOTIFY, SEND_JOB, lambda settings: settings.notify_interval_seconds)
async def send_due_emails(services: Services) -> dict[str, Any]:
    return {"attempted": await service.send_due(services)}
