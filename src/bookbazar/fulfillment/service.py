"""Fulfilment steps. Each step is a guarded transition (orders.state) whose event comes
from the outbox, then the next step is enqueued with a deterministic job id. Every step
is idempotent: a retry, a duplicate job or a step for an order already further along
only (re-)enqueues what comes next."""

from __future__ import annotations

import time
import uuid
from datetime import timedelta

import structlog

from bookbazar.fulfillment import repository as repo
from bookbazar.fulfillment.carriers import Carrier, default_carrier
from bookbazar.fulfillment.schemas import DeliverOrder, FulfillmentStep, ShipOrder, StartFulfillment
from bookbazar.kit.clock import utcnow
from bookbazar.models import OrderStatus as S
from bookbazar.orders.state import transition
from bookbazar.services import Services

log = structlog.get_logger(__name__)

STEP_FOR: dict[S, type[FulfillmentStep]] = {
    S.PAID: StartFulfillment,
    S.FULFILLING: ShipOrder,
    S.SHIPPED: DeliverOrder,
}
STUCK_GRACE_SECONDS = 60
SWEEP_BATCH = 200


async def enqueue_step(
    services: Services,
    step: type[FulfillmentStep],
    order_id: uuid.UUID,
    *,
    delay_s: int = 0,
    window: str = "",
) -> None:
    await services.queues.enqueue(step(order_id=order_id, window=window), delay_ms=delay_s * 1000)


async def _next(services: Services, order_id: uuid.UUID, status: S) -> None:
    settings = services.settings
    if status is S.FULFILLING:
        await enqueue_step(
            services, ShipOrder, order_id, delay_s=settings.fulfillment_ship_delay_seconds
        )
    elif status is S.SHIPPED:
        await enqueue_step(
            services, DeliverOrder, order_id, delay_s=settings.fulfillment_deliver_delay_seconds
        )


async def start_fulfillment(services: Services, order_id: uuid.UUID) -> str:
    """PAID -> FULFILLING (order.fulfilling), then schedule shipping. Returns the status."""
    async with services.sessionmaker() as session, session.begin():
        state = await repo.order_state(session, order_id)
        if state is None:
            return "missing"
        moved = await transition(session, order_id, S.FULFILLING, from_=frozenset({S.PAID}))
    if moved.applied:
        log.info("order_fulfilling", order_id=str(order_id))
    await _next(services, order_id, moved.status)
    return moved.status.value


async def ship_order(
    services: Services, order_id: uuid.UUID, carrier: Carrier | None = None
) -> str:
    """Book the shipment with the carrier (outside any transaction; keyed by the order, so
    a retry gets the same label), then in one transaction record it and move
    FULFILLING -> SHIPPED with the tracking number in order.shipped. Raises CarrierError
    (the job retries, then dead-letters)."""
    carrier = carrier or default_carrier()
    async with services.sessionmaker() as session:
        state = await repo.order_state(session, order_id)
        shipment = await repo.shipment_of(session, order_id)
    if state is None:
        return "missing"
    status, address = S(state[0]), state[1]
    if status is not S.FULFILLING:
        await _next(services, order_id, status)
        return status.value
    if shipment is None:
        label = await carrier.create_shipment(order_id, address, idempotency_key=str(order_id))
        carrier_name, tracking = label.carrier, label.tracking_number
    else:
        carrier_name, tracking = shipment.carrier, shipment.tracking_number
    async with services.sessionmaker() as session, session.begin():
        stored = await repo.insert_shipment(session, order_id, carrier_name, tracking)
        moved = await transition(
            session,
            order_id,
            S.SHIPPED,
            from_=frozenset({S.FULFILLING}),
            event_data={"carrier": stored.carrier, "trackingNumber": stored.tracking_number},
        )
    if moved.applied:
        log.info("order_shipped", order_id=str(order_id), carrier=stored.carrier)
    await _next(services, order_id, moved.status)
    return moved.status.value


async def deliver_order(services: Services, order_id: uuid.UUID) -> str:
    """SHIPPED -> DELIVERED (order.delivered), the shipment's delivered_at set with it."""
    async with services.sessionmaker() as session, session.begin():
        if await repo.order_state(session, order_id) is None:
            return "missing"
        shipment = await repo.shipment_of(session, order_id)
        moved = await transition(
            session,
            order_id,
            S.DELIVERED,
            from_=frozenset({S.SHIPPED}),
            event_data={"trackingNumber": shipment.tracking_number if shipment else None},
        )
        if moved.applied:
            await repo.mark_delivered(session, order_id)
    if moved.applied:
        log.info("order_delivered", order_id=str(order_id))
    return moved.status.value


async def resume_stuck(services: Services) -> int:
    """Re-enqueue the step of orders that sat in PAID/FULFILLING/SHIPPED much longer than
    planned (a lost job). A fresh job id per window, as the first may be kept as failed."""
    settings = services.settings
    now = utcnow()
    grace = STUCK_GRACE_SECONDS
    thresholds = {
        S.PAID.value: now - timedelta(seconds=grace),
        S.FULFILLING.value: now
        - timedelta(seconds=grace + settings.fulfillment_ship_delay_seconds),
        S.SHIPPED.value: now
        - timedelta(seconds=grace + settings.fulfillment_deliver_delay_seconds),
    }
    async with services.sessionmaker() as session:
        stuck = await repo.stuck_orders(session, thresholds, SWEEP_BATCH)
    window = f"r{int(time.time() // (grace * 5))}"
    for order_id, status in stuck:
        await enqueue_step(services, STEP_FOR[S(status)], order_id, window=window)
    if stuck:
        log.warning("fulfillment_resumed", orders=len(stuck))
    return len(stuck)
