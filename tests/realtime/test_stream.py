"""The per-user recent-events stream behind `resume`, and the small pieces of the gateway
that need no server (origin check, rate window)."""

from __future__ import annotations

import json
import uuid
from typing import Any

from redis.asyncio import Redis

from bookbazar.config import Settings
from bookbazar.realtime import CHANNEL
from bookbazar.realtime.emitter import Emitter
from bookbazar.realtime.limits import Rate, SlidingWindow
from bookbazar.realtime.server import Gateway, origin_checker
from bookbazar.realtime.stream import STREAM_RETENTION_MS, now_ms, read_after, stream_key


async def test_events_older_than_the_retention_are_trimmed(
    settings: Settings, raw_redis: Redis
) -> None:
    """Stream ids carry Redis's clock: seed entries 31 and 16 minutes old, then append."""
    user_id = uuid.uuid4()
    key = stream_key(user_id)
    now = now_ms()
    for age_minutes, event_id in ((31, "too-old"), (16, "kept")):
        await raw_redis.xadd(
            key,
            {"id": event_id, "event": "order.created", "payload": "{}"},
            id=f"{now - age_minutes * 60 * 1000}-0",
        )
    newest = await Emitter(raw_redis).emit_to_user(user_id, "order.paid", {})
    events, _ = await read_after(raw_redis, user_id, None)
    assert [e.id for e in events] == ["kept", newest]
    assert 0 < await raw_redis.pttl(key) <= STREAM_RETENTION_MS


async def test_read_after_walks_back_across_batches(settings: Settings, raw_redis: Redis) -> None:
    user_id = uuid.uuid4()
    emitter = Emitter(raw_redis)
    ids = [await emitter.emit_to_user(user_id, "cart:update", {"n": n}) for n in range(450)]
    events, found = await read_after(raw_redis, user_id, ids[10])
    assert found
    assert [e.id for e in events] == ids[11:]
    assert [e.payload["n"] for e in events] == list(range(11, 450))
    events, found = await read_after(raw_redis, user_id, "unknown")
    assert not found
    assert [e.id for e in events] == ids
    assert await read_after(raw_redis, uuid.uuid4(), None) == ([], False)


async def test_emitter_sends_to_the_users_room_and_stock_to_the_book_room(
    settings: Settings, raw_redis: Redis
) -> None:
    """What the emitter publishes on the Socket.IO channel, in python-socketio's format."""
    emitter = Emitter(raw_redis)
    user_id, book_id = uuid.uuid4(), uuid.uuid4()
    pubsub = raw_redis.pubsub()
    await pubsub.subscribe(CHANNEL)
    event_id = await emitter.emit_to_user(user_id, "order.paid", {"orderId": "o"})
    await emitter.emit_stock({book_id: -3})
    sent: list[tuple[str, Any, str]] = []
    for _ in range(50):
        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.1)
        if message:
            body = json.loads(message["data"])
            sent.append((body["event"], body["data"][0], body["room"]))
        if len(sent) == 2:
            break
    await pubsub.aclose()
    assert sent == [
        ("order.paid", {"orderId": "o", "id": event_id}, f"user:{user_id}"),
        ("stock:update", {"bookId": str(book_id), "available": 0}, f"book:{book_id}"),
    ]


def test_origin_checker(settings: Settings) -> None:
    settings.cors_origins = ["https://shop.example.com"]
    settings.public_url = "https://api.example.com"
    check = origin_checker(settings)
    env = {"HTTP_HOST": "127.0.0.1:8000"}
    assert check("https://shop.example.com", env)
    assert check("https://api.example.com", env)
    assert check("http://127.0.0.1:8000", env)  # same origin
    assert check("https://www.example.com", {"HTTP_X_FORWARDED_HOST": "www.example.com"})
    assert not check("https://evil.example", env)
    assert not check("null", env)
    assert not check(None, env)


def test_sliding_window() -> None:
    now = [0.0]
    window = SlidingWindow(Rate(calls=2, per_seconds=10), clock=lambda: now[0])
    assert window.allow() and window.allow()
    assert not window.allow()
    assert window.retry_after() == 10
    now[0] = 9.9
    assert not window.allow()
    now[0] = 10.0
    assert window.allow() and window.allow()
    assert not window.allow()


async def test_gateway_start_subscribes_and_close_releases(settings: Settings) -> None:
    """The lifespan hooks: listen on the shared channel before any client, stop at exit."""
    assert settings.redis_url is not None
    gateway = Gateway(settings, settings.redis_url)
    await gateway.start()
    manager = gateway.sio.manager
    assert manager.pubsub.subscribed
    listener = manager.thread
    await gateway.close()
    assert listener.done()
    await gateway.close()  # idempotent
