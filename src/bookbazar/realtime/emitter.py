"""emit_to_user / emit_stock: usable from the API (through the server's Redis manager)
and from workers (a write-only Redis manager). Each emit is published once to Redis and
fanned out by whichever instance holds the user's sockets: no instance re-broadcasts."""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from uuid import UUID

import structlog
from redis.asyncio import Redis

from bookbazar.metrics import EVENTS_EMITTED
from bookbazar.realtime import NAMESPACE, book_room, user_room
from bookbazar.realtime.stream import (
    STREAM_MAXLEN,
    STREAM_RETENTION_MS,
    queue_append,
    stream_key,
)

__all__ = [
    "STREAM_MAXLEN",
    "STREAM_RETENTION_MS",
    "EmitFn",
    "Emitter",
    "manager_emit",
    "stream_key",
]

log = structlog.get_logger(__name__)

EmitFn = Callable[[str, Any, str], Awaitable[None]]


class Emitter:
    def __init__(self, redis: Redis, emit: EmitFn) -> None:
        self._redis = redis
        self._emit = emit

    async def emit_to_user(self, user_id: UUID | str, event: str, payload: dict[str, Any]) -> str:
        """Send `event` to every socket of the user, once each, whichever API instance holds
        it. The payload gets an `id` (kept if given; clients deduplicate by it) and is first
        appended to the user's recent-events stream, so a socket that is down right now gets
        it on `resume`. Values JSON cannot carry (UUID, datetime) are sent as strings, the
        same live and on resume. Raises the Redis error if the event could not be recorded
        (nothing is sent then); returns the event id."""
        event_id = str(payload.get("id") or uuid.uuid4())
        encoded = json.dumps({**payload, "id": event_id}, default=str, separators=(",", ":"))
        body: dict[str, Any] = json.loads(encoded)
        async with self._redis.pipeline(transaction=False) as pipe:
            queue_append(pipe, user_id, event_id, event, encoded)
            await pipe.execute()
        await self._emit(event, body, user_room(user_id))
        EVENTS_EMITTED.labels(event).inc()
        return event_id

    async def emit_stock(self, levels: Mapping[UUID, int]) -> None:
        """Broadcast `stock:update {bookId, available}` to each book's public room. Not
        kept for resume: a client that reconnects re-reads the book."""
        for book_id, available in levels.items():
            await self._emit(
                "stock:update",
                {"bookId": str(book_id), "available": max(0, available)},
                book_room(book_id),
            )
            EVENTS_EMITTED.labels("stock:update").inc()


def manager_emit(manager: Any) -> EmitFn:
    """Adapt a socketio server's or an AsyncRedisManager's emit to EmitFn. Either one
    delivers to its own local sockets and publishes once on the shared channel; the other
    instances deliver to theirs and never re-publish."""

    async def emit(event: str, data: Any, room: str) -> None:
        await manager.emit(event, data, room=room, namespace=NAMESPACE)

    return emit
