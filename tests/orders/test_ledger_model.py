"""Model-based test of the stock ledger (docs/STOCK-LEDGER.md) over the real PostgreSQL and
Redis: random sequences of placements, cancels, expiries, payments (on time, late, twice),
sweeps, partial and full reconciles, restocks and lost Redis keys, with the ledger's
invariants checked after every step against PostgreSQL and against a small Python model.

How the async code is driven. Hypothesis's `RuleBasedStateMachine` is synchronous: its
rules cannot be coroutines, and a rule cannot block on the pytest-asyncio loop while it is
running. So the test itself is a plain (synchronous) test: it starts one private event
loop in a background thread, builds its own `Services` on that loop from the test's
`settings` (no API, no worker), and every rule and invariant hands
one coroutine to that loop with `asyncio.run_coroutine_threadsafe(...).result()`. Steps
therefore run strictly one after another, each against the real code, and no client is
shared between two loops (the `services` fixture's clients belong to the session loop,
which is idle while a synchronous test runs). Each example starts from empty tables and
an empty Redis, three books of 1-4 units (so refusals and refunds are common), three
buyers with one order each awaiting payment, and an admin.

Besides the plain operations, some rules break things the way a crash or Redis would
(an order ended in PostgreSQL whose hold was never released, a hold converted by a seller
that died before committing, a hold no order owns, lost counters, a lost hold) and check
that the sweeper or the reconcile repairs exactly that. Rules that need a particular
order (on-time or late payment, a crash, a lost hold) make one when there is none, so
Hypothesis's swarm testing (which switches rules off per example) cannot starve them.
Every scenario in REQUIRED must happen at least once: a batch of examples usually covers
them all; if not, another batch runs (at most BATCHES), then the test asserts it.

Invariants after every step (a counter-loss step rebuilds through `available()` before
it ends, as documented):
- per book: the Redis counter exists and equals on hand - units of PAYMENT_PENDING orders,
  is >= 0, and equals the model's availability;
- per book: on hand == stocked - sold (so sold <= stocked), where sold counts the orders
  PAID/FULFILLING/SHIPPED/DELIVERED and stocked is the initial stock plus restocks;
- every order's status is the model's;
- the live holds are exactly the PAYMENT_PENDING orders, each under its order's
  `hold_token`, each holding the order's lines;
- at the end of every example a full reconcile corrects and repairs nothing.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections import Counter
from collections.abc import Coroutine
from dataclasses import dataclass
from types import TracebackType
from typing import Any, ClassVar, TypeVar

import pytest
from hypothesis import HealthCheck, Phase
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from redis.asyncio import Redis
from sqlalchemy import text
from tests.conftest import TABLES, create_book

from bookbazar.cart import service as cart_service
from bookbazar.catalog import service as catalog_service
from bookbazar.config import Settings
from bookbazar.errors import BadRequest, Conflict
from bookbazar.inventory import keys
from bookbazar.inventory.service import Hold, ReconcileReport, new_token
from bookbazar.models.commerce import MAX_LINE_QUANTITY
from bookbazar.orders import service as order_service
from bookbazar.orders.jobs import sweep_once
from bookbazar.orders.placement import Outcome, place_order
from bookbazar.orders.schemas import PlaceOrderIn
from bookbazar.orders.settlement import Settled, settle_payment
from bookbazar.services import Services

T = TypeVar("T")

PENDING = "PAYMENT_PENDING"
PAID = "PAID"
REFUND_PENDING = "REFUND_PENDING"
ENDED = frozenset({"EXPIRED", "CANCELLED"})
SOLD = frozenset({"PAID", "FULFILLING", "SHIPPED", "DELIVERED"})
BOOKS = 3
USERS = 3
STEP_TIMEOUT = 60.0

# Every one of these must have happened at least once across the run.
REQUIRED = frozenset(
    {
        "place",
        "place_refused",
        "cancel",
        "cancel_repeated",
        "cancel_refused",
        "expire",
        "pay",
        "late_pay_sold",
        "late_pay_refund",
        "duplicate_settle",
        "sweep_clean",
        "sweep_crashed_end",
        "sweep_orphan",
        "partial_reconcile",
        "partial_reconcile_repair",
        "partial_reconcile_outside",
        "full_reconcile",
        "full_reconcile_repair",
        "restock",
        "restock_replayed",
        "counter_loss",
        "hold_loss",
    }
)

# 1-3 cart lines, distinct books, 1-3 units each.
LINES = st.lists(
    st.tuples(st.integers(0, BOOKS - 1), st.integers(1, 3)),
    min_size=1,
    max_size=3,
    unique_by=lambda line: line[0],
)
BATCHES = 3
MODEL_SETTINGS = hypothesis_settings(
    max_examples=20,
    stateful_step_count=30,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
    # No "explain" phase: every replay costs real database round trips.
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
)


class LoopThread:
    """A private event loop in its own thread; synchronous code runs coroutines on it."""

    def __enter__(self) -> LoopThread:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(
            target=self.loop.run_forever, name="ledger-model-loop", daemon=True
        )
        self.thread.start()
        return self

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = STEP_TIMEOUT) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.run(self.loop.shutdown_asyncgens())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


async def _build_services(settings: Settings) -> Services:
    return Services.create(settings, pool_size=4)


@dataclass(eq=False)
class ModelOrder:
    order_id: uuid.UUID
    user_id: uuid.UUID
    lines: dict[uuid.UUID, int]
    total: int
    status: str = PENDING


class LedgerMachine(RuleBasedStateMachine):
    """The ledger as the model sees it: stock per book, and each order's status."""

    runner: ClassVar[LoopThread]
    services: ClassVar[Services]
    fired: ClassVar[Counter[str]]

    def __init__(self) -> None:
        super().__init__()
        self.books: list[uuid.UUID] = []
        self.price: dict[uuid.UUID, int] = {}
        self.stocked: dict[uuid.UUID, int] = {}
        self.on_hand: dict[uuid.UUID, int] = {}
        self.users: list[uuid.UUID] = []
        self.admin = uuid.uuid4()
        self.orders: list[ModelOrder] = []
        # True once the last step and the invariants after it passed (teardown also runs
        # after a failure; the final reconcile is only meaningful after a clean step).
        self.clean = False

    # ------------------------------------------------------------ model helpers

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        self.clean = False
        return self.runner.run(coro)

    def avail(self, book: uuid.UUID) -> int:
        held = sum(o.lines.get(book, 0) for o in self.orders if o.status == PENDING)
        return self.on_hand[book] - held

    def fits(self, lines: dict[uuid.UUID, int]) -> bool:
        return all(units <= self.avail(book) for book, units in lines.items())

    def pick(self, data: st.DataObject, statuses: frozenset[str] | None) -> ModelOrder:
        """An order in one of `statuses` if there is one, else any order."""
        candidates = [o for o in self.orders if statuses is None or o.status in statuses]
        return data.draw(st.sampled_from(candidates or self.orders))

    def pending(self) -> list[ModelOrder]:
        return [o for o in self.orders if o.status == PENDING]

    def ended(self) -> list[ModelOrder]:
        return [o for o in self.orders if o.status in ENDED]

    def spare(self) -> list[uuid.UUID]:
        return [b for b in self.books if self.avail(b) > 0]

    # A rule that needs an order in some state makes one when there is none, rather than
    # waiting for a precondition: swarm testing (rules switched off per example) would
    # otherwise starve it whenever `place` is off.

    def a_spare_book(self, data: st.DataObject) -> uuid.UUID:
        """A book with a unit available (restocking one unit if none has any)."""
        if not self.spare():
            book = self.books[data.draw(st.integers(0, BOOKS - 1))]
            self.run(self._restock(book, 1, replay=False))
        return data.draw(st.sampled_from(self.spare()))

    def a_pending_order(self, data: st.DataObject) -> ModelOrder:
        """An order awaiting payment (placing a one-unit order if there is none)."""
        if not self.pending():
            book = self.a_spare_book(data)
            user = self.users[data.draw(st.integers(0, USERS - 1))]
            lines = [(self.books.index(book), 1)]
            self.run(self._place(user, lines, refill=True, tag="place_for_a_rule"))
        return data.draw(st.sampled_from(self.pending()))

    def an_ended_order(self, data: st.DataObject) -> ModelOrder:
        """An order expired or cancelled (cancelling one if there is none)."""
        if not self.ended():
            self.run(self._cancel(self.a_pending_order(data)))
        return data.draw(st.sampled_from(self.ended()))

    # ------------------------------------------------------------ set-up

    @initialize(stocks=st.lists(st.integers(1, 4), min_size=BOOKS, max_size=BOOKS))
    def start(self, stocks: list[int]) -> None:
        self.run(self._start(stocks))

    async def _start(self, stocks: list[int]) -> None:
        s = self.services
        async with s.engine.begin() as conn:
            await conn.execute(text(f"TRUNCATE {TABLES} CASCADE"))
        await s.redis.flushdb()
        for i, stock in enumerate(stocks):
            price = 100 * (i + 1) + 1
            book = await create_book(s, title=f"Book {i}", price=price, stock=stock)
            self.books.append(book)
            self.price[book] = price
            self.stocked[book] = self.on_hand[book] = stock
        self.users = [uuid.uuid4() for _ in range(USERS)]
        async with s.sessionmaker() as session, session.begin():
            for user_id, role in [*((u, "customer") for u in self.users), (self.admin, "admin")]:
                await session.execute(
                    text(
                        "INSERT INTO users (id, email, name, password_hash, role) "
                        "VALUES (:id, :email, 'Model', 'not-a-hash', :role)"
                    ),
                    {"id": user_id, "email": f"m-{user_id.hex}@example.com", "role": role},
                )
        # Counters are made on a book's first view.
        assert await s.inventory.available(self.books) == dict(zip(self.books, stocks, strict=True))
        # Every example starts with one order awaiting payment per buyer (one unit each).
        for i, user_id in enumerate(self.users):
            await self._place(user_id, [(i % BOOKS, 1)], refill=True, tag="place_initial")

    # ------------------------------------------------------------ placing

    @rule(user=st.integers(0, USERS - 1), lines=LINES)
    def fill_cart(self, user: int, lines: list[tuple[int, int]]) -> None:
        """Fill a cart and leave it: a later `place(refill=False)` may find the stock gone."""
        self.run(self._fill(self.users[user], lines))

    async def _fill(self, user_id: uuid.UUID, lines: list[tuple[int, int]]) -> None:
        s = self.services
        await cart_service.clear(s, user_id)
        for index, quantity in lines:
            book = self.books[index]
            avail = self.avail(book)
            try:
                changed = await cart_service.set_line(s, user_id, book, quantity)
            except Conflict:
                assert avail <= 0, f"set_line refused {book} with {avail} available"
                continue
            assert avail > 0
            got = {item.book_id: item.quantity for item in changed.items}
            assert got[book] == min(quantity, avail)

    @rule(
        user=st.integers(0, USERS - 1),
        lines=LINES,
        refill=st.sampled_from([True, True, False]),
    )
    def place(self, user: int, lines: list[tuple[int, int]], refill: bool) -> None:
        """Fill the cart, or keep what is in it (from `fill_cart` or a refused placement:
        then the units may have gone meanwhile), and place."""
        self.run(self._place(self.users[user], lines, refill))

    async def _place(
        self, user_id: uuid.UUID, lines: list[tuple[int, int]], refill: bool, tag: str = "place"
    ) -> None:
        s = self.services
        cart, _ = await cart_service.cart_lines(s, user_id)
        if refill or not cart:
            await self._fill(user_id, lines)
            cart, _ = await cart_service.cart_lines(s, user_id)
        if not cart:
            with pytest.raises(BadRequest):
                await place_order(s, user_id, uuid.uuid4().hex, PlaceOrderIn())
            self.fired["place_empty_cart"] += 1
            return
        wanted = dict(cart)
        placed = await place_order(s, user_id, uuid.uuid4().hex, PlaceOrderIn())
        if not self.fits(wanted):
            assert placed.outcome is Outcome.SHORT, placed
            short = {
                uuid.UUID(e["bookId"]): (e["requested"], e["available"]) for e in placed.shortfalls
            }
            assert short == {
                b: (q, max(0, self.avail(b))) for b, q in wanted.items() if q > self.avail(b)
            }
            assert dict((await cart_service.cart_lines(s, user_id))[0]) == wanted
            self.fired["place_refused"] += 1
            return
        assert placed.outcome is Outcome.PLACED and placed.order is not None, placed
        data = placed.order
        total = sum(self.price[b] * q for b, q in wanted.items())
        assert (data["status"], data["total"]) == (PENDING, total)
        self.orders.append(ModelOrder(uuid.UUID(data["orderId"]), user_id, wanted, total))
        assert (await cart_service.cart_lines(s, user_id))[0] == []
        self.fired[tag] += 1

    @rule(
        first=st.integers(0, USERS - 1),
        second=st.integers(1, USERS - 1),
        lines=LINES,
    )
    def contend(self, first: int, second: int, lines: list[tuple[int, int]]) -> None:
        """Two buyers fill their carts with the same lines, then both place: the second
        is refused (nothing reserved) unless enough units remain for both."""
        a, b = self.users[first], self.users[(first + second) % USERS]
        self.run(self._contend(a, b, lines))

    async def _contend(self, a: uuid.UUID, b: uuid.UUID, lines: list[tuple[int, int]]) -> None:
        await self._fill(a, lines)
        await self._fill(b, lines)
        await self._place(a, lines, refill=False)
        await self._place(b, lines, refill=False)

    # ------------------------------------------------------------ ending orders

    @precondition(lambda self: self.orders)
    @rule(
        data=st.data(),
        aim=st.sampled_from([frozenset({PENDING}), frozenset({"CANCELLED"}), None]),
    )
    def cancel(self, data: st.DataObject, aim: frozenset[str] | None) -> None:
        """Cancel by the owner: once, again (a success), or in a state that refuses it."""
        self.run(self._cancel(self.pick(data, aim)))

    async def _cancel(self, order: ModelOrder) -> None:
        before = order.status
        if before not in (PENDING, "CANCELLED"):
            with pytest.raises(Conflict):
                await order_service.cancel_order(self.services, order.user_id, order.order_id)
            self.fired["cancel_refused"] += 1
            return
        out = await order_service.cancel_order(self.services, order.user_id, order.order_id)
        assert out["status"] == "CANCELLED"
        order.status = "CANCELLED"
        self.fired["cancel" if before == PENDING else "cancel_repeated"] += 1

    @precondition(lambda self: self.orders)
    @rule(
        data=st.data(),
        aim=st.sampled_from([frozenset({PENDING}), None]),
        one=st.booleans(),
    )
    def expire(self, data: st.DataObject, aim: frozenset[str] | None, one: bool) -> None:
        """The deadline passes; `expire_order` (one) or `expire_due` (the scheduled job)."""
        self.run(self._expire(self.pick(data, aim), one))

    async def _expire(self, order: ModelOrder, one: bool) -> None:
        s = self.services
        async with s.sessionmaker() as session, session.begin():
            await session.execute(
                text("UPDATE orders SET expires_at = now() - interval '1 second' WHERE id = :id"),
                {"id": order.order_id},
            )
        due = order.status == PENDING
        if one:
            assert await order_service.expire_order(s, order.order_id) is due
        else:
            assert await order_service.expire_due(s) == int(due)
        if due:
            order.status = "EXPIRED"
            self.fired["expire"] += 1
        else:
            self.fired["expire_noop"] += 1

    # ------------------------------------------------------------ paying

    @rule(data=st.data(), twice=st.booleans())
    def pay_on_time(self, data: st.DataObject, twice: bool) -> None:
        """A succeeded payment for an order awaiting it; `twice`: delivered again."""
        self.run(self._pay(self.a_pending_order(data), twice))

    @rule(data=st.data(), twice=st.booleans())
    def pay_late(self, data: st.DataObject, twice: bool) -> None:
        """A payment after the order expired or was cancelled: sold again under a new
        hold if the units are there, else refunded."""
        self.run(self._pay(self.an_ended_order(data), twice))

    @precondition(lambda self: self.orders)
    @rule(data=st.data(), twice=st.booleans())
    def pay_any(self, data: st.DataObject, twice: bool) -> None:
        """A payment for any order (one already paid or refunded changes nothing)."""
        self.run(self._pay(data.draw(st.sampled_from(self.orders)), twice))

    async def _settle(self, order: ModelOrder) -> tuple[Settled, str | None]:
        result = await settle_payment(
            self.services,
            order.order_id,
            amount=order.total,
            currency="INR",
            provider="sandbox",
            intent_id=f"pi_{order.order_id.hex}",
        )
        return result.outcome, result.status

    def _sell(self, order: ModelOrder) -> None:
        for book, units in order.lines.items():
            self.on_hand[book] -= units
        order.status = PAID

    async def _pay(self, order: ModelOrder, twice: bool) -> None:
        before = order.status
        got = await self._settle(order)
        if before == PENDING:
            assert got == (Settled.PAID, PAID)
            self._sell(order)
            self.fired["pay"] += 1
        elif before in ENDED and self.fits(order.lines):
            assert got == (Settled.PAID, PAID)
            self._sell(order)
            self.fired["late_pay_sold"] += 1
        elif before in ENDED:
            assert got == (Settled.REFUND, REFUND_PENDING)
            order.status = REFUND_PENDING
            self.fired["late_pay_refund"] += 1
        elif before in SOLD:
            assert got == (Settled.ALREADY_PAID, before)
            self.fired["pay_settled_order"] += 1
        else:
            assert before == REFUND_PENDING
            assert got == (Settled.REFUND, REFUND_PENDING)
            self.fired["pay_settled_order"] += 1
        if twice:
            again = await self._settle(order)
            if order.status == PAID:
                assert again == (Settled.ALREADY_PAID, PAID)
            else:
                assert again == (Settled.REFUND, REFUND_PENDING)
            self.fired["duplicate_settle"] += 1

    @rule(
        data=st.data(),
        other=st.integers(1, USERS - 1),
        cancel=st.booleans(),
    )
    def late_payment_after_resale(self, data: st.DataObject, other: int, cancel: bool) -> None:
        """An order is cancelled or expires, another buyer takes every unit of its books
        that is left, then the first buyer's payment arrives: refunded, nothing oversold."""
        order = self.a_pending_order(data)
        buyer = self.users[(self.users.index(order.user_id) + other) % USERS]
        self.run(self._late_payment_after_resale(order, buyer, cancel))

    async def _late_payment_after_resale(
        self, order: ModelOrder, buyer: uuid.UUID, cancel: bool
    ) -> None:
        if cancel:
            await self._cancel(order)
        else:
            await self._expire(order, one=True)
        everything = [(self.books.index(b), MAX_LINE_QUANTITY) for b in order.lines]
        await self._place(buyer, everything, refill=True, tag="place_resale")
        await self._pay(order, twice=False)

    # ------------------------------------------------------------ damage and repair

    async def _age_holds(self, seconds: int = 600) -> None:
        """Make every live hold look older than the grace period."""
        s = self.services
        for member, score in await s.redis.zrange(keys.INDEX, 0, -1, withscores=True):
            await s.redis.zadd(keys.INDEX, {member: score - seconds * 1000})

    async def _end_without_release(self, order: ModelOrder, status: str) -> Hold:
        """A process committed the end of the order and died before releasing its hold."""
        async with self.services.sessionmaker() as session, session.begin():
            token = (
                await session.execute(
                    text(
                        "UPDATE orders SET status = :s, updated_at = now() - interval "
                        "'10 minutes' WHERE id = :id RETURNING hold_token"
                    ),
                    {"s": status, "id": order.order_id},
                )
            ).scalar_one()
        order.status = status
        return Hold(order.order_id, str(token))

    async def _orphan(self, book: uuid.UUID) -> Hold:
        """A placement reserved a unit and died before writing its order."""
        hold = Hold(uuid.uuid4(), new_token())
        assert (await self.services.inventory.reserve(hold, [(book, 1)])).held
        await self._age_holds()
        return hold

    async def _hold_token(self, order: ModelOrder) -> str:
        async with self.services.sessionmaker() as session:
            token = await session.scalar(
                text("SELECT hold_token FROM orders WHERE id = :id"), {"id": order.order_id}
            )
        return str(token)

    @rule(data=st.data(), orphan=st.booleans())
    def sweep(self, data: st.DataObject, orphan: bool) -> None:
        """The sweeper, with every hold older than the grace period: nothing to do, or a
        hold no order owns (a placement died before writing its order)."""
        if orphan:
            self.run(self._sweep_orphan(self.a_spare_book(data)))
        else:
            self.run(self._sweep_clean())

    @rule(data=st.data(), ended_as=st.sampled_from(sorted(ENDED)))
    def sweep_after_crash(self, data: st.DataObject, ended_as: str) -> None:
        """A process committed an order's expiry or cancel and died before releasing its
        hold; the sweeper releases it."""
        order = self.a_pending_order(data)
        self.run(self._sweep_crashed_end(order, ended_as))

    async def _sweep_clean(self) -> None:
        await self._age_holds()
        result = await sweep_once(self.services)
        assert (result["failed"], result["expired"], result["repaired"]) == (0, 0, 0), result
        self.fired["sweep_clean"] += 1

    async def _sweep_crashed_end(self, order: ModelOrder, status: str) -> None:
        await self._end_without_release(order, status)
        await self._age_holds()
        result = await sweep_once(self.services)
        assert (result["failed"], result["expired"], result["repaired"]) == (0, 0, 1), result
        self.fired["sweep_crashed_end"] += 1

    async def _sweep_orphan(self, book: uuid.UUID) -> None:
        await self._orphan(book)
        result = await sweep_once(self.services)
        assert (result["failed"], result["expired"], result["repaired"]) == (0, 0, 1), result
        self.fired["sweep_orphan"] += 1

    def _damage(
        self, data: st.DataObject, damage: str
    ) -> tuple[str, ModelOrder | uuid.UUID | None]:
        """Choose what to break before a reconcile (falls back to nothing)."""
        if damage in ("crashed_end", "crashed_sale"):
            return damage, self.a_pending_order(data)
        if damage == "orphan":
            return damage, self.a_spare_book(data)
        return "none", None

    async def _apply_damage(
        self, damage: str, target: ModelOrder | uuid.UUID | None, ended_as: str
    ) -> set[tuple[uuid.UUID, str, str]]:
        """Break it; return the repairs a reconcile must report."""
        if damage == "crashed_end":
            assert isinstance(target, ModelOrder)
            hold = await self._end_without_release(target, ended_as)
            return {(hold.order_id, hold.token, "released")}
        if damage == "crashed_sale":
            # The seller converted the hold and died before its transaction committed.
            assert isinstance(target, ModelOrder)
            hold = Hold(target.order_id, await self._hold_token(target))
            assert (await self.services.inventory.convert(hold)).sold
            return {(hold.order_id, hold.token, "resurrected")}
        if damage == "orphan":
            assert isinstance(target, uuid.UUID)
            hold = await self._orphan(target)
            return {(hold.order_id, hold.token, "released")}
        return set()

    def _check_report(self, report: ReconcileReport, repairs: set[Any], kind: str) -> None:
        assert set(report.repaired) == repairs, report
        if repairs:
            self.fired[f"{kind}_repair"] += 1
        else:
            assert report.corrected == {}, report
        self.fired[kind] += 1

    def _books_of(self, target: ModelOrder | uuid.UUID | None) -> list[uuid.UUID]:
        if isinstance(target, ModelOrder):
            return [b for b in self.books if b in target.lines]
        return [] if target is None else [target]

    @rule(
        data=st.data(),
        damage=st.sampled_from(["none", "crashed_end", "crashed_sale", "orphan"]),
        ended_as=st.sampled_from(sorted(ENDED)),
        outside=st.booleans(),
    )
    def partial_reconcile(
        self, data: st.DataObject, damage: str, ended_as: str, outside: bool
    ) -> None:
        """`reconcile([some books])` (first view of a book, restock), after some damage.
        The scope touches the damaged order (an orphan is found from any scope); with
        `outside` it leaves out the rest of the damaged hold's books (all of an orphan's),
        whose counters the repair must move as well (defect 2)."""
        damage, target = self._damage(data, damage)
        touched = self._books_of(target)
        must = {data.draw(st.sampled_from(touched))} if isinstance(target, ModelOrder) else set()
        pool = [b for b in self.books if b not in touched] if outside else self.books
        scope = must | data.draw(st.sets(st.sampled_from(pool))) if pool else must
        if not scope:
            scope = {data.draw(st.sampled_from(pool or self.books))}
        self.run(self._reconcile(damage, target, ended_as, sorted(scope), "partial_reconcile"))

    @rule(
        data=st.data(),
        damage=st.sampled_from(["none", "crashed_end", "crashed_sale", "orphan"]),
        ended_as=st.sampled_from(sorted(ENDED)),
    )
    def full_reconcile(self, data: st.DataObject, damage: str, ended_as: str) -> None:
        """The audit's full reconcile, after some damage."""
        damage, target = self._damage(data, damage)
        self.run(self._reconcile(damage, target, ended_as, None, "full_reconcile"))

    async def _reconcile(
        self,
        damage: str,
        target: ModelOrder | uuid.UUID | None,
        ended_as: str,
        scope: list[uuid.UUID] | None,
        kind: str,
    ) -> None:
        repairs = await self._apply_damage(damage, target, ended_as)
        # A dry run first: the same report, and not one key changed.
        before = await stock_keys(self.services.redis)
        dry = await self.services.inventory.reconcile(scope, dry_run=True)
        assert await stock_keys(self.services.redis) == before
        report = await self.services.inventory.reconcile(scope)
        assert (dry.counters, dry.holds_checked, sorted(dry.repaired)) == (
            report.counters,
            report.holds_checked,
            sorted(report.repaired),
        )
        self._check_report(report, repairs, kind)
        released = damage in ("crashed_end", "orphan")
        if released and scope is not None and set(self._books_of(target)) - set(scope):
            self.fired["partial_reconcile_outside"] += 1

    @rule(book=st.integers(0, BOOKS - 1), quantity=st.integers(1, 3), replay=st.booleans())
    def restock(self, book: int, quantity: int, replay: bool) -> None:
        """An admin restocks (its own partial reconcile follows); `replay` retries it with
        the same Idempotency-Key."""
        self.run(self._restock(self.books[book], quantity, replay))

    async def _restock(self, book: uuid.UUID, quantity: int, replay: bool) -> None:
        s = self.services
        key = uuid.uuid4().hex
        async with s.sessionmaker() as session:
            out = await catalog_service.restock(s, session, self.admin, book, quantity, key)
        assert not out.replayed and out.counter_updated
        self.stocked[book] += quantity
        self.on_hand[book] += quantity
        assert (out.book.stock, out.book.available) == (self.on_hand[book], self.avail(book))
        self.fired["restock"] += 1
        if replay:
            async with s.sessionmaker() as session:
                again = await catalog_service.restock(s, session, self.admin, book, quantity, key)
            assert again.replayed
            assert (again.book.stock, again.book.available) == (
                self.on_hand[book],
                self.avail(book),
            )
            self.fired["restock_replayed"] += 1

    @rule(lost=st.sets(st.integers(0, BOOKS - 1), min_size=1))
    def lose_counters(self, lost: set[int]) -> None:
        """Redis loses some availability counters; `available()` rebuilds them exactly."""
        self.run(self._lose_counters([self.books[i] for i in sorted(lost)]))

    @rule(data=st.data())
    def lose_hold(self, data: st.DataObject) -> None:
        """Redis loses a pending order's hold together with its books' counters (as a
        partial flush would); `available()` rebuilds them and recreates the hold."""
        self.run(self._lose_hold(self.a_pending_order(data)))

    async def _lose_counters(self, lost: list[uuid.UUID]) -> None:
        s = self.services
        await s.redis.delete(*(keys.avail(b) for b in lost))
        levels = await s.inventory.available(self.books)
        assert levels == {b: self.avail(b) for b in self.books}
        self.fired["counter_loss"] += 1

    async def _lose_hold(self, order: ModelOrder) -> None:
        s = self.services
        hold = Hold(order.order_id, await self._hold_token(order))
        await s.redis.delete(
            keys.hold(hold.order_id, hold.token), *(keys.avail(b) for b in order.lines)
        )
        levels = await s.inventory.available(self.books)
        assert levels == {b: self.avail(b) for b in self.books}
        self.fired["hold_loss"] += 1

    # ------------------------------------------------------------ invariants

    @invariant()
    def ledger_agrees(self) -> None:
        self.run(self._check())
        self.clean = True

    async def _check(self) -> None:
        s = self.services
        async with s.sessionmaker() as session:
            stock = {
                r.id: int(r.stock)
                for r in await session.execute(text("SELECT id, stock FROM books"))
            }
            orders = {
                r.id: (str(r.status), str(r.hold_token))
                for r in await session.execute(text("SELECT id, status, hold_token FROM orders"))
            }
            units = await session.execute(
                text(
                    "SELECT o.status, oi.book_id, SUM(oi.quantity) AS n FROM orders o "
                    "JOIN order_items oi ON oi.order_id = o.id GROUP BY o.status, oi.book_id"
                )
            )
            held: Counter[uuid.UUID] = Counter()
            sold: Counter[uuid.UUID] = Counter()
            for r in units:
                if r.status == PENDING:
                    held[r.book_id] += int(r.n)
                elif r.status in SOLD:
                    sold[r.book_id] += int(r.n)
        assert {o: status for o, (status, _) in orders.items()} == {
            o.order_id: o.status for o in self.orders
        }
        counters = await s.redis.mget([keys.avail(b) for b in self.books])
        for i, (book, raw) in enumerate(zip(self.books, counters, strict=True)):
            assert raw is not None, f"Book {i}: counter missing"
            seen = (
                f"Book {i}: counter {raw}, on hand {stock[book]}, held {held[book]}, "
                f"sold {sold[book]}, stocked {self.stocked[book]}, model {self.avail(book)}"
            )
            assert int(raw) == stock[book] - held[book] >= 0, seen
            assert int(raw) == self.avail(book), seen
            assert sold[book] <= self.stocked[book], seen
            assert stock[book] == self.stocked[book] - sold[book] == self.on_hand[book], seen
        live = await s.inventory.holds()
        assert len(live) == len(set(live))
        assert set(live) == {
            Hold(o, token) for o, (status, token) in orders.items() if status == PENDING
        }
        lines = {o.order_id: o.lines for o in self.orders}
        for hold in live:
            raw_lines = await s.redis.hgetall(keys.hold(hold.order_id, hold.token))
            assert {uuid.UUID(b): int(u) for b, u in raw_lines.items()} == lines[hold.order_id]

    def teardown(self) -> None:
        if self.clean and self.books:
            report = self.runner.run(self.services.inventory.reconcile())
            assert (report.corrected, report.repaired) == ({}, ()), report


