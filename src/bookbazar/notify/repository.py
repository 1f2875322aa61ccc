"""All SQL of the notifications domain: the email outbox."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from bookbazar.models import Notification, OrderItem, OutboxEvent, User


async def add(session: AsyncSession, event_id: uuid.UUID, kind: str, user_id: uuid.UUID) -> None:
    """Owe an email for this event (in the caller's transaction, with the event)."""
    await session.execute(
        pg_insert(Notification)
        .values(event_id=event_id, kind=kind, user_id=user_id)
        .on_conflict_do_nothing()
    )


@dataclass(frozen=True, slots=True)
class Claimed:
    event_id: uuid.UUID
    kind: str
    attempts: int


async def claim_due(session: AsyncSession, lease_seconds: int, limit: int) -> list[Claimed]:
    """Claim up to `limit` emails that are due: never sent, not claimed (or claimed by a
    sender whose lease ran out), not waiting for a retry. Rows another notifier is
    claiming right now are skipped."""
    rows = await session.execute(
        text(
            "WITH due AS (SELECT event_id, kind FROM notifications "
            "WHERE sent_at IS NULL AND next_attempt_at <= now() "
            "AND (claimed_at IS NULL OR claimed_at < now() - make_interval(secs => :lease)) "
            "ORDER BY created_at LIMIT :limit FOR UPDATE SKIP LOCKED) "
            "UPDATE notifications n SET claimed_at = now(), attempts = n.attempts + 1 "
            "FROM due WHERE n.event_id = due.event_id AND n.kind = due.kind "
            "RETURNING n.event_id, n.kind, n.attempts"
        ),
        {"lease": lease_seconds, "limit": limit},
    )
    return [Claimed(r.event_id, str(r.kind), int(r.attempts)) for r in rows]


@dataclass(frozen=True, slots=True)
class EventContext:
    event: dict[str, Any]
    email: str
    name: str


async def contexts(
    session: AsyncSession, event_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, EventContext]:
    """Each event's body and its owner's email and name."""
    rows = await session.execute(
        select(OutboxEvent.id, OutboxEvent.payload, User.email, User.name)
        .join(User, User.id == OutboxEvent.user_id)
        .where(OutboxEvent.id.in_(event_ids))
    )
    return {r.id: EventContext(r.payload, str(r.email), str(r.name)) for r in rows}


async def order_lines(
    session: AsyncSession, order_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, list[tuple[str, int, int]]]:
    """(title, quantity, line total) per order line, per order."""
    out: dict[uuid.UUID, list[tuple[str, int, int]]] = {o: [] for o in order_ids}
    if not order_ids:
        return out
    rows = await session.execute(
        select(OrderItem.order_id, OrderItem.title, OrderItem.quantity, OrderItem.price)
        .where(OrderItem.order_id.in_(order_ids))
        .order_by(OrderItem.id)
    )
    for r in rows:
        out[r.order_id].append((str(r.title), int(r.quantity), int(r.price) * int(r.quantity)))
    return out


async def mark_sent(
    session: AsyncSession, event_id: uuid.UUID, kind: str, recipient: str | None
) -> None:
    await session.execute(
        update(Notification)
        .where(Notification.event_id == event_id, Notification.kind == kind)
        .values(sent_at=text("now()"), recipient=recipient, last_error=None)
    )


async def mark_failed(
    session: AsyncSession, event_id: uuid.UUID, kind: str, error: str, retry_at: datetime
) -> None:
    """Give the claim back, to be tried again at `retry_at`."""
    await session.execute(
        update(Notification)
        .where(Notification.event_id == event_id, Notification.kind == kind)
        .values(claimed_at=None, next_attempt_at=retry_at, last_error=error[:2000])
    )
