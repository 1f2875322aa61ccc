"""The Socket.IO server: authenticated at the handshake, one room per user."""

from __future__ import annotations

from http.cookies import CookieError, SimpleCookie
from typing import Any

import socketio
import structlog

from bookbazar.auth.deps import COOKIE_NAME
from bookbazar.auth.tokens import decode_token
from bookbazar.config import Settings
from bookbazar.errors import Unauthorized
from bookbazar.realtime import CHANNEL, user_room

log = structlog.get_logger(__name__)


def token_from_handshake(environ: dict[str, Any], auth: Any) -> str | None:
    """The token from `auth: {token}`, `Authorization: Bearer`, or the accessToken cookie."""
    if isinstance(auth, dict):
        token = auth.get("token")
        if isinstance(token, str) and token:
            return token.removeprefix("Bearer ").strip()
    header = environ.get("HTTP_AUTHORIZATION", "")
    if isinstance(header, str) and header.lower().startswith("bearer "):
        return header[7:].strip() or None
    raw_cookie = environ.get("HTTP_COOKIE", "")
    if raw_cookie:
        try:
            jar = SimpleCookie(raw_cookie)
        except CookieError:
            return None
        morsel = jar.get(COOKIE_NAME)
        if morsel is not None and morsel.value:
            return morsel.value
    return None


def create_sio(settings: Settings, redis_url: str) -> socketio.AsyncServer:
    manager = socketio.AsyncRedisManager(redis_url, channel=CHANNEL)
    sio = socketio.AsyncServer(
        async_mode="asgi",
        client_manager=manager,
        cors_allowed_origins=list(settings.cors_origins),
        cors_credentials=True,
        logger=False,
        engineio_logger=False,
    )

    @sio.event  # type: ignore[untyped-decorator]
    async def connect(sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        token = token_from_handshake(environ, auth)
        if token is None:
            raise socketio.exceptions.ConnectionRefusedError("unauthorized: no token")
        try:
            claims = decode_token(settings.secret, token)
        except Unauthorized as exc:
            raise socketio.exceptions.ConnectionRefusedError(
                f"unauthorized: {exc.message}"
            ) from None
        await sio.save_session(sid, {"user_id": str(claims.user_id)})
        await sio.enter_room(sid, user_room(claims.user_id))
        log.debug("socket_connected", sid=sid, user_id=str(claims.user_id))

    return sio
