"""Pure-ASGI middleware: request id + structlog context + metrics, and a body size cap."""

from __future__ import annotations

import json
import re
import time
import uuid
from typing import Any

import structlog
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bookbazar.errors import error_body
from bookbazar.metrics import HTTP_LATENCY, HTTP_REQUESTS

log = structlog.get_logger("bookbazar.http")
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:@/+=-]{1,128}")


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp, *, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _header(scope, b"x-request-id") or ""
        if not _REQUEST_ID.fullmatch(request_id):
            # Echo only ids that are safe in logs and headers; otherwise make our own.
            request_id = uuid.uuid4().hex
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id)
        started = time.perf_counter()
        status = 500

        length = _header(scope, b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_body_bytes:
            await _reject_too_large(send, request_id, self.max_body_bytes)
            self._observe(scope, 413, started)
            return

        if length is None and _header(scope, b"transfer-encoding") is not None:
            # A body of unknown length (chunked): read it, up to the cap, before the app
            # runs, so that a route which never reads its body refuses an oversized one too.
            buffered, too_large = await _read_capped(receive, self.max_body_bytes)
            if too_large:
                await _reject_too_large(send, request_id, self.max_body_bytes)
                self._observe(scope, 413, started)
                return
            receive = _replay(buffered, receive)

        received = 0

        async def capped_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    # FastAPI re-raises HTTPException from body parsing; the handler renders it.
                    raise HTTPException(
                        413, f"Request body larger than {self.max_body_bytes} bytes"
                    )
            return message

        response_started = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                response_started = True
                status = message["status"]
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, capped_receive, send_with_id)
        except Exception:
            # A bug, not bad input. Answer here (Starlette's own 500 handler sits outside
            # this middleware and would drop the request id), log it with the request id.
            log.exception("unhandled_error", method=scope.get("method"), path=scope.get("path"))
            status = 500
            if response_started:
                raise
            await _send_json(send, 500, error_body(500, "Internal server error"), request_id)
        finally:
            self._observe(scope, status, started)

    @staticmethod
    def _observe(scope: Scope, status: int, started: float) -> None:
        path = route_template(scope)
        method = scope.get("method", "GET")
        elapsed = time.perf_counter() - started
        HTTP_REQUESTS.labels(method, path, str(status)).inc()
        HTTP_LATENCY.labels(method, path).observe(elapsed)
        if status >= 500:
            log.warning("request_failed", method=method, path=scope.get("path"), status=status)


def route_template(scope: Scope) -> str:
    """The matched route's full path template (`/api/v1/books/{book_id}`), never the raw
    path, so metric labels stay few; "unmatched" when no route matched.

    The one adapter for FastAPI's routing internals (0.165): nothing public gives the full
    template of a route in an included router. test_http_edge.py's
    test_metrics_count_requests_by_route_template_and_status fails if an upgrade moves it."""
    # FastAPI keeps included routers nested: scope["route"].path lacks the parents'
    # prefixes, the effective route context has the full template.
    fastapi_scope = scope.get("fastapi")
    context = (
        fastapi_scope.get("effective_route_context") if isinstance(fastapi_scope, dict) else None
    )
    for candidate in (context, scope.get("route")):
        template = getattr(candidate, "path_format", None) or getattr(candidate, "path", None)
        if isinstance(template, str) and template:
            return template
    return "unmatched"


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            decoded: str = value.decode("latin-1")
            return decoded
    return None


async def _read_capped(receive: Receive, limit: int) -> tuple[list[Message], bool]:
    """The request's messages up to the end of its body, or until it exceeds `limit`
    bytes (then True: the rest is left unread)."""
    messages: list[Message] = []
    size = 0
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request":
            return messages, False  # the client went away
        size += len(message.get("body", b""))
        if size > limit:
            return messages, True
        if not message.get("more_body", False):
            return messages, False


def _replay(messages: list[Message], receive: Receive) -> Receive:
    pending = list(messages)

    async def replay() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replay


async def _reject_too_large(send: Send, request_id: str, limit: int) -> None:
    await _send_json(
        send, 413, error_body(413, f"Request body larger than {limit} bytes"), request_id
    )


async def _send_json(send: Send, status: int, payload: dict[str, Any], request_id: str) -> None:
    body = json.dumps(payload).encode()
    headers: list[Any] = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"x-request-id", request_id.encode()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
