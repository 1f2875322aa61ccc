"""A small HTTP/1.1 keep-alive client for the timed requests.

One connection per virtual user, responses parsed by httptools (the C parser uvicorn
uses). It costs the load generator a fraction of what a general-purpose client does per
request, which matters here: the generator shares two cores with the service.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any

import httptools

REQUEST_TIMEOUT_S = 30.0
# uvicorn closes a keep-alive connection after 5 s idle (timeout_keep_alive). A request
# written as that close happens fails with a reset, which would be our artefact, not the
# service's error: reopen connections that sat idle nearly that long.
IDLE_REOPEN_S = 3.0


@dataclass(slots=True)
class Response:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None

    def data(self) -> Any:
        """`data` of the success envelope (None if absent or not JSON)."""
        try:
            doc = self.json()
        except ValueError:
            return None
        return doc.get("data") if isinstance(doc, dict) else None


class _Protocol(asyncio.Protocol):
    def __init__(self) -> None:
        # uvloop's transports are not asyncio.Transport subclasses: typed loosely.
        self.transport: Any = None
        self.parser = httptools.HttpResponseParser(self)
        self.waiter: asyncio.Future[Response] | None = None
        self.closed = False
        self._body = bytearray()
        self._headers: dict[str, str] = {}

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(exc)
            if self.transport is not None:
                self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail(exc or ConnectionResetError("server closed the connection"))

    def _fail(self, exc: BaseException) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(exc)

    # httptools callbacks
    def on_message_begin(self) -> None:
        self._body = bytearray()
        self._headers = {}

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_body(self, body: bytes) -> None:
        self._body += body

    def on_message_complete(self) -> None:
        if not self.parser.should_keep_alive():
            self.closed = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(
                Response(self.parser.get_status_code(), bytes(self._body), self._headers)
            )


class Connection:
    """One keep-alive connection; reconnects when the server closed it."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self._proto: _Protocol | None = None
        self._host_header = f"{host}:{port}".encode()
        self._last_used = 0.0

    async def _ensure(self) -> _Protocol:
        now = time.monotonic()
        stale = now - self._last_used > IDLE_REOPEN_S
        self._last_used = now
        if self._proto is None or self._proto.closed or stale:
            if self._proto is not None and self._proto.transport is not None:
                self._proto.transport.close()
            loop = asyncio.get_running_loop()
            _, proto = await loop.create_connection(_Protocol, self.host, self.port)
            self._proto = proto
        return self._proto

    async def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        token: str | None = None,
        headers: dict[str, str] | None = None,
        timeout: float = REQUEST_TIMEOUT_S,
    ) -> Response:
        payload = b"" if body is None else json.dumps(body, separators=(",", ":")).encode()
        lines = [
            f"{method} {path} HTTP/1.1".encode(),
            b"Host: " + self._host_header,
            b"Content-Length: " + str(len(payload)).encode(),
        ]
        if body is not None:
            lines.append(b"Content-Type: application/json")
        if token is not None:
            lines.append(b"Authorization: Bearer " + token.encode())
        for name, value in (headers or {}).items():
            lines.append(f"{name}: {value}".encode())
        raw = b"\r\n".join(lines) + b"\r\n\r\n" + payload
        proto = await self._ensure()
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[Response] = loop.create_future()
        proto.waiter = waiter
        proto.transport.write(raw)
        try:
            async with asyncio.timeout(timeout):
                return await waiter
        except BaseException:
            # The connection's state is unknown after a timeout or error: drop it.
            proto.closed = True
            if proto.transport is not None:
                proto.transport.close()
            raise
        finally:
            proto.waiter = None
            self._last_used = time.monotonic()

    def close(self) -> None:
        if self._proto is not None and self._proto.transport is not None:
            self._proto.transport.close()
        self._proto = None