async def stock_keys(redis: Redis) -> dict[str, Any]:
    """Every stock key and its value (counters, holds, the holds index, ended markers)."""
    out: dict[str, Any] = {}
    async for key in redis.scan_iter(match=keys.PREFIX + "*", count=1000):
        kind = await redis.type(key)
        if kind == "string":
            out[key] = await redis.get(key)
        elif kind == "hash":
            out[key] = await redis.hgetall(key)
        elif kind == "zset":
            out[key] = await redis.zrange(key, 0, -1, withscores=True)
        else:
            out[key] = kind
    return out


# What fired in the last run (read by the test; handy when tuning the settings).
FIRED: Counter[str] = Counter()


def _never_fired(fired: Counter[str]) -> list[str]:
    return sorted(REQUIRED - {name for name, count in fired.items() if count})


# A passing run takes well under a minute; a failing one then shrinks its example, which
# replays steps against the real databases for a few minutes.
@pytest.mark.timeout(900)
def test_ledger_model(settings: Settings) -> None:
    fired = FIRED
    fired.clear()
    with LoopThread() as runner:
        services = runner.run(_build_services(settings))
        try:
            machine = type(
                "LedgerModel",
                (LedgerMachine,),
                {"runner": runner, "services": services, "fired": fired},
            )
            for _ in range(BATCHES):
                fired["batch"] += 1
                run_state_machine_as_test(machine, settings=MODEL_SETTINGS)
                if not _never_fired(fired):
                    break
        finally:
            runner.run(services.close())
    never = _never_fired(fired)
    assert not never, f"scenarios never exercised: {never} (fired: {dict(fired)})"
