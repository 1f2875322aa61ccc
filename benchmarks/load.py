"""Closed-loop and open-loop load steps with latency, status and resource accounting."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import psutil

from benchmarks.drain import IDLE_CPU_FRACTION, Drainer, DrainResult, wait_drained
from benchmarks.pyspy import Profiler
from benchmarks.service import Service

PROGRESS_EVERY_S = 2.0
RSS_SAMPLE_EVERY_S = 0.5
BACKLOG_SAMPLE_EVERY = 2  # RSS samples: the backlog is asked every second
MAX_NOTES = 8
COST_GROUPS = ("api", "worker")


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted list (0 when empty)."""
    if not sorted_values:
        return 0.0
    rank = max(1, min(len(sorted_values), round(q / 100.0 * len(sorted_values) + 0.5)))
    return sorted_values[rank - 1]


def describe_error(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, ConnectionError | OSError):
        return "conn-error"
    return type(exc).__name__


@dataclass
class Step:
    """One measured step: every request's latency and status, timed wall-clock seconds,
    and the service processes' CPU seconds and RSS over the timed part."""

    scenario: str
    label: str
    concurrency: int
    ok_statuses: frozenset[str]
    latencies: list[float] = field(default_factory=list)
    statuses: Counter[str] = field(default_factory=Counter)
    elapsed: float = 0.0
    cpu: dict[str, float] = field(default_factory=dict)
    rss_peak: dict[str, int] = field(default_factory=dict)
    rss_end: dict[str, int] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    # The machine's 1-minute load average at the end of the timed part (2 cores here:
    # above ~2 the service competed for CPU with other work).
    load_1m: float = 0.0
    # Operations the CPU cost is divided by (None: the successful answers).
    ops: int | None = None
    # API and worker CPU seconds after the timed parts until the worker had drained.
    drain_cpu: dict[str, float] = field(default_factory=dict)
    drain_s: float = 0.0
    drains: int = 0
    drains_capped: int = 0
    drain_how: Counter[str] = field(default_factory=Counter)
    # Pending jobs + outbox rows sampled every second during the timed parts.
    backlog: list[int] = field(default_factory=list)

    def record(self, status: int | str, latency_s: float | None) -> None:
        self.statuses[str(status)] += 1
        if latency_s is not None:
            self.latencies.append(latency_s)

    def note_error(self, exc: BaseException) -> None:
        """Keep the first few client-side errors' messages (timeouts, resets ...)."""
        if len(self.notes) < MAX_NOTES:
            self.notes.append(f"{describe_error(exc)}: {exc!r}"[:300])

    @property
    def requests(self) -> int:
        return sum(self.statuses.values())

    @property
    def ok(self) -> int:
        return sum(n for s, n in self.statuses.items() if s in self.ok_statuses)

    @property
    def errors(self) -> dict[str, int]:
        return {s: n for s, n in sorted(self.statuses.items()) if s not in self.ok_statuses}

    def summary(self) -> dict[str, Any]:
        lat = sorted(self.latencies)
        rate = self.requests / self.elapsed if self.elapsed > 0 else 0.0
        return {
            "scenario": self.scenario,
            "step": self.label,
            "concurrency": self.concurrency,
            "requests": self.requests,
            "ok": self.ok,
            "elapsed_s": round(self.elapsed, 3),
            "requests_per_s": round(rate, 1),
            "latency_ms": {
                "p50": round(percentile(lat, 50) * 1000, 2),
                "p90": round(percentile(lat, 90) * 1000, 2),
                "p99": round(percentile(lat, 99) * 1000, 2),
                "max": round((lat[-1] if lat else 0.0) * 1000, 2),
                "mean": round(sum(lat) / len(lat) * 1000, 2) if lat else 0.0,
            },
            "statuses": dict(sorted(self.statuses.items())),
            "errors": self.errors,
            "cpu_s": {k: round(v, 2) for k, v in self.cpu.items()},
            "rss_mb_peak": {k: round(v / 2**20, 1) for k, v in self.rss_peak.items()},
            "rss_mb_end": {k: round(v / 2**20, 1) for k, v in self.rss_end.items()},
            "load_1m": round(self.load_1m, 2),
            "cost": self.cost(),
            "extra": self.extra,
            "notes": self.notes,
        }

    def cost(self) -> dict[str, Any]:
        """CPU ms per operation of the API and the worker: timed parts plus drains."""
        ops = self.ok if self.ops is None else self.ops
        out: dict[str, Any] = {"ops": ops}
        total = 0.0
        for g in COST_GROUPS:
            if g not in self.cpu:
                out[f"{g}_ms_per_op"] = None
                continue
            cpu_s = self.cpu[g] + self.drain_cpu.get(g, 0.0)
            out[f"{g}_cpu_s"] = round(cpu_s, 3)
            per_op = 1000 * cpu_s / ops if ops else None
            out[f"{g}_ms_per_op"] = None if per_op is None else round(per_op, 3)
            total += per_op or 0.0
        known = [out[f"{g}_ms_per_op"] for g in COST_GROUPS if out[f"{g}_ms_per_op"] is not None]
        out["total_ms_per_op"] = round(total, 3) if known else None
        out["drain"] = {
            "seconds": round(self.drain_s, 2),
            "drains": self.drains,
            "capped": self.drains_capped,
            "how": dict(self.drain_how),
        }
        if self.backlog:
            out["backlog"] = {"max": max(self.backlog), "last": self.backlog[-1]}
        return out


