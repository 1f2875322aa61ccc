"""Stock jobs in the worker: the scheduled audit."""

from __future__ import annotations

from typing import Any

from bookbazar.inventory.audit import run_audit
from bookbazar.kit.jobs import JobRegistry
from bookbazar.kit.queues import RESERVATION
from bookbazar.services import Services

JOBS = JobRegistry()


@JOBS.every(RESERVATION, "stock:audit", lambda settings: settings.audit_interval_seconds)
async def audit_stock(services: Services) -> dict[str, Any]:
    audit = await run_audit(services)
    return {"driftUnits": audit.drift_units, "holdsChecked": audit.holds_checked}
