"""Jobs: one typed payload per job, how domains declare jobs and schedules, and what a
handler receives.

A payload model carries its queue, its job name and its job-id builder beside its
fields, so producers never spell a job's data by hand and handlers never index into it.
Work that must happen once per deployment is declared with `JobRegistry.every` (a BullMQ
job scheduler: the sweepers, the audit, the payment watchdog) or, when it runs every
second or so, `JobRegistry.tick` (under the worker lease of kit/ticker.py: expiry, the
cart write-behind), so however many workers run, each run happens once.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from bookbazar.config import Settings
from bookbazar.kit.queues import JobPayload
from bookbazar.services import Services

P = TypeVar("P", bound=JobPayload)


@dataclass(slots=True)
class JobContext:
    services: Services
    queue: str
    name: str
    job_id: str | None
    attempts_made: int = 0


JobHandler = Callable[[JobContext, Any], Awaitable[Any]]
# Runs in the outbox relay for each relayed event of a type (at least once: be idempotent).
EventHook = Callable[[Services, dict[str, Any]], Awaitable[None]]
# Runs once per tick of a schedule, in whichever worker takes the tick.
ScheduledTask = Callable[[Services], Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class JobSpec(Generic[P]):
    payload: type[P]
    handler: Callable[[JobContext, P], Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class Schedule:
    """A task run every `interval(settings)` seconds, once per deployment."""

    queue: str
    name: str
    interval: Callable[[Settings], float]
    task: ScheduledTask


@dataclass(frozen=True, slots=True)
class Tick:
    """A task run every `interval(settings)` seconds (about one) by the worker holding
    the ticker lease (kit/ticker.py): once per deployment, without a job per run. A job
    named `name` on `queue` runs it once on demand."""

    queue: str
    name: str
    interval: Callable[[Settings], float]
    task: ScheduledTask


@dataclass(slots=True)
class JobRegistry:
    """Each domain's jobs.py exposes one of these as JOBS."""

    handlers: dict[str, dict[str, JobSpec[Any]]] = field(default_factory=dict)
    schedules: list[Schedule] = field(default_factory=list)
    ticks: list[Tick] = field(default_factory=list)
    event_hooks: dict[str, list[EventHook]] = field(default_factory=dict)

    def job(
        self, payload: type[P]
    ) -> Callable[
        [Callable[[JobContext, P], Awaitable[Any]]], Callable[[JobContext, P], Awaitable[Any]]
    ]:
        def register(
            fn: Callable[[JobContext, P], Awaitable[Any]],
        ) -> Callable[[JobContext, P], Awaitable[Any]]:
            self.handlers.setdefault(payload.queue, {})[payload.name] = JobSpec(payload, fn)
            return fn

        return register

    def every(
        self, queue: str, name: str, interval: Callable[[Settings], float]
    ) -> Callable[[ScheduledTask], ScheduledTask]:
        def register(fn: ScheduledTask) -> ScheduledTask:
            self.schedules.append(Schedule(queue, name, interval, fn))
            return fn

        return register

    def tick(
        self, queue: str, name: str, interval: Callable[[Settings], float]
    ) -> Callable[[ScheduledTask], ScheduledTask]:
        def register(fn: ScheduledTask) -> ScheduledTask:
            self.ticks.append(Tick(queue, name, interval, fn))
            return fn

        return register

    def on_event(self, *event_types: str) -> Callable[[EventHook], EventHook]:
        def register(fn: EventHook) -> EventHook:
            for event_type in event_types:
                self.event_hooks.setdefault(event_type, []).append(fn)
            return fn

        return register

    def merge(self, other: JobRegistry) -> None:
        for queue, specs in other.handlers.items():
            self.handlers.setdefault(queue, {}).update(specs)
        self.schedules.extend(other.schedules)
        self.ticks.extend(other.ticks)
        for event_type, hooks in other.event_hooks.items():
            self.event_hooks.setdefault(event_type, []).extend(hooks)
