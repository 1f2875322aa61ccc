"""Notification job payloads."""

from __future__ import annotations

import uuid
from typing import Any

from pydantic import Field

from bookbazar.kit.queues import NOTIFY, JobPayload, job_id


class NotifyJob(JobPayload):
    """Email the order's owner about one order event (the outbox event body)."""

    queue = NOTIFY
    name = "notify"

    event_id: uuid.UUID = Field(alias="id")
    type: str
    order_id: uuid.UUID = Field(alias="orderId")
    user_id: uuid.UUID = Field(alias="userId")
    total: int = 0
    currency: str = ""
    data: dict[str, Any] = Field(default_factory=dict)

    def job_id(self) -> str:
        return job_id("notify", self.event_id)
