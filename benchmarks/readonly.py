"""Scenarios that change nothing: `healthz` (the run's calibration), `catalog`, `idle`.

`healthz`: GET /healthz closed loop at c=50. Its API CPU per request and its rate are
what every other scenario's cost and rate are compared with (same machine, same run).
`catalog`: GET /api/v1/books?pageSize=20 closed loop at c=50, anonymous, cycling through
a few pages and searches. `idle`: once the worker has drained, nothing is sent for a few
seconds; the API's and the worker's CPU are reported as a share of one core.
"""

from __future__ import annotations

import asyncio
import time

from benchmarks.drain import IDLE_CPU_FRACTION
from benchmarks.load import Progress, Step, closed_loop
from benchmarks.rawhttp import Connection
from benchmarks.scenarios import HEADLINE_CONCURRENCY, Baseline, Context, ScenarioResult

MAX_REQUESTS = 1_000_000  # the time budget ends these steps
CATALOG_QUERIES = (
    "page=1",
    "page=2",
    "page=3",
    "page=5",
    "q=Narayan",
    "q=Bench",
    "q=Jane%20Austen",
    "q=Bench&page=3",
)


async def _warm(conns: list[Connection], path: str) -> None:
    """One untimed request per connection: opens it outside the measurement."""
    await asyncio.gather(*(conn.request("GET", path) for conn in conns))


async def _get_loop(ctx: Context, scenario: str, paths: tuple[str, ...], seconds: float) -> Step:
    """GET `paths` in turn, closed loop at c=50 for `seconds`."""
    c = HEADLINE_CONCURRENCY
    step = Step(scenario, f"c={c}", c, frozenset({"200"}))
    conns = ctx.connections(c)
    await _warm(conns, paths[0])

    async def op(w: int, i: int) -> tuple[int, float]:
        t0 = time.perf_counter()
        r = await conns[w].request("GET", paths[i % len(paths)])
        if r.status != 200 and len(step.notes) < 5:
            step.notes.append(f"{r.status}: {r.body[:300]!r}")
        return r.status, time.perf_counter() - t0

    with Progress(step):
        async with ctx.meter.measure(step, profile=True):
            await closed_loop(step, c, MAX_REQUESTS, seconds, op)
    for conn in conns:
        conn.close()
    return step


async def run_healthz(ctx: Context) -> ScenarioResult:
    result = ScenarioResult("healthz")
    step = await _get_loop(ctx, "healthz", ("/healthz",), ctx.profile.healthz_seconds)
    result.steps.append(step)
    cost = step.cost()
    api_ms = cost.get("api_ms_per_op")
    if api_ms and step.elapsed > 0:
        ctx.baseline = Baseline(api_ms=api_ms, rate=step.requests / step.elapsed)
        print(
            f"[healthz] calibration: {api_ms:.3f} ms API CPU per request, "
            f"{ctx.baseline.rate:.0f} requests/s at c={step.concurrency}"
        )
    else:
        print("[healthz] no API CPU figure: costs are not compared with /healthz")
    return result


async def run_catalog(ctx: Context) -> ScenarioResult:
    result = ScenarioResult("catalog")
    await ctx.books_for_orders()  # a few pages of benchmark books beside the seed
    paths = tuple(f"/api/v1/books?pageSize=20&{q}" for q in CATALOG_QUERIES)
    result.steps.append(await _get_loop(ctx, "catalog", paths, ctx.profile.catalog_seconds))
    return result


async def run_idle(ctx: Context) -> ScenarioResult:
    """Nothing to do: CPU of every process over `idle_seconds`, as % of one core. The
    worker's figure also sets how idle "idle" is for the later drains."""
    result = ScenarioResult("idle")
    seconds = ctx.profile.idle_seconds
    step = Step("idle", f"{seconds:g}s", 0, frozenset())
    step.ops = 0
    print(f"[idle] worker drained; sampling CPU for {seconds:g} s with no requests")
    async with ctx.meter.measure(step, profile=True, drain=False):
        await asyncio.sleep(seconds)
    wall = step.elapsed or 1.0
    pct = {g: round(100 * v / wall, 2) for g, v in step.cpu.items()}
    step.extra["pct_of_one_core"] = pct
    worker = step.cpu.get("worker")
    if worker is not None:
        ctx.meter.idle_fraction = max(IDLE_CPU_FRACTION, 2 * worker / wall)
    result.verdict = {"pct_of_one_core": pct}
    result.steps.append(step)
    return result
