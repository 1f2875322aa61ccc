"""What a job handler receives, and how domains declare their jobs and loops."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from bookbazar.services import Services


@dataclass(slots=True)
class JobContext:
    services: Services
    queue: str
    name: str
    job_id: str | None
    data: dict[str, Any]
    attempts_made: int = 0


JobHandler = Callable[[JobContext], Awaitable[Any]]
# Runs in the outbox relay for each relayed event of a type (at least once: be idempotent).
EventHook = Callable[[Services, dict[str, Any]], Awaitable[None]]
# A long-running loop in the worker (outbox relay, sweeper); it returns when `stop` is set.
Loop = Callable[[Services, Any], Awaitable[None]]


@dataclass(slots=True)
class JobRegistry:
    """Each domain's jobs.py exposes one of these as JOBS."""

    handlers: dict[str, dict[str, JobHandler]] = field(default_factory=dict)
    loops: list[Loop] = field(default_factory=list)
    event_hooks: dict[str, list[EventHook]] = field(default_factory=dict)

    def job(self, queue: str, name: str) -> Callable[[JobHandler], JobHandler]:
        def register(fn: JobHandler) -> JobHandler:
            self.handlers.setdefault(queue, {})[name] = fn
            return fn

        return register

    def loop(self, fn: Loop) -> Loop:
        self.loops.append(fn)
        return fn

    def on_event(self, *event_types: str) -> Callable[[EventHook], EventHook]:
        def register(fn: EventHook) -> EventHook:
            for event_type in event_types:
                self.event_hooks.setdefault(event_type, []).append(fn)
            return fn

        return register
