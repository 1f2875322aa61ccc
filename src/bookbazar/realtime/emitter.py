"""Events to users and to book rooms, from any process: each is published once on the
Socket.IO channel in python-socketio's own format (realtime/adapter.py), and every API
instance delivers it to the sockets it holds. No instance re-broadcasts.

A user's events are also appended to their recent-events stream (for `resume`) in the
same round trip. Several events can be queued on one pipeline (the outbox relay sends a
whole batch in one round trip)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from typing import Any
from uuid import UUID

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from bookbazar.metrics import EVENTS_EMITTED
from bookbazar.realtime import CHANNEL, book_room, user_room
from bookbazar.realtime.adapter import emit_message
from bookbazar.realtime.stream import STREAM_MAXLEN, STREAM_RETENTION_MS, queue_append, stream_key

__all__ = ["STREAM_MAXLEN", "STREAM_RETENTION_MS", "Emitter", "stream_key"]


class Emitter:
    def __init__(self, redis: Redis) -> None:
        self._redis = redis

    async def emit_to_user(self, user_id: UUID | str, event: str, payload: dict[str, Any]) -> str:
        """Send `event` to every socket of the user, once each, whichever API instance holds
        it. The payload gets an `id` (kept if given; clients deduplicate by it) and is
        appended to the user's recent-events stream in the same round trip, so a socket
        that is down right now gets it on `resume`. Values JSON cannot carry (UUID,
        datetime) are sent as strings, the same live and on resume. Raises the Redis error
        if it could not be sent; returns the event id."""
        async with self._redis.pipeline(transaction=False) as pipe:
            event_id = self.queue_to_user(pipe, user_id, event, payload)
            await pipe.execute()
        return event_id

    def queue_to_user(
        self, pipe: Pipeline, user_id: UUID | str, event: str, payload: dict[str, Any]
    ) -> str:
        """Queue the stream append and the publish of one user event on `pipe`."""
        event_id = str(payload.get("id") or uuid.uuid4())
        encoded = json.dumps({**payload, "id": event_id}, default=str, separators=(",", ":"))
        queue_append(pipe, user_id, event_id, event, encoded)
        # As plain commands: a cluster pipeline refuses publish().
        message = emit_message(event, json.loads(encoded), user_room(user_id))
        pipe.execute_command("PUBLISH", CHANNEL, message)
        EVENTS_EMITTED.labels(event).inc()
        return event_id

    async def emit_stock(self, levels: Mapping[UUID, int]) -> None:
        """Broadcast `stock:update {bookId, available}` to each book's public room. Not
        kept for resume: a client that reconnects re-reads the book."""
        if not levels:
            return
        async with self._redis.pipeline(transaction=False) as pipe:
            for message in stock_messages(levels):
                pipe.execute_command("PUBLISH", CHANNEL, message)
            await pipe.execute()


def stock_messages(levels: Mapping[UUID, int]) -> list[str]:
    """The `stock:update` messages for these levels (for a pipeline or a script)."""
    messages = [
        emit_message(
            "stock:update",
            {"bookId": str(book_id), "available": max(0, available)},
            book_room(book_id),
        )
        for book_id, available in levels.items()
    ]
    EVENTS_EMITTED.labels("stock:update").inc(len(messages))
    return messages
