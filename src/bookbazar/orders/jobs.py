"""Order jobs and loops in the worker: reservation expiry and the sweeper."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from datetime import datetime, timedelta
from typing import Any

import structlog

from bookbazar.kit.clock import utcnow
from bookbazar.kit.jobs import JobContext, JobRegistry
from bookbazar.kit.queues import RESERVATION
from bookbazar.models import OrderStatus
from bookbazar.orders import repository as repo
from bookbazar.orders import service
from bookbazar.services import Services

log = structlog.get_logger(__name__)
JOBS = JobRegistry()
SWEEP_BATCH = 500


@JOBS.job(RESERVATION, service.EXPIRE_JOB)
async def expire_reservation(ctx: JobContext) -> dict[str, Any]:
    order_id = uuid.UUID(ctx.data["orderId"])
    expired = await service.expire_order(ctx.services, order_id)
    return {"expired": expired}


@JOBS.on_event("order.created")
async def ensure_expiry_job(services: Services, event: dict[str, Any]) -> None:
    """The API enqueues the expiry job right after commit; this covers a crash in between
    (same job id, so BullMQ keeps one)."""
    expires_at = event.get("data", {}).get("expiresAt")
    if expires_at:
        deadline = datetime.fromisoformat(expires_at.replace("Z", "+00:00"))
        await service.schedule_expiry(services, uuid.UUID(event["orderId"]), deadline)


async def sweep_once(services: Services) -> dict[str, int]:
    """Finish what a lost job or a killed process left behind. Idempotent; safe to run in
    several workers at once (every step is a guarded transition or an idempotent script)."""
    settings = services.settings
    now = utcnow()
    grace = timedelta(seconds=settings.pending_grace_seconds)
    async with services.sessionmaker() as session:
        stale = await repo.stale_orders(
            session,
            pending_before=now - grace,
            expired_before=now - timedelta(seconds=2),
            limit=SWEEP_BATCH,
        )
    failed = expired = 0
    for order_id, status in stale:
        if status == OrderStatus.PENDING.value:
            failed += await service.fail_abandoned(services, order_id)
        else:
            expired += await service.expire_order(services, order_id)
    older_than_ms = int((time.time() - grace.total_seconds()) * 1000)
    repaired = await service.repair_reservations(services, older_than_ms)
    async with services.sessionmaker() as session, session.begin():
        purged = await repo.delete_expired_idempotency_records(session, now)
    if failed or expired or repaired:
        log.info("sweeper_repaired", failed=failed, expired=expired, reservations=repaired)
    return {"failed": failed, "expired": expired, "repaired": repaired, "purged": purged}


@JOBS.loop
async def order_sweeper(services: Services, stop: asyncio.Event) -> None:
    interval = services.settings.sweeper_interval_seconds
    while not stop.is_set():
        try:
            await sweep_once(services)
            await service.refresh_metrics(services)
        except Exception:
            log.exception("sweeper_failed")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=interval)
