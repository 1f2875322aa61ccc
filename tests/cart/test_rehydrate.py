"""Redis loses carts; PostgreSQL brings them back on the next read or write."""

from __future__ import annotations

import httpx
from redis.asyncio import Redis

from bookbazar.cart import service as cart_service
from bookbazar.services import Services
from tests.cart.conftest import add, pg_state, redis_state, run_persist, user_id
from tests.conftest import create_book, register


async def _persisted_cart(
    client: httpx.AsyncClient, services: Services
) -> tuple[dict[str, object], list[object]]:
    user = await register(client)
    books = [await create_book(services, title=t) for t in ("Alpha", "Beta", "Gamma")]
    for i, book in enumerate(books):
        assert (await add(client, user, book, i + 1)).status_code == 200
    resp = await client.post(
        "/api/v1/cart/remove", json={"bookId": str(books[2])}, headers=user["headers"]
    )
    assert resp.status_code == 200
    await run_persist(services, user_id(user))
    return user, list(books)


async def test_a_flushed_redis_rehydrates_on_read(
    client: httpx.AsyncClient, services: Services, raw_redis: Redis
) -> None:
    user, _ = await _persisted_cart(client, services)
    before = (await client.get("/api/v1/cart", headers=user["headers"])).json()["data"]
    await raw_redis.flushdb()

    after = (await client.get("/api/v1/cart", headers=user["headers"])).json()["data"]
    assert after == before
    assert after["version"] == 4 and len(after["items"]) == 2
    assert await redis_state(services, user_id(user)) == await pg_state(services, user_id(user))


async def test_a_flushed_redis_rehydrates_before_a_write(
    client: httpx.AsyncClient, services: Services, raw_redis: Redis
) -> None:
    user, books = await _persisted_cart(client, services)
    await raw_redis.flushdb()
    new_book = await create_book(services, title="Delta")
    resp = await add(client, user, new_book, 1)
    assert resp.status_code == 200, resp.text
    data = resp.json()["data"]
    # The stored version is kept and bumped once; no line is lost.
    assert data["version"] == 5
    assert [(i["title"], i["quantity"]) for i in data["items"]] == [
        ("Alpha", 1),
        ("Beta", 2),
        ("Delta", 1),
    ]
    # The currency came back too: a line in another currency is still refused.
    dollars = await create_book(services, currency="USD")
    assert (await add(client, user, dollars, 1)).status_code == 409

    await raw_redis.flushdb()
    resp = await client.post(
        "/api/v1/cart/remove", json={"bookId": str(books[0])}, headers=user["headers"]
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["data"]["version"] == 5  # rehydrated at 4 (v5 was never persisted)

    await raw_redis.flushdb()
    resp = await client.delete("/api/v1/cart", headers=user["headers"])
    assert resp.status_code == 200, resp.text
    assert resp.json()["data"] == {
        "items": [],
        "total": 0,
        "currency": None,
        "version": 5,
        "updatedAt": resp.json()["data"]["updatedAt"],
    }


async def test_rehydrate_never_overwrites_a_cart_redis_still_has(
    client: httpx.AsyncClient, services: Services
) -> None:
    user, _ = await _persisted_cart(client, services)
    uid = user_id(user)
    assert (await add(client, user, await create_book(services), 1)).status_code == 200
    before = await redis_state(services, uid)
    assert await cart_service.rehydrate(services, uid) is False
    assert await redis_state(services, uid) == before
    assert before is not None and before[0] == 5


async def test_a_user_without_a_stored_cart_starts_empty_after_a_flush(
    client: httpx.AsyncClient, services: Services, raw_redis: Redis
) -> None:
    user = await register(client)
    assert (await add(client, user, await create_book(services), 1)).status_code == 200
    await raw_redis.flushdb()  # before the write-behind ran: that change is lost
    cart = (await client.get("/api/v1/cart", headers=user["headers"])).json()["data"]
    assert cart["items"] == [] and cart["version"] == 0 and cart["updatedAt"] is None


async def test_cart_lines_rehydrates(
    client: httpx.AsyncClient, services: Services, raw_redis: Redis
) -> None:
    user, books = await _persisted_cart(client, services)
    await raw_redis.flushdb()
    lines, version = await cart_service.cart_lines(services, user_id(user))
    assert version == 4
    assert sorted(lines, key=lambda line: str(line[0])) == lines
    assert dict(lines) == {books[0]: 1, books[1]: 2}
