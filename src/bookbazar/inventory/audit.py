"""The stock audit: a full online reconcile on a schedule, once per deployment.

Every counter and hold is compared with PostgreSQL and repaired in place (DESIGN.md §7.7);
what was wrong is reported as metrics, a warning log naming the books and amounts, and a
`stock_audits` row the admin page shows. A Redis failover that lost the last writes, an
eviction, or a defect in a path that changes stock is found within AUDIT_INTERVAL_SECONDS.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog

from bookbazar.inventory import repository as repo
from bookbazar.kit.clock import iso, utcnow
from bookbazar.metrics import STOCK_AUDIT_LAST, STOCK_AUDITS, STOCK_DRIFT_UNITS
from bookbazar.models import StockAudit
from bookbazar.services import Services

log = structlog.get_logger(__name__)
KEEP_CLEAN_AUDITS = timedelta(days=7)


@dataclass(frozen=True, slots=True)
class AuditOut:
    id: str
    trigger: str
    started_at: str | None
    finished_at: str | None
    books_checked: int
    holds_checked: int
    drift_units: int
    corrections: dict[str, Any]

    def present(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "trigger": self.trigger,
            "startedAt": self.started_at,
            "finishedAt": self.finished_at,
            "booksChecked": self.books_checked,
            "holdsChecked": self.holds_checked,
            "driftUnits": self.drift_units,
            "corrections": self.corrections.get("counters", []),
            "holdsRepaired": self.corrections.get("holds", []),
        }


def _out(audit: StockAudit) -> AuditOut:
    return AuditOut(
        id=str(audit.id),
        trigger=audit.trigger,
        started_at=iso(audit.started_at),
        finished_at=iso(audit.finished_at),
        books_checked=audit.books_checked,
        holds_checked=audit.holds_checked,
        drift_units=audit.drift_units,
        corrections=audit.corrections,
    )


async def run_audit(services: Services, trigger: str = "scheduled") -> AuditOut:
    """Reconcile every book and hold with PostgreSQL, repair what differs, and record and
    report it. Safe while orders are placed, paid and ended (see Inventory.reconcile)."""
    started: datetime = utcnow()
    report = await services.inventory.reconcile()
    drift = report.drift
    corrections: dict[str, Any] = {
        "counters": [
            {"bookId": str(book), "before": before, "after": after}
            for book, (before, after) in sorted(drift.items(), key=lambda kv: str(kv[0]))
        ],
        "holds": [
            {"orderId": str(order), "token": token, "action": action}
            for order, token, action in report.repaired
        ],
    }
    async with services.sessionmaker() as session, session.begin():
        audit = await repo.save_audit(
            session,
            trigger=trigger,
            started_at=started,
            books_checked=len(report.counters),
            holds_checked=report.holds_checked,
            drift_units=report.drift_units,
            corrections=corrections,
        )
        await repo.purge_audits(session, started - KEEP_CLEAN_AUDITS)
    STOCK_DRIFT_UNITS.set(report.drift_units)
    STOCK_AUDIT_LAST.set(started.timestamp())
    STOCK_AUDITS.labels("drift" if drift else "clean").inc()
    if drift or report.repaired:
        log.warning(
            "stock_drift_repaired",
            drift_units=report.drift_units,
            books={str(b): f"{old}->{new}" for b, (old, new) in drift.items()},
            holds=[f"{o}:{t}:{a}" for o, t, a in report.repaired],
        )
    if report.corrected:
        try:
            await services.emitter.emit_stock({b: new for b, (_, new) in report.corrected.items()})
        except Exception:
            log.exception("stock_emit_failed")
    return _out(audit)


async def last_audit(services: Services) -> AuditOut | None:
    async with services.sessionmaker() as session:
        audit = await repo.last_audit(session)
    return None if audit is None else _out(audit)
