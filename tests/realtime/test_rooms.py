"""The public stock rooms: subscribe / unsubscribe, stock:update, and the per-socket limits."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from bookbazar.realtime.emitter import Emitter
from bookbazar.realtime.limits import Rate
from bookbazar.realtime.server import Gateway
from tests.conftest import LiveServer, create_book, make_admin
from tests.realtime.conftest import ClientFactory, new_user, settle


async def test_subscribe_receives_stock_updates_until_unsubscribed(
    live_server: LiveServer, http: httpx.AsyncClient, connect: ClientFactory, emitter: Emitter
) -> None:
    watcher, bystander = await new_user(http), await new_user(http)
    socket = await connect(live_server.url, watcher["accessToken"])
    other = await connect(live_server.url, bystander["accessToken"])
    watched, unwatched = uuid.uuid4(), uuid.uuid4()

    ack = await socket.call("subscribe", {"bookId": str(watched).upper()})
    assert ack == {
        "success": True,
        "data": {"bookId": str(watched), "subscribed": True, "subscriptions": 1},
    }
    # Subscribing twice is harmless and does not take a second slot.
    assert (await socket.call("subscribe", {"bookId": str(watched)}))["data"]["subscriptions"] == 1
    sid = socket.sio.get_sid()
    assert f"book:{watched}" in live_server.app.sio.rooms(sid)

    await emitter.emit_stock({watched: 4, unwatched: 9})
    [update] = await socket.wait_for("stock:update")
    assert update == {"bookId": str(watched), "available": 4}
    await settle()
    assert socket.of("stock:update") == [update]
    assert other.events == []

    ack = await socket.call("unsubscribe", {"bookId": str(watched)})
    assert ack["data"] == {"bookId": str(watched), "subscribed": False, "subscriptions": 0}
    await emitter.emit_stock({watched: 3})
    await settle()
    assert socket.of("stock:update") == [update]


async def test_restock_is_announced_to_the_books_room(
    live_server: LiveServer, http: httpx.AsyncClient, connect: ClientFactory
) -> None:
    services = live_server.app.api.state.services
    admin = await make_admin(http, services)
    book_id = await create_book(services, stock=2)
    reader = await new_user(http)
    socket = await connect(live_server.url, reader["accessToken"], "cookie")
    assert (await socket.call("subscribe", {"bookId": str(book_id)}))["success"]
    resp = await http.post(
        f"/api/v1/admin/books/{book_id}/restock", json={"quantity": 3}, headers=admin["headers"]
    )
    assert resp.status_code == 200, resp.text
    [update] = await socket.wait_for("stock:update")
    assert update == {"bookId": str(book_id), "available": 5}


@pytest.mark.parametrize(
    "data",
    [None, "a-string", {}, {"bookId": 7}, {"bookId": "not-a-uuid"}, {"bookId": "x" * 100}],
    ids=["nothing", "string", "empty", "number", "not-uuid", "too-long"],
)
async def test_subscribe_rejects_bad_input(
    live_server: LiveServer, http: httpx.AsyncClient, connect: ClientFactory, data: Any
) -> None:
    user = await new_user(http)
    socket = await connect(live_server.url, user["accessToken"])
    for event in ("subscribe", "unsubscribe"):
        ack = await socket.call(event, data)
        assert ack["success"] is False
        assert ack["statusCode"] == 400
        assert "bookId" in ack["message"]
    assert set(live_server.app.sio.rooms(socket.sio.get_sid())) == {
        socket.sio.get_sid(),
        f"user:{user['user']['id']}",
    }


async def test_subscribe_calls_are_rate_limited_per_socket(
    live_server: LiveServer, http: httpx.AsyncClient, connect: ClientFactory, gateway: Gateway
) -> None:
    user = await new_user(http)
    socket = await connect(live_server.url, user["accessToken"])
    fresh = await connect(live_server.url, user["accessToken"])
    limit = gateway.subscribe_rate.calls
    for _ in range(limit):
        assert (await socket.call("subscribe", {"bookId": str(uuid.uuid4())}))["success"]
    ack = await socket.call("subscribe", {"bookId": str(uuid.uuid4())})
    assert ack["success"] is False
    assert ack["statusCode"] == 429
    assert f"at most {limit} per 10 s" in ack["message"]
    # Another socket has its own allowance.
    assert (await fresh.call("subscribe", {"bookId": str(uuid.uuid4())}))["success"]


async def test_rooms_per_socket_are_capped(
    live_server: LiveServer, http: httpx.AsyncClient, connect: ClientFactory, gateway: Gateway
) -> None:
    gateway.max_book_rooms = 3
    gateway.subscribe_rate = Rate(calls=100, per_seconds=10)
    user = await new_user(http)
    socket = await connect(live_server.url, user["accessToken"])
    books = [str(uuid.uuid4()) for _ in range(4)]
    for book in books[:3]:
        assert (await socket.call("subscribe", {"bookId": book}))["success"]
    ack = await socket.call("subscribe", {"bookId": books[3]})
    assert ack["statusCode"] == 429
    assert "unsubscribe from one first" in ack["message"]
    assert (await socket.call("unsubscribe", {"bookId": books[0]}))["success"]
    assert (await socket.call("subscribe", {"bookId": books[3]}))["success"]
