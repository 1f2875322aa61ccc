"""Stock reservations: the only code that changes the Redis availability counters."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from uuid import UUID

import structlog
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bookbazar.inventory import keys
from bookbazar.kit.clock import now_ms
from bookbazar.lua import Scripts

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Shortfall:
    book_id: UUID
    requested: int
    available: int


@dataclass(slots=True)
class ReserveOutcome:
    """What a reservation attempt did. `reserved` is True when the order holds its units
    (newly or already); otherwise `shortfalls` or `ended` says why not."""

    reserved: bool
    already_held: bool = False
    ended: str | None = None
    shortfalls: list[Shortfall] = field(default_factory=list)
    available: dict[UUID, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ReconcileReport:
    # book id -> (counter before, or None when missing; counter after)
    counters: dict[UUID, tuple[int | None, int]]

    @property
    def corrected(self) -> dict[UUID, tuple[int | None, int]]:
        return {b: (old, new) for b, (old, new) in self.counters.items() if old != new}


class Inventory:
    """Atomic stock operations over Redis, rebuilt exactly from PostgreSQL on demand."""

    def __init__(
        self, redis: Redis, scripts: Scripts, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        self.redis = redis
        self.scripts = scripts
        self.sessionmaker = sessionmaker
        # One rebuild of missing counters at a time per process (no stampede after a flush).
        self._rebuild_lock = asyncio.Lock()

    async def available(self, book_ids: Sequence[UUID]) -> dict[UUID, int]:
        """Units available per book; counters missing in Redis are rebuilt first."""
        if not book_ids:
            return {}
        values = await self.redis.mget([keys.avail(b) for b in book_ids])
        out: dict[UUID, int] = {}
        missing: list[UUID] = []
        for book_id, value in zip(book_ids, values, strict=True):
            if value is None:
                missing.append(book_id)
            else:
                out[book_id] = int(value)
        if missing:
            out.update(await self._rebuild_missing(missing))
        return out

    async def _rebuild_missing(self, book_ids: list[UUID]) -> dict[UUID, int]:
        async with self._rebuild_lock:
            values = await self.redis.mget([keys.avail(b) for b in book_ids])
            out = {b: int(v) for b, v in zip(book_ids, values, strict=True) if v is not None}
            still_missing = [b for b in book_ids if b not in out]
            if still_missing:
                report = await self.reconcile(still_missing)
                for book_id in still_missing:
                    out[book_id] = report.counters.get(book_id, (None, 0))[1]
            return out

    async def reserve(
        self,
        order_id: UUID,
        lines: Iterable[tuple[UUID, int]],
        *,
        after_release: bool = False,
    ) -> ReserveOutcome:
        """Reserve all lines for the order or none (atomic; same-book lines are summed).

        Idempotent per order: a second call reports the reservation already held.
        A reservation that already ended is not revived unless `after_release` (a late
        payment re-reserving stock).
        """
        line_list = [(UUID(str(b)), int(q)) for b, q in lines]
        script_keys = [
            keys.reservation(order_id),
            keys.INDEX,
            keys.tombstone(order_id),
            *(keys.avail(b) for b, _ in line_list),
        ]
        args: list[str | int] = [str(order_id), now_ms(), "1" if after_release else "0"]
        for book_id, units in line_list:
            args += [str(book_id), units]
        for _ in range(3):
            result = await self.scripts.run("stock_reserve", script_keys, args)
            tag = result[0]
            if tag == "MISSING":
                await self._rebuild_missing([UUID(b) for b in result[1:]])
                continue
            if tag == "OK":
                levels = {UUID(result[i]): int(result[i + 1]) for i in range(1, len(result), 2)}
                log.debug("stock_reserved", order_id=str(order_id), available=_fmt(levels))
                return ReserveOutcome(reserved=True, available=levels)
            if tag == "EXISTS":
                return ReserveOutcome(reserved=True, already_held=True)
            if tag == "DONE":
                return ReserveOutcome(reserved=False, ended=str(result[1]))
            if tag == "SHORT":
                shortfalls = [
                    Shortfall(UUID(result[i]), int(result[i + 1]), max(0, int(result[i + 2])))
                    for i in range(1, len(result), 3)
                ]
                return ReserveOutcome(reserved=False, shortfalls=shortfalls)
            raise RuntimeError(f"unexpected reserve result {tag!r}")
        raise RuntimeError("stock counters kept disappearing while reserving")

    async def release(self, order_id: UUID) -> dict[UUID, int]:
        """Give the order's held units back. Idempotent; returns new availability."""
        return await self._finish(order_id, "released")

    async def convert(self, order_id: UUID) -> None:
        """Mark the order's held units as sold (on-hand stock fell in PostgreSQL, so
        availability is unchanged). Idempotent."""
        await self._finish(order_id, "converted")

    async def _finish(self, order_id: UUID, state: str) -> dict[UUID, int]:
        result = await self.scripts.run(
            "stock_finish",
            [keys.reservation(order_id), keys.INDEX, keys.tombstone(order_id)],
            [str(order_id), state, keys.TOMBSTONE_TTL_SECONDS, keys.AVAIL_PREFIX],
        )
        levels = {UUID(result[i]): int(result[i + 1]) for i in range(1, len(result), 2)}
        if result[0] != "NONE":
            log.info(f"stock_{state}", order_id=str(order_id), available=_fmt(levels))
        return levels

    async def held_orders(self, older_than_ms: int | None = None) -> list[UUID]:
        """Orders holding a reservation (optionally only those reserved before a time)."""
        upper = "+inf" if older_than_ms is None else older_than_ms
        members = await self.redis.zrangebyscore(keys.INDEX, "-inf", upper)
        return [UUID(m) for m in members]

    async def held_units(self) -> int:
        """Units held by all live reservations (for metrics)."""
        orders = await self.held_orders()
        if not orders:
            return 0
        async with self.redis.pipeline(transaction=False) as pipe:
            for order_id in orders:
                pipe.hvals(keys.reservation(order_id))
            values = await pipe.execute()
        return sum(int(v) for row in values for v in row)

    async def reconcile(self, book_ids: Sequence[UUID] | None = None) -> ReconcileReport:
        """Rebuild counters exactly: available = on hand - units held (PostgreSQL truth).

        Safe while orders are placed and paid: the books' rows are locked FOR SHARE (no
        sale or restock of them can commit meanwhile) and reservations made meanwhile are
        counted where they live, in Redis. Lost reservations of PAYMENT_PENDING orders are
        recreated; reservations of orders that ended are finished.
        """
        members = [str(m) for m in await self.held_orders()]
        async with self.sessionmaker() as session, session.begin():
            # READ COMMITTED on purpose: the FOR SHARE locks stop every sale and restock of
            # these books until we finish, and later statements then see what committed
            # before the locks (REPEATABLE READ would fail on rows sold meanwhile).
            where = "" if book_ids is None else "WHERE id = ANY(:ids)"
            params = {} if book_ids is None else {"ids": list(book_ids)}
            rows = await session.execute(
                text(f"SELECT id, stock FROM books {where} ORDER BY id FOR SHARE"), params
            )
            books = {str(r.id): int(r.stock) for r in rows}
            pending_filter = (
                ""
                if book_ids is None
                else "AND o.id IN (SELECT order_id FROM order_items WHERE book_id = ANY(:ids))"
            )
            rows = await session.execute(
                text(
                    "SELECT o.id, oi.book_id, SUM(oi.quantity) AS units FROM orders o "
                    "JOIN order_items oi ON oi.order_id = o.id "
                    f"WHERE o.status = 'PAYMENT_PENDING' {pending_filter} "
                    "GROUP BY o.id, oi.book_id"
                ),
                params,
            )
            pending: dict[str, dict[str, int]] = {}
            for r in rows:
                pending.setdefault(str(r.id), {})[str(r.book_id)] = int(r.units)
            status: dict[str, str] = {}
            if members:
                rows = await session.execute(
                    text("SELECT id, status FROM orders WHERE id = ANY(:ids)"),
                    {"ids": [UUID(m) for m in members]},
                )
                status = {str(r.id): r.status for r in rows}
            snapshot = json.dumps({"books": books, "status": status, "pending": pending})
            raw = await self.scripts.run(
                "stock_reconcile",
                [keys.INDEX],
                [keys.PREFIX, keys.TOMBSTONE_TTL_SECONDS, now_ms(), snapshot],
            )
        decoded = json.loads(raw) if raw not in ("{}", "[]") else {}
        counters = {
            UUID(b): (None if old is None else int(old), int(new))
            for b, (old, new) in decoded.items()
        }
        report = ReconcileReport(counters)
        if report.corrected:
            log.warning(
                "stock_reconciled",
                corrected={str(b): f"{o}->{n}" for b, (o, n) in report.corrected.items()},
            )
        return report


def _fmt(levels: dict[UUID, int]) -> dict[str, int]:
    return {str(k): v for k, v in levels.items()}
