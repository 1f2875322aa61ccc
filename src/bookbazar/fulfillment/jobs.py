"""Fulfilment jobs: started by order.paid, one job per step, plus a sweeper."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from typing import Any

import structlog

from bookbazar.fulfillment import service
from bookbazar.kit.jobs import JobContext, JobRegistry
from bookbazar.kit.queues import FULFILLMENT
from bookbazar.services import Services

log = structlog.get_logger(__name__)
JOBS = JobRegistry()


def _order_id(ctx: JobContext) -> uuid.UUID:
    return uuid.UUID(str(ctx.data["orderId"]))


@JOBS.job(FULFILLMENT, service.START_JOB)
async def start_fulfillment(ctx: JobContext) -> dict[str, Any]:
    """data: {orderId}. PAID -> FULFILLING, then the shipping step."""
    return {"status": await service.start_fulfillment(ctx.services, _order_id(ctx))}


@JOBS.job(FULFILLMENT, service.SHIP_JOB)
async def ship_order(ctx: JobContext) -> dict[str, Any]:
    """data: {orderId}. FULFILLING -> SHIPPED with a tracking number, then delivery."""
    return {"status": await service.ship_order(ctx.services, _order_id(ctx))}


@JOBS.job(FULFILLMENT, service.DELIVER_JOB)
async def deliver_order(ctx: JobContext) -> dict[str, Any]:
    """data: {orderId}. SHIPPED -> DELIVERED."""
    return {"status": await service.deliver_order(ctx.services, _order_id(ctx))}


@JOBS.on_event("order.paid")
async def fulfil_paid_order(services: Services, event: dict[str, Any]) -> None:
    # Job id from the order: the relay's at-least-once delivery enqueues it once.
    await service.enqueue_step(services, uuid.UUID(event["orderId"]), service.START_JOB)


@JOBS.loop
async def fulfillment_sweeper(services: Services, stop: asyncio.Event) -> None:
    interval = services.settings.sweeper_interval_seconds
    while not stop.is_set():
        try:
            await service.resume_stuck(services)
        except Exception:
            log.exception("fulfillment_sweeper_failed")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=interval)
