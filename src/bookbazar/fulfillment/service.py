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

from bookbazar.fulfillment import repository as repo
from bookbazar.fulfillment.carriers import Carrier, default_carrier
from bookbazar.kit.clock import utcnow
from bookbazar.models import OrderStatus as S
from bookbazar.orders.state import EVENT_FOR
from bookbazar.outbox.store import OrderEvent, add_order_events
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
    async with services.pg.tx() as conn:
        moved = await repo.move_batch(
            conn,
            source=S.PAID.value,
            target=S.FULFILLING.value,
            before=utcnow(),
            limit=BATCH,
            only=only,
        )
        await add_order_events(conn, [_event(order, S.FULFILLING, {}) for order in moved])
    return [o.order_id for o in moved]


async def _ship(
    services: Services, carrier: Carrier, before: datetime, only: Sequence[uuid.UUID] | None
) -> list[uuid.UUID]:
    """FULFILLING -> SHIPPED: book each shipment with the carrier (outside any
    transaction; keyed by the order, so a retry gets the same label), then record them
    and move the orders in one transaction, the tracking number in order.shipped."""
    due = await repo.due_for_shipping(services.pg, before, BATCH, only)
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
    async with services.pg.tx() as conn:
        stored = await repo.record_shipments(conn, labels)
        moved = await repo.move_batch(
            conn,
            source=S.FULFILLING.value,
            target=S.SHIPPED.value,
            before=utcnow(),
            limit=BATCH,
            only=[o for o, _, _ in labels],
        )
        await add_order_events(
            conn,
            [
                _event(
                    order,
                    S.SHIPPED,
                    {
                        "carrier": stored[order.order_id][0],
                        "trackingNumber": stored[order.order_id][1],
                    },
                )
                for order in moved
            ],
        )
    return [o.order_id for o in moved]


async def _deliver(
    services: Services, before: datetime, only: Sequence[uuid.UUID] | None
) -> list[uuid.UUID]:
    """SHIPPED -> DELIVERED (order.delivered), the shipment's delivered_at set with it."""
    async with services.pg.tx() as conn:
        moved = await repo.move_batch(
            conn,
            source=S.SHIPPED.value,
            target=S.DELIVERED.value,
            before=before,
            limit=BATCH,
            only=only,
        )
        if not moved:
            return []
        shipments = await repo.shipments_of(conn, [o.order_id for o in moved])
        await repo.mark_delivered(conn, [o.order_id for o in moved])
        await add_order_events(
            conn,
            [
                _event(
                    order,
                    S.DELIVERED,
                    {"trackingNumber": shipments.get(order.order_id, ("", None))[1]},
                )
                for order in moved
            ],
        )
    return [o.order_id for o in moved]


def _event(order: repo.Moved, status: S, data: dict[str, object]) -> OrderEvent:
    return OrderEvent(
        EVENT_FOR[status],
        order.order_id,
        order.user_id,
        status.value,
        order.total,
        order.currency,
        data,
    )
