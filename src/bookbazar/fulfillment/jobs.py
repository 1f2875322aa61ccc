"""Fulfilment jobs: started by order.paid, one job per step, plus a sweeper."""

from __future__ import annotations

import uuid
from typing import Any

from bookbazar.fulfillment import service
from bookbazar.fulfillment.schemas import DeliverOrder, ShipOrder, StartFulfillment
from bookbazar.kit.jobs import JobContext, JobRegistry
from bookbazar.kit.queues import FULFILLMENT
from bookbazar.services import Services

JOBS = JobRegistry()


@JOBS.job(StartFulfillment)
async def start_fulfillment(ctx: JobContext, job: StartFulfillment) -> dict[str, Any]:
    """PAID -> FULFILLING, then the shipping step."""
    return {"status": await service.start_fulfillment(ctx.services, job.order_id)}


@JOBS.job(ShipOrder)
async def ship_order(ctx: JobContext, job: ShipOrder) -> dict[str, Any]:
    """FULFILLING -> SHIPPED with a tracking number, then delivery."""
    return {"status": await service.ship_order(ctx.services, job.order_id)}


@JOBS.job(DeliverOrder)
async def deliver_order(ctx: JobContext, job: DeliverOrder) -> dict[str, Any]:
    """SHIPPED -> DELIVERED."""
    return {"status": await service.deliver_order(ctx.services, job.order_id)}


@JOBS.on_event("order.paid")
async def fulfil_paid_order(services: Services, event: dict[str, Any]) -> None:
    # Job id from the order: the relay's at-least-once delivery enqueues it once.
    await service.enqueue_step(services, StartFulfillment, uuid.UUID(event["orderId"]))


@JOBS.every(FULFILLMENT, "fulfillment:sweep", lambda settings: settings.sweeper_interval_seconds)
async def fulfillment_sweeper(services: Services) -> dict[str, int]:
    return {"resumed": await service.resume_stuck(services)}
