"""HTTP scenarios: `cart`, `orders`, `hot-book`.

Each step is a closed loop: `concurrency` virtual users, each with its own token and its
own keep-alive connection, send requests back to back until the step's request or time
budget is spent. Each timed part is measured by `Meter.measure`: earlier work drained
first (not counted), then the load, then the worker's drain (counted).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from benchmarks.fixtures import Book, Fixtures, User, clear_carts, prepare_carts
from benchmarks.load import Meter, Progress, Step, closed_loop
from benchmarks.profile import Profile
from benchmarks.rawhttp import Connection
from benchmarks.service import Service
from benchmarks.stockcheck import AuditReport, StockChecker, StockReport, stock_audit

# The summary's row per scenario, and the step --profile records.
HEADLINE_CONCURRENCY = 50


@dataclass
class Baseline:
    """The `healthz` calibration of this run: API CPU per GET /healthz and its rate."""

    api_ms: float
    rate: float


@dataclass
class Context:
    service: Service
    fixtures: Fixtures
    meter: Meter
    checker: StockChecker
    profile: Profile
    order_books: list[Book] = field(default_factory=list)
    baseline: Baseline | None = None

    def connections(self, n: int) -> list[Connection]:
        host, port = self.service.host_port
        return [Connection(host, port) for _ in range(n)]

    async def books_for_orders(self) -> list[Book]:
        """Books with far more stock than any run can sell (no contention on stock)."""
        if not self.order_books:
            print(f"[setup] creating {self.profile.order_books} benchmark books")
            self.order_books = await self.fixtures.create_books(
                self.profile.order_books, 1_000_000, "stock"
            )
        return self.order_books


@dataclass
class ScenarioResult:
    name: str
    steps: list[Step] = field(default_factory=list)
    stock_check: StockReport | None = None
    verdict: dict[str, Any] = field(default_factory=dict)
    skipped: str | None = None
    stock_audit: AuditReport | None = None
    # The step shown in the run's summary table (default: c=50, else the last step).
    headline: str | None = None

    def summary(self) -> dict[str, Any]:
        steps = [s.summary() for s in self.steps]
        labels = [s["step"] for s in steps]
        headline = self.headline
        if headline not in labels:
            headline = f"c={HEADLINE_CONCURRENCY}"
            if headline not in labels:
                headline = labels[-1] if labels else None
        return {
            "scenario": self.name,
            "skipped": self.skipped,
            "steps": steps,
            "headline_step": headline,
            "stock_check": self.stock_check.summary() if self.stock_check else None,
            "stock_audit": self.stock_audit.summary() if self.stock_audit else None,
            "verdict": self.verdict,
        }


async def check_stock(ctx: Context, result: ScenarioResult, books: list[Book], **kw: Any) -> None:
    """The oversell/undersell check, then the service's own stock audit (if it has one)."""
    result.stock_check = await ctx.checker.check_settled(books, **kw)
    result.stock_audit = await stock_audit(ctx.fixtures)
    print(f"[{result.name}] {result.stock_audit.line()}")


CART_LINES = 5


def _levels(levels: tuple[int, ...], users: int) -> list[int]:
    return [c for c in levels if c <= users] or [users]


# ------------------------------------------------------------------------------- cart


