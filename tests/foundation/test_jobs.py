"""The job machinery with a real BullMQ worker: typed payloads, the dead-letter queue,
delayed jobs that wake an idle worker (the redis-py socket-timeout trap), and job
schedulers and lease-held ticks that run once per deployment however many workers there
are."""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from bullmq import Worker

from bookbazar.config import Settings
from bookbazar.kit.jobs import JobRegistry, Tick
from bookbazar.kit.queues import DEAD_LETTER, PAYMENT
from bookbazar.kit.ticker import LEASE_KEY, run_ticker
from bookbazar.payments.schemas import VerifyJob
from bookbazar.services import Services
from bookbazar.worker import load_registry, make_processor, register_schedules


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.1)


@pytest.fixture
async def payment_worker(services: Services) -> AsyncIterator[Worker]:
    """A real BullMQ Worker on the payment queue, running the production processor."""
    worker = Worker(
        PAYMENT,
        make_processor(services, PAYMENT, load_registry().handlers[PAYMENT], {}),
        {"connection": services.settings.redis_url, "concurrency": 4, "prefix": "bull"},
    )
    try:
        yield worker
    finally:
        await worker.close()


async def test_a_job_that_always_fails_ends_in_the_dead_letter_queue(
    services: Services, payment_worker: Worker
) -> None:
    await services.queues.add(
        PAYMENT,
        "payment:refund",
        {"paymentId": "not-a-payment-id", "orderId": str(uuid.uuid4())},
        job_id="refund-broken-1",
        attempts=2,
        backoff={"type": "fixed", "delay": 100},
    )
    dead_letters = services.queues.get(DEAD_LETTER)

    async def dead_lettered() -> bool:
        return bool(await dead_letters.getJobs(["waiting"]))

    await eventually(dead_lettered)
    [job] = await dead_letters.getJobs(["waiting"])
    assert job.name == "payment:payment:refund"
    assert job.data["originalQueue"] == PAYMENT
    assert job.data["jobId"] == "refund-broken-1"
    assert job.data["payload"]["paymentId"] == "not-a-payment-id"
    assert job.data["attemptsMade"] == 2
    assert "validation error for RefundJob" in job.data["reason"]
    assert await services.queues.get(PAYMENT).getJobState("refund-broken-1") == "failed"


async def test_a_job_delayed_more_than_5_seconds_still_runs(
    services: Services, payment_worker: Worker
) -> None:
    """The redis-py socket-timeout trap: an idle worker must still wake for a job that
    becomes due after more than 5 s (redis<8; bullmq's own connection, no timeout)."""
    await asyncio.sleep(0.5)  # the worker is idle, blocked waiting for jobs
    job = VerifyJob(payment_id=uuid.uuid4(), window="trap")
    job_id = await services.queues.enqueue(job, delay_ms=6_000)
    assert await services.queues.get(PAYMENT).getJobState(job_id) == "delayed"

    async def completed() -> bool:
        return await services.queues.get(PAYMENT).getJobState(job_id) == "completed"

    await eventually(completed, timeout=25)
    done = await services.queues.get(PAYMENT).getJob(job_id)
    assert done is not None and done.returnvalue == {"result": "settled"}


async def test_schedules_run_once_per_deployment_with_two_workers(
    settings: Settings, services: Services
) -> None:
    """Two workers register the same job scheduler; each tick runs in exactly one."""
    ticks: list[tuple[str, float]] = []
    registry = JobRegistry()

    @registry.every(PAYMENT, "test:tick", lambda _: 1.0)
    async def tick(_: Services) -> dict[str, Any]:
        ticks.append(("tick", time.monotonic()))
        return {}

    workers = []
    for _ in range(2):
        await register_schedules(services, registry)
        workers.append(
            Worker(
                PAYMENT,
                make_processor(services, PAYMENT, {}, {"test:tick": registry.schedules[0]}),
                {"connection": settings.redis_url, "concurrency": 4, "prefix": "bull"},
            )
        )
    try:
        await asyncio.sleep(4.5)
    finally:
        await asyncio.gather(*(w.close() for w in workers))
        await services.queues.get(PAYMENT).removeJobScheduler("test:tick")
    # About one tick per second, not two: the scheduler exists once. (BullMQ's delays
    # have about one second of granularity.)
    assert 3 <= len(ticks) <= 6, ticks
    gaps = [b - a for (_, a), (_, b) in itertools.pairwise(ticks)]
    assert min(gaps) > 0.5, gaps


async def test_ticks_run_in_one_worker_at_a_time_and_move_when_it_stops(
    settings: Settings, services: Services
) -> None:
    """Two workers run the ticker; only the lease holder ticks. When it stops, the other
    takes over once the lease lapses."""
    runs: list[int] = []
    stops = [asyncio.Event(), asyncio.Event()]

    def ticker_of(n: int) -> list[Tick]:
        async def task(_: Services) -> None:
            runs.append(n)

        return [Tick(PAYMENT, "test:tick", lambda _: 0.2, task)]

    await services.redis.delete(LEASE_KEY)
    first = asyncio.create_task(run_ticker(services, ticker_of(0), stops[0]))
    await asyncio.sleep(0.1)
    second = asyncio.create_task(run_ticker(services, ticker_of(1), stops[1]))
    await asyncio.sleep(1.5)
    assert runs and set(runs) == {0}, runs  # one holder, ticking about every 0.2 s
    assert len(runs) >= 4
    stops[0].set()
    await first
    await services.redis.delete(LEASE_KEY)  # its lease lapses (after 5 s): now
    runs.clear()
    await asyncio.sleep(2.5)  # the standby checks every 2 s
    stops[1].set()
    await second
    assert runs and set(runs) == {1}, runs


async def test_a_second_job_for_the_same_period_is_skipped(services: Services) -> None:
    """A scheduler that hands out two jobs for one period (seen on Redis Cluster when a
    restarted worker re-registered the schedulers) runs the work once."""
    from types import SimpleNamespace

    from bookbazar.kit.jobs import Schedule
    from bookbazar.worker import _first_of_period

    async def task(_: Services) -> None:
        return None

    every = Schedule("q", f"audit-{uuid.uuid4().hex[:6]}", lambda _: 60.0, task)
    first = SimpleNamespace(id="repeat:audit:1764633600000")
    twin = SimpleNamespace(id="repeat:audit:1764633600007")  # the same period, 7 ms on
    following = SimpleNamespace(id="repeat:audit:1764633660000")
    assert await _first_of_period(services, every, first)
    assert not await _first_of_period(services, every, twin)
    assert not await _first_of_period(services, every, first)  # run again after a crash
    assert await _first_of_period(services, every, following)
    on_demand = SimpleNamespace(id="sweep-now")  # not the scheduler's: always runs
    assert await _first_of_period(services, every, on_demand)
    assert await _first_of_period(services, every, on_demand)
