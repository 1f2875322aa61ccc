"""Order notifications: one email per (event, kind), claimed with a lease before sending.

The claim is a row with `sent_at` empty; it is marked sent after the SMTP server took the
message. If the sender dies in between, the claim's lease runs out and the job's retry
takes it over and sends: an email is never lost. If it dies after the send but before
marking it (one database round trip), the retry sends again: the copies share one
Message-ID, derived from the event, so mail clients show one message.
"""

from __future__ import annotations

import structlog

from bookbazar.errors import Conflict
from bookbazar.kit import faults
from bookbazar.notify import repository as repo
from bookbazar.notify.mailer import send_email
from bookbazar.notify.render import KIND_FOR_EVENT, MailContext, render
from bookbazar.notify.schemas import NotifyJob
from bookbazar.services import Services

log = structlog.get_logger(__name__)


class ClaimHeld(Conflict):
    """Another run holds this notification's claim; retry once its lease ran out."""


async def enqueue_notification(services: Services, event: dict[str, object]) -> None:
    """One job per event (job id from the event id): the relay's repeats enqueue it once."""
    if event.get("type") not in KIND_FOR_EVENT:
        return
    await services.queues.enqueue(NotifyJob.model_validate(event))


async def notify(services: Services, job: NotifyJob) -> str:
    """Email the order's owner about the event. Returns "sent", "logged" (no SMTP_URL),
    "duplicate" (sent before) or "skipped". Raises ClaimHeld while another run's claim
    is live, and the SMTP error when sending fails (the claim is released); the job
    retries either way."""
    kind = KIND_FOR_EVENT.get(job.type)
    if kind is None:
        return "skipped"
    structlog.contextvars.bind_contextvars(order_id=str(job.order_id), notification=kind)
    async with services.sessionmaker() as session:
        who = await repo.recipient(session, job.user_id)
        lines = await repo.order_lines(session, job.order_id) if kind == "confirmation" else []
    if who is None:
        log.warning("notification_without_recipient")
        return "skipped"
    to, name = who
    email = render(
        kind,
        MailContext(
            name=name,
            order_id=str(job.order_id),
            total=job.total,
            currency=job.currency,
            lines=lines,
            data=job.data,
        ),
    )
    async with services.sessionmaker() as session, session.begin():
        claim = await repo.claim(
            session, job.event_id, kind, to, services.settings.notify_claim_lease_seconds
        )
    if claim is repo.Claim.SENT:
        log.info("notification_already_sent")
        return "duplicate"
    if claim is repo.Claim.HELD:
        raise ClaimHeld("this notification is being sent by another run")
    faults.crash_point("notify:after-claim")
    try:
        sent = await send_email(services.settings, to, email, message_key=f"{job.event_id}.{kind}")
    except Exception:
        async with services.sessionmaker() as session, session.begin():
            await repo.release(session, job.event_id, kind)
        raise
    faults.crash_point("notify:after-send")
    async with services.sessionmaker() as session, session.begin():
        await repo.mark_sent(session, job.event_id, kind)
    log.info("notification_sent" if sent else "notification_logged")
    return "sent" if sent else "logged"
