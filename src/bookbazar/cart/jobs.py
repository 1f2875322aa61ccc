"""Cart work in the worker: the coalesced write-behind of Redis carts to PostgreSQL, a
tick under the worker lease (once per deployment, whatever the number of workers)."""

from __future__ import annotations

from typing import Any

from bookbazar.cart import service
from bookbazar.kit.jobs import JobRegistry
from bookbazar.kit.queues import CART
from bookbazar.services import Services

JOBS = JobRegistry()
PERSIST_JOB = "cart:persist"


@JOBS.tick(CART, PERSIST_JOB, lambda settings: settings.cart_persist_interval_seconds)
async def persist_due_carts(services: Services) -> dict[str, Any]:
    """Store every cart whose write-behind is due, many per transaction."""
    return {"carts": await service.persist_due(services)}
