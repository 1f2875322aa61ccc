"""Emails through a real local SMTP server (aiosmtpd), from the email outbox: owed in
the event's own transaction, sent once per event, text and HTML, over one connection."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
from sqlalchemy import text

from bookbazar.fulfillment import service as fulfillment
from bookbazar.kit.queues import PAYMENT
from bookbazar.notify import service as notify
from bookbazar.notify.jobs import SEND_JOB
from bookbazar.orders import service as orders
from bookbazar.services import Services
from bookbazar.worker import load_registry
from tests.conftest import free_port
from tests.notify.smtp import MailServer
from tests.orders.conftest import force_deadline_passed
from tests.payments.conftest import (
    initialised,
    pay,
    placed_order,
    refund_job,
    run_job,
)


async def _rows(services: Services) -> list[Any]:
    async with services.sessionmaker() as session:
        return list(
            (
                await session.execute(
                    text(
                        "SELECT n.kind, n.recipient, n.sent_at, n.claimed_at, n.attempts, "
                        "n.next_attempt_at, n.last_error, e.type FROM notifications n "
                        "JOIN outbox_events e ON e.id = n.event_id ORDER BY n.created_at"
                    )
                )
            ).all()
        )


async def _paid(
    client: httpx.AsyncClient, services: Services, **kw: Any
) -> tuple[dict[str, Any], str]:
    user, _, order_id = await placed_order(client, services, **kw)
    intent = await initialised(client, user, order_id)
    assert (await pay(client, order_id, intent, kw.get("price", 49_900))).status_code == 200
    return user, order_id


async def test_the_worker_sends_the_outbox_every_second() -> None:
    assert any(t.name == SEND_JOB for t in load_registry().ticks)


async def test_the_email_is_owed_with_its_event_and_sent_once(
    client: httpx.AsyncClient, services: Services, smtp: MailServer
) -> None:
    services.settings.smtp_url = smtp.url
    user, order_id = await _paid(client, services, price=12_500)
    # Owed in the transaction that marked the order PAID (before any relay or job).
    [owed] = await _rows(services)
    assert (owed.kind, owed.type, owed.sent_at, owed.claimed_at) == (
        "confirmation",
        "order.paid",
        None,
        None,
    )
    assert await notify.send_due(services) == 1
    assert await notify.send_due(services) == 0  # a second round sends nothing
    [mail] = await smtp.wait_for(1)
    assert mail.recipients == [user["user"]["email"]]
    assert "confirmed" in mail.subject.lower()
    assert mail.message["From"] == services.settings.mail_from
    # Derived from the event: a copy sent again after a crash is the same message.
    assert str(mail.message["Message-ID"]).strip().endswith(".confirmation@bookbazar.local>")
    plain, html = mail.part("plain"), mail.part("html")
    for body in (plain, html):
        assert order_id in body
        assert "₹125.00" in body
    assert "Book " in plain and "<table>" in html
    [sent] = await _rows(services)
    assert sent.sent_at is not None and sent.recipient == user["user"]["email"]


async def test_shipped_email_carries_the_tracking_number(
    client: httpx.AsyncClient, services: Services, smtp: MailServer
) -> None:
    services.settings.smtp_url = smtp.url
    _, order_id = await _paid(client, services)
    for _ in range(3):
        await fulfillment.advance(services)
    async with services.sessionmaker() as session:
        event = (
            await session.execute(
                text(
                    "SELECT payload FROM outbox_events "
                    "WHERE order_id = :o AND type = 'order.shipped'"
                ),
                {"o": uuid.UUID(order_id)},
            )
        ).scalar_one()
    tracking = event["data"]["trackingNumber"]
    assert await notify.send_due(services) == 2
    mails = [m for m in smtp.messages if "shipped" in m.subject.lower()]
    assert len(mails) == 1
    assert tracking in mails[0].subject
    assert tracking in mails[0].part("plain") and tracking in mails[0].part("html")
    # order.fulfilling and order.delivered send no email.
    assert sorted(r.type for r in await _rows(services)) == ["order.paid", "order.shipped"]


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
    await notify.send_due(services)
    subjects = sorted(m.subject for m in smtp.to(user["user"]["email"]))
    assert [s.split()[-1] for s in subjects] == ["expired", "refunded"]
    refunded = next(m for m in smtp.messages if m.subject.endswith("refunded"))
    assert "₹499.00" in refunded.part("plain") and "re_sb_" in refunded.part("plain")


async def test_emails_share_one_smtp_connection(
    client: httpx.AsyncClient, services: Services, smtp: MailServer
) -> None:
    services.settings.smtp_url = smtp.url
    for _ in range(3):
        await _paid(client, services)
    assert await notify.send_due(services) == 3
    await smtp.wait_for(3)
    assert smtp.sessions == 1


async def test_without_smtp_the_email_is_logged_once(
    client: httpx.AsyncClient, services: Services
) -> None:
    assert services.settings.smtp_url is None
    await _paid(client, services)
    assert await notify.send_due(services) == 1
    assert await notify.send_due(services) == 0
    [row] = await _rows(services)
    assert row.sent_at is not None


async def test_an_smtp_failure_is_retried_later_and_then_sent(
    client: httpx.AsyncClient, services: Services, smtp: MailServer
) -> None:
    await _paid(client, services)
    services.settings.smtp_url = f"smtp://127.0.0.1:{free_port()}"  # nobody listens
    assert await notify.send_due(services) == 1
    [row] = await _rows(services)
    assert row.sent_at is None and row.claimed_at is None and row.attempts == 1
    assert row.last_error and row.next_attempt_at > await _db_now(services)
    assert await notify.send_due(services) == 0  # backing off
    services.settings.smtp_url = smtp.url
    await _make_due(services)
    assert await notify.send_due(services) == 1
    assert len(await smtp.wait_for(1)) == 1
    [row] = await _rows(services)
    assert row.sent_at is not None and row.last_error is None


async def test_a_claim_whose_sender_died_is_taken_over_once_its_lease_ran_out(
    client: httpx.AsyncClient, services: Services, smtp: MailServer
) -> None:
    """The worker died between claiming the email and sending it: the email is not lost.
    While the claim's lease runs nobody sends it; after it, the next round does, once."""
    services.settings.smtp_url = smtp.url
    await _paid(client, services)
    async with services.sessionmaker() as session, session.begin():
        await session.execute(text("UPDATE notifications SET claimed_at = now()"))
    assert await notify.send_due(services) == 0  # its sender may still be at it
    assert smtp.messages == []
    async with services.sessionmaker() as session, session.begin():
        await session.execute(
            text("UPDATE notifications SET claimed_at = now() - interval '1 hour'")
        )
    assert await notify.send_due(services) == 1
    assert await notify.send_due(services) == 0
    [message] = await smtp.wait_for(1)
    assert message.subject.endswith("confirmed")


async def _db_now(services: Services) -> Any:
    async with services.sessionmaker() as session:
        return (await session.execute(text("SELECT now()"))).scalar_one()


async def _make_due(services: Services) -> None:
    async with services.sessionmaker() as session, session.begin():
        await session.execute(text("UPDATE notifications SET next_attempt_at = now()"))
