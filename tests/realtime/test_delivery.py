"""emit_to_user: each socket of the user gets one copy, nobody else gets any; `resume`
re-sends what a socket missed, from its own user's events only."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from bookbazar.metrics import API as API_METRICS
from bookbazar.realtime.emitter import Emitter
from bookbazar.realtime.server import Gateway
from bookbazar.realtime.stream import STREAM_MAXLEN, stream_key
from tests.conftest import LiveServer
from tests.realtime.conftest import ClientFactory, new_user, settle


def emitted(event: str) -> float:
    return API_METRICS.get_sample_value("bookbazar_events_emitted_total", {"event": event}) or 0.0


async def test_every_socket_of_the_user_gets_one_copy_and_no_one_else_any(
    live_server: LiveServer, http: httpx.AsyncClient, connect: ClientFactory, emitter: Emitter
) -> None:
    alice, bob = await new_user(http), await new_user(http)
    alice_phone = await connect(live_server.url, alice["accessToken"], "auth")
    alice_laptop = await connect(live_server.url, alice["accessToken"], "cookie")
    bob_socket = await connect(live_server.url, bob["accessToken"], "header")
    before = emitted("order.paid")

    event_id = await emitter.emit_to_user(
        alice["user"]["id"], "order.paid", {"orderId": "o-1", "status": "PAID"}
    )
    bob_event = await emitter.emit_to_user(
        uuid.UUID(bob["user"]["id"]), "order.paid", {"orderId": "o-2", "status": "PAID"}
    )
    await alice_phone.wait_for("order.paid")
    await alice_laptop.wait_for("order.paid")
    await bob_socket.wait_for("order.paid")
    await settle()

    for socket in (alice_phone, alice_laptop):
        assert socket.of("order.paid") == [{"orderId": "o-1", "status": "PAID", "id": event_id}]
    assert bob_socket.of("order.paid") == [{"orderId": "o-2", "status": "PAID", "id": bob_event}]
    assert emitted("order.paid") == before + 2


async def test_event_id_is_kept_and_values_are_sent_as_json(
    live_server: LiveServer, http: httpx.AsyncClient, connect: ClientFactory, emitter: Emitter
) -> None:
    user = await new_user(http)
    socket = await connect(live_server.url, user["accessToken"])
    given = str(uuid.uuid4())
    order_id = uuid.uuid4()
    returned = await emitter.emit_to_user(
        user["user"]["id"], "order.created", {"id": given, "orderId": order_id}
    )
    assert returned == given
    [payload] = await socket.wait_for("order.created")
    assert payload == {"id": given, "orderId": str(order_id)}


async def test_resume_replays_only_the_callers_missed_events_in_order(
    live_server: LiveServer, http: httpx.AsyncClient, connect: ClientFactory, emitter: Emitter
) -> None:
    alice, bob = await new_user(http), await new_user(http)
    alice_id, bob_id = alice["user"]["id"], bob["user"]["id"]
    socket = await connect(live_server.url, alice["accessToken"])
    seen = await emitter.emit_to_user(alice_id, "cart:update", {"event": "cart:cleared"})
    await socket.wait_for("cart:update")
    await socket.close()

    # While Alice is away: two events for her, one for Bob.
    missed = [
        await emitter.emit_to_user(alice_id, "order.created", {"orderId": "o-1"}),
        await emitter.emit_to_user(alice_id, "order.paid", {"orderId": "o-1"}),
    ]
    await emitter.emit_to_user(bob_id, "order.created", {"orderId": "bobs"})

    back = await connect(live_server.url, alice["accessToken"])
    ack = await back.call("resume", {"lastEventId": seen})
    assert ack == {
        "success": True,
        "data": {"count": 2, "found": True, "lastEventId": missed[1]},
    }
    # Events are emitted before the ack, so they are all here already.
    assert [(r.event, r.data) for r in back.events] == [
        ("order.created", {"orderId": "o-1", "id": missed[0]}),
        ("order.paid", {"orderId": "o-1", "id": missed[1]}),
    ]

    # Nothing new after the last one.
    ack = await back.call("resume", {"lastEventId": missed[1]})
    assert ack["data"]["count"] == 0
    assert ack["data"]["found"] is True


async def test_resume_goes_to_the_asking_socket_only(
    live_server: LiveServer, http: httpx.AsyncClient, connect: ClientFactory, emitter: Emitter
) -> None:
    user = await new_user(http)
    asking = await connect(live_server.url, user["accessToken"])
    other = await connect(live_server.url, user["accessToken"])
    await emitter.emit_to_user(user["user"]["id"], "order.created", {"orderId": "o-1"})
    await asking.wait_for("order.created")
    await other.wait_for("order.created")

    ack = await asking.call("resume", {})
    assert ack["data"]["count"] == 1
    await settle()
    assert len(asking.of("order.created")) == 2
    assert len(other.of("order.created")) == 1


async def test_resume_with_an_unknown_id_sends_everything_retained(
    live_server: LiveServer, http: httpx.AsyncClient, connect: ClientFactory, emitter: Emitter
) -> None:
    user = await new_user(http)
    ids = [
        await emitter.emit_to_user(user["user"]["id"], "cart:update", {"n": n}) for n in range(3)
    ]
    socket = await connect(live_server.url, user["accessToken"])
    ack = await socket.call("resume", {"lastEventId": "never-sent-to-you"})
    assert ack["data"] == {"count": 3, "found": False, "lastEventId": ids[-1]}
    assert [p["id"] for p in socket.of("cart:update")] == ids


async def test_resume_cannot_reach_another_users_event_id(
    live_server: LiveServer, http: httpx.AsyncClient, connect: ClientFactory, emitter: Emitter
) -> None:
    """Naming Bob's event id does not open Bob's stream: Alice gets her own events."""
    alice, bob = await new_user(http), await new_user(http)
    bobs = await emitter.emit_to_user(bob["user"]["id"], "order.paid", {"orderId": "bobs"})
    await emitter.emit_to_user(bob["user"]["id"], "order.shipped", {"orderId": "bobs"})
    socket = await connect(live_server.url, alice["accessToken"])
    ack = await socket.call("resume", {"lastEventId": bobs})
    assert ack["data"] == {"count": 0, "found": False, "lastEventId": bobs}
    await settle()
    assert socket.events == []


async def test_resume_rejects_bad_input_and_is_rate_limited(
    live_server: LiveServer, http: httpx.AsyncClient, connect: ClientFactory, gateway: Gateway
) -> None:
    user = await new_user(http)
    socket = await connect(live_server.url, user["accessToken"])
    bad: list[Any] = ["not-an-object", {"lastEventId": 42}, {"lastEventId": "x" * 500}]
    for data in bad:
        ack = await socket.call("resume", data)
        assert ack["success"] is False
        assert ack["statusCode"] == 400, ack
    limit = gateway.resume_rate.calls
    # The bad calls above counted too.
    for _ in range(limit - len(bad)):
        assert (await socket.call("resume", {}))["success"] is True
    ack = await socket.call("resume", {})
    assert ack["success"] is False
    assert ack["statusCode"] == 429
    assert "too many resume calls" in ack["message"]


async def test_stream_is_capped(
    live_server: LiveServer, http: httpx.AsyncClient, emitter: Emitter
) -> None:
    user = await new_user(http)
    redis = live_server.app.api.state.services.redis
    key = stream_key(user["user"]["id"])
    async with redis.pipeline(transaction=False) as pipe:
        for n in range(STREAM_MAXLEN + 5):
            pipe.xadd(key, {"id": f"old-{n}", "event": "x", "payload": "{}"})
        await pipe.execute()
    await emitter.emit_to_user(user["user"]["id"], "cart:update", {"n": 1})
    assert await redis.xlen(key) == STREAM_MAXLEN
    assert await redis.pttl(key) > 0
