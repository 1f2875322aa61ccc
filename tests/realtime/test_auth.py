"""The handshake: each token carrier works, every bad token is refused with a reason, and
connected sockets show in /metrics."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest
import socketio

from bookbazar.auth.tokens import issue_token
from bookbazar.config import Settings
from bookbazar.metrics import API as API_METRICS
from bookbazar.realtime.emitter import Emitter
from bookbazar.realtime.server import Gateway
from tests.conftest import LiveServer
from tests.realtime.conftest import ClientFactory, handshake, new_client, new_user

CARRIERS = ("cookie", "auth", "header")


def sockets_connected() -> float:
    return API_METRICS.get_sample_value("bookbazar_sockets_connected") or 0.0


@pytest.mark.parametrize("carrier", CARRIERS)
async def test_each_carrier_connects_into_its_users_room_only(
    live_server: LiveServer,
    http: httpx.AsyncClient,
    connect: ClientFactory,
    gateway: Gateway,
    emitter: Emitter,
    carrier: str,
) -> None:
    user = await new_user(http)
    client = await connect(live_server.url, user["accessToken"], carrier)
    sid = client.sio.get_sid()
    rooms = set(live_server.app.sio.rooms(sid))
    assert rooms == {sid, f"user:{user['user']['id']}"}
    assert gateway.sockets[sid].user_id == user["user"]["id"]

    await emitter.emit_to_user(user["user"]["id"], "cart:update", {"event": "cart:cleared"})
    [payload] = await client.wait_for("cart:update")
    assert payload["event"] == "cart:cleared"


def bad_tokens(settings: Settings) -> dict[str, tuple[str, str]]:
    """name -> (token, the reason the client must read)."""
    uid = uuid.uuid4()
    return {
        "malformed": ("not-a-jwt", "unauthorized: Invalid token"),
        "forged": (
            issue_token("another-secret-" + "y" * 40, uid, "customer", 3600),
            "unauthorized: Invalid token",
        ),
        "expired": (
            issue_token(settings.secret, uid, "customer", -60),
            "unauthorized: Token expired, please sign in again",
        ),
    }


@pytest.mark.parametrize("carrier", CARRIERS)
@pytest.mark.parametrize("kind", ["malformed", "forged", "expired"])
async def test_bad_token_is_refused_with_its_reason(
    live_server: LiveServer, settings: Settings, carrier: str, kind: str
) -> None:
    token, reason = bad_tokens(settings)[kind]
    client = new_client()
    before = sockets_connected()
    with pytest.raises(socketio.exceptions.ConnectionError):
        await client.sio.connect(
            live_server.url, transports=["websocket"], wait_timeout=5, **handshake(token, carrier)
        )
    assert not client.sio.connected
    assert client.connect_errors == [{"message": reason}]
    assert sockets_connected() == before
    await client.sio.disconnect()


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({}, "unauthorized: no token"),
        ({"headers": {"Cookie": "theme=dark; session=abc"}}, "unauthorized: no token"),
        (
            {"headers": {"Authorization": "Basic dXNlcjpwYXNz"}},
            "unauthorized: the Authorization header must be 'Bearer <token>'",
        ),
        ({"auth": {"token": 12345}}, "unauthorized: auth.token must be a string"),
        ({"auth": {"token": "x" * 5000}}, "unauthorized: the auth.token is too long"),
    ],
    ids=["nothing", "other-cookies", "basic-auth", "token-not-string", "token-too-long"],
)
async def test_missing_or_malformed_carrier_is_refused(
    live_server: LiveServer, kwargs: dict[str, object], reason: str
) -> None:
    client = new_client()
    with pytest.raises(socketio.exceptions.ConnectionError):
        await client.sio.connect(
            live_server.url, transports=["websocket"], wait_timeout=5, **kwargs
        )
    [error] = client.connect_errors
    assert error["message"].startswith(reason)
    await client.sio.disconnect()


async def test_a_good_cookie_among_others_is_found(
    live_server: LiveServer, http: httpx.AsyncClient, connect: ClientFactory
) -> None:
    user = await new_user(http)
    cookie = f'theme="dark blue"; accessToken={user["accessToken"]}; x=1'
    client = new_client()
    await client.sio.connect(
        live_server.url, transports=["websocket"], headers={"Cookie": cookie}, wait_timeout=5
    )
    assert client.sio.connected
    await client.sio.disconnect()


async def test_gauge_counts_connected_sockets(
    live_server: LiveServer, http: httpx.AsyncClient, connect: ClientFactory
) -> None:
    user = await new_user(http)
    before = sockets_connected()
    first = await connect(live_server.url, user["accessToken"])
    second = await connect(live_server.url, user["accessToken"], "cookie")
    assert sockets_connected() == before + 2
    metrics = (await http.get("/metrics")).text
    assert "bookbazar_sockets_connected" in metrics
    await first.close()
    await second.close()
    for _ in range(100):
        if sockets_connected() == before:
            break
        await asyncio.sleep(0.02)
    assert sockets_connected() == before


async def test_socket_is_dropped_when_its_token_expires(
    live_server: LiveServer, http: httpx.AsyncClient, settings: Settings, connect: ClientFactory
) -> None:
    user = await new_user(http)
    token = issue_token(settings.secret, uuid.UUID(user["user"]["id"]), "customer", 1)
    client = await connect(live_server.url, token)
    assert client.sio.connected
    for _ in range(150):
        if not client.sio.connected:
            break
        await asyncio.sleep(0.02)
    assert not client.sio.connected


async def test_foreign_browser_origin_is_refused(
    live_server: LiveServer, http: httpx.AsyncClient
) -> None:
    """A page on another site must not open a socket riding on the user's cookie."""
    user = await new_user(http)
    headers = {"Cookie": f"accessToken={user['accessToken']}"}
    foreign = await http.get(
        "/socket.io/",
        params={"EIO": "4", "transport": "polling"},
        headers={**headers, "Origin": "https://evil.example"},
    )
    assert foreign.status_code == 400
    same = await http.get(
        "/socket.io/",
        params={"EIO": "4", "transport": "polling"},
        headers={**headers, "Origin": live_server.url},
    )
    assert same.status_code == 200
    assert same.headers["access-control-allow-origin"] == live_server.url
