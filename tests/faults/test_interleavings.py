"""Gated interleavings: one path paused at a gate (between its PostgreSQL commit and its
Redis step, or holding its row locks) while another path runs, in real `bookbazar api`
and `bookbazar worker` processes (docs/STOCK-LEDGER.md, "Gates"). Every pair of {late
payment, expiry, cancel, sweeper, reconcile, second settler} is run in both orders.

The defect these catch: a late payment's new hold (its re-reservation) ended by a path
that saw the old hold (the expiry, a repeated cancel, the sweeper, reconcile's finishing
step, the losing settler), which leaves the counter one copy too high: an oversell.

Each scenario has ONE book with ONE copy, held by the buyer's order (which has a payment
intent). The scenario pauses one path at its gate, runs the other, opens the gate, and
ends with the buyer's payment applied (PAID, or REFUNDED when no copy could be held).
Then: never oversold, `available == on hand - held` exactly, holds == orders awaiting
payment, nothing stuck, every armed gate was reached, and a rival buyer gets the copy
if and only if it is really free. Where the database serialises a pair (the order's row
lock, the books' FOR UPDATE against reconcile's FOR SHARE, the expiry's SKIP LOCKED), the
other path is seen waiting for the lock (pg_stat_activity) or skipping the order, and
that serialised outcome is what is asserted.

One API and one worker serve the whole module, every gate listed in GATE_POINTS and
armed per scenario; the worker's own schedules for expiry, sweeper and audit are removed,
so each of those runs exactly when a scenario enqueues its job (still a real job in the
real worker). Gate arrivals are checked against the pid of the process meant to pause.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from bookbazar.app import create_app
from bookbazar.auth.tokens import issue_token
from bookbazar.inventory import keys
from bookbazar.kit.faults import gate_key
from bookbazar.kit.queues import RESERVATION
from bookbazar.orders.jobs import EXPIRE_JOB, SWEEP_JOB
from bookbazar.orders.state import SOLD
from bookbazar.services import Services
from tests.conftest import TABLES, Infra, create_book, make_settings
from tests.faults.harness import (
    Launcher,
    Proc,
    all_relayed,
    assert_nothing_stuck,
    assert_stock_exact,
    eventually,
)
from tests.orders.conftest import (
    force_deadline_passed,
    held_in_db,
    hold_of,
    on_hand,
    order_status,
    place,
    quick_users,
)
from tests.payments.conftest import payment_row, sandbox_event, signed

WEBHOOK = "/api/v1/payments/webhook/sandbox"
PRICE = 25_000
AUDIT_JOB = "stock:audit"

EXPIRE = "expire:after-commit"  # worker: EXPIRED committed, old hold not yet released
CANCEL = "cancel:after-commit"  # API: CANCELLED committed, old hold not yet released
CONVERT = "settle:before-convert"  # API: order and book rows locked, hold not yet converted
RESERVED = "settle:after-reserve"  # API: late payment's new hold made, no lock taken yet
SWEEP = "sweeper:before-release"  # worker: sweeper decided to release a hold
SNAPSHOT = "reconcile:after-snapshot"  # any: books locked FOR SHARE, snapshot read
GATES = (EXPIRE, CANCEL, CONVERT, RESERVED, SWEEP, SNAPSHOT)

GRACE = 1  # PENDING_GRACE_SECONDS of both processes: the sweeper's and reconcile's horizon
PROCESS_ENV = {
    "GATE_POINTS": ",".join(GATES),
    "PENDING_GRACE_SECONDS": str(GRACE),
    "SWEEPER_INTERVAL_SECONDS": "3600",
    "EXPIRY_INTERVAL_SECONDS": "3600",
    "SCHEDULE_REFRESH_SECONDS": "3600",
    "AUDIT_INTERVAL_SECONDS": "3600",
    "PAYMENT_VERIFY_AFTER_SECONDS": "3600",
    "FULFILLMENT_SHIP_DELAY_SECONDS": "3600",
}
STEP_TIMEOUT = 20.0  # well under the gates' own 30 s timeout


# ---------------------------------------------------------------- the processes


@dataclass
class Bazar:
    services: Services
    launch: Launcher
    api: Proc
    worker: Proc
    http: httpx.AsyncClient
    redis: Redis


@pytest.fixture(scope="module")
async def bazar(
    infra: Infra, engine: AsyncEngine, raw_redis: Redis, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Bazar]:
    async with engine.begin() as conn:
        await conn.execute(text(f"TRUNCATE {TABLES} CASCADE"))
    await raw_redis.flushdb()
    settings = make_settings(infra)
    application = create_app(settings)
    logs = Path(tmp_path_factory.mktemp("interleavings"))
    async with application.api.router.lifespan_context(application.api):
        services: Services = application.api.state.services
        launch = Launcher(settings, logs)
        try:
            api = await launch.api(**PROCESS_ENV)
            worker = await launch.worker(**PROCESS_ENV)
            await _only_on_demand(services, launch)
            async with httpx.AsyncClient(base_url=api.url, timeout=STEP_TIMEOUT + 10) as http:
                yield Bazar(services, launch, api, worker, http, raw_redis)
        finally:
            await launch.close()


async def _only_on_demand(services: Services, launch: Launcher) -> None:
    """Remove the schedules of the paths under test (after their first tick ran; the
    expiry tick runs once an hour): each runs only when a scenario enqueues its job."""
    queue = services.queues.get(RESERVATION)
    for name in (SWEEP_JOB, AUDIT_JOB):
        await queue.removeJobScheduler(name)

    async def idle() -> bool:
        counts = await queue.getJobCounts("active", "wait", "delayed")
        return not any(counts.values())

    await eventually(idle, "the first scheduled ticks to finish", launch)


# ---------------------------------------------------------------- one race


@dataclass
class Paused:
    """A path waiting at its gate; `finish` waits for the rest of it once opened."""

    gate: str
    finish: Callable[[], Awaitable[Any]]


@dataclass
class Race:
    bz: Bazar
    book: uuid.UUID
    buyer: dict[str, Any]
    rival: dict[str, Any]
    order_id: str
    intent: str
    old_hold: str  # the hold's key the order was placed with
    waiting: list[str] = field(default_factory=list)  # gates a process waits at
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)

    @property
    def services(self) -> Services:
        return self.bz.services

    # ------------------------------------------------------------ gates

    async def _arm(self, gate: str) -> None:
        await self.bz.redis.rpush(gate_key(gate, "armed"), "x")  # type: ignore[misc]

    async def _arrival(self, gate: str, proc: Proc) -> None:
        got = await self.bz.redis.blpop(  # type: ignore[misc]
            [gate_key(gate, "arrived")], timeout=STEP_TIMEOUT
        )
        assert got is not None, f"nothing reached {gate}\n{self.bz.launch.tails()}"
        assert int(got[1]) == proc.process.pid, f"{gate} reached by {got[1]}, not {proc.name}"
        self.waiting.append(gate)

    async def resume(self, paused: Paused) -> Any:
        """Open the gate and wait for the paused path to finish; its result."""
        await self.bz.redis.rpush(gate_key(paused.gate, "open"), "go")  # type: ignore[misc]
        self.waiting.remove(paused.gate)
        return await asyncio.wait_for(paused.finish(), STEP_TIMEOUT)

    def start(self, path: Awaitable[Any]) -> asyncio.Task[Any]:
        """Run a path in the background (it is about to wait for a lock)."""
        task = asyncio.ensure_future(path)
        self.tasks.append(task)
        return task

    async def result(self, task: asyncio.Task[Any]) -> Any:
        return await asyncio.wait_for(task, STEP_TIMEOUT)

    async def blocked(self, count: int = 1) -> None:
        """Wait until `count` transactions wait for a row lock held by a paused path."""

        async def waiting() -> bool:
            async with self.services.sessionmaker() as session:
                value = (
                    await session.execute(
                        text(
                            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = "
                            "'Lock' AND datname = current_database()"
                        )
                    )
                ).scalar_one()
            return int(value) >= count

        await eventually(waiting, f"{count} path(s) waiting for a lock", self.bz.launch)

    async def aged(self) -> None:
        """Let the holds and order changes so far age past the grace period."""
        await asyncio.sleep(GRACE + 0.25)

    # ------------------------------------------------------------ worker paths

    async def _worker_path(self, name: str, gate: str | None) -> Any:
        if gate is not None:
            await self._arm(gate)
        job_id = await self.services.queues.add(RESERVATION, name, {}, attempts=1)
        if gate is None:
            return await self._finished(job_id)
        await self._arrival(gate, self.bz.worker)
        return Paused(gate, lambda: self._finished(job_id))

    async def _finished(self, job_id: str) -> dict[str, Any]:
        queue = self.services.queues.get(RESERVATION)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + STEP_TIMEOUT
        while True:
            state = await queue.getJobState(job_id)
            if state == "completed":
                job = await queue.getJob(job_id)  # read after it finished: with its result
                assert job is not None, job_id
                result = job.returnvalue
                assert isinstance(result, dict) and "error" not in result, result
                return result
            assert state != "failed", f"job {job_id} failed\n{self.bz.launch.tails()}"
            assert loop.time() < deadline, f"job {job_id} is {state}\n{self.bz.launch.tails()}"
            await asyncio.sleep(0.05)

    async def expiry(self, *, gate: bool = False, due: bool = True) -> Any:
        """The scheduled expiry job (the order's deadline moved into the past first,
        unless `due` is False: it is already, and a paused path holds the row)."""
        if due:
            await force_deadline_passed(self.services, self.order_id)
        return await self._worker_path(EXPIRE_JOB, EXPIRE if gate else None)

    async def sweep(self, *, gate: bool = False) -> Any:
        return await self._worker_path(SWEEP_JOB, SWEEP if gate else None)

    async def audit(self, *, gate: bool = False) -> Any:
        """The scheduled stock audit (a full reconcile) in the worker."""
        return await self._worker_path(AUDIT_JOB, SNAPSHOT if gate else None)

    # ------------------------------------------------------------ API paths

    async def _api_path(self, path: Awaitable[Any], gate: str | None) -> Any:
        if gate is None:
            return await path
        await self._arm(gate)
        task = self.start(path)
        await self._arrival(gate, self.bz.api)
        return Paused(gate, lambda: task)

    async def cancel(self, *, gate: bool = False) -> Any:
        """The buyer cancels (again); the HTTP status."""
        return await self._api_path(self._cancel(), CANCEL if gate else None)

    async def _cancel(self) -> int:
        resp = await self.bz.http.post(
            f"/api/v1/orders/{self.order_id}/cancel", headers=self.buyer["headers"]
        )
        assert resp.status_code in (200, 409), resp.text
        return resp.status_code

    async def pay(self, *, gate: str | None = None) -> Any:
        """One delivery (its own event id) of the buyer's payment; the webhook result."""
        payload = sandbox_event(
            self.intent, self.order_id, PRICE, event_id=f"evt_gate_{uuid.uuid4().hex}"
        )
        return await self._api_path(self._deliver(payload), gate)

    async def _deliver(self, payload: str) -> str:
        resp = await self.bz.http.post(WEBHOOK, content=payload.encode(), headers=signed(payload))
        assert resp.status_code == 200, resp.text
        return str(resp.json()["data"]["result"])

    async def api_audit(self, *, gate: bool = False) -> Any:
        """An admin runs the stock audit now: a full reconcile in the API process."""
        return await self._api_path(self._api_audit(), SNAPSHOT if gate else None)

    async def _api_audit(self) -> dict[str, Any]:
        admin = (await quick_users(self.services, 1))[0]
        async with self.services.sessionmaker() as session, session.begin():
            await session.execute(
                text("UPDATE users SET role = 'admin' WHERE id = :id"),
                {"id": uuid.UUID(admin["user"]["id"])},
            )
        token = issue_token(
            self.services.settings.secret, uuid.UUID(admin["user"]["id"]), "admin", 3600
        )
        resp = await self.bz.http.post(
            "/api/v1/admin/stock-audit", headers={"Authorization": f"Bearer {token}"}
        )
        assert resp.status_code == 200, resp.text
        data: dict[str, Any] = resp.json()["data"]
        return data

    # ------------------------------------------------------------ afterwards

    async def abandon(self) -> None:
        """After a failure: let every paused process go and stop what is left."""
        for gate in self.waiting:
            await self.bz.redis.rpush(gate_key(gate, "open"), "go")  # type: ignore[misc]
        self.waiting.clear()
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    async def old_hold_live(self) -> bool:
        return bool(await self.bz.redis.exists(self.old_hold))

    async def verify(self, outcome: str) -> None:
        services, book = self.services, self.book
        assert not self.waiting, f"still paused at {self.waiting}"
        assert all(t.done() for t in self.tasks), "a path never finished"
        for gate in GATES:
            armed = await self.bz.redis.llen(gate_key(gate, "armed"))  # type: ignore[misc]
            assert armed == 0, f"{gate} was armed but never reached"

        async def settled() -> bool:
            return await order_status(services, self.order_id) != "REFUND_PENDING"

        await eventually(settled, "the refund job", self.bz.launch)
        # The buyer's payment is never lost: sold (PAID, or further along), or given back.
        status = await order_status(services, self.order_id)
        assert status in (SOLD if outcome == "PAID" else {outcome}), status
        payment = (await payment_row(services, self.order_id))["status"]
        assert payment == {"PAID": "succeeded", "REFUNDED": "refunded"}[outcome], payment
        # Never oversold, and the counter is exact.
        shelf, held = await on_hand(services, book), await held_in_db(services, book)
        sold = 1 - shelf
        assert shelf >= 0 and sold + held <= 1, f"sold {sold} + held {held} > 1 copy"
        assert sold == (1 if outcome == "PAID" else 0)
        assert not await self.old_hold_live()
        await assert_stock_exact(services, [book])
        await assert_nothing_stuck(services)
        # The rival gets the copy if and only if it is really free.
        free = shelf - held
        assert await self.rival_orders() == (free >= 1), f"{free} copies were free"
        await assert_stock_exact(services, [book])

    async def rival_orders(self) -> bool:
        http = self.bz.http
        added = await http.post(
            "/api/v1/cart/add",
            json={"bookId": str(self.book), "quantity": 1},
            headers=self.rival["headers"],
        )
        if added.status_code == 409:
            return False
        assert added.status_code == 200, added.text
        placed = await place(http, self.rival)
        assert placed.status_code in (201, 409), placed.text
        return placed.status_code == 201


