"""All SQL of the stock ledger: the snapshot reconcile compares Redis with, and audits."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from bookbazar.models import StockAudit

MISSING = "MISSING"


@dataclass(slots=True)
class LedgerSnapshot:
    """PostgreSQL's view of the books in scope, taken under FOR SHARE locks on them."""

    # book id -> units on hand
    books: dict[str, int] = field(default_factory=dict)
    # order id -> (status, hold token) for the orders of the holds listed beforehand
    orders: dict[str, tuple[str, str]] = field(default_factory=dict)
    # order id -> (hold token, {book id: units}) for orders awaiting payment in scope
    pending: dict[str, tuple[str, dict[str, int]]] = field(default_factory=dict)
    # books in scope restocked within the grace period (their restock's own counter
    # update may still be on its way: a correction there is not drift)
    restocked: set[str] = field(default_factory=set)

    def as_json(self) -> dict[str, Any]:
        return {
            "books": self.books,
            "orders": {o: list(v) for o, v in self.orders.items()},
            "pending": {o: [t, lines] for o, (t, lines) in self.pending.items()},
        }


async def snapshot(
    session: AsyncSession,
    book_ids: Sequence[uuid.UUID] | None,
    listed_orders: Sequence[uuid.UUID],
    recent_after: datetime,
) -> LedgerSnapshot:
    """Lock the books in scope FOR SHARE (every book when `book_ids` is None) and read
    what the holds should be. Run in READ COMMITTED: once the locks are held no sale or
    restock of these books can commit, and later statements see everything committed
    before. Orders listed that touch no book in scope are left out (their holds are not
    this reconcile's business), and so are orders that ended after `recent_after` (their
    own path is releasing the hold right now: left alone, it still counts as held, which
    the counter agrees with until that release). Listed orders that do not exist are
    reported MISSING."""
    scoped = book_ids is not None
    params: dict[str, Any] = {"ids": list(book_ids or ())}
    rows = await session.execute(
        text(
            "SELECT id, stock FROM books "
            + ("WHERE id = ANY(:ids) " if scoped else "")
            + "ORDER BY id FOR SHARE"
        ),
        params,
    )
    snap = LedgerSnapshot(books={str(r.id): int(r.stock) for r in rows})
    if scoped and not snap.books:
        return snap
    pending_rows = await session.execute(
        text(
            "SELECT o.id, o.hold_token, oi.book_id, SUM(oi.quantity) AS units "
            "FROM orders o JOIN order_items oi ON oi.order_id = o.id "
            "WHERE o.status = 'PAYMENT_PENDING' "
            + (
                "AND o.id IN (SELECT order_id FROM order_items WHERE book_id = ANY(:ids)) "
                if scoped
                else ""
            )
            + "GROUP BY o.id, o.hold_token, oi.book_id"
        ),
        params,
    )
    for r in pending_rows:
        _, lines = snap.pending.setdefault(str(r.id), (str(r.hold_token), {}))
        lines[str(r.book_id)] = int(r.units)
    if listed_orders:
        touches = (
            "EXISTS (SELECT 1 FROM order_items oi WHERE oi.order_id = o.id "
            "AND oi.book_id = ANY(:ids))"
            if scoped
            else "true"
        )
        found = await session.execute(
            text(
                f"SELECT o.id, o.status, o.hold_token, {touches} AS touches, "
                "o.status NOT IN ('PENDING', 'PAYMENT_PENDING') "
                "AND o.updated_at > :recent AS settling "
                "FROM orders o WHERE o.id = ANY(:orders)"
            ),
            {**params, "orders": list(listed_orders), "recent": recent_after},
        )
        seen: set[uuid.UUID] = set()
        for r in found:
            seen.add(r.id)
            if r.touches and not r.settling:
                snap.orders[str(r.id)] = (str(r.status), str(r.hold_token))
        for order_id in listed_orders:
            if order_id not in seen:
                snap.orders[str(order_id)] = (MISSING, "")
    restocked = await session.execute(
        text(
            "SELECT DISTINCT book_id FROM restocks WHERE created_at > :recent "
            + ("AND book_id = ANY(:ids)" if scoped else "")
        ),
        {**params, "recent": recent_after},
    )
    snap.restocked = {str(r.book_id) for r in restocked}
    return snap


async def order_states(
    session: AsyncSession, order_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, tuple[str, str]]:
    """(status, hold token) of each order that exists."""
    if not order_ids:
        return {}
    rows = await session.execute(
        text("SELECT id, status, hold_token FROM orders WHERE id = ANY(:ids)"),
        {"ids": list(order_ids)},
    )
    return {r.id: (str(r.status), str(r.hold_token)) for r in rows}


async def save_audit(
    session: AsyncSession,
    *,
    trigger: str,
    started_at: datetime,
    books_checked: int,
    holds_checked: int,
    drift_units: int,
    corrections: dict[str, Any],
) -> StockAudit:
    audit = StockAudit(
        id=uuid.uuid4(),
        trigger=trigger,
        started_at=started_at,
        books_checked=books_checked,
        holds_checked=holds_checked,
        drift_units=drift_units,
        corrections=corrections,
    )
    session.add(audit)
    await session.flush()
    await session.refresh(audit)
    return audit


async def last_audit(session: AsyncSession) -> StockAudit | None:
    return (
        await session.execute(select(StockAudit).order_by(StockAudit.finished_at.desc()).limit(1))
    ).scalar_one_or_none()


async def purge_audits(session: AsyncSession, before: datetime) -> int:
    """Drop clean audits older than `before` (audits that repaired something are kept)."""
    result = await session.execute(
        delete(StockAudit).where(StockAudit.finished_at < before, StockAudit.drift_units == 0)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
