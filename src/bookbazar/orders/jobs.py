"""Order work in the worker, once per deployment: expiring orders whose deadline passed,
and the sweeper that finishes what a killed process or a lost step left behind."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import structlog

from bookbazar.kit.clock import utcnow
from bookbazar.kit.jobs import JobRegistry
from bookbazar.kit.queues import RESERVATION
from bookbazar.orders import repository as repo
from bookbazar.orders import service
from bookbazar.services import Services

log = structlog.get_logger(__name__)
JOBS = JobRegistry()
SWEEP_BATCH = 500
EXPIRE_JOB = "reservation:expire"
SWEEP_JOB = "orders:sweep"


@JOBS.tick(RESERVATION, EXPIRE_JOB, lambda settings: settings.expiry_interval_seconds)
async def expire_reservations(services: Services) -> dict[str, Any]:
    """Expire every order awaiting payment whose deadline passed (in batches)."""
    expired = 0
    while True:
        count = await service.expire_due(services)
        expired += count
        if count < service.EXPIRE_BATCH:
            return {"expired": expired}


@JOBS.every(RESERVATION, SWEEP_JOB, lambda settings: settings.sweeper_interval_seconds)
async def sweep(services: Services) -> dict[str, int]:
    return await sweep_once(services)


async def sweep_once(services: Services) -> dict[str, int]:
    """Finish what a killed process left behind. Idempotent; safe to run anywhere at any
    time (every step is a guarded transition or a fenced, idempotent script)."""
    settings = services.settings
    now = utcnow()
    grace = timedelta(seconds=settings.pending_grace_seconds)
    async with services.sessionmaker() as session:
        abandoned = await repo.abandoned_pending(session, before=now - grace, limit=SWEEP_BATCH)
    failed = 0
    for order_id in abandoned:
        failed += await service.fail_abandoned(services, order_id)
    expired = await service.expire_due(services)
    older_than_ms = int((time.time() - grace.total_seconds()) * 1000)
    repaired = await service.repair_holds(services, older_than_ms)
    async with services.sessionmaker() as session, session.begin():
        purged = await repo.delete_expired_idempotency_records(session, now)
    await service.refresh_metrics(services)
    if failed or repaired:
        log.info("sweeper_repaired", failed=failed, holds=repaired)
    return {"failed": failed, "expired": expired, "repaired": repaired, "purged": purged}
