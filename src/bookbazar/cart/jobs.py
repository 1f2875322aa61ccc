"""Cart jobs: the coalesced write-behind of the Redis cart to PostgreSQL."""

from __future__ import annotations

from typing import Any

import structlog

from bookbazar.cart import service
from bookbazar.cart.schemas import PersistCart
from bookbazar.kit.jobs import JobContext, JobRegistry

JOBS = JobRegistry()


@JOBS.job(PersistCart)
async def persist_cart(ctx: JobContext, job: PersistCart) -> dict[str, Any]:
    """Stores the CURRENT Redis cart if newer than PostgreSQL's, so retries, duplicates
    and out-of-order runs are harmless."""
    structlog.contextvars.bind_contextvars(user_id=str(job.user_id))
    return await service.persist_cart(ctx.services, job.user_id)
