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

from bookbazar.kit import faults
from bookbazar.kit.clock import utcnow
from bookbazar.kit.jobs import EventHook
from bookbazar.pg import Executor
from bookbazar.services import Services

log = structlog.get_logger(__name__)

ORDER_EVENTS_CHANNEL = "order:events"
BATCH = 200
BATCH_PAUSE = 0.02
MAX_BACKOFF_SECONDS = 60
_ANY_DUE = (
    "SELECT EXISTS (SELECT 1 FROM outbox_events WHERE sent_at IS NULL AND next_attempt_at <= now())"
)


async def relay_once(services: Services, hooks: Mapping[str, Sequence[EventHook]]) -> int:
    """Claim and publish one batch: every publish of the batch (the `order:events` channel,
    the owner's recent-events stream and their Socket.IO room) in one Redis round trip,
    then each event's hooks. Returns how many events were handled."""
    if not await services.pg.fetchval(_ANY_DUE):
        return 0  # one small query when idle, not a transaction
    async with services.pg.tx() as conn:
        rows = await conn.fetch(
            "SELECT e.id, e.type, e.order_id, e.payload, e.attempts FROM outbox_events e "
            "WHERE e.sent_at IS NULL AND e.next_attempt_at <= now() "
            "AND NOT EXISTS (SELECT 1 FROM outbox_events p WHERE p.order_id = e.order_id "
            "AND p.sent_at IS NULL AND p.seq < e.seq) "
            "ORDER BY e.seq LIMIT $1 FOR UPDATE SKIP LOCKED",
            BATCH,
        )
        if not rows:
            return 0
        failed: dict[Any, BaseException] = {}
        try:
            await _publish(services, rows)
        except Exception as exc:
            failed = {row.id: exc for row in rows}
        else:
            hooked = [row for row in rows if hooks.get(row.type)]
            results = await asyncio.gather(
                *(_run_hooks(services, row.payload, hooks[row.type]) for row in hooked),
                return_exceptions=True,
            )
            failed = {row.id: r for row, r in zip(hooked, results, strict=True) if r is not None}
        faults.crash_point("outbox:after-publish")
        for row in rows:
            if row.id in failed:
                await _back_off(conn, row, failed[row.id])
        sent = [row.id for row in rows if row.id not in failed]
        if sent:
            await conn.execute("UPDATE outbox_events SET sent_at = now() WHERE id = ANY($1)", sent)
        return len(rows)


async def _publish(services: Services, rows: Sequence[Any]) -> None:
    async with services.redis.pipeline(transaction=False) as pipe:
        for row in rows:
            event = row.payload
            # As a plain command: a cluster pipeline refuses publish().
            message = json.dumps(event, separators=(",", ":"))
            pipe.execute_command("PUBLISH", ORDER_EVENTS_CHANNEL, message)
            if event.get("userId"):
                services.emitter.queue_to_user(pipe, event["userId"], event["type"], event)
        await pipe.execute()


async def _run_hooks(
    services: Services, event: dict[str, Any], hooks: Sequence[EventHook]
) -> Exception | None:
    """Run the event's hooks in order; the first failure is returned (the event is then
    published again later, so every hook must be idempotent)."""
    for hook in hooks:
        try:
            await hook(services, event)
        except Exception as exc:
            return exc
    return None


async def _back_off(conn: Executor, row: Any, exc: BaseException) -> None:
    backoff = min(MAX_BACKOFF_SECONDS, 2 ** min(row.attempts, 6))
    log.warning(
        "outbox_publish_failed",
        event_id=str(row.id),
        event_type=row.type,
        error=repr(exc),
        retry_in=backoff,
    )
    await conn.execute(
        "UPDATE outbox_events SET attempts = attempts + 1, last_error = $2, "
        "next_attempt_at = $3 WHERE id = $1",
        row.id,
        repr(exc)[:2000],
        utcnow() + timedelta(seconds=backoff),
    )


async def relay_loop(
    services: Services, stop: asyncio.Event, hooks: Mapping[str, Sequence[EventHook]]
) -> None:
    """Relay until `stop`: at once again after a full batch, after a short pause after a
    partial one (an order's next event is free once its previous one was sent, and the
    pause lets a batch fill), after OUTBOX_POLL_SECONDS when there was nothing."""
    interval = services.settings.outbox_poll_seconds
    while not stop.is_set():
        handled = await relay_once(services, hooks)
        if handled >= BATCH:
            continue
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=BATCH_PAUSE if handled else interval)
