"""POST /orders: placement, idempotency, stock refusal, and never overselling."""

from __future__ import annotations

import asyncio
import uuid

import httpx
from sqlalchemy import text
from tests.conftest import create_book, register
from tests.orders.conftest import (
    add_to_cart,
    available,
    held_in_db,
    order_status,
    outbox_types,
    place,
    quick_users,
)

from bookbazar.inventory.service import Hold, Reserve, new_token
from bookbazar.services import Services

ADDRESS = {
    "name": "Asha Rao",
    "line1": "12 MG Road",
    "city": "Bengaluru",
    "postalCode": "560001",
    "country": "IN",
}


async def test_place_order_reserves_stock_and_empties_cart(
    client: httpx.AsyncClient, services: Services
) -> None:
    user = await register(client)
    a = await create_book(services, price=29_900, stock=5)
    b = await create_book(services, price=10_000, stock=2)
    await add_to_cart(client, user, a, 2)
    await add_to_cart(client, user, b, 1)

    resp = await place(client, user, body={"shippingAddress": ADDRESS})

    assert resp.status_code == 201, resp.text
    assert "Idempotent-Replayed" not in resp.headers
    data = resp.json()["data"]
    assert data["status"] == "PAYMENT_PENDING"
    assert data["total"] == 2 * 29_900 + 10_000
    assert data["currency"] == "INR"
    assert data["expiresAt"] is not None
    assert data["shippingAddress"]["city"] == "Bengaluru"
    lines = {i["bookId"]: i for i in data["items"]}
    assert lines[str(a)]["quantity"] == 2 and lines[str(a)]["lineTotal"] == 59_800
    assert await available(services, a) == 3
    assert await available(services, b) == 1
    assert await held_in_db(services, a) == 2
    cart = await client.get("/api/v1/cart", headers=user["headers"])
    assert cart.json()["data"]["items"] == []
    assert await outbox_types(services, data["orderId"]) == ["order.created"]

    got = await client.get(f"/api/v1/orders/{data['orderId']}", headers=user["headers"])
    assert got.status_code == 200
    assert got.json()["data"]["status"] == "PAYMENT_PENDING"
    assert got.json()["data"]["total"] == data["total"]


async def test_key_rules_and_empty_cart(client: httpx.AsyncClient, services: Services) -> None:
    user = await register(client)
    missing = await client.post("/api/v1/orders", headers=user["headers"])
    assert missing.status_code == 400
    assert "Idempotency-Key" in missing.json()["message"]
    too_long = await place(client, user, key="k" * 256)
    assert too_long.status_code == 400
    assert too_long.json()["message"].startswith("The Idempotency-Key header is invalid")
    empty = await place(client, user, key="empty-cart-key")
    assert empty.status_code == 400
    assert "empty" in empty.json()["message"]
    # An empty-cart refusal stores nothing: the same key works once the cart is filled.
    book = await create_book(services, stock=3)
    await add_to_cart(client, user, book, 1)
    retry = await place(client, user, key="empty-cart-key")
    assert retry.status_code == 201, retry.text
    client.cookies.clear()  # register() signed this client in with a cookie
    unauthenticated = await client.post("/api/v1/orders", headers={"Idempotency-Key": "x"})
    assert unauthenticated.status_code == 401


async def test_bad_body_is_refused_without_change(
    client: httpx.AsyncClient, services: Services
) -> None:
    user = await register(client)
    book = await create_book(services, stock=3)
    await add_to_cart(client, user, book, 1)
    resp = await place(client, user, body={"shippingAddress": {"city": "Pune"}})
    assert resp.status_code == 422
    resp = await place(client, user, body={"unexpected": True})
    assert resp.status_code == 422
    assert await available(services, book) == 3


