"""Inputs the fuzzers found, kept as plain tests."""

from __future__ import annotations

import uuid

import httpx
from sqlalchemy import text

from bookbazar.services import Services
from tests.conftest import create_book, make_admin, register
from tests.foundation.helpers import assert_error
from tests.orders.conftest import add_to_cart, place

NUL = "\u0000"


async def _counts(services: Services) -> tuple[int, ...]:
    async with services.sessionmaker() as session:
        return tuple(
            [
                int((await session.execute(text(f"SELECT count(*) FROM {t}"))).scalar_one())
                for t in ("users", "books", "orders", "outbox_events")
            ]
        )


async def test_text_with_a_nul_character_is_422_not_500(
    client: httpx.AsyncClient, services: Services
) -> None:
    """PostgreSQL cannot store U+0000 in text or JSON: such input is refused as bad input
    (schemathesis found register, catalog search and admin inventory search answering 500)."""
    admin = await make_admin(client, services)
    user = await register(client)
    book = await create_book(services, stock=3)
    await add_to_cart(client, user, book, 1)
    before = await _counts(services)

    attempts = [
        await client.post(
            "/api/v1/auth/register",
            json={
                "email": f"nul-{uuid.uuid4().hex[:8]}@example.com",
                "password": "long-enough-password",
                "name": f"A{NUL}B",
            },
        ),
        await client.get("/api/v1/books", params={"q": f"tolkien{NUL}"}),
        await client.get(
            "/api/v1/admin/inventory", params={"q": f"x{NUL}"}, headers=admin["headers"]
        ),
        await client.post(
            "/api/v1/admin/books",
            json={"title": f"T{NUL}", "author": "A", "price": 100, "currency": "INR", "stock": 1},
            headers=admin["headers"],
        ),
        await place(
            client,
            user,
            body={
                "shippingAddress": {
                    "name": f"N{NUL}",
                    "line1": "1 Road",
                    "city": "Pune",
                    "postalCode": "411001",
                    "country": "IN",
                }
            },
        ),
    ]
    for resp in attempts:
        body = assert_error(resp, 422)
        assert "NUL" in body["message"], body
    assert await _counts(services) == before
    assert (await place(client, user)).status_code == 201  # the cart was left as it was
