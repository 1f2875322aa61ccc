"""Cart jobs: the write-behind of the Redis cart to PostgreSQL."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import structlog

from bookbazar.cart import service
from bookbazar.kit.jobs import JobContext, JobRegistry
from bookbazar.kit.queues import CART

JOBS = JobRegistry()


@JOBS.job(CART, service.PERSIST_JOB)
async def persist_cart(ctx: JobContext) -> dict[str, Any]:
    """data: {userId, version}. Stores the CURRENT Redis cart if newer than PostgreSQL's,
    so retries, duplicates and out-of-order runs are harmless. Malformed data raises (and
    after the last attempt the job lands in the dead-letter queue)."""
    user_id = UUID(str(ctx.data["userId"]))
    structlog.contextvars.bind_contextvars(user_id=str(user_id))
    return await service.persist_cart(ctx.services, user_id)
