"""Emails through a real local SMTP server (aiosmtpd): once per event, text and HTML."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from bookbazar.fulfillment import service as fulfillment
from bookbazar.kit.queues import NOTIFY, PAYMENT
from bookbazar.notify import repository as notify_repo
from bookbazar.notify import service as notify
from bookbazar.notify.schemas import NotifyJob
from bookbazar.orders import service as orders
from bookbazar.services import Services
from tests.conftest import free_port
from tests.notify.smtp import MailServer
from tests.orders.conftest import force_deadline_passed
from tests.payments.conftest import (
    initialised,
    pay,
    placed_order,
    refund_job,
    relay,
    run_job,
)


async def _job(services: Services, order_id: str, event_type: str) -> NotifyJob:
    return NotifyJob.model_validate(await _event(services, order_id, event_type))


async def _event(services: Services, order_id: str, event_type: str) -> dict[str, Any]:
    async with services.sessionmaker() as session:
        payload: dict[str, Any] = (
            await session.execute(
                text("SELECT payload FROM outbox_events WHERE order_id = :o AND type = :t"),
                {"o": uuid.UUID(order_id), "t": event_type},
            )
        ).scalar_one()
    return payload


async def _sent(services: Services) -> int:
    async with services.sessionmaker() as session:
        return int(
            (await session.execute(text("SELECT count(*) FROM sent_notifications"))).scalar_one()
        )


async def _paid(
    client: httpx.AsyncClient, services: Services, **kw: Any
) -> tuple[dict[str, Any], str]:
    user, _, order_id = await placed_order(client, services, **kw)
    intent = await initialised(client, user, order_id)
    assert (await pay(client, order_id, intent, kw.get("price", 49_900))).status_code == 200
    return user, order_id


async def test_confirmation_is_emailed_once_even_if_the_job_runs_twice(
    client: httpx.AsyncClient, services: Services, smtp: MailServer
) -> None:
    services.settings.smtp_url = smtp.url
    user, order_id = await _paid(client, services, price=12_500)
    await relay(services)
    event = await _event(services, order_id, "order.paid")
    job_id = f"notify-{event['id']}"
    assert await run_job(services, NOTIFY, job_id) == {"result": "sent"}
    assert await run_job(services, NOTIFY, job_id) == {"result": "duplicate"}
    # The relay delivering the event again enqueues nothing new either.
    await notify.enqueue_notification(services, event)
    [mail] = await smtp.wait_for(1)
    assert mail.recipients == [user["user"]["email"]]
    assert "confirmed" in mail.subject.lower()
    assert mail.message["From"] == services.settings.mail_from
    plain, html = mail.part("plain"), mail.part("html")
    for body in (plain, html):
        assert order_id in body
        assert "125.00 INR" in body
    assert "Book " in plain and "<table>" in html
    assert await _sent(services) == 1


async def test_shipped_email_carries_the_tracking_number(
    client: httpx.AsyncClient, services: Services, smtp: MailServer
) -> None:
    services.settings.smtp_url = smtp.url
    _, order_id = await _paid(client, services)
    oid = uuid.UUID(order_id)
    await fulfillment.start_fulfillment(services, oid)
    await fulfillment.ship_order(services, oid)
    await fulfillment.deliver_order(services, oid)
    await relay(services)
    event = await _event(services, order_id, "order.shipped")
    tracking = event["data"]["trackingNumber"]
    await run_job(services, NOTIFY, f"notify-{event['id']}")
    mails = [m for m in smtp.messages if "shipped" in m.subject.lower()]
    assert len(mails) == 1
    assert tracking in mails[0].subject
    assert tracking in mails[0].part("plain") and tracking in mails[0].part("html")
    # order.fulfilling and order.delivered send no email.
    jobs = await services.queues.get(NOTIFY).getJobs(["waiting"])
    assert sorted(j.data["type"] for j in jobs) == ["order.paid", "order.shipped"]


async def test_expired_and_refunded_emails(
    client: httpx.AsyncClient, services: Services, smtp: MailServer
) -> None:
    services.settings.smtp_url = smtp.url
    user, book, order_id = await placed_order(client, services, stock=1)
    intent = await initialised(client, user, order_id)
    await force_deadline_passed(services, order_id)
    await orders.expire_order(services, uuid.UUID(order_id))
    await placed_order(client, services, book=book)  # the copy is sold to someone else
    assert (await pay(client, order_id, intent)).json()["data"]["result"] == "refund"
    await run_job(services, PAYMENT, await refund_job(services, order_id))
    await relay(services)
    for event_type in ("order.expired", "order.refunded"):
        event = await _event(services, order_id, event_type)
        await run_job(services, NOTIFY, f"notify-{event['id']}")
    subjects = sorted(m.subject for m in smtp.to(user["user"]["email"]))
    assert [s.split()[-1] for s in subjects] == ["expired", "refunded"]
    refunded = next(m for m in smtp.messages if m.subject.endswith("refunded"))
    assert "499.00 INR" in refunded.part("plain") and "re_sb_" in refunded.part("plain")


async def test_without_smtp_the_email_is_logged_once(
    client: httpx.AsyncClient, services: Services
) -> None:
    assert services.settings.smtp_url is None
    _, order_id = await _paid(client, services)
    job = await _job(services, order_id, "order.paid")
    assert await notify.notify(services, job) == "logged"
    assert await notify.notify(services, job) == "duplicate"
    assert await _sent(services) == 1


async def test_smtp_failure_releases_the_claim_for_the_retry(
    client: httpx.AsyncClient, services: Services, smtp: MailServer
) -> None:
    _, order_id = await _paid(client, services)
    job = await _job(services, order_id, "order.paid")
    services.settings.smtp_url = f"smtp://127.0.0.1:{free_port()}"  # nobody listens
    with pytest.raises(Exception):  # noqa: B017 - whichever connection error aiosmtplib raises
        await notify.notify(services, job)
    assert await _sent(services) == 0
    services.settings.smtp_url = smtp.url
    assert await notify.notify(services, job) == "sent"
    assert len(await smtp.wait_for(1)) == 1


async def test_a_claim_whose_sender_died_is_taken_over_once_its_lease_ran_out(
    client: httpx.AsyncClient, services: Services, smtp: MailServer
) -> None:
    """The worker died between claiming the email and sending it: the email is not lost.
    While the claim's lease runs the retry waits (raises, so the job retries); after it
    the retry takes the claim over and sends, once."""
    services.settings.smtp_url = smtp.url
    _, order_id = await _paid(client, services)
    job = await _job(services, order_id, "order.paid")
    async with services.sessionmaker() as session, session.begin():
        assert (
            await notify_repo.claim(session, job.event_id, "confirmation", "x@example.com", 60)
            is notify_repo.Claim.TAKEN
        )  # ... and the sender dies here
    with pytest.raises(notify.ClaimHeld):
        await notify.notify(services, job)
    assert smtp.messages == []
    async with services.sessionmaker() as session, session.begin():
        await session.execute(
            text("UPDATE sent_notifications SET claimed_at = now() - interval '1 hour'")
        )
    assert await notify.notify(services, job) == "sent"
    assert await notify.notify(services, job) == "duplicate"
    [message] = await smtp.wait_for(1)
    assert message.subject.endswith("confirmed")
    async with services.sessionmaker() as session:
        sent_at = (
            await session.execute(text("SELECT sent_at FROM sent_notifications"))
        ).scalar_one()
    assert sent_at is not None