async def _new_race(bz: Bazar) -> Race:
    """A clean slate (the processes stay up), then the buyer's order for the only copy,
    with a payment intent."""
    services = bz.services
    await bz.redis.delete(*(gate_key(g, w) for g in GATES for w in ("armed", "arrived", "open")))
    await eventually(lambda: all_relayed(services), "the last scenario's events", bz.launch)
    for attempt in range(5):  # the worker may still be finishing the last scenario's jobs
        try:
            async with services.sessionmaker() as session, session.begin():
                await session.execute(text("SET LOCAL lock_timeout = '2s'"))
                await session.execute(text(f"TRUNCATE {TABLES} CASCADE"))
            break
        except DBAPIError:
            if attempt == 4:
                raise
            await asyncio.sleep(0.2)
    stale = [k async for k in bz.redis.scan_iter(match=f"{keys.PREFIX}*", count=500)]
    if stale:
        await bz.redis.delete(*stale)
    buyer, rival = await quick_users(services, 2)
    book = await create_book(services, stock=1, price=PRICE)
    added = await bz.http.post(
        "/api/v1/cart/add", json={"bookId": str(book), "quantity": 1}, headers=buyer["headers"]
    )
    assert added.status_code == 200, added.text
    placed = await place(bz.http, buyer)
    assert placed.status_code == 201, placed.text
    order_id = placed.json()["data"]["orderId"]
    init = await bz.http.post(
        "/api/v1/payments/init", json={"orderId": order_id}, headers=buyer["headers"]
    )
    assert init.status_code == 200, init.text
    hold = await hold_of(services, order_id)
    assert (await services.inventory.available([book]))[book] == 0
    return Race(
        bz,
        book,
        buyer,
        rival,
        order_id,
        init.json()["data"]["paymentIntentId"],
        keys.hold(hold.order_id, hold.token),
    )


