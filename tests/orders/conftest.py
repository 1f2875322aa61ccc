"""Helpers for the order tests: fill a cart over HTTP, place orders, inspect stock."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
from sqlalchemy import text

from bookbazar.inventory.service import Hold
from bookbazar.services import Services


async def add_to_cart(
    client: httpx.AsyncClient, user: dict[str, Any], book_id: uuid.UUID, quantity: int
) -> httpx.Response:
    resp = await client.post(
        "/api/v1/cart/add",
        json={"bookId": str(book_id), "quantity": quantity},
        headers=user["headers"],
    )
    assert resp.status_code == 200, resp.text
    return resp


async def place(
    client: httpx.AsyncClient,
    user: dict[str, Any],
    key: str | None = None,
    body: dict[str, Any] | None = None,
) -> httpx.Response:
    headers = dict(user["headers"])
    headers["Idempotency-Key"] = key or uuid.uuid4().hex
    return await client.post("/api/v1/orders", json=body, headers=headers)


async def available(services: Services, book_id: uuid.UUID) -> int:
    return (await services.inventory.available([book_id]))[book_id]


async def held_in_db(services: Services, book_id: uuid.UUID) -> int:
    """Units of this book in PAYMENT_PENDING orders (PostgreSQL's view of 'reserved')."""
    async with services.sessionmaker() as session:
        value = (
            await session.execute(
                text(
                    "SELECT COALESCE(SUM(oi.quantity), 0) FROM order_items oi "
                    "JOIN orders o ON o.id = oi.order_id "
                    "WHERE o.status = 'PAYMENT_PENDING' AND oi.book_id = :b"
                ),
                {"b": book_id},
            )
        ).scalar_one()
    return int(value)


async def on_hand(services: Services, book_id: uuid.UUID) -> int:
    async with services.sessionmaker() as session:
        value = (
            await session.execute(text("SELECT stock FROM books WHERE id = :b"), {"b": book_id})
        ).scalar_one()
    return int(value)


async def order_status(services: Services, order_id: str | uuid.UUID) -> str:
    async with services.sessionmaker() as session:
        value = (
            await session.execute(
                text("SELECT status FROM orders WHERE id = :id"), {"id": uuid.UUID(str(order_id))}
            )
        ).scalar_one()
    return str(value)


async def outbox_types(services: Services, order_id: str | uuid.UUID) -> list[str]:
    async with services.sessionmaker() as session:
        rows = await session.execute(
            text("SELECT type FROM outbox_events WHERE order_id = :id ORDER BY created_at"),
            {"id": uuid.UUID(str(order_id))},
        )
        return [r.type for r in rows]


async def force_deadline_passed(services: Services, order_id: str | uuid.UUID) -> None:
    async with services.sessionmaker() as session, session.begin():
        await session.execute(
            text("UPDATE orders SET expires_at = now() - interval '1 second' WHERE id = :id"),
            {"id": uuid.UUID(str(order_id))},
        )


async def hold_of(services: Services, order_id: str | uuid.UUID) -> Hold:
    """The hold the order owns, as PostgreSQL names it (its token)."""
    async with services.sessionmaker() as session:
        token = (
            await session.execute(
                text("SELECT hold_token FROM orders WHERE id = :id"),
                {"id": uuid.UUID(str(order_id))},
            )
        ).scalar_one()
    return Hold(uuid.UUID(str(order_id)), str(token))


async def reservation_exists(services: Services, order_id: str | uuid.UUID) -> bool:
    """Whether the order holds units under any token."""
    return bool(await services.inventory.holds_of(uuid.UUID(str(order_id))))


async def quick_users(services: Services, count: int) -> list[dict[str, Any]]:
    """Many customers at once, inserted directly (no argon2 per user), with valid tokens."""
    from bookbazar.auth.tokens import hash_password, issue_token

    password_hash = hash_password("not-used-for-login")
    users = []
    async with services.sessionmaker() as session, session.begin():
        for _ in range(count):
            user_id = uuid.uuid4()
            await session.execute(
                text(
                    "INSERT INTO users (id, email, name, password_hash, role) "
                    "VALUES (:id, :email, 'Buyer', :hash, 'customer')"
                ),
                {"id": user_id, "email": f"buyer-{user_id.hex}@example.com", "hash": password_hash},
            )
            token = issue_token(services.settings.secret, user_id, "customer", 3600)
            users.append(
                {
                    "user": {"id": str(user_id)},
                    "accessToken": token,
                    "headers": {"Authorization": f"Bearer {token}"},
                }
            )
    return users
