"""Order notifications: one email per (event, kind), claimed before it is sent."""

from __future__ import annotations

import uuid
from typing import Any

import structlog

from bookbazar.kit import faults
from bookbazar.kit.queues import NOTIFY
from bookbazar.notify import repository as repo
from bookbazar.notify.mailer import send_email
from bookbazar.notify.render import KIND_FOR_EVENT, MailContext, render
from bookbazar.services import Services

log = structlog.get_logger(__name__)

NOTIFY_JOB = "notify"


async def enqueue_notification(services: Services, event: dict[str, Any]) -> None:
    """One job per event (job id = event id): the relay's repeats enqueue it once."""
    if event.get("type") not in KIND_FOR_EVENT:
        return
    await services.queues.add(NOTIFY, NOTIFY_JOB, event, job_id=f"notify-{event['id']}")


async def notify(services: Services, event: dict[str, Any]) -> str:
    """Email the order's owner about `event` (an outbox event body). Sent once per event:
    the SentNotification row is claimed first, so a second run of the job sends nothing;
    if sending fails the claim is released and the error raised (the job retries).
    Returns "sent", "logged" (no SMTP_URL), "duplicate" or "skipped"."""
    kind = KIND_FOR_EVENT.get(str(event.get("type")))
    if kind is None:
        return "skipped"
    event_id = uuid.UUID(str(event["id"]))
    order_id = uuid.UUID(str(event["orderId"]))
    structlog.contextvars.bind_contextvars(order_id=str(order_id), notification=kind)
    async with services.sessionmaker() as session:
        who = await repo.recipient(session, uuid.UUID(str(event["userId"])))
        lines = await repo.order_lines(session, order_id) if kind == "confirmation" else []
    if who is None:
        log.warning("notification_without_recipient")
        return "skipped"
    to, name = who
    email = render(
        kind,
        MailContext(
            name=name,
            order_id=str(order_id),
            total=int(event.get("total") or 0),
            currency=str(event.get("currency") or ""),
            lines=lines,
            data=event.get("data") or {},
        ),
    )
    async with services.sessionmaker() as session, session.begin():
        if not await repo.claim(session, event_id, kind, to):
            log.info("notification_already_sent")
            return "duplicate"
    try:
        sent = await send_email(services.settings, to, email)
    except Exception:
        async with services.sessionmaker() as session, session.begin():
            await repo.release(session, event_id, kind)
        raise
    faults.crash_point("notify:after-send")
    log.info("notification_sent" if sent else "notification_logged")
    return "sent" if sent else "logged"
