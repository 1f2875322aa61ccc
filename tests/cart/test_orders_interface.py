"""cart_lines / clear_ordered: what the order flow calls."""

from __future__ import annotations

import uuid

import httpx

from bookbazar.cart import service as cart_service
from bookbazar.services import Services
from tests.cart.conftest import add, dirty, redis_state, user_id
from tests.conftest import create_book, register


async def test_cart_lines_of_a_new_user(client: httpx.AsyncClient, services: Services) -> None:
    user = await register(client)
    assert await cart_service.cart_lines(services, user_id(user)) == ([], 0)


async def test_clear_ordered_clears_an_unchanged_cart_once(
    client: httpx.AsyncClient, services: Services
) -> None:
    user = await register(client)
    uid = user_id(user)
    books = [await create_book(services) for _ in range(2)]
    for book in books:
        assert (await add(client, user, book, 2)).status_code == 200
    lines, version = await cart_service.cart_lines(services, uid)
    assert version == 2 and dict(lines) == {books[0]: 2, books[1]: 2}

    order_id = uuid.uuid4()
    await cart_service.clear_ordered(services, uid, order_id, version, [b for b, _ in lines])
    assert await redis_state(services, uid) == (3, (await redis_state(services, uid))[1], {})  # type: ignore[index]
    # Called again (a retried order step): nothing changes.
    await cart_service.clear_ordered(services, uid, order_id, version, [b for b, _ in lines])
    assert (await redis_state(services, uid))[0] == 3  # type: ignore[index]
    # One write-behind entry for the whole burst of changes.
    assert list(await dirty(services)) == [str(uid)]


async def test_clear_ordered_runs_once_per_order_even_if_the_books_come_back(
    client: httpx.AsyncClient, services: Services
) -> None:
    """A replayed answer must not empty a cart the buyer refilled since."""
    user = await register(client)
    uid = user_id(user)
    book = await create_book(services)
    assert (await add(client, user, book, 2)).status_code == 200
    _, version = await cart_service.cart_lines(services, uid)
    order_id = uuid.uuid4()
    await cart_service.clear_ordered(services, uid, order_id, version, [book])
    assert (await add(client, user, book, 1)).status_code == 200  # bought again
    await cart_service.clear_ordered(services, uid, order_id, version, [book])
    state = await redis_state(services, uid)
    assert state is not None and state[2] == {book: 1}


async def test_clear_ordered_after_the_buyer_changed_the_cart_keeps_new_lines(
    client: httpx.AsyncClient, services: Services
) -> None:
    user = await register(client)
    uid = user_id(user)
    ordered = [await create_book(services) for _ in range(2)]
    for book in ordered:
        assert (await add(client, user, book, 1)).status_code == 200
    lines, version = await cart_service.cart_lines(services, uid)
    later = await create_book(services)
    assert (await add(client, user, later, 3)).status_code == 200  # version 3

    order_id = uuid.uuid4()
    await cart_service.clear_ordered(services, uid, order_id, version, [b for b, _ in lines])
    state = await redis_state(services, uid)
    assert state is not None
    assert state[2] == {later: 3}
    assert state[0] == 5  # one version per removed line
    cart = (await client.get("/api/v1/cart", headers=user["headers"])).json()["data"]
    assert cart["currency"] == "INR" and cart["version"] == 5

    await cart_service.clear_ordered(services, uid, order_id, version, [b for b, _ in lines])
    assert (await redis_state(services, uid))[0] == 5  # type: ignore[index]
