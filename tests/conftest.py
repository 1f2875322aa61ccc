"""Shared fixtures: real PostgreSQL and Redis (embedded, or TEST_DATABASE_URL/TEST_REDIS_URL),
a clean slate per test, the app over ASGI or a live uvicorn server, and factories."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from bookbazar.app import BookBazarApp, create_app
from bookbazar.config import Settings
from bookbazar.db import create_engine
from bookbazar.embedded import EmbeddedServices
from bookbazar.logging import configure_logging
from bookbazar.migrate import upgrade
from bookbazar.services import Services

REPO_ROOT = Path(__file__).resolve().parent.parent
TABLES = (
    "stock_audits, restocks, notifications, processed_webhook_events, outbox_events, "
    "idempotency_records, "
    "shipments, payments, order_items, orders, cart_items, carts, books, users"
)


@dataclass(frozen=True)
class Infra:
    database_url: str
    redis_url: str
    embedded: EmbeddedServices | None


@pytest.fixture(scope="session")
def infra() -> Iterator[Infra]:
    configure_logging(json=False, level="WARNING")
    db_url = os.environ.get("TEST_DATABASE_URL")
    redis_url = os.environ.get("TEST_REDIS_URL")
    embedded: EmbeddedServices | None = None
    base: Path | None = None
    if not db_url or not redis_url:
        # Outside pytest's temp folder: pytest resets it to 0700 when another session
        # starts, and PostgreSQL's own system user (we run as root here) must reach it.
        base = Path(tempfile.mkdtemp(prefix="bb-embedded-"))
        embedded = EmbeddedServices(base)
        embedded.start()
        db_url = db_url or embedded.postgres.create_database("bookbazar_test")
        redis_url = redis_url or embedded.redis.url
    upgrade(db_url)
    try:
        yield Infra(db_url, redis_url, embedded)
    finally:
        if embedded is not None:
            embedded.stop()
        if base is not None:
            shutil.rmtree(base, ignore_errors=True)


def process_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment of a `bookbazar` process on these settings' PostgreSQL and Redis
    (the test runner's own TEST_/PYTEST_ variables left out), plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TEST_", "PYTEST_"))}
    env.update(
        {
            "BOOKBAZAR_ENV": "test",
            "DATABASE_URL": settings.database_url or "",
            "REDIS_URL": settings.redis_url or "",
            "REDIS_CLUSTER": "true" if settings.redis_cluster else "false",
            "JWT_SECRET": settings.secret,
            "SANDBOX_WEBHOOK_SECRET": settings.sandbox_webhook_secret or "",
        }
    )
    env.update(extra)
    return env


def make_settings(infra: Infra, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "environment": "test",
        "database_url": infra.database_url,
        "redis_url": infra.redis_url,
        "jwt_secret": "test-secret-" + "x" * 40,
        "sandbox_webhook_secret": "whsec_test_secret",
        "login_max_failures": 5,
        "fulfillment_ship_delay_seconds": 0,
        "fulfillment_deliver_delay_seconds": 0,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@pytest.fixture
def settings(infra: Infra, clean_state: None) -> Settings:
    return make_settings(infra)


@pytest.fixture(scope="session")
async def engine(infra: Infra) -> AsyncIterator[AsyncEngine]:
    eng = create_engine(infra.database_url, pool_size=2)
    yield eng
    await eng.dispose()


@pytest.fixture(scope="session")
async def raw_redis(infra: Infra) -> AsyncIterator[Redis]:
    client = Redis.from_url(infra.redis_url, decode_responses=True)
    yield client
    await client.aclose()


@pytest.fixture
async def clean_state(engine: AsyncEngine, raw_redis: Redis) -> None:
    """Empty tables and an empty Redis: every test that uses the services starts here."""
    async with engine.begin() as conn:
        await conn.execute(text(f"TRUNCATE {TABLES} CASCADE"))
    await raw_redis.flushdb()


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[BookBazarApp]:
    application = create_app(settings)
    async with application.api.router.lifespan_context(application.api):
        yield application


@pytest.fixture
async def services(app: BookBazarApp) -> Services:
    svc: Services = app.api.state.services
    return svc


@pytest.fixture
async def client(app: BookBazarApp) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        yield c


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class LiveServer:
    url: str
    app: BookBazarApp
    server: uvicorn.Server

    @property
    def services(self) -> Services:
        services: Services = self.app.api.state.services
        return services


@contextlib.asynccontextmanager
async def serve_app(settings: Settings) -> AsyncIterator[LiveServer]:
    """The app with these settings on a real uvicorn server on a loopback port."""
    port = free_port()
    settings.port = port
    settings.public_url = f"http://127.0.0.1:{port}"
    application = create_app(settings)
    config = uvicorn.Config(
        application, host="127.0.0.1", port=port, log_config=None, access_log=False, lifespan="on"
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    for _ in range(300):
        if server.started:
            break
        await asyncio.sleep(0.02)
    assert server.started, "uvicorn did not start"
    try:
        yield LiveServer(f"http://127.0.0.1:{port}", application, server)
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError, TimeoutError):
            await asyncio.wait_for(task, timeout=15)


@pytest.fixture
async def live_server(settings: Settings) -> AsyncIterator[LiveServer]:
    """The app served by a real uvicorn on a loopback port (for Socket.IO clients)."""
    async with serve_app(settings) as served:
        yield served


# ---------------------------------------------------------------- factories


async def register(
    client: httpx.AsyncClient,
    *,
    email: str | None = None,
    password: str = "correct-horse-battery",
    name: str = "Test Reader",
) -> dict[str, Any]:
    email = email or f"reader-{uuid.uuid4().hex[:10]}@example.com"
    resp = await client.post(
        "/api/v1/auth/register", json={"email": email, "password": password, "name": name}
    )
    assert resp.status_code == 201, resp.text
    data: dict[str, Any] = resp.json()["data"]
    data["password"] = password
    data["headers"] = {"Authorization": f"Bearer {data['accessToken']}"}
    return data


async def make_admin(client: httpx.AsyncClient, services: Services) -> dict[str, Any]:
    user = await register(client, name="Admin")
    async with services.sessionmaker() as session, session.begin():
        await session.execute(
            text("UPDATE users SET role = 'admin' WHERE id = :id"), {"id": user["user"]["id"]}
        )
    resp = await client.post(
        "/api/v1/auth/login", json={"email": user["user"]["email"], "password": user["password"]}
    )
    assert resp.status_code == 200, resp.text
    token = resp.json()["data"]["accessToken"]
    user["accessToken"] = token
    user["headers"] = {"Authorization": f"Bearer {token}"}
    return user


async def create_book(
    services: Services,
    *,
    title: str | None = None,
    author: str = "Test Author",
    price: int = 49_900,
    currency: str = "INR",
    stock: int = 10,
) -> uuid.UUID:
    """Insert a book directly (tests of other domains need no admin round trip)."""
    book_id = uuid.uuid4()
    async with services.sessionmaker() as session, session.begin():
        await session.execute(
            text(
                "INSERT INTO books (id, title, author, price, currency, stock) "
                "VALUES (:id, :title, :author, :price, :currency, :stock)"
            ),
            {
                "id": book_id,
                "title": title or f"Book {book_id.hex[:8]}",
                "author": author,
                "price": price,
                "currency": currency,
                "stock": stock,
            },
        )
    return book_id