# ---------------------------------------------------------------- the scenarios

Scenario = Callable[[Race], Awaitable[None]]
SCENARIOS: list[Any] = []


def scenario(
    title: str, outcome: str, *, xfail: str | None = None
) -> Callable[[Scenario], Scenario]:
    def register(run: Scenario) -> Scenario:
        marks = [pytest.mark.xfail(strict=True, reason=xfail)] if xfail else []
        SCENARIOS.append(pytest.param(run, outcome, id=title, marks=marks))
        return run

    return register


# late payment x expiry


@scenario(
    "the expiry paused after its commit while the late payment finds the copy still held "
    "and is refunded",
    "REFUNDED",
)
async def _expiry_paused_late_payment_refunded(race: Race) -> None:
    expiry = await race.expiry(gate=True)
    assert await race.pay() == "refund"
    assert await race.resume(expiry) == {"expired": 1}


@scenario(
    "the late payment paused after re-reserving while the expiry job runs again and ends nothing",
    "PAID",
)
async def _late_payment_paused_expiry_again(race: Race) -> None:
    assert await race.expiry() == {"expired": 1}
    late = await race.pay(gate=RESERVED)
    assert await race.expiry() == {"expired": 0}
    assert await race.resume(late) == "paid"


# late payment x cancel


@scenario(
    "the cancel paused after its commit while a repeated cancel frees the copy and the late "
    "payment re-reserves and sells it",
    "PAID",
)
async def _cancel_paused_late_payment_sells(race: Race) -> None:
    cancel = await race.cancel(gate=True)
    assert await race.cancel() == 200
    assert not await race.old_hold_live()
    assert await race.pay() == "paid"
    assert await race.resume(cancel) == 200  # it ends the old hold only: nothing left
    assert await race.cancel() == 409


