"""Order notifications: one email per (event, kind), from the email outbox.

The row owing an email is written in the same transaction as its event (outbox/store.py),
so no email is lost with a job or a crash. The notifier (`send_due`, a tick under the
worker lease) claims due rows under a lease, sends them over the process's one SMTP
connection, and marks the batch sent (one statement). If a sender dies before sending,
its claim's lease runs out and the next round sends; if it dies after a send but before
its batch is marked, the next round sends those again: the copies share one Message-ID,
derived from the event, so mail clients show one message. A failed send is retried with
backoff (capped at an hour), and keeps being retried.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

import structlog

from bookbazar.kit import faults
from bookbazar.kit.clock import utcnow
from bookbazar.notify import repository as repo
from bookbazar.notify.mailer import Mailer
from bookbazar.notify.render import MailContext, render
from bookbazar.services import Services

log = structlog.get_logger(__name__)
BATCH = 50
MAX_BACKOFF_SECONDS = 3600


def mailer(services: Services) -> Mailer:
    """The process's one mailer (its SMTP connection is reused)."""
    found = services.clients.get("mailer")
    if found is None:
        found = services.clients["mailer"] = Mailer(services.settings)
    assert isinstance(found, Mailer)
    return found


async def send_due(services: Services) -> int:
    """Send every email that is due, in batches. Returns how many were attempted."""
    attempted = 0
    while True:
        count = await _send_batch(services)
        attempted += count
        if count < BATCH:
            return attempted


async def _send_batch(services: Services) -> int:
    lease = services.settings.notify_claim_lease_seconds
    claimed = await repo.claim_due(services.pg, lease, BATCH)
    if not claimed:
        return 0
    faults.crash_point("notify:after-claim")
    contexts = await repo.contexts(services.pg, [c.event_id for c in claimed])
    confirmations = {
        uuid.UUID(str(contexts[c.event_id].event["orderId"]))
        for c in claimed
        if c.kind == "confirmation" and c.event_id in contexts
    }
    lines = await repo.order_lines(services.pg, list(confirmations))
    sent: list[tuple[uuid.UUID, str, str | None]] = []
    try:
        for item in claimed:
            done, recipient = await _send_one(services, item, contexts.get(item.event_id), lines)
            if done:
                sent.append((item.event_id, item.kind, recipient))
    finally:
        await repo.mark_sent(services.pg, sent)
    return len(claimed)


async def _send_one(
    services: Services,
    item: repo.Claimed,
    context: repo.EventContext | None,
    lines: dict[uuid.UUID, list[tuple[str, int, int]]],
) -> tuple[bool, str | None]:
    """Send one email: (True, its recipient, None if it has none and nothing was sent),
    or (False, None) if the send failed (the claim is given back with a backoff)."""
    event = context.event if context is not None else {}
    structlog.contextvars.bind_contextvars(order_id=event.get("orderId"), notification=item.kind)
    try:
        if context is None:
            log.warning("notification_without_recipient")
            recipient = None
        else:
            order_id = uuid.UUID(str(event["orderId"]))
            email = render(
                item.kind,
                MailContext(
                    name=context.name,
                    order_id=str(order_id),
                    total=int(event.get("total") or 0),
                    currency=str(event.get("currency") or ""),
                    lines=lines.get(order_id, []),
                    data=event.get("data") or {},
                ),
            )
            key = f"{item.event_id}.{item.kind}"
            sent = await mailer(services).send(context.email, email, message_key=key)
            faults.crash_point("notify:after-send")
            recipient = context.email
            log.info("notification_sent" if sent else "notification_logged")
        return True, recipient
    except Exception as exc:
        backoff = min(MAX_BACKOFF_SECONDS, 2 ** min(item.attempts, 12))
        log.warning("notification_failed", error=repr(exc), retry_in=backoff)
        await repo.mark_failed(
            services.pg, item.event_id, item.kind, repr(exc), utcnow() + timedelta(seconds=backoff)
        )
        return False, None
    finally:
        structlog.contextvars.unbind_contextvars("order_id", "notification")
