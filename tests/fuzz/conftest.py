from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.asyncio import Redis
from schemathesis.python import asgi
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from bookbazar.app import create_app, openapi_document
from bookbazar.auth.tokens import hash_password, issue_token
from tests.conftest import TABLES, Infra, make_settings
from tests.fuzz.harness import APP, BASE, FuzzData, client


async def _user(engine: AsyncEngine, role: str, secret: str) -> str:
    user_id = uuid.uuid4()
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO users (id, email, name, password_hash, role) "
                "VALUES (:id, :email, 'Fuzz', :hash, :role)"
            ),
            {
                "id": user_id,
                "email": f"fuzz-{user_id.hex}@example.com",
                "hash": hash_password("fuzz-password-123"),
                "role": role,
            },
        )
    return issue_token(secret, user_id, role, 3600)


@pytest.fixture(scope="module")
async def fuzz_data(infra: Infra, engine: AsyncEngine, raw_redis: Redis) -> FuzzData:
    """A clean database with a few books, a customer and an admin."""
    async with engine.begin() as conn:
        await conn.execute(text(f"TRUNCATE {TABLES} CASCADE"))
    await raw_redis.flushdb()
    secret = make_settings(infra).secret
    customer, admin = await _user(engine, "customer", secret), await _user(engine, "admin", secret)
    books = [str(uuid.uuid4()) for _ in range(3)]
    async with engine.begin() as conn:
        for n, book in enumerate(books):
            await conn.execute(
                text(
                    "INSERT INTO books (id, title, author, price, currency, stock) "
                    "VALUES (:id, :t, 'Fuzz Author', 1500, 'INR', 50)"
                ),
                {"id": book, "t": f"Fuzz Book {n}"},
            )
    return FuzzData(customer, admin, books)


@pytest.fixture(scope="module")
async def app_under_test(infra: Infra, fuzz_data: FuzzData) -> AsyncIterator[FuzzData]:
    """The app bound and started (lifespan), checked to serve the spec being fuzzed, with
    an order of the customer's placed through it; shut down after the module."""
    APP.target = create_app(make_settings(infra, login_max_failures=1000)).api
    try:
        served = await asyncio.to_thread(_served_spec)
        assert served == openapi_document(), "the spec served differs from the one fuzzed"
        await asyncio.to_thread(_place_order, fuzz_data)
        yield fuzz_data
    finally:
        await asyncio.to_thread(asgi.shutdown_lifespans)
        APP.target = None


def _served_spec() -> Any:
    with client() as http:
        return http.get(f"{BASE}/openapi.json").json()


def _place_order(data: FuzzData) -> None:
    with client() as http:
        for book in data.books[:2]:
            added = http.post(
                f"{BASE}/api/v1/cart/add",
                json={"bookId": book, "quantity": 2},
                headers=data.customer_headers,
            )
            assert added.status_code == 200, added.text
        placed = http.post(
            f"{BASE}/api/v1/orders", headers={**data.customer_headers, "Idempotency-Key": "fuzz"}
        )
        assert placed.status_code == 201, placed.text
    data.orders.append(placed.json()["data"]["orderId"])
