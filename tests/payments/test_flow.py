"""The whole path with the real worker: cart -> order -> init -> the sandbox page's Pay
-> the worker delivers the signed webhook -> PAID -> SHIPPED -> DELIVERED, with emails."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest

from bookbazar.config import Settings
from bookbazar.services import Services
from bookbazar.worker import WorkerProcess
from tests.conftest import LiveServer, create_book, register
from tests.notify.smtp import MailServer
from tests.orders.conftest import on_hand, outbox_types


@pytest.fixture
async def worker(settings: Settings, smtp: MailServer) -> AsyncIterator[WorkerProcess]:
    settings.smtp_url = smtp.url
    settings.sweeper_interval_seconds = 3600
    process = WorkerProcess(settings, concurrency=4)
    task = asyncio.create_task(process.run())
    await asyncio.sleep(0.5)
    yield process
    process.stop.set()
    await asyncio.wait_for(task, timeout=30)


async def _wait_status(
    http: httpx.AsyncClient,
    user: dict[str, object],
    order_id: str,
    status: str,
    timeout: float = 30.0,
) -> dict[str, object]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        resp = await http.get(f"/api/v1/orders/{order_id}", headers=user["headers"])  # type: ignore[arg-type]
        data: dict[str, object] = resp.json()["data"]
        if data["status"] == status or loop.time() > deadline:
            return data
        await asyncio.sleep(0.1)


async def test_cart_to_delivered_through_the_sandbox_page(
    live_server: LiveServer,
    services: Services,
    worker: WorkerProcess,
    smtp: MailServer,
) -> None:
    book = await create_book(services, title="The Left Hand of Darkness", stock=3, price=39_900)
    async with httpx.AsyncClient(base_url=live_server.url, timeout=10) as http:
        user = await register(http)
        added = await http.post(
            "/api/v1/cart/add", json={"bookId": str(book), "quantity": 2}, headers=user["headers"]
        )
        assert added.status_code == 200, added.text
        placed = await http.post(
            "/api/v1/orders", headers={**user["headers"], "Idempotency-Key": uuid.uuid4().hex}
        )
        assert placed.status_code == 201, placed.text
        order_id = placed.json()["data"]["orderId"]
        init = await http.post(
            "/api/v1/payments/init", json={"orderId": order_id}, headers=user["headers"]
        )
        assert init.status_code == 200, init.text
        checkout = init.json()["data"]["redirectUrl"]
        assert checkout.startswith(live_server.url + "/sandbox/checkout/")
        page = await http.get(checkout)
        assert page.status_code == 200 and "₹798.00" in page.text
        paid = await http.post(checkout + "/pay")
        assert paid.status_code == 202, paid.text

        order = await _wait_status(http, user, order_id, "DELIVERED")
        assert order["status"] == "DELIVERED", order
        assert order["payment"]["status"] == "succeeded"  # type: ignore[index]

    assert await outbox_types(services, order_id) == [
        "order.created",
        "order.paid",
        "order.fulfilling",
        "order.shipped",
        "order.delivered",
    ]
    assert await on_hand(services, book) == 1
    mails = await smtp.wait_for(2)
    subjects = sorted(m.subject for m in mails)
    assert len(mails) == 2, subjects
    assert "confirmed" in subjects[0] and "shipped" in subjects[1]
    assert all(m.recipients == [user["user"]["email"]] for m in mails)
    assert "The Left Hand of Darkness" in next(m for m in mails if "confirmed" in m.subject).part(
        "plain"
    )
