"""End to end: the real `bookbazar api` and `bookbazar worker` processes, driven over
HTTP and Socket.IO as a client would, from an empty cart to a delivered book."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import uuid
from typing import Any

import httpx
import socketio

from bookbazar.services import Services
from tests.conftest import create_book, register
from tests.e2e.conftest import Processes

EXPECTED = ["cart:update", "order.created", "order.paid", "order.shipped", "order.delivered"]


async def test_register_to_delivered_over_http_and_socketio(
    processes: Processes, services: Services
) -> None:
    book = await create_book(services, title="A Wizard of Earthsea", stock=4, price=29_900)
    received: list[tuple[str, Any]] = []
    arrived = asyncio.Event()
    sio = socketio.AsyncClient(reconnection=False)

    async def on_any(event: str, data: Any = None) -> None:
        received.append((event, data))
        arrived.set()

    sio.on("*", on_any)

    async def wait_for(event: str, timeout: float = 30.0) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not any(name == event for name, _ in received):
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise AssertionError(f"no {event}: {[n for n, _ in received]}\n{processes.tail()}")
            arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(arrived.wait(), remaining)

    async with httpx.AsyncClient(base_url=processes.url, timeout=10) as http:
        user = await register(http)
        headers = user["headers"]
        await sio.connect(
            processes.url,
            auth={"token": user["accessToken"]},
            transports=["websocket"],
            wait_timeout=10,
        )
        try:
            added = await http.post(
                "/api/v1/cart/add", json={"bookId": str(book), "quantity": 1}, headers=headers
            )
            assert added.status_code == 200, added.text
            await wait_for("cart:update")
            placed = await http.post(
                "/api/v1/orders", headers={**headers, "Idempotency-Key": uuid.uuid4().hex}
            )
            assert placed.status_code == 201, placed.text
            order_id = placed.json()["data"]["orderId"]
            await wait_for("order.created")
            init = await http.post(
                "/api/v1/payments/init", json={"orderId": order_id}, headers=headers
            )
            assert init.status_code == 200, init.text
            checkout = init.json()["data"]["redirectUrl"]
            assert checkout.startswith(processes.url)
            assert (await http.get(checkout)).status_code == 200
            assert (await http.post(checkout + "/pay")).status_code == 202
            await wait_for("order.delivered")
            order = await http.get(f"/api/v1/orders/{order_id}", headers=headers)
            assert order.json()["data"]["status"] == "DELIVERED"
        finally:
            await sio.disconnect()

    names = [name for name, _ in received]
    firsts = [names.index(event) for event in EXPECTED]
    assert firsts == sorted(firsts), names
    for name, data in received:
        if name.startswith("order."):
            assert data["orderId"] == order_id and data["userId"] == user["user"]["id"]
    shipped = next(data for name, data in received if name == "order.shipped")
    assert shipped["data"]["trackingNumber"].startswith("SBX")

    # Both processes stop cleanly on SIGTERM.
    for proc in (processes.api, processes.worker):
        proc.send_signal(signal.SIGTERM)
    api_code, worker_code = [
        await asyncio.to_thread(p.wait, 30) for p in (processes.api, processes.worker)
    ]
    # uvicorn shuts down gracefully, then re-raises the signal it caught (exit -SIGTERM).
    assert api_code in (0, -signal.SIGTERM), processes.tail()
    assert worker_code == 0, processes.tail()
    assert "api_stopped" in (processes.logs / "api.log").read_text(), processes.tail()
    assert "worker_stopped" in (processes.logs / "worker.log").read_text(), processes.tail()
