"""A minimal Socket.IO (v5 protocol, Engine.IO v4) client over one WebSocket.

Enough for the benchmarks: connect with `auth: {token}`, answer the server's pings, and
hand `42[...]` events to a callback. It is far lighter than `socketio.AsyncClient`, so one
generator process can hold thousands of idle sockets.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from typing import Any

import aiohttp

EventHandler = Callable[[str, Any], None]


class SocketRefused(Exception):
    """The server refused the namespace connection (bad token, ...)."""


class SioClient:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        token: str,
        on_event: EventHandler | None = None,
    ) -> None:
        self.session = session
        self.url = base_url.replace("http", "ws", 1).rstrip("/") + (
            "/socket.io/?EIO=4&transport=websocket"
        )
        self.token = token
        self.on_event = on_event
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.sid: str | None = None
        self.disconnected = asyncio.Event()
        self.disconnect_reason: str | None = None
        self._reader: asyncio.Task[None] | None = None

    @property
    def connected(self) -> bool:
        return self.ws is not None and not self.disconnected.is_set()

    async def connect(self, timeout: float = 30.0) -> None:
        async with asyncio.timeout(timeout):
            self.ws = await self.session.ws_connect(self.url, autoping=True, max_msg_size=0)
            opened = await self.ws.receive()
            if opened.type != aiohttp.WSMsgType.TEXT or not opened.data.startswith("0"):
                raise ConnectionError(f"unexpected Engine.IO open packet: {opened.data!r}")
            await self.ws.send_str("40" + json.dumps({"token": self.token}))
            while True:
                msg = await self.ws.receive()
                if msg.type != aiohttp.WSMsgType.TEXT:
                    raise ConnectionError(f"socket closed during connect ({msg.type.name})")
                data: str = msg.data
                if data == "2":
                    await self.ws.send_str("3")
                elif data.startswith("40"):
                    body = json.loads(data[2:] or "{}")
                    self.sid = body.get("sid")
                    break
                elif data.startswith("44"):
                    raise SocketRefused(data[2:])
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.ws is not None
        try:
            async for msg in self.ws:
                if msg.type != aiohttp.WSMsgType.TEXT:
                    continue
                data: str = msg.data
                if data == "2":
                    await self.ws.send_str("3")
                elif data.startswith("42"):
                    if self.on_event is not None:
                        with contextlib.suppress(ValueError, IndexError, TypeError):
                            packet = json.loads(data[2:])
                            self.on_event(packet[0], packet[1] if len(packet) > 1 else None)
                elif data.startswith("41"):
                    self.disconnect_reason = "server disconnected the namespace"
                    break
                elif data.startswith("1"):
                    self.disconnect_reason = "server closed the transport"
                    break
        except (aiohttp.ClientError, ConnectionError) as exc:
            self.disconnect_reason = repr(exc)
        finally:
            if self.disconnect_reason is None:
                self.disconnect_reason = f"websocket closed ({self.ws.close_code})"
            self.disconnected.set()

    async def close(self) -> None:
        if self.ws is not None and not self.ws.closed:
            with contextlib.suppress(Exception):
                await self.ws.send_str("41")
            with contextlib.suppress(Exception):
                await self.ws.close()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader
        self.disconnected.set()