@scenario(
    "the late payment paused under the order's row lock while the buyer cancels again",
    "PAID",
)
async def _late_payment_locked_repeated_cancel(race: Race) -> None:
    assert await race.cancel() == 200
    late = await race.pay(gate=CONVERT)
    assert await race.cancel() == 200  # still CANCELLED as far as it can see
    assert await race.resume(late) == "paid"
    assert await race.cancel() == 409


# late payment x sweeper


@scenario(
    "the late payment paused past the grace period while the sweeper releases its new hold "
    "as an orphan, then it sells with a fresh hold",
    "PAID",
)
async def _late_payment_paused_sweeper_takes_hold(race: Race) -> None:
    assert await race.expiry() == {"expired": 1}
    late = await race.pay(gate=RESERVED)
    await race.aged()
    assert (await race.sweep())["repaired"] == 1
    assert await race.resume(late) == "paid"


@scenario(
    "the sweeper paused before releasing what it took for an orphan while the late payment "
    "sells with that very hold",
    "PAID",
)
async def _sweeper_paused_late_payment_sells(race: Race) -> None:
    assert await race.expiry() == {"expired": 1}
    late = await race.pay(gate=RESERVED)
    await race.aged()
    sweeper = await race.sweep(gate=True)
    assert await race.resume(late) == "paid"
    assert (await race.resume(sweeper))["repaired"] == 1


