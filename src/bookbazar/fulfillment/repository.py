"""All SQL of the fulfilment domain."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from bookbazar.models import Order, Shipment


async def order_state(
    session: AsyncSession, order_id: uuid.UUID
) -> tuple[str, dict[str, Any] | None] | None:
    row = (
        await session.execute(
            select(Order.status, Order.shipping_address).where(Order.id == order_id)
        )
    ).one_or_none()
    return None if row is None else (str(row.status), row.shipping_address)


async def shipment_of(session: AsyncSession, order_id: uuid.UUID) -> Shipment | None:
    return (
        await session.execute(select(Shipment).where(Shipment.order_id == order_id))
    ).scalar_one_or_none()


async def insert_shipment(
    session: AsyncSession, order_id: uuid.UUID, carrier: str, tracking_number: str
) -> Shipment:
    """Record the shipment once per order; returns the stored one (the first wins)."""
    await session.execute(
        pg_insert(Shipment)
        .values(
            id=uuid.uuid4(),
            order_id=order_id,
            carrier=carrier,
            tracking_number=tracking_number,
            shipped_at=func.now(),
        )
        .on_conflict_do_nothing(index_elements=[Shipment.order_id])
    )
    shipment = await shipment_of(session, order_id)
    assert shipment is not None
    return shipment


async def mark_delivered(session: AsyncSession, order_id: uuid.UUID) -> None:
    await session.execute(
        update(Shipment)
        .where(Shipment.order_id == order_id, Shipment.delivered_at.is_(None))
        .values(delivered_at=func.now())
    )


async def stuck_orders(
    session: AsyncSession, thresholds: dict[str, datetime], limit: int
) -> list[tuple[uuid.UUID, str]]:
    """Orders sitting in a fulfilment step for longer than that step's threshold."""
    conditions = [
        (Order.status == status) & (Order.updated_at < before)
        for status, before in thresholds.items()
    ]
    condition = conditions[0]
    for extra in conditions[1:]:
        condition = condition | extra
    rows = await session.execute(
        select(Order.id, Order.status).where(condition).order_by(Order.updated_at).limit(limit)
    )
    return [(r.id, str(r.status)) for r in rows]
