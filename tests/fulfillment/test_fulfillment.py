"""Fulfilment: PAID -> FULFILLING -> SHIPPED (tracking number) -> DELIVERED, one step per
round of `advance`, in batches, idempotent."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
from sqlalchemy import text

from bookbazar.fulfillment import service as fulfillment
from bookbazar.fulfillment.carriers import Carrier, CarrierError, Label
from bookbazar.fulfillment.jobs import ADVANCE_JOB
from bookbazar.services import Services
from bookbazar.worker import load_registry
from tests.orders.conftest import order_status, outbox_types
from tests.payments.conftest import initialised, pay, placed_order

EXPECTED = ["order.created", "order.paid", "order.fulfilling", "order.shipped", "order.delivered"]


async def _paid_order(client: httpx.AsyncClient, services: Services) -> str:
    user, _, order_id = await placed_order(client, services)
    intent = await initialised(client, user, order_id)
    assert (await pay(client, order_id, intent)).json()["data"]["result"] == "paid"
    return order_id


async def _shipment(services: Services, order_id: str) -> Any:
    async with services.sessionmaker() as session:
        return (
            await session.execute(
                text("SELECT * FROM shipments WHERE order_id = :o"), {"o": uuid.UUID(order_id)}
            )
        ).one_or_none()


async def _shipped_event(services: Services, order_id: str) -> dict[str, Any]:
    async with services.sessionmaker() as session:
        payload: dict[str, Any] = (
            await session.execute(
                text(
                    "SELECT payload FROM outbox_events "
                    "WHERE order_id = :o AND type = 'order.shipped'"
                ),
                {"o": uuid.UUID(order_id)},
            )
        ).scalar_one()
    return payload


async def _age(services: Services, seconds: int = 600) -> None:
    async with services.sessionmaker() as session, session.begin():
        await session.execute(
            text("UPDATE orders SET updated_at = updated_at - make_interval(secs => :s)"),
            {"s": seconds},
        )


async def test_the_worker_advances_fulfilment_every_second() -> None:
    assert any(t.name == ADVANCE_JOB for t in load_registry().ticks)


async def test_paid_orders_are_fulfilled_one_step_per_round(
    client: httpx.AsyncClient, services: Services
) -> None:
    orders = [await _paid_order(client, services) for _ in range(3)]
    ids = [uuid.UUID(o) for o in orders]
    done = await fulfillment.advance(services)
    assert sorted(done.fulfilling) == sorted(ids) and not done.shipped
    assert {await order_status(services, o) for o in orders} == {"FULFILLING"}

    done = await fulfillment.advance(services)
    assert sorted(done.shipped) == sorted(ids) and not done.delivered
    shipment = await _shipment(services, orders[0])
    assert shipment.carrier == "sandbox-post"
    assert shipment.tracking_number.startswith("SBX") and len(shipment.tracking_number) == 15
    assert shipment.shipped_at is not None and shipment.delivered_at is None
    event = await _shipped_event(services, orders[0])
    assert event["data"] == {"carrier": "sandbox-post", "trackingNumber": shipment.tracking_number}

    done = await fulfillment.advance(services)
    assert sorted(done.delivered) == sorted(ids)
    assert (await _shipment(services, orders[0])).delivered_at is not None
    for order_id in orders:
        assert await outbox_types(services, order_id) == EXPECTED

    # Another round (or two workers' rounds) changes nothing.
    assert (await fulfillment.advance(services)).total == 0
    for order_id in orders:
        assert await outbox_types(services, order_id) == EXPECTED
    async with services.sessionmaker() as session:
        assert (await session.execute(text("SELECT count(*) FROM shipments"))).scalar_one() == 3


async def test_steps_wait_as_configured(client: httpx.AsyncClient, services: Services) -> None:
    services.settings.fulfillment_ship_delay_seconds = 60
    services.settings.fulfillment_deliver_delay_seconds = 120
    order_id = await _paid_order(client, services)
    await fulfillment.advance(services)
    assert await order_status(services, order_id) == "FULFILLING"
    assert (await fulfillment.advance(services)).total == 0  # not for another minute
    await _age(services, 61)
    assert (await fulfillment.advance(services)).shipped == [uuid.UUID(order_id)]
    await _age(services, 61)
    assert (await fulfillment.advance(services)).total == 0
    await _age(services, 61)
    assert (await fulfillment.advance(services)).delivered == [uuid.UUID(order_id)]


class FlakyCarrier(Carrier):
    name = "flaky"

    def __init__(self) -> None:
        self.calls = 0

    async def create_shipment(
        self, order_id: uuid.UUID, address: dict[str, Any] | None, *, idempotency_key: str
    ) -> Label:
        self.calls += 1
        raise CarrierError("carrier API unavailable")


async def test_carrier_failure_leaves_the_order_fulfilling_for_the_next_round(
    client: httpx.AsyncClient, services: Services
) -> None:
    order_id = await _paid_order(client, services)
    await fulfillment.advance(services)
    carrier = FlakyCarrier()
    done = await fulfillment.advance(services, carrier=carrier)
    assert carrier.calls == 1 and done.total == 0
    assert await order_status(services, order_id) == "FULFILLING"
    assert await _shipment(services, order_id) is None
    # The next round (with a working carrier) ships it.
    assert (await fulfillment.advance(services)).shipped == [uuid.UUID(order_id)]


async def test_unpaid_orders_are_not_fulfilled(
    client: httpx.AsyncClient, services: Services
) -> None:
    _, _, order_id = await placed_order(client, services)
    for _ in range(3):
        assert (await fulfillment.advance(services)).total == 0
    assert await order_status(services, order_id) == "PAYMENT_PENDING"
    assert await outbox_types(services, order_id) == ["order.created"]