async def test_replay_returns_first_answer_and_never_reserves_twice(
    client: httpx.AsyncClient, services: Services
) -> None:
    user = await register(client)
    book = await create_book(services, stock=5)
    await add_to_cart(client, user, book, 2)
    first = await place(client, user, key="order-1", body={"shippingAddress": ADDRESS})
    assert first.status_code == 201
    # Even with a refilled cart, the replay must not create or reserve anything new.
    await add_to_cart(client, user, book, 2)
    again = await place(client, user, key="order-1", body={"shippingAddress": ADDRESS})
    assert again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    assert await available(services, book) == 3

    different = await place(client, user, key="order-1", body=None)
    assert different.status_code == 422
    assert await available(services, book) == 3

    # Redis forgetting the key (restart) falls back to the database record.
    await services.redis.flushdb()
    replay_db = await place(client, user, key="order-1", body={"shippingAddress": ADDRESS})
    assert replay_db.status_code == 201
    assert replay_db.headers["Idempotent-Replayed"] == "true"
    assert replay_db.json() == first.json()
    async with services.sessionmaker() as session:
        count = (
            await session.execute(
                text("SELECT count(*) FROM orders WHERE user_id = :u"),
                {"u": uuid.UUID(user["user"]["id"])},
            )
        ).scalar_one()
    assert count == 1


async def test_keys_are_scoped_per_user(client: httpx.AsyncClient, services: Services) -> None:
    book = await create_book(services, stock=5)
    alice, bob = await register(client), await register(client)
    await add_to_cart(client, alice, book, 1)
    await add_to_cart(client, bob, book, 1)
    ra = await place(client, alice, key="shared-key")
    rb = await place(client, bob, key="shared-key")
    assert ra.status_code == rb.status_code == 201
    assert ra.json()["data"]["orderId"] != rb.json()["data"]["orderId"]
    assert "Idempotent-Replayed" not in rb.headers


async def test_concurrent_replays_create_one_order(
    client: httpx.AsyncClient, services: Services
) -> None:
    user = await register(client)
    book = await create_book(services, stock=10)
    await add_to_cart(client, user, book, 3)
    results = await asyncio.gather(*(place(client, user, key="same-key") for _ in range(20)))
    statuses = [r.status_code for r in results]
    assert set(statuses) <= {201, 409}
    created = [r for r in results if r.status_code == 201]
    assert created
    assert len({r.json()["data"]["orderId"] for r in created}) == 1
    assert sum(1 for r in created if "Idempotent-Replayed" not in r.headers) == 1
    in_flight = [r for r in results if r.status_code == 409]
    assert all("still being processed" in r.json()["message"] for r in in_flight)
    assert await available(services, book) == 7
    assert await held_in_db(services, book) == 3


async def test_shortfall_lists_each_line_and_reserves_nothing(
    client: httpx.AsyncClient, services: Services
) -> None:
    user, rival = await register(client), await register(client)
    scarce = await create_book(services, title="Scarce", stock=3)
    plenty = await create_book(services, title="Plenty", stock=10)
    await add_to_cart(client, user, scarce, 3)
    await add_to_cart(client, user, plenty, 4)
    await add_to_cart(client, rival, scarce, 2)
    assert (await place(client, rival)).status_code == 201  # leaves 1 of the scarce book

    resp = await place(client, user, key="short")
    assert resp.status_code == 409
    body = resp.json()
    assert body["success"] is False
    assert body["errors"] == [
        {"bookId": str(scarce), "title": "Scarce", "requested": 3, "available": 1}
    ]
    assert await available(services, scarce) == 1
    assert await available(services, plenty) == 10
    # The cart is kept so the buyer can adjust it; a refused attempt is not an order.
    cart = (await client.get("/api/v1/cart", headers=user["headers"])).json()["data"]
    assert len(cart["items"]) == 2
    async with services.sessionmaker() as session:
        orders = (
            await session.execute(
                text("SELECT count(*) FROM orders WHERE idempotency_key = 'short'")
            )
        ).scalar_one()
    assert orders == 0
    # The refusal is the stored answer for that key, in Redis and in PostgreSQL.
    again = await place(client, user, key="short")
    assert again.status_code == 409
    assert again.headers["Idempotent-Replayed"] == "true"
    await services.redis.flushdb()  # Redis forgets the key (and everything else)
    await services.inventory.reconcile()
    from_db = await place(client, user, key="short")
    assert from_db.status_code == 409 and from_db.json() == body
    assert from_db.headers["Idempotent-Replayed"] == "true"


