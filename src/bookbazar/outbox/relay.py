"""The outbox relay: publishes unsent events at least once, each order's in order.

Several relays may run at once: each batch is claimed with FOR UPDATE SKIP LOCKED, so in
the normal case no event is sent twice. An event is only claimed when no earlier event of
its order is still unsent (backed off after a failure, or claimed by another relay), so
an order's events are never published out of order. A failed event is retried with
backoff, and its order's later events wait for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any

import structlog
from sqlalchemy import text

from bookbazar.kit import faults
from bookbazar.kit.clock import utcnow
from bookbazar.kit.jobs import EventHook
from bookbazar.services import Services

log = structlog.get_logger(__name__)

ORDER_EVENTS_CHANNEL = "order:events"
BATCH = 200
MAX_BACKOFF_SECONDS = 60


async def publish_event(
    services: Services, event: dict[str, Any], hooks: Sequence[EventHook]
) -> None:
    await services.redis.publish(ORDER_EVENTS_CHANNEL, json.dumps(event))
    if event.get("userId"):
        await services.emitter.emit_to_user(event["userId"], event["type"], event)
    for hook in hooks:
        await hook(services, event)


async def relay_once(services: Services, hooks: Mapping[str, Sequence[EventHook]]) -> int:
    """Claim and publish one batch; returns how many events were handled."""
    async with services.sessionmaker() as session, session.begin():
        rows = (
            await session.execute(
                text(
                    "SELECT e.id, e.type, e.order_id, e.payload, e.attempts FROM outbox_events e "
                    "WHERE e.sent_at IS NULL AND e.next_attempt_at <= now() "
                    "AND NOT EXISTS (SELECT 1 FROM outbox_events p WHERE p.order_id = e.order_id "
                    "AND p.sent_at IS NULL AND p.seq < e.seq) "
                    "ORDER BY e.seq LIMIT :batch FOR UPDATE SKIP LOCKED"
                ),
                {"batch": BATCH},
            )
        ).all()
        if not rows:
            return 0
        # Events of one order go out in order; different orders go out concurrently.
        groups: dict[Any, list[Any]] = {}
        for row in rows:
            groups.setdefault(row.order_id or row.id, []).append(row)
        sent: list[Any] = []
        failed: list[tuple[Any, Exception]] = []

        async def publish_group(group: list[Any]) -> None:
            for row in group:
                try:
                    await publish_event(services, row.payload, hooks.get(row.type, ()))
                except Exception as exc:
                    # The rest of this order's events wait for it (kept in order).
                    failed.append((row, exc))
                    return
                sent.append(row.id)

        await asyncio.gather(*(publish_group(g) for g in groups.values()))
        faults.crash_point("outbox:after-publish")
        for row, exc in failed:
            backoff = min(MAX_BACKOFF_SECONDS, 2 ** min(row.attempts, 6))
            log.warning(
                "outbox_publish_failed",
                event_id=str(row.id),
                event_type=row.type,
                error=repr(exc),
                retry_in=backoff,
            )
            await session.execute(
                text(
                    "UPDATE outbox_events SET attempts = attempts + 1, last_error = :err, "
                    "next_attempt_at = :next WHERE id = :id"
                ),
                {
                    "id": row.id,
                    "err": repr(exc)[:2000],
                    "next": utcnow() + timedelta(seconds=backoff),
                },
            )
        if sent:
            await session.execute(
                text("UPDATE outbox_events SET sent_at = now() WHERE id = ANY(:ids)"),
                {"ids": sent},
            )
        return len(rows)


async def relay_loop(
    services: Services, stop: asyncio.Event, hooks: Mapping[str, Sequence[EventHook]]
) -> None:
    interval = services.settings.outbox_poll_seconds
    while not stop.is_set():
        handled = await relay_once(services, hooks)
        # Something was sent: its order's next event (held back until now) may be ready.
        if handled == 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=interval)
