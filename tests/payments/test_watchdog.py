"""payment:verify — the watchdog settles payments whose webhook never arrived."""

from __future__ import annotations

import uuid

import httpx
from sqlalchemy import text

from bookbazar.kit.queues import PAYMENT
from bookbazar.orders import service as orders
from bookbazar.payments import watchdog
from bookbazar.payments.schemas import VerifyJob
from bookbazar.services import Services
from tests.orders.conftest import (
    available,
    force_deadline_passed,
    on_hand,
    order_status,
    outbox_types,
)
from tests.payments.conftest import (
    initialised,
    pay,
    payment_row,
    placed_order,
    refund_job,
    relay,
    run_job,
)


async def _age_payments(services: Services, seconds: int = 3600) -> None:
    async with services.sessionmaker() as session, session.begin():
        await session.execute(
            text(f"UPDATE payments SET created_at = created_at - interval '{seconds} seconds'")
        )


async def _verify_jobs(services: Services) -> list[str]:
    jobs = await services.queues.get(PAYMENT).getJobs(["waiting", "delayed"])
    return [str(j.id) for j in jobs if j.name == VerifyJob.name]


async def test_paid_at_the_provider_but_no_webhook_is_settled(
    client: httpx.AsyncClient, services: Services
) -> None:
    user, book, order_id = await placed_order(client, services, stock=2)
    intent = await initialised(client, user, order_id)
    # The buyer paid on the hosted page, but the webhook never arrives (no worker).
    assert (await client.post(f"/sandbox/checkout/{intent}/pay")).status_code == 202
    assert await watchdog.schedule_verifications(services) == 0  # too recent to ask
    await _age_payments(services)
    assert await watchdog.schedule_verifications(services) == 1
    # Several workers scanning in the same window agree on one job.
    await watchdog.schedule_verifications(services)
    jobs = await _verify_jobs(services)
    assert len(jobs) == 1
    assert await run_job(services, PAYMENT, jobs[0]) == {"result": "paid"}
    assert await order_status(services, order_id) == "PAID"
    assert await on_hand(services, book) == 1
    assert (await payment_row(services, order_id))["status"] == "succeeded"
    # The webhook arriving after all changes nothing more.
    assert (await pay(client, order_id, intent)).json()["data"]["result"] == "already_paid"
    assert (await outbox_types(services, order_id)).count("order.paid") == 1
    # Nothing left to verify.
    assert await run_job(services, PAYMENT, jobs[0]) == {"result": "settled"}


async def test_unpaid_intent_is_left_alone(client: httpx.AsyncClient, services: Services) -> None:
    user, book, order_id = await placed_order(client, services)
    await initialised(client, user, order_id)
    payment = await payment_row(services, order_id)
    assert await watchdog.verify_payment(services, payment["id"]) == "pending"
    assert await order_status(services, order_id) == "PAYMENT_PENDING"
    assert await available(services, book) == 4


async def test_expired_order_paid_without_webhook_is_checked_once_more(
    client: httpx.AsyncClient, services: Services
) -> None:
    user, book, order_id = await placed_order(client, services, stock=1)
    intent = await initialised(client, user, order_id)
    await force_deadline_passed(services, order_id)
    assert await orders.expire_order(services, uuid.UUID(order_id))
    # The buyer pays on the page just after expiry; the webhook is lost.
    assert (await client.post(f"/sandbox/checkout/{intent}/pay")).status_code == 202
    await relay(services)  # order.expired -> a delayed final verification
    payment = await payment_row(services, order_id)
    job_id = f"verify-{payment['id']}-final"
    job = await services.queues.get(PAYMENT).getJob(job_id)
    assert job is not None and job.opts.get("delay", 0) > 0
    assert await run_job(services, PAYMENT, job_id) == {"result": "paid"}
    assert await order_status(services, order_id) == "PAID"  # stock allowed it
    assert await on_hand(services, book) == 0


async def test_lost_refund_job_is_enqueued_again(
    client: httpx.AsyncClient, services: Services
) -> None:
    user, book, order_id = await placed_order(client, services, stock=1)
    intent = await initialised(client, user, order_id)
    await force_deadline_passed(services, order_id)
    await orders.expire_order(services, uuid.UUID(order_id))
    await placed_order(client, services, book=book)  # the copy is gone
    assert (await pay(client, order_id, intent)).json()["data"]["result"] == "refund"
    await services.queues.remove(PAYMENT, await refund_job(services, order_id))  # the job is lost
    async with services.sessionmaker() as session, session.begin():
        await session.execute(
            text("UPDATE payments SET updated_at = now() - interval '1 hour' WHERE order_id = :id"),
            {"id": uuid.UUID(order_id)},
        )
    assert await watchdog.schedule_verifications(services) == 1
    jobs = await services.queues.get(PAYMENT).getJobs(["waiting"])
    refund_jobs = [j for j in jobs if j.name == "payment:refund"]
    assert len(refund_jobs) == 1
    await run_job(services, PAYMENT, str(refund_jobs[0].id))
    assert await order_status(services, order_id) == "REFUNDED"
    assert (await payment_row(services, order_id))["status"] == "refunded"