async def run_cart(ctx: Context) -> ScenarioResult:
    """POST /api/v1/cart/add: each virtual user sets lines of its own cart. A user keeps
    to its own few books (a cart of at most CART_LINES lines, as a shopper's) and varies
    the books and quantities 1-10 from request to request."""
    p = ctx.profile
    result = ScenarioResult("cart")
    users = await ctx.fixtures.ensure_users(p.users)
    books = await ctx.books_for_orders()
    failures = await clear_carts(ctx.service, [u for u in users if u.cart_dirty])
    if failures:
        result.verdict["clear_failures"] = failures[:3]
    for c in _levels(p.cart_levels, len(users)):
        step = Step("cart", f"c={c}", c, frozenset({"200"}))
        conns = ctx.connections(c)
        # Warm the connections (and the server's token path) outside the measurement.
        for w, conn in enumerate(conns):
            await conn.request("GET", "/api/v1/cart", token=users[w].token)

        async def op(w: int, i: int, conns: list[Connection] = conns) -> tuple[int, float]:
            book = books[(w * CART_LINES + i % CART_LINES) % len(books)]
            body = {"bookId": book.id, "quantity": 1 + (i // CART_LINES) % 10}
            t0 = time.perf_counter()
            r = await conns[w].request("POST", "/api/v1/cart/add", body, token=users[w].token)
            return r.status, time.perf_counter() - t0

        seconds = p.cart_seconds if c > 1 else min(p.cart_seconds, 8.0)
        with Progress(step):
            async with ctx.meter.measure(step, profile=c == HEADLINE_CONCURRENCY):
                await closed_loop(step, c, p.cart_requests, seconds, op)
        for conn in conns:
            conn.close()
        for user in users[:c]:
            user.cart_dirty = True
        result.steps.append(step)
    return result


# ----------------------------------------------------------------------------- orders


async def run_orders(ctx: Context) -> ScenarioResult:
    """POST /api/v1/orders from a one-line cart, distinct books with plenty of stock.

    Carts are prepared in batches (one per user, not timed), then the batch's orders run
    timed at the step's concurrency with a fresh Idempotency-Key each; repeat until the
    step's request or time budget is spent. Requests/s = orders / timed seconds.
    """
    p = ctx.profile
    result = ScenarioResult("orders")
    users = await ctx.fixtures.ensure_users(p.users)
    books = await ctx.books_for_orders()
    line_counter = 0

    def line_for(_k: int, _user: User) -> tuple[str, int]:
        nonlocal line_counter
        line_counter += 1
        return books[line_counter % len(books)].id, 1 + line_counter % 3

    for c in _levels(p.order_levels, len(users)):
        step = Step("orders", f"c={c}", c, frozenset({"201"}))
        step.extra.update(multi_line_orders=0, prepare_failures=0, prepare_s=0.0)
        conns = ctx.connections(c)
        done = 0
        with Progress(step):
            while done < p.order_requests and step.elapsed < p.order_seconds:
                batch = users[: min(len(users), p.order_requests - done)]
                t0 = time.perf_counter()
                failures = await prepare_carts(ctx.service, batch, line_for)
                step.extra["prepare_s"] += time.perf_counter() - t0
                if failures:
                    step.extra["prepare_failures"] += len(failures)
                    step.notes.extend(failures[:3])

                op = _order_op(step, batch, conns)
                async with ctx.meter.measure(step, profile=c == HEADLINE_CONCURRENCY):
                    done += await closed_loop(
                        step, c, len(batch), max(0.1, p.order_seconds - step.elapsed), op
                    )
        step.extra["prepare_s"] = round(step.extra["prepare_s"], 2)
        for conn in conns:
            conn.close()
        result.steps.append(step)
    await check_stock(ctx, result, books)
    return result


def _order_op(
    step: Step, batch: list[User], conns: list[Connection]
) -> Callable[[int, int], Awaitable[tuple[int, float]]]:
    """POST /orders for `batch[i]` on worker `w`'s connection, with a fresh key."""

    async def op(w: int, i: int) -> tuple[int, float]:
        user = batch[i]
        headers = {"Idempotency-Key": str(uuid.uuid4())}
        t0 = time.perf_counter()
        r = await conns[w].request("POST", "/api/v1/orders", token=user.token, headers=headers)
        latency = time.perf_counter() - t0
        user.cart_dirty = r.status != 201
        if r.status == 201:
            items = (r.data() or {}).get("items") or []
            if len(items) != 1:  # the previous order did not empty the cart
                step.extra["multi_line_orders"] += 1
                user.cart_dirty = True
        elif r.status >= 500 and len(step.notes) < 5:
            step.notes.append(f"{r.status}: {r.body[:300]!r}")
        return r.status, latency

    return op


# --------------------------------------------------------------------------- hot-book


async def run_hot_book(ctx: Context) -> ScenarioResult:
    """At each concurrency of `hot_levels` (50 and 200 by default): N buyers, a new title
    with S units. Every buyer must get 201 or 409, exactly S get 201, no 5xx, and no 409
    while stock was left (each 409 must name the book with fewer units available than
    requested). The scenario passes when every level does."""
    p = ctx.profile
    result = ScenarioResult("hot-book")
    buyers = await ctx.fixtures.ensure_users(p.hot_buyers)
    stock = min(p.hot_stock, max(1, len(buyers) - 1))
    books: list[Book] = []
    levels = sorted({min(c, len(buyers)) for c in p.hot_levels})
    for c in levels:
        (book,) = await ctx.fixtures.create_books(1, stock, f"hot c{c}")
        books.append(book)
        print(f"[hot-book] {len(buyers)} buyers, {stock} copies of one title, c={c}")
        step, verdict = await _hot_race(ctx, buyers, book, stock, c)
        result.steps.append(step)
        result.verdict[step.label] = verdict
    result.verdict["pass"] = all(v["pass"] for k, v in result.verdict.items() if k != "pass")
    await check_stock(ctx, result, books)
    return result


async def _hot_race(
    ctx: Context, buyers: list[User], book: Book, stock: int, c: int
) -> tuple[Step, dict[str, Any]]:
    """One race: every buyer's cart holds one unit of `book`; all order at concurrency c."""
    failures = await prepare_carts(ctx.service, buyers, lambda _k, _u: (book.id, 1))
    step = Step("hot-book", f"c={c}", c, frozenset({"201", "409"}))
    if failures:
        step.notes.extend(failures[:3])
        step.extra["prepare_failures"] = len(failures)
    spurious: list[str] = []
    completions: list[tuple[float, int]] = []
    conns = ctx.connections(c)
    t_start = time.perf_counter()

    async def op(w: int, i: int) -> tuple[int, float]:
        user = buyers[i]
        headers = {"Idempotency-Key": str(uuid.uuid4())}
        t0 = time.perf_counter()
        r = await conns[w].request("POST", "/api/v1/orders", token=user.token, headers=headers)
        t1 = time.perf_counter()
        completions.append((t1 - t_start, r.status))
        user.cart_dirty = r.status != 201
        if r.status == 409:
            reason = _spurious_conflict(r.json(), book.id)
            if reason is not None:
                spurious.append(reason)
        elif r.status >= 500 and len(step.notes) < 5:
            step.notes.append(f"{r.status}: {r.body[:300]!r}")
        return r.status, t1 - t0

    with Progress(step):
        async with ctx.meter.measure(step, profile=c == HEADLINE_CONCURRENCY):
            t_start = time.perf_counter()
            await closed_loop(step, c, len(buyers), 60.0, op)
    for conn in conns:
        conn.close()
    sold = step.statuses.get("201", 0)
    five_xx = sum(n for s, n in step.statuses.items() if s.startswith("5"))
    other = {s: n for s, n in step.statuses.items() if s not in ("201", "409")}
    completions.sort()
    last_201 = max((t for t, s in completions if s == 201), default=0.0)
    first_409 = min((t for t, s in completions if s == 409), default=0.0)
    verdict = {
        "buyers": len(buyers),
        "stock": stock,
        "sold_201": sold,
        "refused_409": step.statuses.get("409", 0),
        "sold_exactly_stock": sold == stock,
        "five_xx": five_xx,
        "other_statuses": other,
        "spurious_409": len(spurious),
        "spurious_409_samples": spurious[:5],
        "first_409_answered_at_s": round(first_409, 3),
        "last_201_answered_at_s": round(last_201, 3),
        "pass": sold == stock and not other and not spurious,
    }
    return step, verdict


def _spurious_conflict(doc: Any, book_id: str) -> str | None:
    """None if the 409 is the legitimate 'not enough stock' for this book; else why not."""
    if not isinstance(doc, dict):
        return f"409 without a JSON body: {doc!r}"[:300]
    errors = doc.get("errors") or []
    for err in errors:
        if isinstance(err, dict) and str(err.get("bookId")) == book_id:
            requested, available = err.get("requested"), err.get("available")
            if isinstance(requested, int) and isinstance(available, int):
                if available < requested:
                    return None
                return f"409 while {available} available for {requested} requested"
    return f"409 not about stock: {doc.get('message')!r} {errors!r}"[:300]
