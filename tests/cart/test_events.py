"""Live cart events over a real Socket.IO connection: exactly one `cart:update` per
change, only to the cart's owner."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import socketio

from bookbazar.cart import service as cart_service
from bookbazar.services import Services
from tests.cart.conftest import add, eventually, user_id
from tests.conftest import LiveServer, create_book, register


async def _listen(url: str, token: str) -> tuple[socketio.AsyncClient, list[dict[str, Any]]]:
    received: list[dict[str, Any]] = []
    sio = socketio.AsyncClient(reconnection=False)

    @sio.on("cart:update")  # type: ignore[untyped-decorator]
    async def on_update(data: dict[str, Any]) -> None:
        received.append(data)

    await sio.connect(url, auth={"token": token}, transports=["websocket"], wait_timeout=10)
    return sio, received


async def test_one_cart_update_per_change_to_the_owner_only(live_server: LiveServer) -> None:
    services: Services = live_server.app.api.state.services
    async with httpx.AsyncClient(base_url=live_server.url) as client:
        alice = await register(client)
        bob = await register(client)
        uid = user_id(alice)
        first = await create_book(services, stock=5)
        second = await create_book(services, stock=5)
        third = await create_book(services, stock=5)
        empty = await create_book(services, stock=0)
        alice_sio, events = await _listen(live_server.url, alice["accessToken"])
        bob_sio, bobs_events = await _listen(live_server.url, bob["accessToken"])
        try:
            assert (await add(client, alice, first, 2)).status_code == 200  # v1
            assert (await add(client, alice, second, 9)).status_code == 200  # v2, adjusted
            assert (await add(client, alice, first, 1)).status_code == 200  # v3
            remove = {"bookId": str(first)}
            resp = await client.post("/api/v1/cart/remove", json=remove, headers=alice["headers"])
            assert resp.status_code == 200  # v4
            # Failures and no-ops are not changes: no event.
            assert (await add(client, alice, empty, 1)).status_code == 409
            resp = await client.post("/api/v1/cart/remove", json=remove, headers=alice["headers"])
            assert resp.status_code == 404
            assert (await add(client, alice, first, 0)).status_code == 422
            assert (
                await client.delete("/api/v1/cart", headers=alice["headers"])
            ).status_code == 200
            assert (
                await client.delete("/api/v1/cart", headers=alice["headers"])
            ).status_code == 200
            # An order took the (new) cart: one cart:cleared.
            assert (await add(client, alice, first, 1)).status_code == 200  # v6
            lines, version = await cart_service.cart_lines(services, uid)
            await cart_service.clear_ordered(
                services, uid, uuid.uuid4(), version, [b for b, _ in lines]
            )  # v7
            # An order while the buyer kept shopping: one cart:item_deleted per ordered line.
            assert (await add(client, alice, first, 1)).status_code == 200  # v8
            assert (await add(client, alice, second, 1)).status_code == 200  # v9
            lines, version = await cart_service.cart_lines(services, uid)
            assert (await add(client, alice, third, 1)).status_code == 200  # v10
            await cart_service.clear_ordered(
                services, uid, uuid.uuid4(), version, [b for b, _ in lines]
            )

            async def all_arrived() -> bool:
                return len(events) >= 12

            await eventually(all_arrived)
            await asyncio.sleep(0.5)  # anything extra would arrive by now
        finally:
            await alice_sio.disconnect()
            await bob_sio.disconnect()

    assert [(e["event"], e["version"]) for e in events] == [
        ("cart:item_updated", 1),
        ("cart:item_updated", 2),
        ("cart:item_updated", 3),
        ("cart:item_deleted", 4),
        ("cart:cleared", 5),
        ("cart:item_updated", 6),
        ("cart:cleared", 7),
        ("cart:item_updated", 8),
        ("cart:item_updated", 9),
        ("cart:item_updated", 10),
        ("cart:item_deleted", 11),
        ("cart:item_deleted", 12),
    ]
    assert all(e["userId"] == str(uid) for e in events)
    assert all(isinstance(e["updatedAt"], int) for e in events)
    assert events[0]["bookId"] == str(first) and events[0]["quantity"] == 2
    assert events[1]["bookId"] == str(second) and events[1]["quantity"] == 5
    assert events[3]["bookId"] == str(first) and "quantity" not in events[3]
    assert "bookId" not in events[4]
    assert {events[10]["bookId"], events[11]["bookId"]} == {str(first), str(second)}
    assert len({e["id"] for e in events}) == 12
    assert bobs_events == []
