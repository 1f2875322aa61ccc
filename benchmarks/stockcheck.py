"""Oversell/undersell check of the benchmark books against PostgreSQL and Redis.

For each book: on hand (books.stock), units held (order_items of PAYMENT_PENDING orders),
units sold (order_items of PAID and later orders) and the Redis availability counter
(`bb:{stock}:avail:<bookId>`) must satisfy

    available == on_hand - held         (the counter matches the database)
    held + sold <= ever stocked         (never oversold)
    on_hand + sold == ever stocked      (every sale took exactly its units off the shelf)
    available >= 0

and no benchmark order may be left in PENDING (an order stuck between steps).

After the check, `stock_audit` asks the service's own audit (`POST
/api/v1/admin/stock-audit`, as the admin) how many units of drift it corrected; a service
without that route (404/405) is reported as such.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from benchmarks.fixtures import Book, Fixtures

SOLD = ("PAID", "FULFILLING", "SHIPPED", "DELIVERED")
AVAIL_KEY = "bb:{{stock}}:avail:{}"
AUDIT_PATH = "/api/v1/admin/stock-audit"

_QUERY = """
SELECT b.id, b.stock,
       COALESCE(SUM(oi.quantity) FILTER (WHERE o.status = 'PAYMENT_PENDING'), 0) AS held,
       COALESCE(SUM(oi.quantity) FILTER (WHERE o.status = ANY(:sold)), 0) AS sold