async def test_two_hundred_buyers_seven_copies_never_oversold(
    client: httpx.AsyncClient, services: Services
) -> None:
    book = await create_book(services, title="Last Copies", stock=7)
    buyers = await quick_users(services, 200)
    await asyncio.gather(*(add_to_cart(client, u, book, 1) for u in buyers))

    results = await asyncio.gather(*(place(client, u) for u in buyers))

    statuses = [r.status_code for r in results]
    assert statuses.count(201) == 7
    assert statuses.count(409) == 193
    for refused in (r for r in results if r.status_code == 409):
        assert refused.json()["errors"][0]["available"] == 0
    assert await available(services, book) == 0
    assert await held_in_db(services, book) == 7
    report = await services.inventory.reconcile([book])
    assert report.counters[book] == (0, 0)  # counter and database agree exactly


async def test_same_book_on_two_lines_is_summed(services: Services) -> None:
    book = await create_book(services, stock=5)
    hold_a, hold_b = Hold(uuid.uuid4(), new_token()), Hold(uuid.uuid4(), new_token())
    refused = await services.inventory.reserve(hold_a, [(book, 3), (book, 3)])
    assert refused.status is Reserve.SHORT and not refused.held
    assert refused.shortfalls[0].requested == 6 and refused.shortfalls[0].available == 5
    assert await available(services, book) == 5
    fits = await services.inventory.reserve(hold_b, [(book, 2), (book, 3)])
    assert fits.status is Reserve.OK and fits.levels[book] == 0
    again = await services.inventory.reserve(hold_b, [(book, 2), (book, 3)])
    assert again.status is Reserve.EXISTS
    assert await available(services, book) == 0


async def test_order_history_is_private_and_newest_first(
    client: httpx.AsyncClient, services: Services
) -> None:
    alice, bob = await register(client), await register(client)
    book = await create_book(services, stock=20)
    ids = []
    for _ in range(3):
        await add_to_cart(client, alice, book, 1)
        resp = await place(client, alice)
        ids.append(resp.json()["data"]["orderId"])
    page = await client.get("/api/v1/orders?page=1&pageSize=2", headers=alice["headers"])
    data = page.json()["data"]
    assert data["total"] == 3 and data["pageSize"] == 2
    assert [o["orderId"] for o in data["items"]] == [ids[2], ids[1]]
    assert data["items"][0]["items"][0]["bookId"] == str(book)

    bob_list = await client.get("/api/v1/orders", headers=bob["headers"])
    assert bob_list.json()["data"]["total"] == 0
    for method, path in (
        ("GET", f"/api/v1/orders/{ids[0]}"),
        ("POST", f"/api/v1/orders/{ids[0]}/cancel"),
    ):
        resp = await client.request(method, path, headers=bob["headers"])
        assert resp.status_code == 404, (method, path)
    assert await order_status(services, ids[0]) == "PAYMENT_PENDING"
    unknown = await client.get(f"/api/v1/orders/{uuid.uuid4()}", headers=alice["headers"])
    assert unknown.status_code == 404
    bad = await client.get("/api/v1/orders/not-a-uuid", headers=alice["headers"])
    assert bad.status_code == 422


async def test_a_release_declares_every_counter_it_touches(services: Services) -> None:
    """stock_finish only changes keys its caller declared (Redis Cluster's rule): called
    with a hold's book left out, it changes nothing and says so; Inventory reads the
    hold's books and passes them all."""
    from bookbazar.inventory import keys

    a, b = await create_book(services, stock=5), await create_book(services, stock=5)
    await services.inventory.reconcile([a, b])
    hold = Hold(uuid.uuid4(), new_token())
    assert (await services.inventory.reserve(hold, [(a, 2), (b, 1)])).status is Reserve.OK
    only_a = [*hold.script_keys(), keys.avail(a)]
    args = [hold.member, "released", keys.ENDED_TTL_SECONDS, str(a)]
    assert await services.scripts.run("stock_finish", only_a, args) == ["UNDECLARED"]
    assert await available(services, a) == 3 and await available(services, b) == 4
    assert await services.redis.exists(keys.hold(hold.order_id, hold.token))

    released = await services.inventory.release(hold)
    assert released.levels == {a: 5, b: 5}
    assert await available(services, a) == 5 and await available(services, b) == 5