# late payment x reconcile


@scenario(
    "the late payment paused under its row locks while the audit waits for the book lock",
    "PAID",
)
async def _late_payment_locked_audit_waits(race: Race) -> None:
    assert await race.expiry() == {"expired": 1}
    late = await race.pay(gate=CONVERT)
    audit = race.start(race.audit())
    await race.blocked()
    assert await race.resume(late) == "paid"
    assert (await race.result(audit))["driftUnits"] == 0


@scenario(
    "the audit paused after its snapshot while the order expires and the late payment "
    "re-reserves, its sale waiting for the book lock",
    "PAID",
)
async def _audit_paused_expiry_then_late_payment(race: Race) -> None:
    audit = await race.audit(gate=True)
    assert await race.expiry() == {"expired": 1}
    late = race.start(race.pay())
    await race.blocked()
    assert (await race.resume(audit))["driftUnits"] == 0
    assert await race.result(late) == "paid"


# late payment x second settler


@scenario(
    "the late payment paused under the order's row lock while a second settler finds no copy, "
    "waits for the lock and finds it paid",
    "PAID",
)
async def _late_payment_locked_second_settler_waits(race: Race) -> None:
    assert await race.expiry() == {"expired": 1}
    first = await race.pay(gate=CONVERT)
    second = race.start(race.pay())
    await race.blocked()
    assert await race.resume(first) == "paid"
    assert await race.result(second) == "already_paid"


