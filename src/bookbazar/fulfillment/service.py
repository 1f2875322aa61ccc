"""Fulfilment: PAID -> FULFILLING -> SHIPPED (carrier, tracking number) -> DELIVERED.

`advance` moves every order that is due one step, in batches (a tick under the worker
lease, once per deployment): each step is one transaction that moves a batch of orders
with a guarded update (rows claimed with SKIP LOCKED) and writes each order's event to the
outbox with it. Orders wait FULFILLMENT_SHIP_DELAY_SECONDS before they ship and
FULFILLMENT_DELIVER_DELAY_SECONDS before they are delivered (the sandbox carrier's
simulated time). Every step is idempotent: a crash anywhere leaves each order in a state
the next round takes from; a carrier that fails leaves its orders FULFILLING for the next
round (they are not stuck: the round after retries them).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from bookbazar.fulfillment import repository as repo
from bookbazar.fulfillment.carriers import Carrier, default_carrier
from bookbazar.kit.clock import utcnow
from bookbazar.models import OrderStatus as S
from bookbazar.orders.state import EVENT_FOR
from bookbazar.outbox.store import add_order_event
from bookbazar.services import Services

log = structlog.get_logger(__name__)
BATCH = 200


@dataclass(slots=True)
class Advanced:
    fulfilling: list[uuid.UUID] = field(default_factory=list)
    shipped: list[uuid.UUID] = field(default_factory=list)
    delivered: list[uuid.UUID] = field(default_factory=list)

    @property
    def total(self) -> int:
        return len(self.fulfilling) + len(self.shipped) + len(self.delivered)


async def advance(
    services: Services,
    *,
    carrier: Carrier | None = None,
    only: Sequence[uuid.UUID] | None = None,
) -> Advanced:
    """Move every order that is due one step further (or only the orders in `only`).
    Returns the orders moved, by step."""
    settings = services.settings
    now = utcnow()
    done = Advanced()
    # Delivered first, so an order moves at most one step per round.
    done.delivered = await _deliver(
        services, now - timedelta(seconds=settings.fulfillment_deliver_delay_seconds), only
    )
    done.shipped = await _ship(
        services,
        carrier or default_carrier(),
        now - timedelta(seconds=settings.fulfillment_ship_delay_seconds),
        only,
    )
    done.fulfilling = await _start(services, only)
    if done.total:
        log.info(
            "fulfillment_advanced",
            fulfilling=len(done.fulfilling),
            shipped=len(done.shipped),
            delivered=len(done.delivered),
        )
    return done


async def _start(services: Services, only: Sequence[uuid.UUID] | None) -> list[uuid.UUID]:
    """PAID -> FULFILLING (order.fulfilling)."""
    async with services.sessionmaker() as session, session.begin():
        moved = await repo.move_batch(
            session,
            source=S.PAID.value,
            target=S.FULFILLING.value,
            before=utcnow(),
            limit=BATCH,
            only=only,
        )
        for order in moved:
            await _event(session, order, S.FULFILLING, {})
    return [o.order_id for o in moved]


async def _ship(
    services: Services, carrier: Carrier, before: datetime, only: Sequence[uuid.UUID] | None
) -> list[uuid.UUID]:
    """FULFILLING -> SHIPPED: book each shipment with the carrier (outside any
    transaction; keyed by the order, so a retry gets the same label), then record them
    and move the orders in one transaction, the tracking number in order.shipped."""
    async with services.sessionmaker() as session:
        due = await repo.due_for_shipping(session, before, BATCH, only)
    labels: list[tuple[uuid.UUID, str, str]] = []
    for order_id, address in due:
        try:
            label = await carrier.create_shipment(order_id, address, idempotency_key=str(order_id))
        except Exception as exc:  # the next round tries this order again
            log.warning("shipment_not_booked", order_id=str(order_id), error=repr(exc))
            continue
        labels.append((order_id, label.carrier, label.tracking_number))
    if not labels:
        return []
    async with services.sessionmaker() as session, session.begin():
        stored = await repo.record_shipments(session, labels)
        moved = await repo.move_batch(
            session,
            source=S.FULFILLING.value,
            target=S.SHIPPED.value,
            before=utcnow(),
            limit=BATCH,
            only=[o for o, _, _ in labels],
        )
        for order in moved:
            carrier_name, tracking = stored[order.order_id]
            await _event(
                session, order, S.SHIPPED, {"carrier": carrier_name, "trackingNumber": tracking}
            )
    return [o.order_id for o in moved]


async def _deliver(
    services: Services, before: datetime, only: Sequence[uuid.UUID] | None
) -> list[uuid.UUID]:
    """SHIPPED -> DELIVERED (order.delivered), the shipment's delivered_at set with it."""
    async with services.sessionmaker() as session, session.begin():
        moved = await repo.move_batch(
            session,
            source=S.SHIPPED.value,
            target=S.DELIVERED.value,
            before=before,
            limit=BATCH,
            only=only,
        )
        if not moved:
            return []
        shipments = await repo.shipments_of(session, [o.order_id for o in moved])
        await repo.mark_delivered(session, [o.order_id for o in moved])
        for order in moved:
            tracking = shipments.get(order.order_id, ("", None))[1]
            await _event(session, order, S.DELIVERED, {"trackingNumber": tracking})
    return [o.order_id for o in moved]


async def _event(
    session: AsyncSession, order: repo.Moved, status: S, data: dict[str, object]
) -> None:
    await add_order_event(
        session,
        EVENT_FOR[status],
        order_id=order.order_id,
        user_id=order.user_id,
        status=status.value,
        total=order.total,
        currency=order.currency,
        data=data,
    )
