"""Redis restarted empty mid-traffic, PostgreSQL stopped and started again: the service
answers 503 with a message while a dependency is down (never a 500, never a hang),
and recovers on its own when it is back (DESIGN.md §7.6)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis
from sqlalchemy import text

from bookbazar import embedded
from bookbazar.cart.service import cart_key
from bookbazar.config import Settings
from bookbazar.embedded import EmbeddedPostgres, EmbeddedRedis
from bookbazar.migrate import upgrade
from bookbazar.services import Services
from tests.conftest import Infra, create_book, make_settings, register, serve_app
from tests.faults.harness import Launcher, assert_stock_exact, eventually
from tests.orders.conftest import add_to_cart, place

# While a dependency is down a request must fail fast (it is a 503, not a wait).
FAIL_FAST_SECONDS = 5.0


def assert_unavailable(resp: httpx.Response, elapsed: float) -> None:
    assert resp.status_code == 503, resp.text
    body = resp.json()
    assert body["success"] is False and body["statusCode"] == 503
    assert body["message"]
    assert elapsed < FAIL_FAST_SECONDS, f"took {elapsed:.1f} s"


async def timed(call: Any) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    resp = await call
    return resp, time.monotonic() - started


# ---------------------------------------------------------------- Redis


@pytest.fixture
async def private_redis(tmp_path: Path) -> AsyncIterator[EmbeddedRedis]:
    redis = EmbeddedRedis(tmp_path / "redis")
    redis.start()
    try:
        yield redis
    finally:
        redis.stop()


def restart_redis_on_same_port(redis: EmbeddedRedis, monkeypatch: pytest.MonkeyPatch) -> None:
    """Stop the server (it held everything in memory) and start an empty one on the same
    port, so every client reconnects to the same URL."""
    port = redis.port
    redis.stop()
    with monkeypatch.context() as patch:
        patch.setattr(embedded, "free_port", lambda: port)
        redis.start(attempts=20)
    assert redis.port == port


class Traffic:
    """Shoppers adding to carts, reading them and placing orders, until stopped; every
    answer's status is counted."""

    def __init__(self, url: str, users: list[dict[str, Any]], books: list[uuid.UUID]) -> None:
        self.url = url
        self.users = users
        self.books = books
        self.statuses: Counter[int] = Counter()
        self.after_restart: Counter[int] = Counter()
        self.restarted = False
        self.stop = asyncio.Event()

    async def _shopper(self, user: dict[str, Any], n: int) -> None:
        async with httpx.AsyncClient(base_url=self.url, timeout=15) as http:
            i = 0
            while not self.stop.is_set():
                book = self.books[(n + i) % len(self.books)]
                try:
                    calls = [
                        http.post(
                            "/api/v1/cart/add",
                            json={"bookId": str(book), "quantity": 1},
                            headers=user["headers"],
                        ),
                        http.get("/api/v1/cart", headers=user["headers"]),
                    ]
                    if i % 5 == 4:
                        calls.append(
                            http.post(
                                "/api/v1/orders",
                                headers={**user["headers"], "Idempotency-Key": uuid.uuid4().hex},
                            )
                        )
                    for call in calls:
                        status = (await call).status_code
                        self.statuses[status] += 1
                        if self.restarted:
                            self.after_restart[status] += 1
                except httpx.TransportError as exc:  # a hang would show up here
                    raise AssertionError(f"request failed at the transport: {exc!r}") from exc
                i += 1
                await asyncio.sleep(0.02)

    async def run(self) -> None:
        await asyncio.gather(*(self._shopper(u, n) for n, u in enumerate(self.users)))


async def _stored_version(services: Services, user: dict[str, Any]) -> int:
    async with services.sessionmaker() as session:
        value = (
            await session.execute(
                text("SELECT version FROM carts WHERE user_id = :u"),
                {"u": uuid.UUID(user["user"]["id"])},
            )
        ).scalar_one_or_none()
    return int(value or 0)


