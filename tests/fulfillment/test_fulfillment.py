"""Fulfilment: PAID -> FULFILLING -> SHIPPED (tracking number) -> DELIVERED, idempotent."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from bookbazar.fulfillment import service as fulfillment
from bookbazar.fulfillment.carriers import Carrier, CarrierError, Label
from bookbazar.fulfillment.schemas import StartFulfillment
from bookbazar.kit.queues import FULFILLMENT
from bookbazar.services import Services
from tests.orders.conftest import order_status, outbox_types
from tests.payments.conftest import initialised, pay, placed_order, relay, run_job


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


async def test_paid_order_is_fulfilled_step_by_step(
    client: httpx.AsyncClient, services: Services
) -> None:
    order_id = await _paid_order(client, services)
    await relay(services)  # order.paid -> the fulfilment job
    assert await run_job(services, FULFILLMENT, f"fulfil-{order_id}") == {"status": "FULFILLING"}
    assert await order_status(services, order_id) == "FULFILLING"

    assert await run_job(services, FULFILLMENT, f"ship-{order_id}") == {"status": "SHIPPED"}
    shipment = await _shipment(services, order_id)
    assert shipment.carrier == "sandbox-post"
    assert shipment.tracking_number.startswith("SBX") and len(shipment.tracking_number) == 15
    assert shipment.shipped_at is not None and shipment.delivered_at is None
    event = await _shipped_event(services, order_id)
    assert event["data"] == {"carrier": "sandbox-post", "trackingNumber": shipment.tracking_number}

    assert await run_job(services, FULFILLMENT, f"deliver-{order_id}") == {"status": "DELIVERED"}
    assert (await _shipment(services, order_id)).delivered_at is not None
    expected = [
        "order.created",
        "order.paid",
        "order.fulfilling",
        "order.shipped",
        "order.delivered",
    ]
    assert await outbox_types(services, order_id) == expected

    # Every step run again (a retry or a duplicate job) changes nothing.
    for job in ("fulfil", "ship", "deliver"):
        await run_job(services, FULFILLMENT, f"{job}-{order_id}")
    assert await outbox_types(services, order_id) == expected
    async with services.sessionmaker() as session:
        assert (await session.execute(text("SELECT count(*) FROM shipments"))).scalar_one() == 1


async def test_steps_are_delayed_as_configured(
    client: httpx.AsyncClient, services: Services
) -> None:
    services.settings.fulfillment_ship_delay_seconds = 2
    services.settings.fulfillment_deliver_delay_seconds = 3
    order_id = await _paid_order(client, services)
    await fulfillment.start_fulfillment(services, uuid.UUID(order_id))
    ship = await services.queues.get(FULFILLMENT).getJob(f"ship-{order_id}")
    assert ship is not None and ship.opts["delay"] == 2000
    await fulfillment.ship_order(services, uuid.UUID(order_id))
    deliver = await services.queues.get(FULFILLMENT).getJob(f"deliver-{order_id}")
    assert deliver is not None and deliver.opts["delay"] == 3000


class FlakyCarrier(Carrier):
    name = "flaky"

    def __init__(self) -> None:
        self.calls = 0

    async def create_shipment(
        self, order_id: uuid.UUID, address: dict[str, Any] | None, *, idempotency_key: str
    ) -> Label:
        self.calls += 1
        raise CarrierError("carrier API unavailable")


async def test_carrier_failure_leaves_the_order_fulfilling_for_a_retry(
    client: httpx.AsyncClient, services: Services
) -> None:
    order_id = await _paid_order(client, services)
    await fulfillment.start_fulfillment(services, uuid.UUID(order_id))
    carrier = FlakyCarrier()
    with pytest.raises(CarrierError):
        await fulfillment.ship_order(services, uuid.UUID(order_id), carrier)
    assert carrier.calls == 1
    assert await order_status(services, order_id) == "FULFILLING"
    assert await _shipment(services, order_id) is None
    # The retry (with a working carrier) ships it.
    assert await fulfillment.ship_order(services, uuid.UUID(order_id)) == "SHIPPED"


async def test_unpaid_orders_are_not_fulfilled(
    client: httpx.AsyncClient, services: Services
) -> None:
    _, _, order_id = await placed_order(client, services)
    oid = uuid.UUID(order_id)
    assert await fulfillment.start_fulfillment(services, oid) == "PAYMENT_PENDING"
    assert await fulfillment.ship_order(services, oid) == "PAYMENT_PENDING"
    assert await fulfillment.deliver_order(services, oid) == "PAYMENT_PENDING"
    assert await fulfillment.start_fulfillment(services, uuid.uuid4()) == "missing"
    assert await order_status(services, order_id) == "PAYMENT_PENDING"
    assert await outbox_types(services, order_id) == ["order.created"]


async def test_orders_stuck_after_a_lost_job_are_resumed(
    client: httpx.AsyncClient, services: Services
) -> None:
    order_id = await _paid_order(client, services)  # no relay: the job was never enqueued
    assert await fulfillment.resume_stuck(services) == 0  # not stuck yet
    async with services.sessionmaker() as session, session.begin():
        await session.execute(
            text("UPDATE orders SET updated_at = now() - interval '10 minutes' WHERE id = :id"),
            {"id": uuid.UUID(order_id)},
        )
    assert await fulfillment.resume_stuck(services) == 1
    jobs = await services.queues.get(FULFILLMENT).getJobs(["waiting"])
    [job] = [j for j in jobs if j.data["orderId"] == order_id]
    assert job.name == StartFulfillment.name
    await run_job(services, FULFILLMENT, str(job.id))
    assert await order_status(services, order_id) == "FULFILLING"
