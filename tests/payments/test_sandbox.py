"""The sandbox provider's hosted page and its signed, retried webhook delivery."""

from __future__ import annotations

import dataclasses
import uuid

import aiohttp
import httpx
import pytest

from bookbazar.kit.queues import PAYMENT
from bookbazar.payments.sandbox_page import WebhookNotAcknowledged, deliver_event
from bookbazar.payments.schemas import SandboxDeliveryJob
from bookbazar.services import Services
from tests.conftest import LiveServer, free_port
from tests.orders.conftest import order_status, outbox_types
from tests.payments.conftest import initialised, placed_order, run_job


async def _waiting_jobs(services: Services) -> list[object]:
    return list(await services.queues.get(PAYMENT).getJobs(["waiting", "delayed"]))


async def test_checkout_page_shows_the_amount_and_both_buttons(
    client: httpx.AsyncClient, services: Services
) -> None:
    user, _, order_id = await placed_order(client, services, qty=2, price=12_345)
    intent = await initialised(client, user, order_id)
    page = await client.get(f"/sandbox/checkout/{intent}")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "₹246.90" in page.text
    assert f"action='/sandbox/checkout/{intent}/pay'" in page.text
    assert f"action='/sandbox/checkout/{intent}/decline'" in page.text
    assert order_id in page.text
    missing = await client.get("/sandbox/checkout/pi_sb_nope")
    assert missing.status_code == 404
    assert (await client.post("/sandbox/checkout/pi_sb_nope/pay")).status_code == 404


async def test_pay_enqueues_one_delivery_and_cannot_be_declined_after(
    client: httpx.AsyncClient, services: Services
) -> None:
    user, _, order_id = await placed_order(client, services)
    intent = await initialised(client, user, order_id)
    paid = await client.post(f"/sandbox/checkout/{intent}/pay")
    assert paid.status_code == 202, paid.text
    again = await client.post(f"/sandbox/checkout/{intent}/pay")
    assert again.status_code == 200 and "already" in again.text.lower()
    declined = await client.post(f"/sandbox/checkout/{intent}/decline")
    assert declined.status_code == 409
    jobs = await _waiting_jobs(services)
    assert len(jobs) == 1
    job = jobs[0]
    assert job.name == "sandbox:deliver"  # type: ignore[attr-defined]
    assert job.data["outcome"] == "succeeded"  # type: ignore[attr-defined]
    assert job.data["intentId"] == intent  # type: ignore[attr-defined]
    # Nothing changes until the webhook is delivered.
    assert await order_status(services, order_id) == "PAYMENT_PENDING"


async def test_delivery_posts_a_signed_event_the_service_accepts(
    live_server: LiveServer, client: httpx.AsyncClient, services: Services
) -> None:
    user, _, order_id = await placed_order(client, services)
    intent = await initialised(client, user, order_id)
    assert (await client.post(f"/sandbox/checkout/{intent}/decline")).status_code == 202
    assert (await client.post(f"/sandbox/checkout/{intent}/pay")).status_code == 202
    jobs = await _waiting_jobs(services)
    by_outcome = {j.data["outcome"]: j for j in jobs}  # type: ignore[attr-defined]
    assert set(by_outcome) == {"failed", "succeeded"}
    declined = await run_job(services, PAYMENT, by_outcome["failed"].id)  # type: ignore[attr-defined]
    assert declined == {"status": 200}
    assert await order_status(services, order_id) == "PAYMENT_PENDING"
    await run_job(services, PAYMENT, by_outcome["succeeded"].id)  # type: ignore[attr-defined]
    assert await order_status(services, order_id) == "PAID"
    # A retried delivery (same event id, fresh signature) is acknowledged as a duplicate.
    await run_job(services, PAYMENT, by_outcome["succeeded"].id)  # type: ignore[attr-defined]
    assert await outbox_types(services, order_id) == [
        "order.created",
        "order.payment_failed",
        "order.paid",
    ]


async def test_delivery_raises_until_acknowledged(
    live_server: LiveServer, services: Services
) -> None:
    data = SandboxDeliveryJob.model_validate(
        {
            "eventId": "evt_sb_unreachable",
            "outcome": "succeeded",
            "intentId": "pi_sb_x",
            "orderId": str(uuid.uuid4()),
            "amount": 100,
            "currency": "INR",
            "created": 1,
        }
    )
    # Unknown intent: acknowledged (2xx) so the sandbox stops retrying.
    assert await deliver_event(services, data) == 200
    # The service is down: the job fails and BullMQ retries it with backoff.
    down = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(aiohttp.ClientConnectionError):
        await deliver_event(_with(services, public_url=down), data)
    # The service refuses the signature (the sandbox signs with another secret).
    with pytest.raises(WebhookNotAcknowledged):
        await deliver_event(_with(services, sandbox_webhook_secret="whsec_rotated"), data)


def _with(services: Services, **settings: object) -> Services:
    """The same services with some settings changed (the live server keeps its own)."""
    return dataclasses.replace(
        services, settings=services.settings.model_copy(update=settings), clients={}
    )
