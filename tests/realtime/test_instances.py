"""Two API instances (this test process's, and `bookbazar api` in its own process) sharing
Redis, plus a worker-side write-only emitter: every socket gets exactly one copy."""

from __future__ import annotations

import uuid

import httpx

from bookbazar.realtime.emitter import Emitter
from bookbazar.redis import create_redis
from tests.conftest import LiveServer
from tests.realtime.conftest import ApiProcess, ClientFactory, new_user, settle


async def test_one_copy_per_socket_across_instances_and_from_a_worker(
    live_server: LiveServer,
    api_process: ApiProcess,
    http: httpx.AsyncClient,
    connect: ClientFactory,
    emitter: Emitter,
) -> None:
    user, other = await new_user(http), await new_user(http)
    uid = user["user"]["id"]
    on_b = await connect(api_process.url, user["accessToken"], "cookie")
    on_a = await connect(live_server.url, user["accessToken"], "auth")
    other_on_b = await connect(api_process.url, other["accessToken"])
    book_id = uuid.uuid4()
    assert (await other_on_b.call("subscribe", {"bookId": str(book_id)}))["success"]

    # From instance A (the API's own emitter).
    from_a = await emitter.emit_to_user(uid, "order.paid", {"orderId": "o-1"})
    await on_b.wait_for("order.paid")
    await on_a.wait_for("order.paid")

    # From a worker: its own Redis client, publishing on the shared channel.
    redis = create_redis(live_server.app.api.state.settings.redis_url)
    worker = Emitter(redis)
    try:
        from_worker = await worker.emit_to_user(uid, "order.shipped", {"orderId": "o-1"})
        await worker.emit_stock({book_id: 1})
    finally:
        await redis.aclose()
    await on_b.wait_for("order.shipped")
    await on_a.wait_for("order.shipped")
    await other_on_b.wait_for("stock:update")
    await settle()

    for socket in (on_a, on_b):
        assert socket.of("order.paid") == [{"orderId": "o-1", "id": from_a}]
        assert socket.of("order.shipped") == [{"orderId": "o-1", "id": from_worker}]
    assert [(r.event, r.data) for r in other_on_b.events] == [
        ("stock:update", {"bookId": str(book_id), "available": 1})
    ]

    # Resume on instance B reads the same stream.
    ack = await on_b.call("resume", {"lastEventId": from_a})
    assert ack["data"]["count"] == 1
    assert on_b.of("order.shipped")[-1]["id"] == from_worker
