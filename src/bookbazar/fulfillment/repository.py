"""All SQL of the fulfilment domain: whole batches of orders moved one step at a time
(on the asyncpg pool: bookbazar/pg.py)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bookbazar.pg import Executor


@dataclass(frozen=True, slots=True)
class Moved:
    """An order this step moved (for its event)."""

    order_id: uuid.UUID
    user_id: uuid.UUID
    total: int
    currency: str
    shipping_address: dict[str, Any] | None


async def move_batch(
    db: Executor,
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
    rows = await db.fetch(
        "WITH due AS (SELECT id FROM orders WHERE status = $1 AND updated_at <= $3 "
        "AND ($5::uuid[] IS NULL OR id = ANY($5)) "
        "ORDER BY updated_at LIMIT $4 FOR UPDATE SKIP LOCKED) "
        "UPDATE orders o SET status = $2, updated_at = now() FROM due "
        "WHERE o.id = due.id "
        "RETURNING o.id, o.user_id, o.total, o.currency, o.shipping_address",
        source,
        target,
        before,
        limit,
        None if only is None else list(only),
    )
    return [Moved(r.id, r.user_id, int(r.total), str(r.currency), r.shipping_address) for r in rows]


async def due_for_shipping(
    db: Executor,
    before: datetime,
    limit: int,
    only: Sequence[uuid.UUID] | None = None,
) -> list[tuple[uuid.UUID, dict[str, Any] | None]]:
    """Orders FULFILLING since before `before`: (id, shipping address)."""
    rows = await db.fetch(
        "SELECT id, shipping_address FROM orders WHERE status = 'FULFILLING' "
        "AND updated_at <= $1 AND ($3::uuid[] IS NULL OR id = ANY($3)) "
        "ORDER BY updated_at LIMIT $2",
        before,
        limit,
        None if only is None else list(only),
    )
    return [(r.id, r.shipping_address) for r in rows]


async def record_shipments(
    db: Executor, labels: Sequence[tuple[uuid.UUID, str, str]]
) -> dict[uuid.UUID, tuple[str, str]]:
    """Record each order's shipment once (the first label wins); returns every order's
    stored (carrier, tracking number)."""
    if not labels:
        return {}
    await db.execute(
        "INSERT INTO shipments (id, order_id, carrier, tracking_number, shipped_at) "
        "SELECT gen_random_uuid(), l.order_id, l.carrier, l.tracking, now() "
        "FROM unnest($1::uuid[], $2::text[], $3::text[]) AS l(order_id, carrier, tracking) "
        "ON CONFLICT (order_id) DO NOTHING",
        [o for o, _, _ in labels],
        [c for _, c, _ in labels],
        [t for _, _, t in labels],
    )
    return await shipments_of(db, [o for o, _, _ in labels])


async def shipments_of(
    db: Executor, order_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, tuple[str, str]]:
    rows = await db.fetch(
        "SELECT order_id, carrier, tracking_number FROM shipments WHERE order_id = ANY($1)",
        list(order_ids),
    )
    return {r.order_id: (str(r.carrier), str(r.tracking_number)) for r in rows}


async def mark_delivered(db: Executor, order_ids: Sequence[uuid.UUID]) -> None:
    await db.execute(
        "UPDATE shipments SET delivered_at = now() "
        "WHERE order_id = ANY($1) AND delivered_at IS NULL",
        list(order_ids),
    )
