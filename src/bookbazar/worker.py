"""`bookbazar worker`: one BullMQ Worker per queue (dispatching on job name), the job
schedulers and the lease-held ticker for once-per-deployment work, and the outbox relay.
Stops gracefully: active jobs finish first."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
from typing import Any

import structlog
from bullmq import Worker
from prometheus_client import start_http_server
from redis.asyncio.cluster import RedisCluster

from bookbazar.config import Settings
from bookbazar.kit import faults
from bookbazar.kit.jobs import JobContext, JobRegistry, JobSpec, Schedule, Tick
from bookbazar.kit.queues import queue_prefix
from bookbazar.kit.ticker import run_ticker
from bookbazar.metrics import JOBS, WORKER
from bookbazar.outbox.relay import relay_loop
from bookbazar.redis import SENTINEL_SCHEME, sentinel_primary
from bookbazar.services import Services

log = structlog.get_logger(__name__)

# Modules exposing JOBS: JobRegistry. Imported when the worker starts.
JOB_MODULES: tuple[str, ...] = (
    "bookbazar.cart.jobs",
    "bookbazar.orders.jobs",
    "bookbazar.inventory.jobs",
    "bookbazar.payments.jobs",
    "bookbazar.fulfillment.jobs",
    "bookbazar.notify.jobs",
)
# Scheduler ticks: kept briefly, never retried (the next tick does the work again).
SCHEDULED_JOB_OPTIONS: dict[str, Any] = {
    "attempts": 1,
    "removeOnComplete": True,
    "removeOnFail": {"age": 3600, "count": 100},
}


def load_registry() -> JobRegistry:
    merged = JobRegistry()
    for module_name in JOB_MODULES:
        merged.merge(importlib.import_module(module_name).JOBS)
    return merged


def _scheduled_specs(registry: JobRegistry) -> dict[str, dict[str, Schedule | Tick]]:
    """Periodic tasks by queue and name: a job of that name runs one (a scheduler's tick,
    or an on-demand run of a ticker task)."""
    out: dict[str, dict[str, Schedule | Tick]] = {}
    periodic: list[Schedule | Tick] = [*registry.schedules, *registry.ticks]
    for task in periodic:
        out.setdefault(task.queue, {})[task.name] = task
    return out


def make_processor(
    services: Services,
    queue: str,
    specs: dict[str, JobSpec[Any]],
    schedules: dict[str, Schedule | Tick],
) -> Any:
    async def process(job: Any, token: str) -> Any:
        attempts_allowed = int(job.opts.get("attempts", 1) or 1)
        attempt = int(job.attemptsMade or 0) + 1
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(queue=queue, job=job.name, job_id=job.id)
        data = job.data if isinstance(job.data, dict) else {}
        if "orderId" in data:
            structlog.contextvars.bind_contextvars(order_id=data["orderId"])
        schedule = schedules.get(job.name)
        if schedule is not None:
            return await _run_scheduled(services, queue, schedule, job)
        spec = specs.get(job.name)
        try:
            if spec is None:
                raise LookupError(f"no handler for job {job.name!r} on queue {queue!r}")
            payload = spec.payload.model_validate(data)
            ctx = JobContext(services, queue, job.name, job.id, attempt - 1)
            result = await spec.handler(ctx, payload)
        except Exception as exc:
            final = spec is None or attempt >= attempts_allowed
            JOBS.labels(queue, job.name, "dead" if final else "retry").inc()
            log.warning("job_failed", error=repr(exc), attempt=attempt)
            if final:
                await services.queues.dead_letter(
                    queue, job.name, job.id, job.data, repr(exc), attempt
                )
            raise
        JOBS.labels(queue, job.name, "ok").inc()
        return result

    return process


async def _first_of_period(services: Services, schedule: Schedule, job: Any) -> bool:
    """Whether this run is the first of its period. A scheduler can hand out two jobs for
    one period (a worker re-registering the schedulers while another moves to the next
    run, or a job run again after its worker died): the period's first run claims it in
    Redis, a second one is skipped, so periodic work runs once per period. A job asked for
    on demand (not the scheduler's) always runs."""
    due_ms = _due_ms(str(job.id))
    if due_ms is None:
        return True
    every_ms = max(100, int(schedule.interval(services.settings) * 1000))
    period = round(due_ms / every_ms)
    claimed = await services.redis.set(
        f"bb:schedule:{schedule.name}:{period}", str(job.id), nx=True, px=2 * every_ms + 60_000
    )
    return bool(claimed)


def _due_ms(job_id: str) -> int | None:
    """When a scheduler's job was due: its id is repeat:<scheduler>:<epoch ms>."""
    tail = job_id.rpartition(":")[2]
    return int(tail) if job_id.startswith("repeat:") and tail.isdigit() else None


async def _run_scheduled(
    services: Services, queue: str, schedule: Schedule | Tick, job: Any
) -> Any:
    """One tick (once per period for a scheduler's). A failure is logged and counted,
    never retried nor dead-lettered: the next tick (a fresh job) does the same work."""
    try:
        if isinstance(schedule, Schedule) and not await _first_of_period(services, schedule, job):
            JOBS.labels(queue, schedule.name, "skipped").inc()
            log.info("scheduled_job_skipped", reason="this period ran already")
            return {"skipped": "this period ran already"}
        result = await schedule.task(services)
    except Exception as exc:
        JOBS.labels(queue, schedule.name, "error").inc()
        log.exception("scheduled_job_failed", error=repr(exc))
        return {"error": repr(exc)}
    JOBS.labels(queue, schedule.name, "ok").inc()
    return result


async def register_schedules(services: Services, registry: JobRegistry) -> None:
    """Create or update one BullMQ job scheduler per schedule. Every worker does this at
    start with the same ids, so a deployment has one of each, whatever its size."""
    for schedule in registry.schedules:
        every_ms = max(100, int(schedule.interval(services.settings) * 1000))
        await services.queues.get(schedule.queue).upsertJobScheduler(
            schedule.name,
            {"every": every_ms},
            job_name=schedule.name,
            job_data={},
            opts=SCHEDULED_JOB_OPTIONS,
        )


class WorkerProcess:
    """Every queue's jobs (up to `concurrency` at once per queue), the outbox relay and
    the ticks. Keep `concurrency` small: BullMQ's worker asks Redis for a job once per
    free slot whenever one arrives, so slots nobody needs cost a script call each per
    job."""

    def __init__(self, settings: Settings, *, concurrency: int = 4) -> None:
        self.settings = settings
        self.concurrency = concurrency
        self.stop = asyncio.Event()

    async def run(self) -> None:
        _, redis_url = self.settings.require_urls()
        faults.configure(self.settings.fault_points, self.settings.gate_points, redis_url)
        services = Services.create(self.settings, pool_size=5)
        registry = load_registry()
        if self.settings.worker_metrics_port:
            # Job counts, order gauges and the audit live in this process: serve them.
            start_http_server(
                self.settings.worker_metrics_port, addr=self.settings.host, registry=WORKER
            )
        await register_schedules(services, registry)
        scheduled = _scheduled_specs(registry)
        queues = sorted(set(registry.handlers) | set(scheduled))
        workers = [
            Worker(
                queue,
                make_processor(
                    services, queue, registry.handlers.get(queue, {}), scheduled.get(queue, {})
                ),
                {
                    "connection": self._worker_connection(redis_url),
                    "concurrency": self.concurrency,
                    "prefix": queue_prefix(self.settings.redis_cluster),
                    "lockDuration": int(self.settings.job_lock_seconds * 1000),
                    "stalledInterval": int(self.settings.job_lock_seconds * 500),
                },
            )
            for queue in queues
        ]
        tasks = [
            asyncio.create_task(self._relay(services, registry), name="outbox_relay"),
            asyncio.create_task(self._keep_schedules(services, registry), name="schedules"),
            asyncio.create_task(run_ticker(services, registry.ticks, self.stop), name="ticker"),
        ]
        log.info("worker_started", queues=queues, schedules=len(registry.schedules))
        try:
            await self.stop.wait()
        finally:
            log.info("worker_stopping")
            # close() waits for active jobs to finish; their locks are released with them.
            await asyncio.gather(*(w.close() for w in workers), return_exceptions=True)
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            await services.close()
            log.info("worker_stopped")

    def _worker_connection(self, redis_url: str) -> Any:
        """What a BullMQ Worker connects with, with no socket timeout (a timeout shorter
        than its blocking wait strands delayed jobs; see pyproject's redis pin). A URL:
        bullmq opens its own connection. On a cluster bullmq needs a cluster client, one
        per Worker (closing a Worker closes its client)."""
        if self.settings.redis_cluster:
            return RedisCluster.from_url(redis_url, decode_responses=True)
        if redis_url.startswith(SENTINEL_SCHEME + "://"):
            return sentinel_primary(redis_url, socket_timeout=None)
        return redis_url

    async def _keep_schedules(self, services: Services, registry: JobRegistry) -> None:
        while not self.stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self.stop.wait(), timeout=self.settings.schedule_refresh_seconds
                )
            if self.stop.is_set():
                return
            try:
                await register_schedules(services, registry)
            except Exception:
                log.warning("schedules_not_refreshed", exc_info=True)

    async def _relay(self, services: Services, registry: JobRegistry) -> None:
        while not self.stop.is_set():
            try:
                await relay_loop(services, self.stop, registry.event_hooks)
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("outbox_relay_crashed")
                await asyncio.sleep(1.0)
