"""Write outbox rows inside the caller's transaction."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncSession

from bookbazar.kit.clock import iso, utcnow
from bookbazar.models import OutboxEvent
from bookbazar.notify import repository as notifications
from bookbazar.notify.render import KIND_FOR_EVENT


def order_event(
    event_id: uuid.UUID,
    event_type: str,
    *,
    order_id: uuid.UUID,
    user_id: uuid.UUID,
    status: str,
    total: int,
    currency: str,
    occurred_at: datetime,
    data: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The event body clients receive (DESIGN.md §6)."""
    return {
        "id": str(event_id),
        "type": event_type,
        "orderId": str(order_id),
        "userId": str(user_id),
        "status": status,
        "total": total,
        "currency": currency,
        "occurredAt": iso(occurred_at),
        "data": data or {},
    }


async def add_order_event(
    session: AsyncSession,
    event_type: str,
    *,
    order_id: uuid.UUID,
    user_id: uuid.UUID,
    status: str,
    total: int,
    currency: str,
    data: dict[str, Any] | None = None,
) -> uuid.UUID:
    """Record an order event in the current transaction (and the email it owes the buyer,
    if any); returns the event id."""
    event_id = uuid.uuid4()
    payload = order_event(
        event_id,
        event_type,
        order_id=order_id,
        user_id=user_id,
        status=status,
        total=total,
        currency=currency,
        occurred_at=utcnow(),
        data=data,
    )
    await session.execute(
        insert(OutboxEvent).values(
            id=event_id, type=event_type, order_id=order_id, user_id=user_id, payload=payload
        )
    )
    kind = KIND_FOR_EVENT.get(event_type)
    if kind is not None:
        await notifications.add(session, event_id, kind, user_id)
    return event_id
