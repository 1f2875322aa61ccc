"""Two API processes behind HAProxy and two workers (`bookbazar up --api 2 --workers 2`),
driven through the balancer: the stock race, live events while an API process is
SIGKILLed, a worker SIGKILLed mid-traffic, and periodic work once per deployment."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx
import socketio
from sqlalchemy import text

from bookbazar.services import Services
from tests.conftest import create_book
from tests.faults.harness import assert_nothing_stuck, assert_stock_exact
from tests.orders.conftest import add_to_cart, available, held_in_db, place, quick_users
from tests.scale.conftest import Fleet

ORDER_EVENTS = [
    "order.created",
    "order.paid",
    "order.fulfilling",
    "order.shipped",
    "order.delivered",
]


async def test_three_hundred_buyers_for_a_hundred_copies_through_the_balancer(
    fleet: Fleet, services: Services
) -> None:
    book = await create_book(services, title="The Dispossessed", stock=100)
    buyers = await quick_users(services, 300)
    limits = httpx.Limits(max_connections=64)
    async with httpx.AsyncClient(base_url=fleet.url, timeout=60, limits=limits) as http:
        added = await asyncio.gather(*(add_to_cart(http, u, book, 1) for u in buyers))
        assert {r.status_code for r in added} == {200}
        results = await asyncio.gather(*(place(http, u) for u in buyers))

    statuses = Counter(r.status_code for r in results)
    assert statuses == {201: 100, 409: 200}, statuses
    # Both API processes took part.
    served = Counter(r.headers["x-served-by"] for r in results)
    assert set(served) == {"api1", "api2"}, served
    assert await available(services, book) == 0
    assert await held_in_db(services, book) == 100
    report = await services.inventory.reconcile([book])
    assert report.counters[book] == (0, 0)  # counter and database agree exactly


@dataclass
class Tab:
    """A buyer's page: a Socket.IO client that reconnects by itself and, once back, asks
    for what it missed (`resume` from the last event id it saw), as common.js does."""

    transports: list[str]
    sio: socketio.AsyncClient = field(
        default_factory=lambda: socketio.AsyncClient(
            reconnection=True, reconnection_delay=0.2, reconnection_delay_max=1
        )
    )
    received: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    connects: int = 0
    disconnects: int = 0
    resumed: int = 0
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def __post_init__(self) -> None:
        async def on_any(event: str, data: Any = None, *_: Any) -> None:
            if isinstance(data, dict) and "id" in data:
                self.received.append((event, data))

        async def resume() -> None:
            last = self.received[-1][1]["id"] if self.received else None
            ack = await self.sio.call("resume", {"lastEventId": last}, timeout=10)
            assert ack["success"], ack
            self.resumed += 1

        async def on_connect() -> None:
            self.connects += 1
            if self.connects > 1:
                # Not inside the handler: its acknowledgement arrives on this connection.
                task = asyncio.ensure_future(resume())
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

        async def on_disconnect(*_: Any) -> None:
            self.disconnects += 1

        self.sio.on("*", on_any)
        self.sio.on("connect", on_connect)
        self.sio.on("disconnect", on_disconnect)

    def seen(self, order_id: str) -> list[str]:
        """The order's event types, each event once (deduplicated by id, as a page does)."""
        out, ids = [], set()
        for name, data in self.received:
            if data.get("orderId") == order_id and data["id"] not in ids:
                ids.add(data["id"])
                out.append(name)
        return out

    def copies(self, order_id: str) -> Counter[str]:
        return Counter(d["id"] for _, d in self.received if d.get("orderId") == order_id)


async def _until(check: Any, what: str, fleet: Fleet, timeout: float = 40) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}\n{fleet.tail()}")
        await asyncio.sleep(0.05)


