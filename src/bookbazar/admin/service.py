"""Admin rules: what operators may see and the one thing they may redo (a dead letter)."""

from __future__ import annotations

from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from bookbazar.admin import repository
from bookbazar.catalog import repository as catalog_repository
from bookbazar.catalog.service import admin_book_out
from bookbazar.errors import NotFound, Unprocessable
from bookbazar.kit.clock import iso
from bookbazar.kit.pagination import PageParams
from bookbazar.kit.queues import ALL_QUEUES, DEAD_LETTER, job_id
from bookbazar.models import OrderStatus
from bookbazar.payments import repository as payments_repository
from bookbazar.services import Services

log = structlog.get_logger(__name__)

# A dead letter waits in these states (the dead-letter queue has no worker).
DEAD_LETTER_STATES = ("waiting", "paused", "prioritized", "delayed")


async def list_orders(
    session: AsyncSession, status: OrderStatus | None, page: PageParams
) -> dict[str, Any]:
    """Every customer's orders, newest first, plus the count in each status."""
    items, total = await repository.orders_page(
        session, status, offset=page.offset, limit=page.page_size
    )
    data = page.wrap(items, total)
    data["status"] = status.value if status is not None else None
    data["counts"] = await repository.order_counts(session)
    return data


async def list_inventory(
    services: Services, session: AsyncSession, q: str | None, page: PageParams
) -> dict[str, Any]:
    """Books with units on hand (PostgreSQL) and units available (the Redis counter)."""
    books, total = await catalog_repository.search(
        session, q.strip() if q else None, offset=page.offset, limit=page.page_size
    )
    levels = await services.inventory.available([b.id for b in books])
    items = [admin_book_out(b, levels.get(b.id, 0)) for b in books]
    return page.wrap(items, total)


def _present_dead_letter(job: Any) -> dict[str, Any]:
    data = job.data if isinstance(job.data, dict) else {}
    return {
        "id": str(job.id),
        "originalQueue": data.get("originalQueue"),
        "name": data.get("name"),
        "originalJobId": data.get("jobId"),
        "reason": data.get("reason"),
        "attemptsMade": data.get("attemptsMade"),
        "payload": data.get("payload"),
        "deadLetteredAt": int(job.timestamp) if job.timestamp else None,
    }


async def list_dead_letters(services: Services, limit: int) -> dict[str, Any]:
    """The newest `limit` dead letters and how many there are in all."""
    queue = services.queues.get(DEAD_LETTER)
    jobs = await queue.getJobs(list(DEAD_LETTER_STATES), 0, limit - 1, False)
    counts = await queue.getJobCounts(*DEAD_LETTER_STATES)
    items = [_present_dead_letter(job) for job in jobs]
    items.sort(key=lambda item: item["deadLetteredAt"] or 0, reverse=True)
    return {"items": items[:limit], "total": sum(int(v) for v in counts.values())}


async def retry_dead_letter(services: Services, dead_letter_id: str) -> dict[str, Any]:
    """Put a dead letter's payload back on its original queue under its original job name,
    then remove the dead letter. Idempotent: the re-queued job's id is derived from the
    dead letter's, so a repeated (or concurrent) retry adds nothing twice. Raises NotFound
    for an unknown id, Unprocessable for a dead letter that names no known queue."""
    dead_letters = services.queues.get(DEAD_LETTER)
    job = await dead_letters.getJob(dead_letter_id)
    if job is None:
        raise NotFound("No dead letter with this id (already retried or removed?)")
    data = job.data if isinstance(job.data, dict) else {}
    queue, name, payload = data.get("originalQueue"), data.get("name"), data.get("payload")
    if queue not in ALL_QUEUES or not isinstance(name, str) or not name:
        raise Unprocessable(
            f"This dead letter names no known queue and job ({queue!r}, {name!r}); "
            "it cannot be retried"
        )
    if not isinstance(payload, dict):
        raise Unprocessable("This dead letter's payload is not an object; it cannot be retried")
    new_id = await services.queues.add(
        queue, name, payload, job_id=job_id("dlq-retry", dead_letter_id)
    )
    await dead_letters.remove(dead_letter_id)
    log.info("dead_letter_retried", queue=queue, job=name, dead_letter_id=dead_letter_id)
    return {"deadLetterId": dead_letter_id, "queue": queue, "name": name, "jobId": new_id}


async def payments_for_review(session: AsyncSession, page: PageParams) -> dict[str, Any]:
    """Payments whose money is (being) given back because it could not be applied: a
    wrong amount or currency, a second payment for a paid order, a late payment with no
    stock left. Newest first, with the reason."""
    rows, total = await payments_repository.payments_for_review(
        session, offset=page.offset, limit=page.page_size
    )
    items = [
        {
            "paymentId": str(p.id),
            "orderId": str(p.order_id),
            "customer": email,
            "provider": p.provider,
            "paymentIntentId": p.intent_id,
            "amount": p.amount,
            "currency": p.currency,
            "status": p.status,
            "reason": p.review_reason,
            "refundId": p.refund_id,
            "updatedAt": iso(p.updated_at),
        }
        for p, email in rows
    ]
    return page.wrap(items, total)