FROM books b
LEFT JOIN order_items oi ON oi.book_id = b.id
LEFT JOIN orders o ON o.id = oi.order_id
WHERE b.id = ANY(:ids)
GROUP BY b.id, b.stock
"""

_STATUSES = """
SELECT o.status, COUNT(DISTINCT o.id) AS n
FROM orders o JOIN order_items oi ON oi.order_id = o.id
WHERE oi.book_id = ANY(:ids)
GROUP BY o.status
"""


@dataclass
class StockReport:
    books: int = 0
    violations: list[str] = field(default_factory=list)
    orders_by_status: dict[str, int] = field(default_factory=dict)
    totals: dict[str, int] = field(default_factory=dict)
    attempts: int = 1
    skipped: str | None = None

    @property
    def ok(self) -> bool:
        return self.skipped is None and not self.violations

    def summary(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "skipped": self.skipped,
            "books": self.books,
            "attempts": self.attempts,
            "totals": self.totals,
            "orders_by_status": self.orders_by_status,
            "violations": self.violations[:50],
        }


class StockChecker:
    def __init__(self, database_url: str | None, redis_url: str | None) -> None:
        self.database_url = database_url
        self.redis_url = redis_url

    async def check(self, books: list[Book]) -> StockReport:
        if not self.database_url or not self.redis_url:
            return StockReport(skipped="no --database-url/--redis-url for the service")
        from redis.asyncio import Redis
        from sqlalchemy import text
        from sqlalchemy.ext.asyncio import create_async_engine

        url = self.database_url
        for prefix in ("postgresql://", "postgres://"):
            if url.startswith(prefix):
                url = "postgresql+asyncpg://" + url[len(prefix) :]
        engine = create_async_engine(url, pool_size=1)
        redis = Redis.from_url(self.redis_url, decode_responses=True)
        ids = [UUID(b.id) for b in books]
        try:
            async with engine.connect() as conn:
                rows = (await conn.execute(text(_QUERY), {"ids": ids, "sold": list(SOLD)})).all()
                statuses = (await conn.execute(text(_STATUSES), {"ids": ids})).all()
            counters = await redis.mget([AVAIL_KEY.format(b.id) for b in books])
        finally:
            await redis.aclose()
            await engine.dispose()
        report = StockReport(books=len(books))
        report.orders_by_status = {str(s): int(n) for s, n in sorted(statuses)}
        by_id = {str(r.id): r for r in rows}
        totals = dict.fromkeys(
            ("stocked", "on_hand", "held", "sold", "available", "counters_missing"), 0
        )
        for book, counter in zip(books, counters, strict=True):
            row = by_id.get(book.id)
            if row is None:
                report.violations.append(f"book {book.id}: missing in PostgreSQL")
                continue
            on_hand, held, sold = int(row.stock), int(row.held), int(row.sold)
            totals["stocked"] += book.stocked
            totals["on_hand"] += on_hand
            totals["held"] += held
            totals["sold"] += sold
            name = f"book {book.id} ({book.title})"
            if counter is None:
                # Counters are created on first use and rebuilt from PostgreSQL when
                # missing; only a reservation without its counter is wrong.
                totals["counters_missing"] += 1
                if held:
                    report.violations.append(f"{name}: Redis counter missing, {held} held")
                continue
            available = int(counter)
            totals["available"] += available
            if available != on_hand - held:
                report.violations.append(
                    f"{name}: available {available} != on hand {on_hand} - held {held}"
                )
            if held + sold > book.stocked:
                report.violations.append(
                    f"{name}: OVERSOLD held {held} + sold {sold} > stocked {book.stocked}"
                )
            if on_hand + sold != book.stocked:
                report.violations.append(
                    f"{name}: on hand {on_hand} + sold {sold} != stocked {book.stocked}"
                )
            if available < 0:
                report.violations.append(f"{name}: negative availability {available}")
        if report.orders_by_status.get("PENDING"):
            report.violations.append(
                f"{report.orders_by_status['PENDING']} benchmark orders left in PENDING"
            )
        report.totals = totals
        return report

    async def check_settled(
        self, books: list[Book], attempts: int = 6, wait_s: float = 1.0
    ) -> StockReport:
        """Check; if it fails, retry a few times a second apart (a webhook or job still
        finishing can make one snapshot disagree). A real leak stays."""
        report = await self.check(books)
        n = 1
        while not report.ok and report.skipped is None and n < attempts:
            await asyncio.sleep(wait_s)
            report = await self.check(books)
            n += 1
        report.attempts = n
        return report


@dataclass
class AuditReport:
    available: bool
    status: int | None = None
    drift_units: int | None = None
    corrections: int | None = None
    samples: list[Any] = field(default_factory=list)
    error: str | None = None

    def line(self) -> str:
        if not self.available:
            return "audit: not available" + (f" ({self.error})" if self.error else "")
        if self.error:
            return f"audit: failed ({self.error})"
        return f"audit drift: {self.drift_units} units ({self.corrections} corrections)"

    def summary(self) -> dict[str, Any]:
        return {
            "available": self.available,
            "status": self.status,
            "drift_units": self.drift_units,
            "corrections": self.corrections,
            "samples": self.samples[:5],
            "error": self.error,
        }


async def stock_audit(fixtures: Fixtures) -> AuditReport:
    """POST /api/v1/admin/stock-audit as the admin: the units of drift it corrected.
    404/405: the service has no audit yet. Never raises (drift does not fail the run)."""
    try:
        token = await fixtures.login_admin()
        async with fixtures.client() as client:
            r = await client.post(AUDIT_PATH, headers={"Authorization": f"Bearer {token}"})
    except Exception as exc:
        return AuditReport(available=True, error=repr(exc)[:300])
    if r.status_code in (404, 405):
        return AuditReport(available=False, status=r.status_code)
    report = AuditReport(available=True, status=r.status_code)
    try:
        data = r.json().get("data") if r.status_code == 200 else None
    except ValueError:
        data = None
    if not isinstance(data, dict):
        report.error = f"{r.status_code} {r.text[:300]}"
        return report
    drift, corrections = data.get("driftUnits"), data.get("corrections")
    if isinstance(drift, int):
        report.drift_units = drift
    else:
        report.error = f"no integer driftUnits in {str(data)[:200]}"
    if isinstance(corrections, list):
        report.corrections = len(corrections)
        report.samples = corrections[:5]
    return report