@scenario(
    "a settler paused after re-reserving the only copy while the late payment finds none and "
    "refunds, then the paused one gives its own hold back",
    "REFUNDED",
)
async def _settler_paused_late_payment_refunds(race: Race) -> None:
    assert await race.expiry() == {"expired": 1}
    first = await race.pay(gate=RESERVED)
    assert await race.pay() == "refund"
    assert await race.resume(first) == "refund"


# expiry x cancel


@scenario(
    "the expiry paused after its commit while the buyer's cancel is refused, then the "
    "payment arrives late and sells",
    "PAID",
)
async def _expiry_paused_cancel_refused(race: Race) -> None:
    expiry = await race.expiry(gate=True)
    assert await race.cancel() == 409
    assert await race.resume(expiry) == {"expired": 1}
    assert await race.pay() == "paid"


@scenario(
    "the cancel paused after its commit while the expiry job finds nothing due, then the "
    "payment arrives late and sells",
    "PAID",
)
async def _cancel_paused_expiry_finds_nothing(race: Race) -> None:
    cancel = await race.cancel(gate=True)
    assert await race.expiry() == {"expired": 0}
    assert await race.resume(cancel) == 200
    assert await race.pay() == "paid"


# expiry x sweeper


@scenario(
    "the expiry paused after its commit while the sweeper releases the stale hold and the "
    "late payment sells the copy before the expiry's release",
    "PAID",
)
async def _expiry_paused_sweeper_releases(race: Race) -> None:
    expiry = await race.expiry(gate=True)
    await race.aged()
    assert (await race.sweep())["repaired"] == 1
    assert await race.pay() == "paid"
    assert await race.resume(expiry) == {"expired": 1}


@scenario(
    "the sweeper paused before releasing an expired order's hold while the expiry releases "
    "it and the late payment sells before the sweeper's release",
    "PAID",
)
async def _sweeper_paused_expiry_releases(race: Race) -> None:
    expiry = await race.expiry(gate=True)
    await race.aged()
    sweeper = await race.sweep(gate=True)
    assert await race.resume(expiry) == {"expired": 1}
    assert await race.pay() == "paid"
    assert (await race.resume(sweeper))["repaired"] == 1


