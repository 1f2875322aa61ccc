"""The outbox relay keeps one order's events in order across a failed publish (defect 4).

An event that failed is retried after a backoff; until it is sent, no later event of the
same order may go out (neither from the same relay in a later batch nor from a second
relay running at the same time), while other orders' events are not held back.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis
from sqlalchemy import text
from tests.conftest import create_book, register
from tests.orders.conftest import add_to_cart, outbox_types, place

from bookbazar.orders.settlement import Settled, settle_payment
from bookbazar.outbox.relay import ORDER_EVENTS_CHANNEL, relay_once
from bookbazar.services import Services


class Channel:
    """What a subscriber of `order:events` receives, in order."""

    def __init__(self, url: str) -> None:
        self.redis = Redis.from_url(url, decode_responses=True)
        self.pubsub = self.redis.pubsub()
        self.received: list[dict[str, Any]] = []

    async def drain(self) -> list[dict[str, Any]]:
        """Everything published so far (waits until the channel has been quiet a moment)."""
        quiet = 0
        while quiet < 3:
            msg = await self.pubsub.get_message(ignore_subscribe_messages=True, timeout=0.1)
            if msg is None:
                quiet += 1
                continue
            quiet = 0
            self.received.append(json.loads(msg["data"]))
        return self.received

    def types_of(self, order_id: str) -> list[str]:
        return [m["type"] for m in self.received if m["orderId"] == order_id]


@pytest.fixture
async def channel(services: Services) -> AsyncIterator[Channel]:
    ch = Channel(services.settings.redis_url or "")
    await ch.pubsub.subscribe(ORDER_EVENTS_CHANNEL)
    # The subscription is confirmed before anything is published.
    confirmed = await ch.pubsub.get_message(timeout=2)
    assert confirmed is not None and confirmed["type"] == "subscribe"
    try:
        yield ch
    finally:
        await ch.pubsub.aclose()
        await ch.redis.aclose()


class Hooks:
    """Event hooks that record what was delivered; the first delivery of the watched
    order's `order.created` fails (a downstream blip after the publish)."""

    def __init__(self, failing_order: str) -> None:
        self.failing_order = failing_order
        self.failures = 0
        self.delivered: list[tuple[str, str]] = []

    async def created(self, _: Services, event: dict[str, Any]) -> None:
        if event["orderId"] == self.failing_order and self.failures == 0:
            self.failures += 1
            raise RuntimeError("downstream unavailable")
        self.delivered.append((str(event["orderId"]), str(event["type"])))

    async def other(self, _: Services, event: dict[str, Any]) -> None:
        self.delivered.append((str(event["orderId"]), str(event["type"])))

    @property
    def table(self) -> dict[str, list[Any]]:
        return {"order.created": [self.created], "order.paid": [self.other]}

    def of(self, order_id: str) -> list[str]:
        return [t for o, t in self.delivered if o == order_id]


async def _place(client: httpx.AsyncClient, services: Services) -> dict[str, Any]:
    user = await register(client)
    book = await create_book(services, stock=5)
    await add_to_cart(client, user, book, 1)
    resp = await place(client, user)
    assert resp.status_code == 201, resp.text
    data: dict[str, Any] = resp.json()["data"]
    return data


async def _pay(services: Services, order: dict[str, Any]) -> None:
    result = await settle_payment(
        services,
        uuid.UUID(order["orderId"]),
        amount=order["total"],
        currency=order["currency"],
        provider="sandbox",
        intent_id=f"pi_test_{order['orderId']}",
    )
    assert result.outcome == Settled.PAID


async def _backoff_passes(services: Services) -> None:
    async with services.sessionmaker() as session, session.begin():
        await session.execute(
            text("UPDATE outbox_events SET next_attempt_at = now() WHERE sent_at IS NULL")
        )


async def _unsent(services: Services, order_id: str) -> list[str]:
    async with services.sessionmaker() as session:
        rows = await session.execute(
            text(
                "SELECT type FROM outbox_events WHERE order_id = :o AND sent_at IS NULL "
                "ORDER BY created_at"
            ),
            {"o": uuid.UUID(order_id)},
        )
        return [r.type for r in rows]


