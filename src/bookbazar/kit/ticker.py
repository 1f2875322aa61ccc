"""Once-per-deployment work that runs every second or so, under a lease.

A BullMQ job per tick costs more than the work itself (its move to active, its move to
finished, the scheduler's next iteration), so frequent ticks (expiring orders, writing
carts behind) run in whichever worker holds the lease `bb:lease:ticker`: it renews the
lease every tick; if it dies or stalls, the lease lapses after LEASE_MS and another
worker takes over. Each task must be safe to run twice at once (a stalled holder may
wake after losing the lease): they claim their rows with SKIP LOCKED or their entries
under a lease of their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time

import structlog

from bookbazar.kit.jobs import Tick
from bookbazar.metrics import JOBS
from bookbazar.services import Services

log = structlog.get_logger(__name__)
LEASE_KEY = "bb:lease:ticker"
LEASE_MS = 5_000
# A worker that does not hold the lease checks again this often.
STANDBY_SECONDS = 2.0


async def run_ticker(services: Services, ticks: list[Tick], stop: asyncio.Event) -> None:
    """Run `ticks` at their intervals while this worker holds the lease, until `stop`."""
    if not ticks:
        return
    token = secrets.token_hex(8)
    step = min(t.interval(services.settings) for t in ticks)
    last: dict[str, float] = {}
    while not stop.is_set():
        try:
            held = bool(await services.scripts.run("lease_hold", [LEASE_KEY], [token, LEASE_MS]))
        except Exception:
            log.warning("ticker_lease_unavailable", exc_info=True)
            held = False
        if held:
            now = time.monotonic()
            for tick in ticks:
                if now - last.get(tick.name, 0.0) >= tick.interval(services.settings):
                    last[tick.name] = now
                    await _run(services, tick)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=step if held else STANDBY_SECONDS)


async def _run(services: Services, tick: Tick) -> None:
    try:
        await tick.task(services)
    except Exception as exc:
        JOBS.labels("ticker", tick.name, "error").inc()
        log.exception("tick_failed", tick=tick.name, error=repr(exc))
    else:
        JOBS.labels("ticker", tick.name, "ok").inc()
