"""Fulfilment job payloads."""

from __future__ import annotations

import uuid
from typing import ClassVar

from pydantic import Field

from bookbazar.kit.queues import FULFILLMENT, JobPayload, job_id


class FulfillmentStep(JobPayload):
    queue = FULFILLMENT
    prefix: ClassVar[str] = ""

    order_id: uuid.UUID = Field(alias="orderId")
    # A fresh id for a re-enqueue by the sweeper (the first job may be kept as failed).
    window: str = ""

    def job_id(self) -> str:
        return job_id(self.prefix, self.order_id, *([self.window] if self.window else []))


class StartFulfillment(FulfillmentStep):
    """PAID -> FULFILLING (started by order.paid)."""

    name = "fulfillment"
    prefix = "fulfil"


class ShipOrder(FulfillmentStep):
    """FULFILLING -> SHIPPED with the carrier's tracking number."""

    name = "fulfillment:ship"
    prefix = "ship"


class DeliverOrder(FulfillmentStep):
    """SHIPPED -> DELIVERED."""

    name = "fulfillment:deliver"
    prefix = "deliver"
