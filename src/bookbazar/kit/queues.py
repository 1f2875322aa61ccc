"""BullMQ queue names, default job options and the producer side (enqueue)."""

from __future__ import annotations

from typing import Any, ClassVar

import structlog
from bullmq import Queue
from pydantic import BaseModel, ConfigDict
from redis.asyncio import Redis

log = structlog.get_logger(__name__)

CART = "cart"
RESERVATION = "reservation"
PAYMENT = "payment"
FULFILLMENT = "fulfillment"
NOTIFY = "notify"
DEAD_LETTER = "dead-letter"
ALL_QUEUES = (CART, RESERVATION, PAYMENT, FULFILLMENT, NOTIFY)

# As in the seed: 10 attempts, exponential backoff from 1 s, bounded retention.
DEFAULT_JOB_OPTIONS: dict[str, Any] = {
    "attempts": 10,
    "backoff": {"type": "exponential", "delay": 1000},
    "removeOnComplete": {"age": 7200, "count": 5000},
    "removeOnFail": {"age": 86400},
}
DEAD_LETTER_OPTIONS: dict[str, Any] = {
    "attempts": 1,
    "removeOnComplete": False,
    "removeOnFail": False,
}


class JobPayload(BaseModel):
    """The data of one kind of job. Subclasses set `queue` and `name` and may override
    `job_id` (a deterministic id makes enqueueing idempotent: BullMQ keeps one job per
    id)."""

    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    queue: ClassVar[str]
    name: ClassVar[str]

    def job_id(self) -> str | None:
        return None

    def to_job_data(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)


def job_id(*parts: object) -> str:
    # BullMQ ids must not contain ':' alone-as-integer ambiguity; use a readable joiner.
    return "-".join(str(p) for p in parts)


def queue_prefix(cluster: bool) -> str:
    """BullMQ's key prefix. Its scripts build a queue's keys inside Lua, so on Redis
    Cluster every key of every queue must share a slot: a hash tag (Node BullMQ's
    documented pattern). A single Redis keeps the plain prefix its queues already use."""
    return "{bull}" if cluster else "bull"


class Queues:
    """Producers for every queue over one pooled client (bullmq's own connection
    serialises add() behind a lock; a pooled redis-py client does not)."""

    def __init__(self, redis: Redis, prefix: str = "bull") -> None:
        self._redis = redis
        self._prefix = prefix
        self._queues: dict[str, Queue] = {}

    def get(self, name: str) -> Queue:
        queue = self._queues.get(name)
        if queue is None:
            queue = Queue(name, {"connection": self._redis, "prefix": self._prefix})
            self._queues[name] = queue
        return queue

    async def add(
        self,
        queue: str,
        name: str,
        data: dict[str, Any],
        *,
        job_id: str | None = None,
        delay_ms: int = 0,
        **opts: Any,
    ) -> str:
        """Enqueue a job with the default options. Re-adding an existing job id returns
        the existing job (BullMQ dedupe), which makes producers idempotent."""
        options: dict[str, Any] = {**DEFAULT_JOB_OPTIONS, **opts}
        if job_id is not None:
            options["jobId"] = job_id
        if delay_ms > 0:
            options["delay"] = delay_ms
        job = await self.get(queue).add(name, data, options)
        return str(job.id)

    async def enqueue(self, payload: JobPayload, *, delay_ms: int = 0, **opts: Any) -> str:
        """Enqueue the job `payload` describes (its queue, name, data and job id)."""
        return await self.add(
            payload.queue,
            payload.name,
            payload.to_job_data(),
            job_id=payload.job_id(),
            delay_ms=delay_ms,
            **opts,
        )

    async def dead_letter(
        self, queue: str, name: str, job_id: str | None, data: Any, reason: str, attempts: int
    ) -> None:
        await self.get(DEAD_LETTER).add(
            f"{queue}:{name}",
            {
                "originalQueue": queue,
                "name": name,
                "jobId": job_id,
                "payload": data,
                "reason": reason,
                "attemptsMade": attempts,
            },
            DEAD_LETTER_OPTIONS,
        )
        log.error("job_dead_lettered", queue=queue, job=name, job_id=job_id, reason=reason)

    async def remove(self, queue: str, job_id: str) -> None:
        await self.get(queue).remove(job_id)
