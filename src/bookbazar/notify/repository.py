"""All SQL of the notifications domain: the email outbox (on the asyncpg pool:
bookbazar/pg.py). Rows are written with their events (outbox/store.py)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bookbazar.pg import Executor


@dataclass(frozen=True, slots=True)
class Claimed:
    event_id: uuid.UUID
    kind: str
    attempts: int


async def claim_due(db: Executor, lease_seconds: int, limit: int) -> list[Claimed]:
    """Claim up to `limit` emails that are due: never sent, not claimed (or claimed by a
    sender whose lease ran out), not waiting for a retry. Rows another notifier is
    claiming right now are skipped."""
    rows = await db.fetch(
        "WITH due AS (SELECT event_id, kind FROM notifications "
        "WHERE sent_at IS NULL AND next_attempt_at <= now() "
        "AND (claimed_at IS NULL OR claimed_at < now() - make_interval(secs => $1)) "
        "ORDER BY created_at LIMIT $2 FOR UPDATE SKIP LOCKED) "
        "UPDATE notifications n SET claimed_at = now(), attempts = n.attempts + 1 "
        "FROM due WHERE n.event_id = due.event_id AND n.kind = due.kind "
        "RETURNING n.event_id, n.kind, n.attempts",
        float(lease_seconds),
        limit,
    )
    return [Claimed(r.event_id, str(r.kind), int(r.attempts)) for r in rows]


@dataclass(frozen=True, slots=True)
class EventContext:
    event: dict[str, Any]
    email: str
    name: str


async def contexts(db: Executor, event_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, EventContext]:
    """Each event's body and its owner's email and name."""
    rows = await db.fetch(
        "SELECT e.id, e.payload, u.email, u.name FROM outbox_events e "
        "JOIN users u ON u.id = e.user_id WHERE e.id = ANY($1)",
        list(event_ids),
    )
    return {r.id: EventContext(r.payload, str(r.email), str(r.name)) for r in rows}


async def order_lines(
    db: Executor, order_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, list[tuple[str, int, int]]]:
    """(title, quantity, line total) per order line, per order."""
    out: dict[uuid.UUID, list[tuple[str, int, int]]] = {o: [] for o in order_ids}
    if not order_ids:
        return out
    rows = await db.fetch(
        "SELECT order_id, title, quantity, price FROM order_items "
        "WHERE order_id = ANY($1) ORDER BY id",
        list(order_ids),
    )
    for r in rows:
        out[r.order_id].append((str(r.title), int(r.quantity), int(r.price) * int(r.quantity)))
    return out


async def mark_sent(db: Executor, sent: Sequence[tuple[uuid.UUID, str, str | None]]) -> None:
    """Mark emails sent: (event id, kind, recipient) each; one statement."""
    if not sent:
        return
    await db.execute(
        "UPDATE notifications n SET sent_at = now(), recipient = s.recipient, "
        "last_error = NULL FROM unnest($1::uuid[], $2::text[], $3::text[]) "
        "AS s(event_id, kind, recipient) WHERE n.event_id = s.event_id AND n.kind = s.kind",
        [e for e, _, _ in sent],
        [k for _, k, _ in sent],
        [r for _, _, r in sent],
    )


async def mark_failed(
    db: Executor, event_id: uuid.UUID, kind: str, error: str, retry_at: datetime
) -> None:
    """Give the claim back, to be tried again at `retry_at`."""
    await db.execute(
        "UPDATE notifications SET claimed_at = NULL, next_attempt_at = $3, last_error = $4 "
        "WHERE event_id = $1 AND kind = $2",
        event_id,
        kind,
        retry_at,
        error[:2000],
    )
