"""Work the service still has to do after a timed load: BullMQ backlog, unsent outbox rows.

A scenario's worker CPU is counted until the worker has drained what the load gave it:
no BullMQ job waiting, active or delayed-and-due (before the drain's deadline) in the
service's queues, no unsent outbox row due before it, and the worker's CPU back to idle
for about a second (`wait_drained`). Every part of the check that the service does not
have (a key of another type, a missing table or column) is skipped, and said so once.

BullMQ keys (prefix `bull`): `bull:<q>:wait`, `bull:<q>:active` (lists),
`bull:<q>:prioritized` (zset) and `bull:<q>:delayed` (zset, score = due time in ms *
0x1000 + a counter). Outbox: `outbox_events` rows with `sent_at IS NULL` (and, when the
column exists, `next_attempt_at` before the deadline).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from benchmarks.service import Service

QUEUES = ("cart", "reservation", "payment", "fulfillment", "notify")
PREFIX = "bull"
DELAYED_SCORE_FACTOR = 0x1000
SCHEDULED = "repeat:"  # job ids of BullMQ job schedulers' ticks

DRAIN_CAP_S = 60.0  # the longest a drain waits (then it says it gave up)
POLL_S = 0.25
IDLE_WINDOW_S = 1.0  # the worker's CPU must stay idle this long
IDLE_CPU_FRACTION = 0.05  # "idle": under this share of one core (raised after `idle`)
# Empty queues and outbox for this long count as drained even if the worker's CPU never
# settles under the idle threshold (a background loop of its own): noted as such.
QUIET_QUEUES_S = 5.0

_OUTBOX_DUE = (
    "SELECT count(*) FILTER (WHERE next_attempt_at <= now() + make_interval(secs => :h)) "
    "AS due, count(*) AS unsent FROM outbox_events WHERE sent_at IS NULL"
)
_OUTBOX_UNSENT = (
    "SELECT count(*) AS due, count(*) AS unsent FROM outbox_events WHERE sent_at IS NULL"
)


@dataclass
class Backlog:
    """Pending work at one moment: per-queue job counts and unsent outbox rows."""

    jobs: dict[str, int] = field(default_factory=dict)
    outbox: int = 0
    # Scheduled beyond the horizon (not pending now): delayed jobs, outbox retries.
    later: int = 0
    checked: bool = False  # False when neither Redis nor PostgreSQL could be asked

    @property
    def total(self) -> int:
        return sum(self.jobs.values()) + self.outbox

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {q: n for q, n in self.jobs.items() if n}
        if self.outbox:
            out["outbox"] = self.outbox
        if self.later:
            out["scheduled_later"] = self.later
        return out


class Drainer:
    """Asks Redis and PostgreSQL how much work is pending (one connection each)."""

    def __init__(self, redis_url: str | None, database_url: str | None) -> None:
        self.redis_url = redis_url
        self.database_url = database_url
        self._redis: Any = None
        self._engine: Any = None
        self._outbox_sql: str | None = _OUTBOX_DUE
        self._skipped: dict[str, str] = {}  # part -> why (reported once)

    @property
    def available(self) -> bool:
        return bool(self.redis_url or self.database_url)

    @property
    def skipped(self) -> dict[str, str]:
        return dict(self._skipped)

    def _skip(self, part: str, why: str) -> None:
        if part not in self._skipped:
            self._skipped[part] = why
            print(f"[drain] not checking {part}: {why}")

    async def close(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None
        if self._engine is not None:
            await self._engine.dispose()
            self._engine = None

    async def backlog(self, horizon_s: float = 0.0) -> Backlog:
        """Pending now, counting delayed jobs and outbox retries due within `horizon_s`."""
        out = Backlog()
        if self.redis_url:
            out.checked = True
            await self._queue_backlog(out, horizon_s)
        if self.database_url and self._outbox_sql is not None:
            out.checked = True
            await self._outbox_backlog(out, horizon_s)
        return out

    async def _queue_backlog(self, out: Backlog, horizon_s: float) -> None:
        if self._redis is None:
            from redis.asyncio import Redis

            self._redis = Redis.from_url(str(self.redis_url), decode_responses=True)
        due_score = int((time.time() + max(0.0, horizon_s)) * 1000) * DELAYED_SCORE_FACTOR
        parts = ("wait", "active", "prioritized", "delayed-due", "delayed")
        pipe = self._redis.pipeline(transaction=False)
        for q in QUEUES:
            key = f"{PREFIX}:{q}"
            pipe.lrange(f"{key}:wait", 0, -1)
            pipe.lrange(f"{key}:active", 0, -1)
            pipe.zrange(f"{key}:prioritized", 0, -1)
            pipe.zrangebyscore(f"{key}:delayed", "-inf", due_score + DELAYED_SCORE_FACTOR - 1)
            pipe.zrange(f"{key}:delayed", 0, -1)
        results = await pipe.execute(raise_on_error=False)
        for i, q in enumerate(QUEUES):
            values: dict[str, int] = {}
            for j, part in enumerate(parts):
                value = results[i * len(parts) + j]
                if isinstance(value, Exception):
                    self._skip(f"{PREFIX}:{q}:{part.split('-')[0]}", repr(value)[:200])
                    continue
                # A job scheduler's next tick (`repeat:<id>:<ms>`) is the service's own
                # standing work, not backlog from the load.
                values[part] = sum(1 for job_id in value if not job_id.startswith(SCHEDULED))
            pending = sum(values.get(p, 0) for p in ("wait", "active", "prioritized"))
            pending += values.get("delayed-due", 0)
            out.jobs[q] = pending
            out.later += values.get("delayed", 0) - values.get("delayed-due", 0)

    async def _outbox_backlog(self, out: Backlog, horizon_s: float) -> None:
        from sqlalchemy import text
        from sqlalchemy.exc import DBAPIError

        if self._engine is None:
            from sqlalchemy.ext.asyncio import create_async_engine

            url = str(self.database_url)
            for prefix in ("postgresql://", "postgres://"):
                if url.startswith(prefix):
                    url = "postgresql+asyncpg://" + url[len(prefix) :]
            self._engine = create_async_engine(url, pool_size=1)
        while self._outbox_sql is not None:
            try:
                async with self._engine.connect() as conn:
                    row = (
                        await conn.execute(text(self._outbox_sql), {"h": max(0.0, horizon_s)})
                    ).one()
            except DBAPIError as exc:
                if self._outbox_sql == _OUTBOX_DUE:
                    # No next_attempt_at column: every unsent row counts.
                    self._outbox_sql = _OUTBOX_UNSENT
                    continue
                self._outbox_sql = None
                self._skip("outbox_events", str(exc.orig)[:200])
                return
            out.outbox = int(row.due)
            out.later += int(row.unsent) - int(row.due)
            return


@dataclass
class DrainResult:
    seconds: float = 0.0
    # CPU seconds per process group from the end of the load to the moment drained
    cpu: dict[str, float] = field(default_factory=dict)
    capped: bool = False
    how: str = ""  # "idle", "queues-quiet", "cpu-only", "queues-only", "skipped"
    pending_at_end: dict[str, Any] = field(default_factory=dict)


async def wait_drained(
    service: Service,
    drainer: Drainer | None,
    *,
    cap_s: float = DRAIN_CAP_S,
    window_s: float = IDLE_WINDOW_S,
    idle_fraction: float = IDLE_CPU_FRACTION,
) -> DrainResult:
    """Sample until the worker has nothing due before the deadline and its CPU has been
    idle for the last `window_s`; CPU is counted up to the start of that idle window."""
    has_worker = "worker" in service.groups
    use_queues = drainer is not None and drainer.available
    if not has_worker and not use_queues:
        return DrainResult(how="skipped")
    start = time.monotonic()
    deadline = start + cap_s
    cpu0 = service.cpu_snapshot()
    quiet: list[tuple[float, dict[str, float]]] = []  # samples since the queues emptied

    def result(at: float, snap: dict[str, float], how: str) -> DrainResult:
        cpu = {k: max(0.0, v - cpu0.get(k, v)) for k, v in snap.items()}
        return DrainResult(seconds=at - start, cpu=cpu, how=how)

    while True:
        now = time.monotonic()
        snap = service.cpu_snapshot()
        backlog = Backlog()
        if use_queues and drainer is not None:
            backlog = await drainer.backlog(deadline - now)
        if backlog.total > 0:
            quiet.clear()
        else:
            quiet.append((now, snap))
            if not has_worker:
                return result(now, snap, "queues-only")
            # The last sample at least window_s old: the idle window's start.
            base = next((s for s in reversed(quiet) if now - s[0] >= window_s), None)
            if base is not None:
                rate = (snap["worker"] - base[1]["worker"]) / (now - base[0])
                if rate <= idle_fraction:
                    return result(base[0], base[1], "idle" if use_queues else "cpu-only")
                if now - quiet[0][0] >= QUIET_QUEUES_S and use_queues:
                    return result(now, snap, "queues-quiet")
        if now >= deadline:
            out = result(now, snap, "capped")
            out.capped = True
            out.pending_at_end = backlog.describe()
            return out
        await asyncio.sleep(POLL_S)
