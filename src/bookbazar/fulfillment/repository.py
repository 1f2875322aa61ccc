"""All SQL of the fulfilment domain: whole batches of orders moved one step at a time."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession


@dataclass(frozen=True, slots=True)
class Moved:
    """An order this step moved (for its event)."""

    order_id: uuid.UUID
    user_id: uuid.UUID
    total: int
    currency: str
    shipping_address: dict[str, Any] | None


async def move_batch(
    session: AsyncSession,
    *,
    source: str,
    target: str,
    before: datetime,
    limit: int,
    only: Sequence[uuid.UUID] | None = None,
) -> list[Moved]:
    """Move up to `limit` orders from `source` (there since before `before`) to `target`,
    in the caller's transaction. Rows another transaction holds are skipped (the next
    round takes them)."""
    rows = await session.execute(
        text(
            "WITH due AS (SELECT id FROM orders WHERE status = :source AND updated_at <= :before "
            + ("AND id = ANY(:only) " if only is not None else "")
            + "ORDER BY updated_at LIMIT :limit FOR UPDATE SKIP LOCKED) "
            "UPDATE orders o SET status = :target, updated_at = now() FROM due "
            "WHERE o.id = due.id "
            "RETURNING o.id, o.user_id, o.total, o.currency, o.shipping_address"
        ),
        {
            "source": source,
            "target": target,
            "before": before,
            "limit": limit,
            "only": list(only or ()),
        },
    )
    return [Moved(r.id, r.user_id, int(r.total), str(r.currency), r.shipping_address) for r in rows]


async def due_for_shipping(
    session: AsyncSession,
    before: datetime,
    limit: int,
    only: Sequence[uuid.UUID] | None = None,
) -> list[tuple[uuid.UUID, dict[str, Any] | None]]:
    """Orders FULFILLING since before `before`: (id, shipping address)."""
    rows = await session.execute(
        text(
            "SELECT id, shipping_address FROM orders WHERE status = 'FULFILLING' "
            "AND updated_at <= :before "
            + ("AND id = ANY(:only) " if only is not None else "")
            + "ORDER BY updated_at LIMIT :limit"
        ),
        {"before": before, "limit": limit, "only": list(only or ())},
    )
    return [(r.id, r.shipping_address) for r in rows]


async def record_shipments(
    session: AsyncSession, labels: Sequence[tuple[uuid.UUID, str, str]]
) -> dict[uuid.UUID, tuple[str, str]]:
    """Record each order's shipment once (the first label wins); returns every order's
    stored (carrier, tracking number)."""
    if not labels:
        return {}
    await session.execute(
        text(
            "INSERT INTO shipments (id, order_id, carrier, tracking_number, shipped_at) "
            "SELECT gen_random_uuid(), l.order_id, l.carrier, l.tracking, now() "
            "FROM unnest(CAST(:orders AS uuid[]), CAST(:carriers AS text[]), "
            "CAST(:tracking AS text[])) AS l(order_id, carrier, tracking) "
            "ON CONFLICT (order_id) DO NOTHING"
        ),
        {
            "orders": [o for o, _, _ in labels],
            "carriers": [c for _, c, _ in labels],
            "tracking": [t for _, _, t in labels],
        },
    )
    return await shipments_of(session, [o for o, _, _ in labels])


async def shipments_of(
    session: AsyncSession, order_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, tuple[str, str]]:
    rows = await session.execute(
        text("SELECT order_id, carrier, tracking_number FROM shipments WHERE order_id = ANY(:o)"),
        {"o": list(order_ids)},
    )
    return {r.order_id: (str(r.carrier), str(r.tracking_number)) for r in rows}


async def mark_delivered(session: AsyncSession, order_ids: Sequence[uuid.UUID]) -> None:
    await session.execute(
        text(
            "UPDATE shipments SET delivered_at = now() "
            "WHERE order_id = ANY(:o) AND delivered_at IS NULL"
        ),
        {"o": list(order_ids)},
    )
