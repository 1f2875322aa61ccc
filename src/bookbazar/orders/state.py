"""The order state machine (DESIGN.md §4), applied with guarded updates.

Every transition is `UPDATE ... WHERE id = :id AND status IN (allowed sources)`, so two
racing paths (webhook vs expiry, expiry vs cancel) can never both win. The event for the
transition is written to the outbox in the same transaction.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bookbazar.inventory.service import Hold
from bookbazar.models import OrderStatus as S
from bookbazar.outbox.store import add_order_event
from bookbazar.pg import Executor

TRANSITIONS: dict[S, frozenset[S]] = {
    S.PENDING: frozenset({S.PAYMENT_PENDING, S.FAILED}),
    S.PAYMENT_PENDING: frozenset({S.PAID, S.EXPIRED, S.CANCELLED}),
    S.PAID: frozenset({S.FULFILLING}),
    S.FULFILLING: frozenset({S.SHIPPED}),
    S.SHIPPED: frozenset({S.DELIVERED}),
    # A payment that arrives after the reservation ended: sold if stock allows, else refunded.
    S.EXPIRED: frozenset({S.PAID, S.REFUND_PENDING}),
    S.CANCELLED: frozenset({S.PAID, S.REFUND_PENDING}),
    S.REFUND_PENDING: frozenset({S.REFUNDED}),
}

EVENT_FOR: dict[S, str] = {
    S.PAYMENT_PENDING: "order.created",
    S.PAID: "order.paid",
    S.EXPIRED: "order.expired",
    S.CANCELLED: "order.cancelled",
    S.FULFILLING: "order.fulfilling",
    S.SHIPPED: "order.shipped",
    S.DELIVERED: "order.delivered",
    S.REFUNDED: "order.refunded",
}

RESERVING = frozenset({S.PENDING, S.PAYMENT_PENDING})
SOLD = frozenset({S.PAID, S.FULFILLING, S.SHIPPED, S.DELIVERED})


def sources_of(target: S) -> frozenset[S]:
    return frozenset(src for src, targets in TRANSITIONS.items() if target in targets)


@dataclass(frozen=True, slots=True)
class Transition:
    """The outcome: `applied` (this call moved it), `already` (it was there already), or
    neither (it is in `status`, from which `target` is not allowed)."""

    order_id: uuid.UUID
    target: S
    status: S
    applied: bool
    user_id: uuid.UUID | None = None
    total: int = 0
    currency: str = ""
    event_id: uuid.UUID | None = None
    # The hold this order owns (the one a release or conversion after this must name).
    hold_token: str | None = None

    @property
    def hold(self) -> Hold | None:
        return None if self.hold_token is None else Hold(self.order_id, self.hold_token)

    @property
    def ok(self) -> bool:
        return self.applied or self.status == self.target


# Columns a transition may set besides the status (the names are never from a client).
SETTABLE = frozenset(
    {"paid_at", "payment_provider", "payment_intent_id", "hold_token", "review_reason"}
)


async def transition(
    conn: Executor,
    order_id: uuid.UUID,
    target: S,
    *,
    from_: frozenset[S] | None = None,
    values: dict[str, Any] | None = None,
    event_data: dict[str, Any] | None = None,
    due_by: datetime | None = None,
) -> Transition:
    """Move the order to `target` if it is in one of the allowed source states (all legal
    sources by default, or the subset `from_`), and, with `due_by`, only if its deadline
    is at or before it; the outbox event is written in the same transaction. Run it in
    the caller's transaction (it does not commit)."""
    sources = sources_of(target) if from_ is None else from_ & sources_of(target)
    values = values or {}
    unknown = set(values) - SETTABLE
    assert not unknown, f"transition cannot set {unknown}"
    names = list(values)
    sets = "".join(f", {name} = ${n}" for n, name in enumerate(names, start=5))
    row = await conn.fetchrow(
        f"UPDATE orders SET status = $2, updated_at = now(){sets} "
        "WHERE id = $1 AND status = ANY($3::text[]) "
        "AND ($4::timestamptz IS NULL OR expires_at <= $4) "
        "RETURNING user_id, total, currency, hold_token",
        order_id,
        target.value,
        [s.value for s in sources],
        due_by,
        *(values[name] for name in names),
    )
    if row is None:
        current = await conn.fetchrow(
            "SELECT status, hold_token FROM orders WHERE id = $1", order_id
        )
        if current is None:
            raise LookupError(f"order {order_id} does not exist")
        return Transition(
            order_id, target, S(current.status), applied=False, hold_token=current.hold_token
        )
    event_id = None
    event_type = EVENT_FOR.get(target)
    if event_type is not None:
        event_id = await add_order_event(
            conn,
            event_type,
            order_id=order_id,
            user_id=row.user_id,
            status=target.value,
            total=row.total,
            currency=row.currency,
            data=event_data,
        )
    return Transition(
        order_id,
        target,
        target,
        applied=True,
        user_id=row.user_id,
        total=row.total,
        currency=row.currency,
        event_id=event_id,
        hold_token=row.hold_token,
    )
