"""The python-socketio adapter (realtime/adapter.py) against the installed library: if an
upgrade changes the pub/sub message or the manager's lifecycle attributes, these fail
here, by name, rather than as events that silently stop arriving."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import socketio

from bookbazar.realtime import CHANNEL, NAMESPACE
from bookbazar.realtime.adapter import (
    HOST_ID,
    close_manager,
    emit_message,
    lua_config,
    manager_listening,
    start_manager,
)
from tests.conftest import Infra


async def test_emit_message_is_what_the_librarys_manager_publishes() -> None:
    manager = socketio.AsyncRedisManager("redis://127.0.0.1:1", channel=CHANNEL, write_only=True)
    published: list[dict[str, Any]] = []

    async def capture(message: dict[str, Any]) -> None:
        published.append(message)

    async def handled_here(message: dict[str, Any]) -> None:
        return None

    # The two steps AsyncPubSubManager.emit takes: deliver here, then publish.
    manager._publish = capture  # type: ignore[method-assign]
    manager._handle_emit = handled_here  # type: ignore[method-assign]
    data = {"orderId": "o-1", "status": "PAID"}
    await manager.emit("order.paid", data, namespace=NAMESPACE, room="user:u-1")
    assert len(published) == 1
    theirs = dict(published[0])
    ours = json.loads(emit_message("order.paid", data, "user:u-1"))
    assert ours.pop("host_id") == HOST_ID and theirs.pop("host_id") == manager.host_id
    assert ours == theirs


def test_lua_config_names_the_same_channel_namespace_and_host() -> None:
    config = lua_config("book:b-1")
    message = json.loads(emit_message("stock.updated", {}, "book:b-1"))
    assert config == {
        "channel": CHANNEL,
        "host": message["host_id"],
        "ns": message["namespace"],
        "room": message["room"],
    }


async def test_the_manager_starts_listens_and_closes(infra: Infra) -> None:
    sio = socketio.AsyncServer(
        async_mode="asgi", client_manager=socketio.AsyncRedisManager(infra.redis_url)
    )
    assert not manager_listening(sio)
    start_manager(sio)
    start_manager(sio)  # idempotent: one listener
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 5
    while not manager_listening(sio):
        assert loop.time() < deadline, "the manager never subscribed to its channel"
        await asyncio.sleep(0.01)
    listener = sio.manager.thread
    assert isinstance(listener, asyncio.Task) and not listener.done()
    await close_manager(sio)
    assert listener.done()
