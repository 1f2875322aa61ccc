"""Scenario `e2e`: order -> payments/init -> sandbox pay -> PAID, at rising order rates.

Open loop: a new purchase starts every 1/rate seconds whatever the service's speed. Each
purchase: set a one-line cart (not in the latency), POST /api/v1/orders (the clock
starts), POST /api/v1/payments/init, POST /sandbox/checkout/{paymentIntentId}/pay (the
sandbox then delivers a signed webhook through the worker), and wait for the order to be
PAID: the buyer's Socket.IO `order.paid` event (one socket per buyer, connected
beforehand), or, if sockets cannot connect, polling GET /api/v1/orders/{id}. Latency =
placement to PAID as the buyer sees it.

The rates are stepped (10, 25, 50, 75, 100/s by default; 20 s each, 60 s at 50/s) and
the ladder stops at the first rate that fails: order -> order.paid p99 over 1 s, a
purchase that could not start or failed, orders placed under 90% of the rate, jobs
backing up, or a worker that did not drain. The highest passing rate is reported. After
each rate the worker is drained, fulfilment to DELIVERED and e-mails included (the
fulfilment steps are delayed on purpose), so CPU per purchase covers the whole purchase
(its cart set-up too).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import aiohttp
import httpx

from benchmarks.fixtures import User
from benchmarks.load import Progress, Step, describe_error, percentile
from benchmarks.rawhttp import Connection
from benchmarks.scenarios import Context, ScenarioResult, check_stock
from benchmarks.sio import SioClient

PAID_LIKE = {"PAID", "FULFILLING", "SHIPPED", "DELIVERED"}
POLL_EVERY_S = 0.05
E2E_BUYERS = 100
# After a step, how long to keep waiting for PAID events that were late.
SETTLE_S = 15.0
P99_LIMIT_S = 1.0
MIN_RATE_SHARE = 0.9  # orders placed per second, as a share of the target
# Pending jobs + outbox rows when the last purchase starts above which the step "backs
# up": more than this many per purchase per second of target rate (and at least 50).
BACKLOG_PER_RATE = 2.0
MIN_BACKLOG_LIMIT = 50


async def _payments_available(ctx: Context) -> str | None:
    """None when the service documents POST /api/v1/payments/init; else why not."""
    async with httpx.AsyncClient(base_url=ctx.service.base_url, timeout=30) as client:
        r = await client.get("/openapi.json")
    if r.status_code != 200:
        return f"GET /openapi.json answered {r.status_code}"
    paths = r.json().get("paths", {})
    if "/api/v1/payments/init" not in paths:
        return "the service has no POST /api/v1/payments/init yet"
    return None


class PaidWatch:
    """Times at which each order was seen PAID (from `order.paid` events)."""

    def __init__(self) -> None:
        self.seen: dict[str, float] = {}
        self.waiters: dict[str, asyncio.Future[float]] = {}
        self.events = 0

    def on_event(self, name: str, payload: Any) -> None:
        if name != "order.paid" or not isinstance(payload, dict):
            return
        self.events += 1
        order_id = str(payload.get("orderId"))
        at = time.perf_counter()
        self.seen.setdefault(order_id, at)
        waiter = self.waiters.pop(order_id, None)
        if waiter is not None and not waiter.done():
            waiter.set_result(at)

    async def wait(self, order_id: str, timeout: float) -> float | None:
        if order_id in self.seen:
            return self.seen[order_id]
        fut: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self.waiters[order_id] = fut
        try:
            return await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            return None
        finally:
            self.waiters.pop(order_id, None)


async def run_e2e(ctx: Context) -> ScenarioResult:
    p = ctx.profile
    result = ScenarioResult("e2e")
    missing = await _payments_available(ctx)
    if missing is not None:
        result.skipped = missing
        return result
    users = (await ctx.fixtures.ensure_users(p.users))[:E2E_BUYERS]
    books = await ctx.books_for_orders()
    watch = PaidWatch()
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
    sockets: list[SioClient] = []
    mode = "socket"
    try:
        sockets = [SioClient(session, ctx.service.base_url, u.token, watch.on_event) for u in users]
        outcomes = await asyncio.gather(*(s.connect() for s in sockets), return_exceptions=True)
        failed = [o for o in outcomes if isinstance(o, BaseException)]
        if failed:
            mode = "poll"
            print(f"[e2e] {len(failed)} sockets failed ({failed[0]!r}): polling GET /orders/{{id}}")
        await _ladder(ctx, result, users, books, watch, mode)
    finally:
        await asyncio.gather(*(s.close() for s in sockets), return_exceptions=True)
        await session.close()
    await check_stock(ctx, result, books, attempts=15)
    if result.stock_check is not None:
        result.verdict["orders_by_status"] = result.stock_check.orders_by_status
    return result


async def _ladder(
    ctx: Context,
    result: ScenarioResult,
    users: list[User],
    books: list[Any],
    watch: PaidWatch,
    mode: str,
) -> None:
    """Each rate in turn until one fails; the verdict names the highest that passed."""
    p = ctx.profile
    rates = sorted(p.e2e_rates)
    best: float | None = None
    stopped: dict[str, Any] | None = None
    for k, rate in enumerate(rates):
        seconds = p.e2e_hold_seconds if rate == p.e2e_hold_rate else p.e2e_seconds
        profile = rate == p.e2e_hold_rate or (p.e2e_hold_rate not in rates and k == 0)
        step = await _drive(ctx, users, books, watch, mode, rate, seconds, profile)
        step.extra["wait_mode"] = mode
        result.steps.append(step)
        reasons = _failures(step, rate)
        step.extra["pass"] = not reasons
        step.extra["fail_reasons"] = reasons
        if reasons:
            print(f"[e2e] {rate:g}/s FAILED: {'; '.join(reasons)}")
            stopped = {"rate": rate, "reasons": reasons}
            break
        print(f"[e2e] {rate:g}/s passed")
        best = rate
    result.verdict = {
        "max_sustained_rate": best,
        "p99_limit_ms": P99_LIMIT_S * 1000,
        "stopped_at": stopped,
        "hold": {"rate": p.e2e_hold_rate, "seconds": p.e2e_hold_seconds},
    }
    hold = next((s for s in result.steps if s.extra.get("target_rate") == p.e2e_hold_rate), None)
    passed = [s for s in result.steps if s.extra.get("pass")]
    headline = hold or (passed[-1] if passed else None)
    if headline is None and result.steps:
        headline = result.steps[0]
    result.headline = headline.label if headline is not None else None


def _failures(step: Step, rate: float) -> list[str]:
    """Why this rate was not sustained (empty when it was)."""
    reasons: list[str] = []
    lat = sorted(step.latencies)
    p99 = percentile(lat, 99)
    if not lat:
        reasons.append("no purchase was seen PAID")
    elif p99 > P99_LIMIT_S:
        reasons.append(f"order -> order.paid p99 {p99 * 1000:.0f} ms > {P99_LIMIT_S * 1000:.0f}")
    not_started = step.statuses.get("not-started", 0)
    if not_started:
        reasons.append(f"{not_started} purchases could not start (no buyer free in time)")
    failed = sum(n for s, n in step.errors.items() if s != "not-started")
    if failed:
        reasons.append(f"{failed} purchases failed {step.errors}")
    achieved = float(step.extra.get("achieved_order_rate") or 0.0)
    if achieved < MIN_RATE_SHARE * rate:
        reasons.append(f"orders placed at {achieved:g}/s of {rate:g}/s")
    backlog = step.extra.get("backlog_at_last_start")
    limit = max(MIN_BACKLOG_LIMIT, BACKLOG_PER_RATE * rate)
    if isinstance(backlog, int) and backlog > limit:
        reasons.append(f"{backlog} jobs/outbox rows pending as the last purchase started")
    if step.drains_capped:
        reasons.append("the worker had not drained at the drain cap")
    return reasons


async def _drive(
    ctx: Context,
    users: list[User],
    books: list[Any],
    watch: PaidWatch,
    mode: str,
    rate: float,
    seconds: float,
    profile: bool,
) -> Step:
    p = ctx.profile
    total = max(1, int(rate * seconds))
    step = Step("e2e", f"{rate:g}/s", len(users), frozenset({"PAID"}))
    # Placed and paid orders whose PAID the buyer had not seen within e2e_paid_timeout:
    # (order id, token, clock at placement); settled after the run (late or never).
    unresolved: list[tuple[str, str, float]] = []
    free: asyncio.Queue[User] = asyncio.Queue()
    for u in users:
        u.cart_dirty = True
        free.put_nowait(u)
    host, port = ctx.service.host_port
    idle: list[Connection] = []
    parts: dict[str, list[float]] = {"order": [], "init": [], "pay": [], "pay_to_paid": []}
    start_lag: list[float] = []
    placed_at: list[float] = []

    async def request(method: str, path: str, body: Any = None, **kw: Any) -> Any:
        conn = idle.pop() if idle else Connection(host, port)
        try:
            r = await conn.request(method, path, body, **kw)
        except BaseException:
            conn.close()
            raise
        idle.append(conn)
        return r

    async def purchase(k: int, due: float) -> None:
        # A buyer is free again once their order is placed. When the service falls
        # behind the target rate no buyer may be free: give up at the end of the run.
        try:
            user = await asyncio.wait_for(free.get(), max(0.0, stop_starting - time.perf_counter()))
        except TimeoutError:
            step.record("not-started", None)
            return
        start_lag.append(time.perf_counter() - due)
        released = False
        try:
            if user.cart_dirty:
                await request("DELETE", "/api/v1/cart", token=user.token)
            book = books[k % len(books)]
            r = await request(
                "POST", "/api/v1/cart/add", {"bookId": book.id, "quantity": 1}, token=user.token
            )
            user.cart_dirty = True
            if r.status != 200:
                step.record(f"cart:{r.status}", None)
                return
            t0 = time.perf_counter()
            r = await request(
                "POST",
                "/api/v1/orders",
                token=user.token,
                headers={"Idempotency-Key": str(uuid.uuid4())},
            )
            t_order = time.perf_counter()
            user.cart_dirty = r.status != 201
            free.put_nowait(user)
            released = True
            if r.status != 201:
                _note(step, "order", r)
                return
            placed_at.append(t_order)
            parts["order"].append(t_order - t0)
            order_id = str(r.data()["orderId"])
            r = await request(
                "POST", "/api/v1/payments/init", {"orderId": order_id}, token=user.token
            )
            t_init = time.perf_counter()
            if r.status not in (200, 201):
                _note(step, "init", r)
                return
            parts["init"].append(t_init - t_order)
            intent = str(r.data()["paymentIntentId"])
            r = await request("POST", f"/sandbox/checkout/{intent}/pay")
            t_pay = time.perf_counter()
            if not 200 <= r.status < 400:
                _note(step, "pay", r)
                return
            parts["pay"].append(t_pay - t_init)
            if mode == "socket":
                paid = await watch.wait(order_id, p.e2e_paid_timeout)
            else:
                paid = await _poll_paid(request, order_id, user.token, p.e2e_paid_timeout)
            if paid is None:
                unresolved.append((order_id, user.token, t0))
                return
            parts["pay_to_paid"].append(paid - t_pay)
            step.record("PAID", paid - t0)
        except Exception as exc:
            step.record(describe_error(exc), None)
            step.note_error(exc)
        finally:
            if not released:
                free.put_nowait(user)

    print(f"[e2e] {total} purchases at {rate:g}/s ({seconds:g} s), waiting for PAID by {mode}")
    loop = asyncio.get_running_loop()
    tasks: list[asyncio.Task[None]] = []
    stop_starting = time.perf_counter() + seconds + 1.0
    drainer = ctx.meter.drainer
    with Progress(step):
        async with ctx.meter.measure(step, profile=profile):
            t_begin = time.perf_counter()
            stop_starting = t_begin + seconds + 1.0
            for k in range(total):
                due = t_begin + k / rate
                delay = due - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                tasks.append(loop.create_task(purchase(k, due)))
            if drainer is not None and drainer.available:
                step.extra["backlog_at_last_start"] = (await drainer.backlog()).total
            await asyncio.gather(*tasks)
            late, missing = await _settle(request, watch, unresolved, step, mode)
    for conn in idle:
        conn.close()
    span = (placed_at[-1] - placed_at[0]) if len(placed_at) > 1 else 0.0
    lag = sorted(start_lag)
    step.extra.update(
        target_rate=rate,
        paid_after_timeout=late,
        paid_without_event=missing,
        achieved_order_rate=round((len(placed_at) - 1) / span, 1) if span > 0 else 0.0,
        start_lag_ms_p99=round(percentile(lag, 99) * 1000, 1),
        parts_ms={name: _pcts(values) for name, values in parts.items()},
        backlog_per_s=list(step.backlog),
    )
    step.ops = len(placed_at)
    return step


async def _settle(
    request: Any,
    watch: PaidWatch,
    unresolved: list[tuple[str, str, float]],
    step: Step,
    mode: str,
) -> tuple[int, int]:
    """Orders not seen PAID in time: wait a little longer for their events, then count
    each as PAID late (its real latency recorded), PAID without an event, or not paid."""
    deadline = time.perf_counter() + SETTLE_S
    while mode == "socket" and time.perf_counter() < deadline:
        if all(order_id in watch.seen for order_id, _, _ in unresolved):
            break
        await asyncio.sleep(0.2)
    late = missing = 0
    for order_id, token, t0 in unresolved:
        seen = watch.seen.get(order_id)
        if seen is not None:
            late += 1
            step.record("PAID", seen - t0)
            continue
        status = await _order_status(request, order_id, token)
        if status in PAID_LIKE:
            if mode == "socket":
                missing += 1
                step.record("PAID-no-event", None)
            else:
                late += 1
                step.record("PAID", time.perf_counter() - t0)
        else:
            step.record(f"not-paid:{status}", None)
    return late, missing


def _pcts(values: list[float]) -> dict[str, float]:
    v = sorted(values)
    return {
        "p50": round(percentile(v, 50) * 1000, 1),
        "p99": round(percentile(v, 99) * 1000, 1),
        "max": round((v[-1] if v else 0.0) * 1000, 1),
    }


def _note(step: Step, stage: str, r: Any) -> None:
    step.record(f"{stage}:{r.status}", None)
    if (r.status >= 500 or r.status in (404, 405)) and len(step.notes) < 6:
        step.notes.append(f"{stage} {r.status}: {r.body[:300]!r}")


async def _order_status(request: Any, order_id: str, token: str) -> str:
    try:
        r = await request("GET", f"/api/v1/orders/{order_id}", token=token)
    except Exception as exc:
        return describe_error(exc)
    if r.status != 200:
        return f"GET {r.status}"
    return str((r.data() or {}).get("status"))


async def _poll_paid(request: Any, order_id: str, token: str, timeout: float) -> float | None:
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        if await _order_status(request, order_id, token) in PAID_LIKE:
            return time.perf_counter()
        await asyncio.sleep(POLL_EVERY_S)
    return None
