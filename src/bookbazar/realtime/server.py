"""The Socket.IO server (DESIGN.md §6): authenticated at the handshake, one room per user,
public stock rooms on request, and `resume` after a reconnect.

Client events (each answers through the Socket.IO ack, shaped like the REST envelope:
`{success: true, data}` or `{success: false, statusCode, message}`):

- `resume {lastEventId?}` re-sends, to this socket only and in order, the caller's events
  after `lastEventId` that are still retained (at least 15 minutes), then acks
  `{count, found, lastEventId}`. `found: false` means the id was not retained (or not
  given): every retained event was re-sent, and anything older may be missing.
- `subscribe {bookId}` joins `book:{bookId}` (`stock:update {bookId, available}`);
  `unsubscribe {bookId}` leaves it. Limited per socket: MAX_BOOK_ROOMS rooms at once and
  SUBSCRIBE_RATE subscribe calls (429 beyond either).

With several instances, AsyncRedisManager publishes each emit once on CHANNEL and every
instance delivers it to its own sockets; nothing here re-publishes what it receives.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit
from uuid import UUID

import socketio
import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError

from bookbazar.config import Settings
from bookbazar.metrics import SOCKETS_CONNECTED
from bookbazar.realtime import CHANNEL, NAMESPACE, book_room, user_room
from bookbazar.realtime.adapter import close_manager, manager_listening, start_manager
from bookbazar.realtime.auth import HandshakeRefused, authenticate, token_from_handshake
from bookbazar.realtime.limits import Rate, SlidingWindow
from bookbazar.realtime.stream import read_after
from bookbazar.redis import create_redis

__all__ = [
    "MAX_BOOK_ROOMS",
    "RESUME_RATE",
    "SUBSCRIBE_RATE",
    "Gateway",
    "create_sio",
    "gateway_of",
    "origin_checker",
    "token_from_handshake",
]

log = structlog.get_logger(__name__)

MAX_BOOK_ROOMS = 50
SUBSCRIBE_RATE = Rate(calls=30, per_seconds=10.0)
RESUME_RATE = Rate(calls=5, per_seconds=10.0)
# How long the first connection of a fresh instance waits for its pub/sub subscription.
LISTENER_READY_TIMEOUT = 2.0
MAX_EVENT_ID_LENGTH = 200
_GATEWAY_ATTR = "bookbazar_gateway"

Ack = dict[str, Any]


class AckError(Exception):
    """A client event refused; rendered as `{success: false, statusCode, message}`."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def ack_ok(**data: Any) -> Ack:
    return {"success": True, "data": data}


def ack_error(status: int, message: str) -> Ack:
    return {"success": False, "statusCode": status, "message": message}


SID_COOKIE = {"name": "io", "path": "/socket.io", "SameSite": "Strict", "HttpOnly": True}


@dataclass(eq=False)
class SocketState:
    """What this instance knows about one of its sockets."""

    user_id: str
    subscribe_calls: SlidingWindow
    resume_calls: SlidingWindow
    books: set[str] = field(default_factory=set)
    expiry: asyncio.TimerHandle | None = None


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def origin_checker(settings: Settings) -> Callable[[str | None, dict[str, Any] | None], bool]:
    """Browser origins allowed to open a socket: CORS_ORIGINS, the public URL, and the
    same origin as the request's host. Never every origin: the cookie carries the token,
    so a foreign page must not ride on it. Clients that send no Origin (Node, Python,
    mobile) are not affected."""
    allowed = {_origin(o) for o in settings.cors_origins} | {_origin(settings.base_url)}

    def check(origin: str | None, environ: dict[str, Any] | None = None) -> bool:
        if not origin:
            return False
        if _origin(origin) in allowed:
            return True
        host = urlsplit(origin).netloc.lower()
        env = environ or {}
        own_hosts = {
            str(env.get("HTTP_HOST", "")).lower(),
            str(env.get("HTTP_X_FORWARDED_HOST", "")).split(",")[0].strip().lower(),
        }
        return bool(host) and host in own_hosts

    return check


def _book_id(data: Any) -> str:
    raw = data.get("bookId") if isinstance(data, dict) else None
    if not isinstance(raw, str) or not raw:
        raise AckError(400, "bookId is required: send {bookId: '<uuid>'}")
    if len(raw) > 64:
        raise AckError(400, "bookId must be a UUID")
    try:
        return str(UUID(raw))
    except ValueError:
        raise AckError(400, "bookId must be a UUID") from None