async def test_redis_restarted_empty_mid_traffic(
    infra: Infra,
    settings: Settings,
    tmp_path: Path,
    private_redis: EmbeddedRedis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Carts come back from PostgreSQL, `reconcile` restores every counter and the
    reservations of orders awaiting payment, the worker processes new jobs, and no
    request got a 500 (those that hit the gap got 503)."""
    private = make_settings(infra, redis_url=private_redis.url)
    launcher = Launcher(private, tmp_path)
    try:
        async with serve_app(private) as api:
            services = api.services
            books = [await create_book(services, stock=50) for _ in range(3)]
            await launcher.worker()
            async with httpx.AsyncClient(base_url=api.url, timeout=15) as http:
                keepers = [await register(http) for _ in range(2)]
                shoppers = [await register(http) for _ in range(3)]
                buyers = [await register(http) for _ in range(2)]
                for n, user in enumerate(keepers):
                    await add_to_cart(http, user, books[n], 2)
                    await add_to_cart(http, user, books[2], 1)
                pending = []
                for user in buyers:
                    await add_to_cart(http, user, books[0], 3)
                    placed = await place(http, user)
                    assert placed.status_code == 201, placed.text
                    pending.append(placed.json()["data"]["orderId"])
                carts = {
                    u["user"]["id"]: (await http.get("/api/v1/cart", headers=u["headers"])).json()
                    for u in keepers
                }

                async def persisted() -> bool:
                    versions = [await _stored_version(services, u) for u in keepers]
                    return versions == [carts[u["user"]["id"]]["data"]["version"] for u in keepers]

                await eventually(persisted, "the write-behind of the carts", launcher)

                traffic = Traffic(api.url, shoppers, books)
                running = asyncio.create_task(traffic.run())
                try:
                    await asyncio.sleep(0.5)
                    # In a thread: the server keeps answering while Redis is away.
                    await asyncio.to_thread(restart_redis_on_same_port, private_redis, monkeypatch)
                    traffic.restarted = True
                    fresh = Redis.from_url(private_redis.url)
                    lost = [cart_key(u["user"]["id"]) for u in keepers]
                    assert await fresh.exists(*lost) == 0  # the carts are gone from Redis
                    await fresh.aclose()
                    await asyncio.sleep(1.5)  # traffic goes on against the empty server
                finally:
                    traffic.stop.set()
                    await running
                assert traffic.statuses[500] == 0, traffic.statuses
                # 400: an order whose cart add hit the gap (empty cart); 409: stock.
                assert set(traffic.statuses) <= {200, 201, 400, 409, 503}, traffic.statuses
                assert traffic.after_restart[200] > 0, traffic.after_restart  # served again

                # Carts rehydrate from PostgreSQL on the next read.
                for user in keepers:
                    again = await http.get("/api/v1/cart", headers=user["headers"])
                    assert again.json() == carts[user["user"]["id"]]

                # Reconcile restores the counters and the reservations.
                await services.inventory.reconcile()
                assert {str(h.order_id) for h in await services.inventory.holds()} >= set(pending)
                await assert_stock_exact(services, books)

                # The queues work again: a new change is written behind by the worker.
                user = keepers[0]
                changed = await add_to_cart(http, user, books[1], 4)
                version = changed.json()["data"]["version"]

                async def written() -> bool:
                    return await _stored_version(services, user) == version

                # The worker re-asserts its job schedulers (lost with Redis) within 15 s.
                await eventually(written, "the write-behind after the restart", launcher, 40)
    finally:
        await launcher.close()


# ---------------------------------------------------------------- PostgreSQL


@pytest.fixture
async def private_postgres(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Any]:
    """A PostgreSQL of this test's own, outside pytest's temp root (the server's system
    user must traverse the path; see tests/conftest.py)."""
    import shutil
    import tempfile

    base = Path(tempfile.mkdtemp(prefix="bb-pg-restart-"))
    pg = EmbeddedPostgres(base / "pg")
    await asyncio.to_thread(pg.start)
    try:
        url = pg.create_database("bookbazar_restart")
        await asyncio.to_thread(upgrade, url)
        yield pg, url
    finally:
        await asyncio.to_thread(pg.stop)
        shutil.rmtree(base, ignore_errors=True)


async def test_postgres_restart_gives_503_then_recovers(
    infra: Infra, settings: Settings, private_postgres: tuple[EmbeddedPostgres, str]
) -> None:
    pg, url = private_postgres
    private = make_settings(infra, database_url=url)
    async with serve_app(private) as api, httpx.AsyncClient(base_url=api.url, timeout=30) as http:
        services = api.services
        book = await create_book(services, stock=5)
        user = await register(http)
        await add_to_cart(http, user, book, 1)
        assert (await http.get("/api/v1/books")).status_code == 200

        await asyncio.to_thread(pg.stop)
        h = user["headers"]
        # These need PostgreSQL: 503 with the envelope, fast.
        needs_db = {
            "books": lambda: http.get("/api/v1/books"),
            "orders": lambda: http.get("/api/v1/orders", headers=h),
            "place": lambda: http.post(
                "/api/v1/orders", headers={**h, "Idempotency-Key": uuid.uuid4().hex}
            ),
            "login": lambda: http.post(
                "/api/v1/auth/login",
                json={"email": user["user"]["email"], "password": user["password"]},
            ),
            "readyz": lambda: http.get("/readyz"),
        }
        # These may be answered from Redis (cart, cached book facts): 2xx, or a clean 503.
        may_not = {
            "book": lambda: http.get(f"/api/v1/books/{book}"),
            "cart": lambda: http.get("/api/v1/cart", headers=h),
            "add": lambda: http.post(
                "/api/v1/cart/add", json={"bookId": str(book), "quantity": 2}, headers=h
            ),
        }
        for _ in range(2):  # pooled connections are dead the first time, absent the second
            for name, call in (needs_db | may_not).items():
                resp, elapsed = await timed(call())
                try:
                    if name in may_not and resp.status_code < 300:
                        assert elapsed < FAIL_FAST_SECONDS, f"took {elapsed:.1f} s"
                    else:
                        assert_unavailable(resp, elapsed)
                except AssertionError as exc:
                    raise AssertionError(f"{name}: {exc}") from None
        assert (await http.get("/healthz")).status_code == 200  # the process is alive

        await asyncio.to_thread(pg.start)
        assert pg.url.replace("/postgres?", "/bookbazar_restart?", 1) == url  # same server

        async def back() -> bool:
            return (await http.get("/readyz")).status_code == 200

        deadline = time.monotonic() + 15
        while not await back():
            assert time.monotonic() < deadline, "the API did not recover"
            await asyncio.sleep(0.2)
        assert (await http.get("/api/v1/books")).status_code == 200
        assert (await http.get("/api/v1/cart", headers=h)).json()["data"]["items"]
        placed = await place(http, user)
        assert placed.status_code == 201, placed.text
        await assert_stock_exact(services, [book])
