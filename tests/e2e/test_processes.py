"""End to end: the real `bookbazar api` and `bookbazar worker` processes, driven over
HTTP and Socket.IO as a client would, from an empty cart to a delivered book."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import socketio

from bookbazar.config import Settings
from bookbazar.services import Services
from tests.conftest import create_book, free_port, register

EXPECTED = ["cart:update", "order.created", "order.paid", "order.shipped", "order.delivered"]


@dataclass
class Processes:
    url: str
    api: subprocess.Popen[bytes]
    worker: subprocess.Popen[bytes]
    logs: Path

    def tail(self) -> str:
        return "\n".join(
            f"--- {log.name}\n{log.read_text(errors='replace')[-3000:]}"
            for log in sorted(self.logs.glob("*.log"))
        )


def _env(settings: Settings, port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TEST_", "PYTEST_"))}
    env.update(
        {
            "BOOKBAZAR_ENV": "test",
            "DATABASE_URL": settings.database_url or "",
            "REDIS_URL": settings.redis_url or "",
            "JWT_SECRET": settings.secret,
            "SANDBOX_WEBHOOK_SECRET": settings.sandbox_webhook_secret or "",
            "PORT": str(port),
            "PUBLIC_URL": f"http://127.0.0.1:{port}",
            "FULFILLMENT_SHIP_DELAY_SECONDS": "1",
            "FULFILLMENT_DELIVER_DELAY_SECONDS": "1",
        }
    )
    return env


@contextlib.contextmanager
def _spawn(args: list[str], env: dict[str, str], cwd: Path, log: Path) -> Iterator[Any]:
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "bookbazar", *args],
            env=env,
            cwd=cwd,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        yield proc
    finally:
        if proc.poll() is None:  # only if the test failed before stopping it
            proc.kill()
            proc.wait(timeout=10)


@pytest.fixture
async def processes(settings: Settings, tmp_path: Path) -> AsyncIterator[Processes]:
    port = free_port()
    env = _env(settings, port)
    with (
        _spawn(
            ["api", "--host", "127.0.0.1", "--port", str(port)], env, tmp_path, tmp_path / "api.log"
        ) as api,
        _spawn(["worker", "--concurrency", "4"], env, tmp_path, tmp_path / "worker.log") as worker,
    ):
        running = Processes(f"http://127.0.0.1:{port}", api, worker, tmp_path)
        async with httpx.AsyncClient(timeout=1) as http:
            for _ in range(300):
                assert api.poll() is None, running.tail()
                with contextlib.suppress(httpx.HTTPError):
                    if (await http.get(f"{running.url}/readyz")).status_code == 200:
                        break
                await asyncio.sleep(0.05)
            else:
                raise AssertionError("the API did not become ready\n" + running.tail())
        assert worker.poll() is None, running.tail()
        yield running


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