class Meter:
    """Accounts CPU (service processes and this generator) and RSS over timed parts, the
    worker's drain after them, and runs the profiler over one block per scenario."""

    def __init__(
        self,
        service: Service,
        drainer: Drainer | None = None,
        profiler: Profiler | None = None,
    ) -> None:
        self.service = service
        self.me = psutil.Process()
        self.drainer = drainer
        self.profiler = profiler
        # Worker CPU share under which it counts as idle (raised if `idle` finds more).
        self.idle_fraction = IDLE_CPU_FRACTION

    def _cpu(self) -> dict[str, float]:
        snap = self.service.cpu_snapshot()
        t = self.me.cpu_times()
        snap["bench"] = t.user + t.system
        return snap

    @contextlib.asynccontextmanager
    async def timed(self, step: Step) -> AsyncIterator[None]:
        """Adds the block's wall time, CPU seconds and peak RSS to the step."""
        stop = asyncio.Event()

        async def sample() -> None:
            n = 0
            while not stop.is_set():
                for name, rss in self.service.rss_snapshot().items():
                    step.rss_peak[name] = max(step.rss_peak.get(name, 0), rss)
                if self.drainer is not None and n % BACKLOG_SAMPLE_EVERY == 0:
                    with contextlib.suppress(Exception):
                        backlog = await self.drainer.backlog()
                        if backlog.checked:
                            step.backlog.append(backlog.total)
                n += 1
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), RSS_SAMPLE_EVERY_S)

        sampler = asyncio.create_task(sample())
        cpu0 = self._cpu()
        t0 = time.perf_counter()
        try:
            yield
        finally:
            step.elapsed += time.perf_counter() - t0
            cpu1 = self._cpu()
            for name, value in cpu1.items():
                step.cpu[name] = step.cpu.get(name, 0.0) + max(0.0, value - cpu0.get(name, value))
            stop.set()
            await sampler
            step.rss_end = self.service.rss_snapshot()
            step.load_1m = os.getloadavg()[0]

    async def settle(self, step: Step | None = None) -> DrainResult:
        """Wait (not counted) until the worker has drained earlier work, e.g. the
        persistCart jobs of carts prepared for the next timed part."""
        result = await wait_drained(
            self.service, self.drainer, window_s=0.5, idle_fraction=self.idle_fraction
        )
        if result.capped and step is not None:
            step.notes.append(
                f"before the load the worker was still busy after {result.seconds:.0f} s "
                f"(pending {result.pending_at_end})"
            )
        return result

    async def drain(self, step: Step) -> DrainResult:
        """After a timed part: count API and worker CPU until the worker has drained."""
        result = await wait_drained(self.service, self.drainer, idle_fraction=self.idle_fraction)
        for name in COST_GROUPS:
            if name in result.cpu:
                step.drain_cpu[name] = step.drain_cpu.get(name, 0.0) + result.cpu[name]
        step.drain_s += result.seconds
        step.drains += 1
        step.drain_how[result.how] += 1
        if result.capped:
            step.drains_capped += 1
            step.notes.append(
                f"drain cap hit: worker not drained {result.seconds:.0f} s after the load "
                f"(pending {result.pending_at_end})"
            )
        return result

    @contextlib.asynccontextmanager
    async def measure(
        self, step: Step, *, profile: bool = False, drain: bool = True
    ) -> AsyncIterator[None]:
        """settle (not counted) -> the block, timed -> drain (counted). With `profile`
        the profiler (if on, and not yet used for this scenario) records the block and
        its drain."""
        await self.settle(step)
        profiling = profile and self.profiler is not None and self.profiler.wants(step.scenario)
        if profiling and self.profiler is not None:
            pids = {n: g.roots[0].pid for n, g in self.service.groups.items() if g.roots}
            self.profiler.start(step.scenario, pids)
        try:
            async with self.timed(step):
                yield
            if drain:
                await self.drain(step)
        finally:
            if profiling and self.profiler is not None:
                await self.profiler.stop()


class Progress:
    """Prints how a step is going every couple of seconds."""

    def __init__(self, step: Step) -> None:
        self.step = step
        self.tty = sys.stdout.isatty()
        self._task: asyncio.Task[None] | None = None

    def _line(self, final: bool = False) -> str:
        s = self.step
        errs = " ".join(f"{k}:{v}" for k, v in s.errors.items()) or "none"
        return f"  [{s.scenario} c={s.concurrency}] {s.requests} requests, errors {errs}" + (
            " - done" if final else ""
        )

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(PROGRESS_EVERY_S)
            if self.tty:
                print("\r" + self._line(), end="", flush=True)
            else:
                print(self._line(), flush=True)

    def __enter__(self) -> Progress:
        self._task = asyncio.create_task(self._run())
        return self

    def __exit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
        if self.tty:
            print("\r" + self._line(final=True) + " " * 10, flush=True)


# An operation returns (status, latency in seconds or None to leave it out of latencies).
Operation = Callable[[int, int], Awaitable[tuple[int | str, float | None]]]


async def closed_loop(
    step: Step,
    concurrency: int,
    max_requests: int,
    max_seconds: float,
    op: Operation,
    *,
    first_index: int = 0,
) -> int:
    """`concurrency` workers run `op(worker, index)` back to back until `max_requests`
    were started or `max_seconds` passed. Returns the number started."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + max_seconds
    next_index = first_index
    last_index = first_index + max_requests

    async def worker(w: int) -> None:
        nonlocal next_index
        while next_index < last_index and loop.time() < deadline:
            i = next_index
            next_index += 1
            try:
                status, latency = await op(w, i)
            except Exception as exc:
                status, latency = describe_error(exc), None
                step.note_error(exc)
            step.record(status, latency)

    await asyncio.gather(*(worker(w) for w in range(concurrency)))
    return next_index - first_index


async def timed_request(
    call: Callable[[], Awaitable[Any]],
) -> tuple[Any, float]:
    t0 = time.perf_counter()
    result = await call()
    return result, time.perf_counter() - t0
