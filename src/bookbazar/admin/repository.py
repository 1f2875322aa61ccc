"""All SQL of the admin views (read-only over orders and users)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from bookbazar.models import Order, OrderItem, OrderStatus, User


async def orders_page(
    session: AsyncSession, status: OrderStatus | None, *, offset: int, limit: int
) -> tuple[list[dict[str, Any]], int]:
    """Orders newest first (optionally one status) with their customer and unit count."""
    units = (
        select(func.coalesce(func.sum(OrderItem.quantity), 0))
        .where(OrderItem.order_id == Order.id)
        .scalar_subquery()
    )
    stmt = (
        select(
            Order.id,
            Order.status,
            Order.total,
            Order.currency,
            Order.created_at,
            Order.expires_at,
            User.email,
            User.name,
            units.label("units"),
            func.count().over().label("total_rows"),
        )
        .join(User, User.id == Order.user_id)
        .order_by(Order.created_at.desc(), Order.id)
        .offset(offset)
        .limit(limit)
    )
    if status is not None:
        stmt = stmt.where(Order.status == status.value)
    rows = (await session.execute(stmt)).all()
    total = int(rows[0].total_rows) if rows else 0
    if not rows and offset > 0:
        count = select(func.count()).select_from(Order)
        if status is not None:
            count = count.where(Order.status == status.value)
        total = int((await session.execute(count)).scalar_one())
    items = [
        {
            "orderId": str(r.id),
            "status": r.status,
            "total": r.total,
            "currency": r.currency,
            "createdAt": r.created_at.isoformat(),
            "expiresAt": r.expires_at.isoformat() if r.expires_at else None,
            "customer": {"email": r.email, "name": r.name},
            "units": int(r.units),
        }
        for r in rows
    ]
    return items, total


async def order_counts(session: AsyncSession) -> dict[str, int]:
    """How many orders are in each status (every status listed, zeros included)."""
    rows = await session.execute(select(Order.status, func.count()).group_by(Order.status))
    counts = {status.value: 0 for status in OrderStatus}
    for status, count in rows:
        counts[str(status)] = int(count)
    return counts
