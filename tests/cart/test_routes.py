"""Every cart route and error path, over HTTP against real Redis and PostgreSQL."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from bookbazar.services import Services
from tests.cart.conftest import add, redis_state, user_id
from tests.conftest import create_book, register


async def test_new_user_has_an_empty_cart_at_version_0(client: httpx.AsyncClient) -> None:
    user = await register(client)
    resp = await client.get("/api/v1/cart", headers=user["headers"])
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["success"] is True and body["statusCode"] == 200
    assert body["data"] == {
        "items": [],
        "total": 0,
        "currency": None,
        "version": 0,
        "updatedAt": None,
    }


async def test_add_sets_quantity_and_get_shows_lines_and_totals(
    client: httpx.AsyncClient, services: Services
) -> None:
    user = await register(client)
    dune = await create_book(services, title="Dune", price=49_900, stock=20)
    emma = await create_book(services, title="Emma", price=25_050, stock=20)

    resp = await add(client, user, dune, 2)
    assert resp.status_code == 200, resp.text
    data = resp.json()["data"]
    assert data["adjusted"] is None
    assert data["version"] == 1
    assert data["items"] == [
        {"bookId": str(dune), "title": "Dune", "price": 49_900, "quantity": 2, "lineTotal": 99_800}
    ]

    assert (await add(client, user, emma, 1)).status_code == 200
    # Setting again replaces the quantity (it does not add to it).
    resp = await add(client, user, dune, 3)
    assert resp.status_code == 200, resp.text

    resp = await client.get("/api/v1/cart", headers=user["headers"])
    assert resp.status_code == 200, resp.text
    cart = resp.json()["data"]
    assert [(i["title"], i["quantity"], i["lineTotal"]) for i in cart["items"]] == [
        ("Dune", 3, 149_700),
        ("Emma", 1, 25_050),
    ]
    assert cart["total"] == 149_700 + 25_050
    assert cart["currency"] == "INR"
    assert cart["version"] == 3
    assert isinstance(cart["updatedAt"], int) and cart["updatedAt"] > 0


async def test_more_than_available_gets_what_is_available_and_says_so(
    client: httpx.AsyncClient, services: Services
) -> None:
    user = await register(client)
    book = await create_book(services, stock=3)
    resp = await add(client, user, book, 5)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["data"]["adjusted"] == {
        "bookId": str(book),
        "requested": 5,
        "available": 3,
        "quantity": 3,
    }
    assert body["data"]["items"][0]["quantity"] == 3
    assert "3 available" in body["message"]


async def test_nothing_available_is_409_and_changes_nothing(
    client: httpx.AsyncClient, services: Services
) -> None:
    user = await register(client)
    book = await create_book(services, stock=0)
    resp = await add(client, user, book, 1)
    assert resp.status_code == 409, resp.text
    assert resp.json()["success"] is False
    cart = (await client.get("/api/v1/cart", headers=user["headers"])).json()["data"]
    assert cart["items"] == [] and cart["version"] == 0


async def test_unknown_book_is_404(client: httpx.AsyncClient) -> None:
    user = await register(client)
    resp = await add(client, user, uuid.uuid4(), 1)
    assert resp.status_code == 404, resp.text
    assert resp.json()["message"] == "Book not found"


@pytest.mark.parametrize("quantity", [0, 11, -1, 2.5, 2.0, "3", True, None, 10**20])
async def test_quantity_must_be_an_integer_from_1_to_10(
    client: httpx.AsyncClient, services: Services, quantity: Any
) -> None:
    user = await register(client)
    book = await create_book(services, stock=50)
    resp = await add(client, user, book, quantity)
    assert resp.status_code == 422, resp.text
    body = resp.json()
    assert body["success"] is False
    assert "quantity" in body["message"]
    assert any(e["field"] == "quantity" for e in body["errors"])
    assert (await redis_state(services, user_id(user))) in (None, (0, None, {}))


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"bookId": "not-a-uuid", "quantity": 1}, "bookId"),
        ({"quantity": 1}, "bookId"),
        ({"bookId": str(uuid.UUID(int=1))}, "quantity"),
        ({"bookId": str(uuid.UUID(int=1)), "quantity": 1, "userId": "someone"}, "userId"),
    ],
)
async def test_bad_bodies_are_422_naming_the_field(
    client: httpx.AsyncClient, payload: dict[str, Any], field: str
) -> None:
    user = await register(client)
    resp = await client.post("/api/v1/cart/add", json=payload, headers=user["headers"])
    assert resp.status_code == 422, resp.text
    assert any(e["field"] == field for e in resp.json()["errors"])


async def test_ten_is_allowed(client: httpx.AsyncClient, services: Services) -> None:
    user = await register(client)
    book = await create_book(services, stock=50)
    resp = await add(client, user, book, 10)
    assert resp.status_code == 200, resp.text
    assert resp.json()["data"]["items"][0]["quantity"] == 10


async def test_a_cart_takes_one_currency(client: httpx.AsyncClient, services: Services) -> None:
    user = await register(client)
    rupees = await create_book(services, currency="INR")
    dollars = await create_book(services, currency="USD", price=1_999)
    assert (await add(client, user, rupees, 1)).status_code == 200
    resp = await add(client, user, dollars, 1)
    assert resp.status_code == 409, resp.text
    assert "INR" in resp.json()["message"] and "USD" in resp.json()["message"]
    # Once the cart is empty again, any currency is fine.
    resp = await client.post(
        "/api/v1/cart/remove", json={"bookId": str(rupees)}, headers=user["headers"]
    )
    assert resp.status_code == 200, resp.text
    resp = await add(client, user, dollars, 2)
    assert resp.status_code == 200, resp.text
    assert resp.json()["data"]["currency"] == "USD"
    assert resp.json()["data"]["total"] == 3_998


async def test_remove_a_line_and_404_for_a_line_not_in_the_cart(
    client: httpx.AsyncClient, services: Services
) -> None:
    user = await register(client)
    book = await create_book(services)
    other = await create_book(services)
    assert (await add(client, user, book, 2)).status_code == 200
    assert (await add(client, user, other, 1)).status_code == 200

    resp = await client.post(
        "/api/v1/cart/remove", json={"bookId": str(book)}, headers=user["headers"]
    )
    assert resp.status_code == 200, resp.text
    data = resp.json()["data"]
    assert [i["bookId"] for i in data["items"]] == [str(other)]
    assert data["version"] == 3

    for missing in (book, uuid.uuid4()):
        resp = await client.post(
            "/api/v1/cart/remove", json={"bookId": str(missing)}, headers=user["headers"]
        )
        assert resp.status_code == 404, resp.text
    resp = await client.post("/api/v1/cart/remove", json={}, headers=user["headers"])
    assert resp.status_code == 422
    assert (await redis_state(services, user_id(user)))[0] == 3  # type: ignore[index]


async def test_clear_and_clearing_an_empty_cart(
    client: httpx.AsyncClient, services: Services
) -> None:
    user = await register(client)
    # Never-seen user: fine, nothing changes.
    resp = await client.delete("/api/v1/cart", headers=user["headers"])
    assert resp.status_code == 200, resp.text
    assert resp.json()["data"]["version"] == 0

    for _ in range(2):
        assert (await add(client, user, await create_book(services), 1)).status_code == 200
    resp = await client.delete("/api/v1/cart", headers=user["headers"])
    assert resp.status_code == 200, resp.text
    data = resp.json()["data"]
    assert data["items"] == [] and data["total"] == 0 and data["currency"] is None
    assert data["version"] == 3

    # Clearing it again is fine and is not a change.
    resp = await client.delete("/api/v1/cart", headers=user["headers"])
    assert resp.status_code == 200, resp.text
    assert resp.json()["data"]["version"] == 3


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/api/v1/cart", None),
        ("POST", "/api/v1/cart/add", {"bookId": str(uuid.UUID(int=1)), "quantity": 1}),
        ("POST", "/api/v1/cart/remove", {"bookId": str(uuid.UUID(int=1))}),
        ("DELETE", "/api/v1/cart", None),
    ],
)
async def test_every_route_needs_a_token(
    client: httpx.AsyncClient, method: str, path: str, body: dict[str, Any] | None
) -> None:
    resp = await client.request(method, path, json=body)
    assert resp.status_code == 401, resp.text
    resp = await client.request(
        method, path, json=body, headers={"Authorization": "Bearer not-a-token"}
    )
    assert resp.status_code == 401, resp.text


async def test_each_user_has_their_own_cart(client: httpx.AsyncClient, services: Services) -> None:
    alice = await register(client)
    bob = await register(client)
    book = await create_book(services)
    assert (await add(client, alice, book, 2)).status_code == 200

    # Bob sees nothing of Alice's cart and cannot remove or clear her lines.
    bobs = (await client.get("/api/v1/cart", headers=bob["headers"])).json()["data"]
    assert bobs["items"] == [] and bobs["version"] == 0
    resp = await client.post(
        "/api/v1/cart/remove", json={"bookId": str(book)}, headers=bob["headers"]
    )
    assert resp.status_code == 404
    assert (await client.delete("/api/v1/cart", headers=bob["headers"])).status_code == 200
    assert (await add(client, bob, book, 5)).status_code == 200

    alices = (await client.get("/api/v1/cart", headers=alice["headers"])).json()["data"]
    assert [(i["bookId"], i["quantity"]) for i in alices["items"]] == [(str(book), 2)]
    assert alices["version"] == 1
    # The cookie works as well as the header, and it is still the token's user.
    client.cookies.set("accessToken", alice["accessToken"])
    try:
        resp = await client.get("/api/v1/cart")
    finally:
        client.cookies.clear()
    assert resp.json()["data"]["items"][0]["quantity"] == 2