async def test_each_order_event_reaches_the_buyer_once_while_an_api_process_is_killed(
    fleet: Fleet, services: Services
) -> None:
    book = await create_book(services, title="The Left Hand of Darkness", stock=3)
    [buyer] = await quick_users(services, 1)
    token = buyer["accessToken"]
    # Four tabs, connected one after the other: the balancer's round robin puts two on
    # each API process (long-polling first then upgraded, and WebSocket only).
    tabs = [Tab(["polling", "websocket"]), Tab(["websocket"])]
    tabs += [Tab(["polling", "websocket"]), Tab(["websocket"])]
    for tab in tabs:
        await tab.sio.connect(
            fleet.url, auth={"token": token}, transports=tab.transports, wait_timeout=10
        )
    try:
        async with httpx.AsyncClient(base_url=fleet.url, timeout=30) as http:
            headers = buyer["headers"]
            assert (await add_to_cart(http, buyer, book, 1)).status_code == 200
            placed = await place(http, buyer)
            assert placed.status_code == 201, placed.text
            order_id = placed.json()["data"]["orderId"]
            init = await http.post(
                "/api/v1/payments/init", json={"orderId": order_id}, headers=headers
            )
            assert init.status_code == 200, init.text
            checkout = init.json()["data"]["redirectUrl"]
            assert (await http.post(checkout + "/pay")).status_code == 202
            await _until(
                lambda: all("order.paid" in t.seen(order_id) for t in tabs), "order.paid", fleet
            )
            # Mid-journey (shipping is a second away): one API process dies.
            victim = min(fleet.api_by_port().items())[1]
            victim.kill()
            await _until(
                lambda: all("order.delivered" in t.seen(order_id) for t in tabs),
                "order.delivered on every tab",
                fleet,
            )
            await _until(
                lambda: all(t.resumed == t.connects - 1 for t in tabs), "every tab back", fleet
            )
            await asyncio.sleep(0.5)  # room for a duplicate to show up
            cut_off = [t for t in tabs if t.disconnects]
            order = await http.get(f"/api/v1/orders/{order_id}", headers=headers)
            assert order.json()["data"]["status"] == "DELIVERED"
    finally:
        for tab in tabs:
            with contextlib.suppress(Exception):
                await tab.sio.disconnect()

    assert cut_off, "no tab was on the killed API process"
    assert all(t.resumed >= 1 for t in cut_off)
    for tab in tabs:
        assert tab.seen(order_id) == ORDER_EVENTS, (tab.transports, tab.received)
        if tab not in cut_off:
            # Never cut off: each event arrived exactly once on the wire (no instance
            # re-broadcasts what another one fanned out).
            assert set(tab.copies(order_id).values()) == {1}, tab.received


async def test_a_worker_killed_mid_traffic_loses_nothing_and_periodic_work_runs_once(
    fleet: Fleet, services: Services
) -> None:
    books = [await create_book(services, stock=20, price=15_000) for _ in range(2)]
    buyers = await quick_users(services, 16)
    async with httpx.AsyncClient(base_url=fleet.url, timeout=30) as http:
        orders: list[tuple[dict[str, Any], str]] = []
        for n, buyer in enumerate(buyers):
            assert (await add_to_cart(http, buyer, books[n % 2], 1)).status_code == 200
            placed = await place(http, buyer)
            assert placed.status_code == 201, placed.text
            orders.append((buyer, placed.json()["data"]["orderId"]))
        # Every order is paid through the sandbox: its webhook deliveries are worker jobs,
        # then fulfilment's. One worker dies while they run.
        for buyer, order_id in orders:
            init = await http.post(
                "/api/v1/payments/init", json={"orderId": order_id}, headers=buyer["headers"]
            )
            assert init.status_code == 200, init.text
            assert (await http.post(init.json()["data"]["redirectUrl"] + "/pay")).status_code == 202
        workers = fleet.processes("worker")
        assert len(workers) == 2, workers
        next(iter(workers.values())).kill()

        async def statuses() -> Counter[str]:
            async with services.sessionmaker() as session:
                rows = await session.execute(
                    text("SELECT status FROM orders WHERE id = ANY(:ids)"),
                    {"ids": [uuid.UUID(o) for _, o in orders]},
                )
                return Counter(status for (status,) in rows)

        loop = asyncio.get_running_loop()
        deadline = loop.time() + 60
        while (now := await statuses()) != {"DELIVERED": len(orders)}:
            assert loop.time() < deadline, f"{now}\n{fleet.tail()}"
            await asyncio.sleep(0.2)
    assert "exited (-9); starting it again" in fleet.log.read_text(errors="replace")
    await assert_stock_exact(services, books)
    await assert_nothing_stuck(services)

    # The stock audit is a job scheduler: every AUDIT_INTERVAL_SECONDS (2 s here) one run
    # for the deployment, however many workers there are (two, and a restarted one).
    async def audits() -> list[Any]:
        async with services.sessionmaker() as session:
            query = text(
                "SELECT started_at FROM stock_audits WHERE trigger = 'scheduled' "
                "ORDER BY started_at"
            )
            return list((await session.execute(query)).scalars())

    deadline = loop.time() + 30
    while len(started := await audits()) < 5:
        assert loop.time() < deadline, started
        await asyncio.sleep(0.5)
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(started)]
    assert min(gaps) > 1.0, gaps  # never two runs of one period
