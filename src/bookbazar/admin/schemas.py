"""The admin API's response shapes."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import Field

from bookbazar.kit.responses import OutModel, Page
from bookbazar.models import OrderStatus


class CustomerOut(OutModel):
    email: str
    name: str


class AdminOrderOut(OutModel):
    order_id: uuid.UUID
    status: OrderStatus
    total: int = Field(description="minor units")
    currency: str
    created_at: datetime
    expires_at: datetime | None
    customer: CustomerOut
    units: int = Field(description="copies in the order")


class AdminOrderPage(Page[AdminOrderOut]):
    status: OrderStatus | None = Field(description="the status filter, if any")
    counts: dict[str, int] = Field(description="orders in each status (all of them)")


class DeadLetterOut(OutModel):
    id: str
    original_queue: str | None
    name: str | None
    original_job_id: str | None
    reason: str | None
    attempts_made: int | None
    payload: Any
    dead_lettered_at: int | None = Field(description="epoch milliseconds")


class DeadLettersOut(OutModel):
    items: list[DeadLetterOut]
    total: int


class DeadLetterRetriedOut(OutModel):
    dead_letter_id: str
    queue: str
    name: str
    job_id: str | None


class StockAuditOut(OutModel):
    id: uuid.UUID
    trigger: str = Field(description="scheduled or manual")
    started_at: datetime | None
    finished_at: datetime | None
    books_checked: int
    holds_checked: int
    drift_units: int = Field(description="units by which the counters were wrong")
    corrections: list[dict[str, Any]] = Field(description="{bookId, before, after} each")
    holds_repaired: list[dict[str, Any]] = Field(description="{orderId, token, action} each")
