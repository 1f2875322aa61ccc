"""Many concurrent changes to one cart: none is lost, each bumps the version once."""

from __future__ import annotations

import asyncio
import uuid

import httpx

from bookbazar.cart import service as cart_service
from bookbazar.errors import NotFound
from bookbazar.services import Services
from tests.cart.conftest import add, pg_state, redis_state, run_persist, user_id
from tests.conftest import create_book, register


async def test_concurrent_http_adds_never_lose_an_update(
    client: httpx.AsyncClient, services: Services
) -> None:
    user = await register(client)
    uid = user_id(user)
    books = [await create_book(services, stock=100) for _ in range(20)]
    # Twenty distinct lines and ten racing writes to one shared line, all at once.
    requests = [add(client, user, book, 2) for book in books]
    requests += [add(client, user, books[0], q) for q in range(1, 11)]
    responses = await asyncio.gather(*requests)
    assert all(r.status_code == 200 for r in responses), [r.text for r in responses]

    state = await redis_state(services, uid)
    assert state is not None
    version, _, lines = state
    assert version == len(responses) == 30
    assert set(lines) == set(books)
    assert all(lines[b] == 2 for b in books[1:])
    assert 1 <= lines[books[0]] <= 10

    await run_persist(services, uid)
    assert await pg_state(services, uid) == state


async def test_concurrent_service_changes_from_many_tasks(
    client: httpx.AsyncClient, services: Services
) -> None:
    user = await register(client)
    uid = user_id(user)
    books = [await create_book(services, stock=100) for _ in range(10)]
    successes = 0

    async def worker(n: int) -> None:
        nonlocal successes
        for i in range(10):
            book = books[(n + i) % len(books)]
            if (n + i) % 4 == 3:
                try:
                    await cart_service.remove_line(services, uid, book)
                except NotFound:
                    continue
            else:
                await cart_service.set_line(services, uid, book, i % 10 + 1)
            successes += 1

    await asyncio.gather(*(worker(n) for n in range(15)))
    state = await redis_state(services, uid)
    assert state is not None
    assert state[0] == successes
    assert successes > 100


async def test_concurrent_first_touch_of_a_new_cart(
    client: httpx.AsyncClient, services: Services
) -> None:
    """Many first requests race to create (rehydrate) the cart: each change counts once."""
    users = [await register(client) for _ in range(3)]
    book = await create_book(services, stock=100)

    async def touch(user: dict[str, object], i: int) -> int:
        if i % 2:
            resp = await client.get("/api/v1/cart", headers=user["headers"])  # type: ignore[arg-type]
            assert resp.status_code == 200
            return 0
        resp = await add(client, user, book, 1)
        assert resp.status_code == 200
        return 1

    results = await asyncio.gather(*(touch(u, i) for u in users for i in range(12)))
    assert sum(results) == 18
    for user in users:
        state = await redis_state(services, uuid.UUID(str(user["user"]["id"])))  # type: ignore[index]
        assert state is not None and state[0] == 6