def _last_event_id(data: Any) -> str | None:
    if data is None:
        return None
    if not isinstance(data, dict):
        raise AckError(400, "send {lastEventId: '<id of the last event you received>'}")
    raw = data.get("lastEventId")
    if raw is None or raw == "":
        return None
    if not isinstance(raw, str) or len(raw) > MAX_EVENT_ID_LENGTH:
        raise AckError(400, "lastEventId must be the string id of an event you received")
    return raw


class Gateway:
    """One API instance's Socket.IO server and the per-socket state behind it."""

    def __init__(self, settings: Settings, redis_url: str) -> None:
        self.settings = settings
        self.redis_url = redis_url
        self.sockets: dict[str, SocketState] = {}
        # Instance attributes so a test (or an operator) can tune them before clients connect.
        self.max_book_rooms = MAX_BOOK_ROOMS
        self.subscribe_rate = SUBSCRIBE_RATE
        self.resume_rate = RESUME_RATE
        self._redis: Redis | None = None
        self._listener_checked = False
        self._closed = False
        self._tasks: set[asyncio.Task[None]] = set()
        self.sio = socketio.AsyncServer(
            async_mode="asgi",
            client_manager=socketio.AsyncRedisManager(redis_url, channel=CHANNEL),
            cors_allowed_origins=origin_checker(settings),
            cors_credentials=True,
            # The session id as a cookie on the handshake's answer: what a load balancer
            # learns long-polling stickiness from (balancer.py); browsers send it back
            # only to the Socket.IO path.
            cookie=SID_COOKIE,
            logger=False,
            engineio_logger=False,
        )
        setattr(self.sio, _GATEWAY_ATTR, self)
        self.sio.on("connect", self.on_connect, namespace=NAMESPACE)
        self.sio.on("disconnect", self.on_disconnect, namespace=NAMESPACE)
        self.sio.on("resume", self._guarded(self.on_resume), namespace=NAMESPACE)
        self.sio.on("subscribe", self._guarded(self.on_subscribe), namespace=NAMESPACE)
        self.sio.on("unsubscribe", self._guarded(self.on_unsubscribe), namespace=NAMESPACE)

    @property
    def redis(self) -> Redis:
        # Created on first use, inside the running loop (create_sio runs before it starts).
        if self._redis is None:
            self._redis = create_redis(
                self.redis_url, max_connections=16, cluster=self.settings.redis_cluster
            )
        return self._redis

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Subscribe to the shared channel now rather than on the first connection (call
        from the app's lifespan start-up; optional, connect() also waits for it)."""
        start_manager(self.sio)
        await self._await_listener()

    async def close(self) -> None:
        """Stop token-expiry timers, the channel listener and this gateway's Redis clients
        (call from the app's lifespan shutdown). Idempotent."""
        if self._closed:
            return
        self._closed = True
        await self.sio.shutdown()  # engine.io's ping-timeout service task
        for state in self.sockets.values():
            if state.expiry is not None:
                state.expiry.cancel()
        await close_manager(self.sio)
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None

    async def _await_listener(self) -> None:
        """A fresh instance subscribes to the channel only when its first client arrives;
        wait for that subscription so an event emitted right after this client's connect
        is not published before anyone here listens. Checked once per instance."""
        if self._listener_checked:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + LISTENER_READY_TIMEOUT
        while loop.time() < deadline:
            if manager_listening(self.sio):
                break
            await asyncio.sleep(0.005)
        else:
            log.warning("socket_listener_not_ready", timeout_s=LISTENER_READY_TIMEOUT)
        self._listener_checked = True

    # ------------------------------------------------------------ connections

    async def on_connect(self, sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        """Accept a socket whose token verifies and put it in its user's room (only);
        refuse it with a readable reason otherwise. Disconnected when the token expires."""
        try:
            claims = authenticate(self.settings.secret, environ, auth)
        except HandshakeRefused as exc:
            log.info("socket_refused", reason=exc.reason, remote=environ.get("REMOTE_ADDR"))
            raise
        await self._await_listener()
        user_id = str(claims.user_id)
        await self.sio.save_session(sid, {"user_id": user_id}, namespace=NAMESPACE)
        await self.sio.enter_room(sid, user_room(user_id), namespace=NAMESPACE)
        state = SocketState(
            user_id=user_id,
            subscribe_calls=SlidingWindow(self.subscribe_rate),
            resume_calls=SlidingWindow(self.resume_rate),
        )
        ttl = max(0.0, claims.expires_at - time.time())
        state.expiry = asyncio.get_running_loop().call_later(ttl, self._expire, sid)
        self.sockets[sid] = state
        SOCKETS_CONNECTED.inc()
        log.debug("socket_connected", sid=sid, user_id=user_id)

    async def on_disconnect(self, sid: str, reason: Any = None) -> None:
        state = self.sockets.pop(sid, None)
        if state is None:
            return
        if state.expiry is not None:
            state.expiry.cancel()
        SOCKETS_CONNECTED.dec()
        log.debug("socket_disconnected", sid=sid, user_id=state.user_id, reason=str(reason))

    def _expire(self, sid: str) -> None:
        # A socket must not outlive its token: it would keep receiving the user's events.
        state = self.sockets.get(sid)
        if state is None:
            return
        state.expiry = None
        log.info("socket_token_expired", sid=sid, user_id=state.user_id)
        self._spawn(self.sio.disconnect(sid, namespace=NAMESPACE, ignore_queue=True))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ------------------------------------------------------------ client events

    def _guarded(
        self, handler: Callable[[SocketState, str, Any], Awaitable[Ack]]
    ) -> Callable[..., Awaitable[Ack]]:
        async def run(sid: str, data: Any = None, *_ignored: Any) -> Ack:
            state = self.sockets.get(sid)
            if state is None:
                return ack_error(401, "not connected")
            try:
                return await handler(state, sid, data)
            except AckError as exc:
                return ack_error(exc.status, exc.message)
            except RedisError as exc:
                log.warning("socket_event_failed", sid=sid, error=repr(exc))
                return ack_error(503, "temporarily unavailable, retry shortly")

        return run

    async def on_resume(self, state: SocketState, sid: str, data: Any) -> Ack:
        """Re-send the caller's own retained events after `lastEventId` to this socket only,
        oldest first, with their original ids and payloads; then ack the count."""
        if not state.resume_calls.allow():
            raise AckError(429, f"too many resume calls: at most {self.resume_rate.describe()}")
        last_event_id = _last_event_id(data)
        events, found = await read_after(self.redis, state.user_id, last_event_id)
        for stored in events:
            await self.sio.emit(
                stored.event, stored.payload, to=sid, namespace=NAMESPACE, ignore_queue=True
            )
        log.info("socket_resumed", sid=sid, user_id=state.user_id, count=len(events), found=found)
        return ack_ok(
            count=len(events),
            found=found,
            lastEventId=events[-1].id if events else last_event_id,
        )

    async def on_subscribe(self, state: SocketState, sid: str, data: Any) -> Ack:
        """Join `book:{bookId}` for `stock:update`. Idempotent; rate- and size-limited."""
        if not state.subscribe_calls.allow():
            retry = state.subscribe_calls.retry_after()
            raise AckError(
                429,
                f"too many subscribe calls: at most {self.subscribe_rate.describe()}, "
                f"retry in {retry:.1f} s",
            )
        book_id = _book_id(data)
        if book_id not in state.books:
            if len(state.books) >= self.max_book_rooms:
                raise AckError(
                    429,
                    f"subscribed to {self.max_book_rooms} books already (the most one "
                    "connection may watch): unsubscribe from one first",
                )
            await self.sio.enter_room(sid, book_room(book_id), namespace=NAMESPACE)
            state.books.add(book_id)
        return ack_ok(bookId=book_id, subscribed=True, subscriptions=len(state.books))

    async def on_unsubscribe(self, state: SocketState, sid: str, data: Any) -> Ack:
        """Leave `book:{bookId}`. Idempotent."""
        book_id = _book_id(data)
        if book_id in state.books:
            await self.sio.leave_room(sid, book_room(book_id), namespace=NAMESPACE)
            state.books.discard(book_id)
        return ack_ok(bookId=book_id, subscribed=False, subscriptions=len(state.books))


def create_sio(settings: Settings, redis_url: str) -> socketio.AsyncServer:
    """The API's Socket.IO server, sharing CHANNEL on Redis with every other instance and
    with the workers' write-only emitters. Its Gateway is `gateway_of(sio)`."""
    return Gateway(settings, redis_url).sio


def gateway_of(sio: socketio.AsyncServer) -> Gateway:
    gateway: Gateway = getattr(sio, _GATEWAY_ATTR)
    return gateway
