"""python-socketio's Redis pub/sub message, built here so a script or a pipeline can
publish it directly (no manager, no extra round trip).

This is the one adapter for that library's private wire format (AsyncPubSubManager's
`emit` message, JSON-encoded on CHANNEL, as of python-socketio 5.18.1):
tests/realtime/test_wire.py fails if an upgrade changes it. HOST_ID is no server's own
host id, so every server, the publishing one included, delivers the message to its
sockets, exactly once each.
"""

from __future__ import annotations

import json
from typing import Any

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


__all__ = ["CHANNEL", "HOST_ID", "emit_message", "lua_config"]
