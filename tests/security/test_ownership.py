"""Another user's order id gets 404 from every route that takes an order id (in the path
or the body), exactly as an order that does not exist, and changes nothing."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
from sqlalchemy import text

from bookbazar.app import BookBazarApp
from bookbazar.services import Services
from tests.conftest import create_book, register
from tests.foundation.helpers import assert_error
from tests.orders.conftest import add_to_cart, place
from tests.security.routes import Route

# Every API route that names an order (a new one fails the test below until listed).
ORDER_ROUTES: dict[Route, str] = {
    ("GET", "/api/v1/orders/{order_id}"): "path",
    ("POST", "/api/v1/orders/{order_id}/cancel"): "path",
    ("POST", "/api/v1/payments/init"): "body",
}


def _routes_naming_an_order(app: BookBazarApp) -> set[Route]:
    spec = app.api.openapi()
    schemas = spec["components"]["schemas"]
    found = set()
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            if "{order_id}" in path:
                found.add((method.upper(), path))
            content = operation.get("requestBody", {}).get("content", {})
            for media in content.values():
                ref = media.get("schema", {}).get("$ref", "")
                body = schemas.get(ref.rsplit("/", 1)[-1], {})
                if "orderId" in body.get("properties", {}):
                    found.add((method.upper(), path))
    return {
        r for r in found if r[1].startswith("/api/v1/") and not r[1].startswith("/api/v1/admin")
    }


def test_every_route_naming_an_order_is_checked(app: BookBazarApp) -> None:
    assert _routes_naming_an_order(app) == set(ORDER_ROUTES)


async def _call(
    client: httpx.AsyncClient, route: Route, where: str, order_id: str, user: dict[str, Any]
) -> httpx.Response:
    method, path = route
    if where == "path":
        return await client.request(
            method, path.replace("{order_id}", order_id), headers=user["headers"]
        )
    return await client.request(method, path, json={"orderId": order_id}, headers=user["headers"])


async def _order_state(services: Services, order_id: str) -> tuple[Any, ...]:
    async with services.sessionmaker() as session:
        order = (
            await session.execute(
                text("SELECT status, expires_at, updated_at FROM orders WHERE id = :o"),
                {"o": uuid.UUID(order_id)},
            )
        ).one()
        payments = (
            await session.execute(
                text("SELECT count(*) FROM payments WHERE order_id = :o"),
                {"o": uuid.UUID(order_id)},
            )
        ).scalar_one()
        events = (
            await session.execute(
                text("SELECT count(*) FROM outbox_events WHERE order_id = :o"),
                {"o": uuid.UUID(order_id)},
            )
        ).scalar_one()
    return (*order, payments, events)


async def test_another_users_order_is_not_found_everywhere(
    client: httpx.AsyncClient, services: Services
) -> None:
    owner, intruder = await register(client), await register(client)
    book = await create_book(services, stock=3)
    await add_to_cart(client, owner, book, 1)
    placed = await place(client, owner)
    assert placed.status_code == 201, placed.text
    order_id = placed.json()["data"]["orderId"]
    init = await client.post(
        "/api/v1/payments/init", json={"orderId": order_id}, headers=owner["headers"]
    )
    assert init.status_code == 200, init.text  # the intruder must not get this intent back
    before = await _order_state(services, order_id)
    available = await services.inventory.available([book])

    for route, where in ORDER_ROUTES.items():
        theirs = assert_error(await _call(client, route, where, order_id, intruder), 404)
        nobodys = assert_error(await _call(client, route, where, str(uuid.uuid4()), intruder), 404)
        assert theirs == nobodys, f"{route} tells another user's order from a missing one"

    listed = (await client.get("/api/v1/orders", headers=intruder["headers"])).json()["data"]
    assert listed["items"] == [] and listed["total"] == 0
    assert await _order_state(services, order_id) == before
    assert await services.inventory.available([book]) == available
    # The owner still has it, untouched.
    mine = await client.get(f"/api/v1/orders/{order_id}", headers=owner["headers"])
    assert mine.json()["data"]["status"] == "PAYMENT_PENDING"
