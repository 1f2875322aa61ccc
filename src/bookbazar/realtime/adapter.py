"""The one adapter for what python-socketio does not make public (as of 5.18.1);
tests/realtime/test_adapter.py fails loudly if an upgrade changes any of it.

- Its Redis pub/sub message, built here so a script or a pipeline can publish it directly
  (no manager, no extra round trip): AsyncPubSubManager's `emit` message, JSON-encoded on
  CHANNEL. HOST_ID is no server's own host id, so every server, the publishing one
  included, delivers the message to its sockets, exactly once each.
- Its client manager's lifecycle: the server subscribes to the channel only when its
  first client connects, and never closes the manager's Redis clients on shutdown.
  `start_manager`, `manager_listening` and `close_manager` do both explicitly.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

import socketio
from redis.exceptions import RedisError

from bookbazar.realtime import CHANNEL, NAMESPACE

HOST_ID = "bookbazar-direct"


def emit_message(event: str, data: Any, room: str) -> str:
    """The message that makes every server emit `event` with `data` to `room`."""
    return json.dumps(
        {
            "method": "emit",
            "event": event,
            "data": [data],
            "binary": False,
            "namespace": NAMESPACE,
            "room": room,
            "skip_sid": None,
            "callback": None,
            "host_id": HOST_ID,
        },
        separators=(",", ":"),
        default=str,
    )


def lua_config(room: str) -> dict[str, Any]:
    """What a Lua script needs to publish such messages itself."""
    return {"channel": CHANNEL, "host": HOST_ID, "ns": NAMESPACE, "room": room}


def start_manager(sio: socketio.AsyncServer) -> None:
    """Start the client manager's channel listener now (the server otherwise starts it on
    its first connection)."""
    if not sio.manager_initialized:
        sio.manager_initialized = True
        sio.manager.initialize()


def manager_listening(sio: socketio.AsyncServer) -> bool:
    """Whether the manager is subscribed to the channel (messages published from now on
    reach this server's sockets)."""
    pubsub = getattr(sio.manager, "pubsub", None)
    return bool(pubsub is not None and pubsub.subscribed)


async def close_manager(sio: socketio.AsyncServer) -> None:
    """Stop the channel listener and close the manager's Redis clients."""
    manager = sio.manager
    listener = getattr(manager, "thread", None)
    if isinstance(listener, asyncio.Task) and not listener.done():
        listener.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await listener
    for client in (getattr(manager, "pubsub", None), getattr(manager, "redis", None)):
        if client is not None:
            with contextlib.suppress(RedisError, OSError):
                await client.aclose()


__all__ = [
    "CHANNEL",
    "HOST_ID",
    "close_manager",
    "emit_message",
    "lua_config",
    "manager_listening",
    "start_manager",
]