# expiry x reconcile


@scenario(
    "the expiry paused after its commit while the audit ends the stale hold and the late "
    "payment sells before the expiry's release",
    "PAID",
)
async def _expiry_paused_audit_ends_hold(race: Race) -> None:
    expiry = await race.expiry(gate=True)
    await race.aged()
    await race.audit()
    assert not await race.old_hold_live()
    assert await race.pay() == "paid"
    assert await race.resume(expiry) == {"expired": 1}


@scenario(
    "the API's audit paused after its snapshot while the order expires and its hold is "
    "released, and the audit does not bring it back",
    "PAID",
)
async def _api_audit_paused_expiry_releases(race: Race) -> None:
    audit = await race.api_audit(gate=True)
    assert await race.expiry() == {"expired": 1}
    report = await race.resume(audit)
    assert report["holdsRepaired"] == [], report
    assert await race.pay() == "paid"


# expiry x settler


@scenario(
    "an on-time payment paused under its row locks while the expiry job skips the locked order",
    "PAID",
)
async def _payment_locked_expiry_skips(race: Race) -> None:
    await force_deadline_passed(race.services, race.order_id)
    payment = await race.pay(gate=CONVERT)
    assert await race.expiry(due=False) == {"expired": 0}
    assert await race.resume(payment) == "paid"
    assert await race.expiry(due=False) == {"expired": 0}


@scenario(
    "the expiry paused after its commit while the sweeper frees the copy, the late payment "
    "sells it and a second settler finds it paid",
    "PAID",
)
async def _expiry_paused_two_settlers(race: Race) -> None:
    expiry = await race.expiry(gate=True)
    await race.aged()
    assert (await race.sweep())["repaired"] == 1
    assert await race.pay() == "paid"
    assert await race.pay() == "already_paid"
    assert await race.resume(expiry) == {"expired": 1}


# cancel x sweeper


@scenario(
    "the cancel paused after its commit while the sweeper releases the stale hold and the "
    "late payment sells before the cancel's release",
    "PAID",
)
async def _cancel_paused_sweeper_releases(race: Race) -> None:
    cancel = await race.cancel(gate=True)
    await race.aged()
    assert (await race.sweep())["repaired"] == 1
    assert await race.pay() == "paid"
    assert await race.resume(cancel) == 200


@scenario(
    "the sweeper paused before releasing a cancelled order's hold while a repeated cancel "
    "releases it and the late payment sells before the sweeper's release",
    "PAID",
)
async def _sweeper_paused_repeated_cancel(race: Race) -> None:
    cancel = await race.cancel(gate=True)
    await race.aged()
    sweeper = await race.sweep(gate=True)
    assert await race.cancel() == 200
    assert await race.pay() == "paid"
    assert (await race.resume(sweeper))["repaired"] == 1
    assert await race.resume(cancel) == 200


# cancel x reconcile


@scenario(
    "the cancel paused after its commit while the audit ends the stale hold and the late "
    "payment sells before the cancel's release",
    "PAID",
)
async def _cancel_paused_audit_ends_hold(race: Race) -> None:
    cancel = await race.cancel(gate=True)
    await race.aged()
    await race.audit()
    assert not await race.old_hold_live()
    assert await race.pay() == "paid"
    assert await race.resume(cancel) == 200


@scenario(
    "the audit paused after its snapshot while the buyer cancels and the late payment "
    "re-reserves, its sale waiting for the book lock",
    "PAID",
)
async def _audit_paused_cancel_then_late_payment(race: Race) -> None:
    audit = await race.audit(gate=True)
    assert await race.cancel() == 200
    late = race.start(race.pay())
    await race.blocked()
    assert (await race.resume(audit))["driftUnits"] == 0
    assert await race.result(late) == "paid"


# cancel x settler


