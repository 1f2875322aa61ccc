"""Fulfilment work in the worker: every due order moved one step, in batches, a tick
under the worker lease (once per deployment)."""

from __future__ import annotations

from typing import Any

from bookbazar.fulfillment import service
from bookbazar.kit.jobs import JobRegistry
from bookbazar.kit.queues import FULFILLMENT
from bookbazar.services import Services

JOBS = JobRegistry()
ADVANCE_JOB = "fulfillment:advance"


@JOBS.tick(FULFILLMENT, ADVANCE_JOB, lambda settings: settings.fulfillment_interval_seconds)
async def advance_fulfilment(services: Services) -> dict[str, Any]:
    done = await service.advance(services)
    return {
        "fulfilling": len(done.fulfilling),
        "shipped": len(done.shipped),
        "delivered": len(done.delivered),
    }
