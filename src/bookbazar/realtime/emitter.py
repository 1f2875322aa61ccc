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

from bookbazar.realtime import book_room, user_room

log = structlog.get_logger(__name__)

EmitFn = Callable[[str, Any, str], Awaitable[None]]
# Per-user recent events for `resume` after a reconnect (python-socketio has no recovery).
STREAM_MAXLEN = 1000
STREAM_RETENTION_MS = 30 * 60 * 1000


def stream_key(user_id: object) -> str:
    return f"bb:events:{{{user_id}}}"


class Emitter:
    def __init__(self, redis: Redis, emit: EmitFn) -> None:
        self._redis = redis
        self._emit = emit

    async def emit_to_user(self, user_id: UUID | str, event: str, payload: dict[str, Any]) -> str:
        """Send `event` to every socket of the user, once. The payload gets an `id` (kept
        if given) and is kept in the user's recent-events stream for `resume`."""
        event_id = str(payload.get("id") or uuid.uuid4())
        body = {**payload, "id": event_id}
        key = stream_key(user_id)
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.xadd(
                key,
                {"id": event_id, "event": event, "payload": json.dumps(body, default=str)},
                maxlen=STREAM_MAXLEN,
                approximate=True,
            )
            pipe.pexpire(key, STREAM_RETENTION_MS)
            await pipe.execute()
        await self._emit(event, body, user_room(user_id))
        return event_id

    async def emit_stock(self, levels: Mapping[UUID, int]) -> None:
        """Broadcast `stock:update {bookId, available}` to each book's public room."""
        for book_id, available in levels.items():
            await self._emit(
                "stock:update",
                {"bookId": str(book_id), "available": max(0, available)},
                book_room(book_id),
            )


def manager_emit(manager: Any) -> EmitFn:
    """Adapt a socketio server or AsyncRedisManager's emit to EmitFn."""

    async def emit(event: str, data: Any, room: str) -> None:
        await manager.emit(event, data, room=room, namespace="/")

    return emit
