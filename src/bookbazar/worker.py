"""`bookbazar worker`: one BullMQ Worker per queue (dispatching on job name), plus the
background loops (outbox relay, sweepers). Stops gracefully: active jobs finish first."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
from typing import Any

import socketio
import structlog
from bullmq import Worker
from prometheus_client import start_http_server

from bookbazar.config import Settings
from bookbazar.kit import faults
from bookbazar.kit.jobs import JobContext, JobHandler, JobRegistry, Loop
from bookbazar.metrics import JOBS
from bookbazar.outbox.relay import relay_loop
from bookbazar.realtime import CHANNEL
from bookbazar.realtime.emitter import manager_emit
from bookbazar.services import Services

log = structlog.get_logger(__name__)

# Modules exposing JOBS: JobRegistry. Imported when the worker starts.
JOB_MODULES: tuple[str, ...] = (
    "bookbazar.cart.jobs",
    "bookbazar.orders.jobs",
    "bookbazar.payments.jobs",
    "bookbazar.fulfillment.jobs",
    "bookbazar.notify.jobs",
)


def load_registry() -> JobRegistry:
    merged = JobRegistry()
    for module_name in JOB_MODULES:
        registry: JobRegistry = importlib.import_module(module_name).JOBS
        for queue, handlers in registry.handlers.items():
            merged.handlers.setdefault(queue, {}).update(handlers)
        merged.loops.extend(registry.loops)
        for event_type, hooks in registry.event_hooks.items():
            merged.event_hooks.setdefault(event_type, []).extend(hooks)
    return merged


def make_processor(services: Services, queue: str, handlers: dict[str, JobHandler]) -> Any:
    async def process(job: Any, token: str) -> Any:
        attempts_allowed = int(job.opts.get("attempts", 1) or 1)
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(queue=queue, job=job.name, job_id=job.id)
        if isinstance(job.data, dict) and "orderId" in job.data:
            structlog.contextvars.bind_contextvars(order_id=job.data["orderId"])
        handler = handlers.get(job.name)
        try:
            if handler is None:
                raise LookupError(f"no handler for job {job.name!r} on queue {queue!r}")
            ctx = JobContext(
                services=services,
                queue=queue,
                name=job.name,
                job_id=job.id,
                data=job.data if isinstance(job.data, dict) else {},
                attempts_made=int(job.attemptsMade or 0),
            )
            result = await handler(ctx)
        except Exception as exc:
            final = handler is None or int(job.attemptsMade or 0) + 1 >= attempts_allowed
            JOBS.labels(queue, job.name, "dead" if final else "retry").inc()
            log.warning("job_failed", error=repr(exc), attempt=int(job.attemptsMade or 0) + 1)
            if final:
                await services.queues.dead_letter(
                    queue, job.name, job.id, job.data, repr(exc), int(job.attemptsMade or 0) + 1
                )
            raise
        JOBS.labels(queue, job.name, "ok").inc()
        return result

    return process


class WorkerProcess:
    def __init__(self, settings: Settings, *, concurrency: int = 16) -> None:
        self.settings = settings
        self.concurrency = concurrency
        self.stop = asyncio.Event()

    async def run(self) -> None:
        _, redis_url = self.settings.require_urls()
        faults.configure(self.settings.fault_points)
        manager = socketio.AsyncRedisManager(redis_url, channel=CHANNEL, write_only=True)
        services = Services.create(self.settings, manager_emit(manager), pool_size=5)
        registry = load_registry()
        if self.settings.worker_metrics_port:
            # Job counts and expiry lag live in this process: serve them for Prometheus.
            start_http_server(self.settings.worker_metrics_port, addr=self.settings.host)
        workers = [
            Worker(
                queue,
                make_processor(services, queue, handlers),
                {
                    "connection": redis_url,
                    "concurrency": self.concurrency,
                    "prefix": "bull",
                    "lockDuration": 30_000,
                    "stalledInterval": 15_000,
                },
            )
            for queue, handlers in registry.handlers.items()
        ]
        hooks = registry.event_hooks

        async def outbox_relay(services: Services, stop: asyncio.Event) -> None:
            await relay_loop(services, stop, hooks)

        loops = [
            asyncio.create_task(self._run_loop(loop, services), name=loop.__name__)
            for loop in (outbox_relay, *registry.loops)
        ]
        log.info("worker_started", queues=sorted(registry.handlers), loops=len(loops))
        try:
            await self.stop.wait()
        finally:
            log.info("worker_stopping")
            # close() waits for active jobs to finish; their locks are released with them.
            await asyncio.gather(*(w.close() for w in workers), return_exceptions=True)
            for task in loops:
                task.cancel()
            for task in loops:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            await services.close()
            log.info("worker_stopped")

    async def _run_loop(self, loop: Loop, services: Services) -> None:
        while not self.stop.is_set():
            try:
                await loop(services, self.stop)
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("worker_loop_crashed", loop=loop.__name__)
                await asyncio.sleep(1.0)