@scenario(
    "an on-time payment paused under its row lock while the buyer's cancel waits for the lock "
    "and is refused",
    "PAID",
)
async def _payment_locked_cancel_refused(race: Race) -> None:
    payment = await race.pay(gate=CONVERT)
    cancel = race.start(race.cancel())
    await race.blocked()
    assert await race.resume(payment) == "paid"
    assert await race.result(cancel) == 409


@scenario(
    "the cancel paused after its commit while the payment finds the copy still held and is "
    "refunded",
    "REFUNDED",
)
async def _cancel_paused_payment_refunded(race: Race) -> None:
    cancel = await race.cancel(gate=True)
    assert await race.pay() == "refund"
    assert await race.resume(cancel) == 200


# sweeper x reconcile


@scenario(
    "the sweeper paused before releasing a stale hold while the audit ends it and the late "
    "payment sells before the sweeper's release",
    "PAID",
)
async def _sweeper_paused_audit_ends_hold(race: Race) -> None:
    expiry = await race.expiry(gate=True)
    await race.aged()
    sweeper = await race.sweep(gate=True)
    await race.audit()
    assert not await race.old_hold_live()
    assert await race.pay() == "paid"
    assert (await race.resume(sweeper))["repaired"] == 1
    assert await race.resume(expiry) == {"expired": 1}


@scenario(
    "the audit paused after its snapshot of a stale hold while the sweeper releases it and "
    "the late payment re-reserves, its sale waiting for the book lock",
    "PAID",
)
async def _audit_paused_sweeper_releases(race: Race) -> None:
    expiry = await race.expiry(gate=True)
    await race.aged()
    audit = await race.audit(gate=True)
    assert (await race.sweep())["repaired"] == 1
    late = race.start(race.pay())
    await race.blocked()
    await race.resume(audit)
    assert await race.result(late) == "paid"
    assert await race.resume(expiry) == {"expired": 1}


# sweeper x settler


@scenario(
    "an on-time payment paused under its row locks past the grace period while the sweeper "
    "leaves its hold alone",
    "PAID",
)
async def _payment_locked_sweeper_leaves_hold(race: Race) -> None:
    payment = await race.pay(gate=CONVERT)
    await race.aged()
    assert (await race.sweep())["repaired"] == 0
    assert await race.resume(payment) == "paid"


@scenario(
    "the sweeper paused before releasing a cancelled order's hold while the cancel finishes "
    "and the payment re-reserves and sells before the sweeper's release",
    "PAID",
)
async def _sweeper_paused_cancel_then_payment(race: Race) -> None:
    cancel = await race.cancel(gate=True)
    await race.aged()
    sweeper = await race.sweep(gate=True)
    assert await race.resume(cancel) == 200
    assert await race.pay() == "paid"
    assert (await race.resume(sweeper))["repaired"] == 1


# reconcile x settler


@scenario(
    "an on-time payment paused under its row locks while the audit waits for the book lock",
    "PAID",
)
async def _payment_locked_audit_waits(race: Race) -> None:
    payment = await race.pay(gate=CONVERT)
    audit = race.start(race.audit())
    await race.blocked()
    assert await race.resume(payment) == "paid"
    assert (await race.result(audit))["driftUnits"] == 0


@scenario(
    "the audit paused after its snapshot while the on-time payment waits for the book lock",
    "PAID",
)
async def _audit_paused_payment_waits(race: Race) -> None:
    audit = await race.audit(gate=True)
    payment = race.start(race.pay())
    await race.blocked()
    assert (await race.resume(audit))["driftUnits"] == 0
    assert await race.result(payment) == "paid"


# ---------------------------------------------------------------- the test


@pytest.mark.parametrize(("run", "outcome"), SCENARIOS)
async def test_interleaving(bazar: Bazar, run: Scenario, outcome: str) -> None:
    race = await _new_race(bazar)
    try:
        await run(race)
    except BaseException:
        await race.abandon()
        raise
    await race.verify(outcome)
