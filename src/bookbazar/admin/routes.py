"""Admin API for the operator page: orders by status, stock, the dead-letter queue."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response

from bookbazar.admin import service
from bookbazar.admin.schemas import (
    AdminOrderPage,
    DeadLetterRetriedOut,
    DeadLettersOut,
    StockAuditOut,
)
from bookbazar.auth.deps import AdminUser
from bookbazar.catalog.schemas import AdminBookOut
from bookbazar.db import SessionDep
from bookbazar.inventory.audit import last_audit, run_audit
from bookbazar.kit.pagination import PageDep
from bookbazar.kit.responses import Envelope, Page, errors, ok
from bookbazar.models import OrderStatus
from bookbazar.payments.schemas import PaymentReviewOut
from bookbazar.services import ServicesDep

router = APIRouter(prefix="/admin", tags=["admin"])
ADMIN_ERRORS = errors(401, 403, 422)


@router.get(
    "/orders",
    summary="Every customer's orders, newest first (admin)",
    response_model=Envelope[AdminOrderPage],
    responses=ADMIN_ERRORS,
)
async def list_orders(
    _: AdminUser,
    session: SessionDep,
    page: PageDep,
    status: Annotated[OrderStatus | None, Query(description="only orders in this status")] = None,
) -> Response:
    return ok(await service.list_orders(session, status, page))


@router.get(
    "/inventory",
    summary="Units on hand and available per book (admin)",
    response_model=Envelope[Page[AdminBookOut]],
    responses=ADMIN_ERRORS,
)
async def list_inventory(
    _: AdminUser,
    services: ServicesDep,
    session: SessionDep,
    page: PageDep,
    q: Annotated[str | None, Query(max_length=200, description="title or author")] = None,
) -> Response:
    return ok(await service.list_inventory(services, session, q, page))


@router.get(
    "/dead-letter",
    summary="Jobs that exhausted their attempts (admin)",
    response_model=Envelope[DeadLettersOut],
    responses=ADMIN_ERRORS,
)
async def list_dead_letters(
    _: AdminUser,
    services: ServicesDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> Response:
    return ok(await service.list_dead_letters(services, limit))


@router.post(
    "/dead-letter/{job_id}/retry",
    summary="Re-queue a dead letter (admin)",
    response_model=Envelope[DeadLetterRetriedOut],
    responses=errors(401, 403, 404, 422),
)
async def retry_dead_letter(
    job_id: Annotated[str, Path(min_length=1, max_length=200)],
    _: AdminUser,
    services: ServicesDep,
) -> Response:
    return ok(await service.retry_dead_letter(services, job_id), "Job re-queued")


@router.get(
    "/stock-audit",
    summary="The last stock audit (admin); null before the first",
    response_model=Envelope[StockAuditOut | None],
    responses=errors(401, 403),
)
async def last_stock_audit(_: AdminUser, services: ServicesDep) -> Response:
    audit = await last_audit(services)
    return ok(None if audit is None else audit.present())


@router.post(
    "/stock-audit",
    summary="Run the stock audit now (admin)",
    response_model=Envelope[StockAuditOut],
    responses=errors(401, 403),
)
async def run_stock_audit(_: AdminUser, services: ServicesDep) -> Response:
    audit = await run_audit(services, trigger="manual")
    return ok(audit.present(), "Stock audited")


@router.get(
    "/payments/review",
    summary="Payments refunded for review (admin)",
    response_model=Envelope[Page[PaymentReviewOut]],
    responses=ADMIN_ERRORS,
)
async def payments_for_review(_: AdminUser, session: SessionDep, page: PageDep) -> Response:
    return ok(await service.payments_for_review(session, page))
