"""Write outbox rows inside the caller's transaction."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bookbazar.kit.clock import iso, utcnow
from bookbazar.notify.render import KIND_FOR_EVENT
from bookbazar.pg import Executor


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


@dataclass(frozen=True, slots=True)
class OrderEvent:
    """An order event to record: its type, the order it is about, and its `data`."""

    event_type: str
    order_id: uuid.UUID
    user_id: uuid.UUID
    status: str
    total: int
    currency: str
    data: dict[str, Any] | None = None


# The events, and the emails they owe the buyers (if any), in one statement.
_INSERT_EVENTS = """
WITH e AS (
  SELECT * FROM unnest($1::uuid[], $2::text[], $3::uuid[], $4::uuid[], $5::jsonb[],
                       $6::text[]) WITH ORDINALITY AS e(id, type, order_id, user_id, payload,
                                                        kind, n)
), events AS (
  INSERT INTO outbox_events (id, type, order_id, user_id, payload, attempts,
                             next_attempt_at, created_at)
  SELECT id, type, order_id, user_id, payload, 0, now(), now() FROM e ORDER BY n
)
INSERT INTO notifications (event_id, kind, user_id, attempts, next_attempt_at, created_at)
SELECT id, kind, user_id, 0, now(), now() FROM e WHERE kind IS NOT NULL
ON CONFLICT DO NOTHING
"""


async def add_order_events(conn: Executor, events: Sequence[OrderEvent]) -> list[uuid.UUID]:
    """Record order events in the caller's transaction, in this order (and the emails
    they owe the buyers, if any): one statement however many. Returns their ids."""
    if not events:
        return []
    ids = [uuid.uuid4() for _ in events]
    occurred_at = utcnow()
    payloads = [
        order_event(
            event_id,
            e.event_type,
            order_id=e.order_id,
            user_id=e.user_id,
            status=e.status,
            total=e.total,
            currency=e.currency,
            occurred_at=occurred_at,
            data=e.data,
        )
        for event_id, e in zip(ids, events, strict=True)
    ]
    await conn.execute(
        _INSERT_EVENTS,
        ids,
        [e.event_type for e in events],
        [e.order_id for e in events],
        [e.user_id for e in events],
        payloads,
        [KIND_FOR_EVENT.get(e.event_type) for e in events],
    )
    return ids


async def add_order_event(
    conn: Executor,
    event_type: str,
    *,
    order_id: uuid.UUID,
    user_id: uuid.UUID,
    status: str,
    total: int,
    currency: str,
    data: dict[str, Any] | None = None,
) -> uuid.UUID:
    """Record one order event in the caller's transaction (and the email it owes the
    buyer, if any); returns the event id."""
    event = OrderEvent(event_type, order_id, user_id, status, total, currency, data)
    return (await add_order_events(conn, [event]))[0]