def assert_in_order(types: list[str]) -> None:
    """At least once, in order: every `order.created` (retries included) comes before
    the first `order.paid`, and each is there."""
    assert "order.created" in types and "order.paid" in types, types
    first_paid = types.index("order.paid")
    assert "order.created" not in types[first_paid:], f"order.paid went out first: {types}"


@pytest.mark.parametrize("paid_before_first_relay", [False, True], ids=["paid-later", "same-batch"])
async def test_a_backed_off_event_holds_back_its_orders_later_events(
    client: httpx.AsyncClient,
    services: Services,
    channel: Channel,
    paid_before_first_relay: bool,
) -> None:
    order = await _place(client, services)
    oid = order["orderId"]
    hooks = Hooks(oid)
    if paid_before_first_relay:
        await _pay(services, order)

    # The first publish of order.created fails: it is backed off.
    await relay_once(services, hooks.table)
    assert hooks.failures == 1
    if not paid_before_first_relay:
        await _pay(services, order)
    assert await outbox_types(services, oid) == ["order.created", "order.paid"]

    # While it is backed off, later batches (one relay, then two at once) send nothing
    # of this order: order.paid waits for order.created.
    for _ in range(3):
        await relay_once(services, hooks.table)
        await asyncio.gather(relay_once(services, hooks.table), relay_once(services, hooks.table))
    await channel.drain()
    assert "order.paid" not in channel.types_of(oid), channel.types_of(oid)
    assert hooks.of(oid) == []
    assert await _unsent(services, oid) == ["order.created", "order.paid"]

    # The backoff passes: both go out, order.created first.
    await _backoff_passes(services)
    for _ in range(4):
        await asyncio.gather(relay_once(services, hooks.table), relay_once(services, hooks.table))
    await channel.drain()
    assert await _unsent(services, oid) == []
    assert hooks.of(oid) == ["order.created", "order.paid"]
    assert_in_order(channel.types_of(oid))
    assert channel.types_of(oid).count("order.paid") == 1


async def test_two_relays_never_publish_an_orders_events_out_of_order(
    client: httpx.AsyncClient, services: Services, channel: Channel
) -> None:
    """Two relays racing over orders with two events each: every order's order.paid is
    delivered after its order.created, whichever relay claims what."""
    orders = [await _place(client, services) for _ in range(6)]
    for order in orders:
        await _pay(services, order)
    hooks = Hooks(orders[0]["orderId"])  # one of them fails once as well
    for _ in range(6):
        await asyncio.gather(*(relay_once(services, hooks.table) for _ in range(3)))
    await _backoff_passes(services)
    for _ in range(4):
        await asyncio.gather(*(relay_once(services, hooks.table) for _ in range(3)))
    await channel.drain()
    for order in orders:
        oid = order["orderId"]
        assert await _unsent(services, oid) == []
        assert hooks.of(oid) == ["order.created", "order.paid"], oid
        assert_in_order(channel.types_of(oid))


async def test_other_orders_are_not_held_back(
    client: httpx.AsyncClient, services: Services, channel: Channel
) -> None:
    stuck = await _place(client, services)
    hooks = Hooks(stuck["orderId"])
    await relay_once(services, hooks.table)
    assert hooks.failures == 1
    await _pay(services, stuck)

    # Another customer's order placed and paid while the first one's event is backed off.
    other = await _place(client, services)
    await _pay(services, other)
    await relay_once(services, hooks.table)
    await relay_once(services, hooks.table)
    await channel.drain()
    assert hooks.of(other["orderId"]) == ["order.created", "order.paid"]
    assert channel.types_of(other["orderId"]) == ["order.created", "order.paid"]
    assert await _unsent(services, other["orderId"]) == []
    # The stuck order still waits for its backoff.
    assert hooks.of(stuck["orderId"]) == []
    assert await _unsent(services, stuck["orderId"]) == ["order.created", "order.paid"]
