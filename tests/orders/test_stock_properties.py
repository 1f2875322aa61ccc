"""Property test of the stock scripts: any sequence of reserve / release / sell / restock /
reconcile / Redis loss keeps available = on hand - held >= 0 and never sells more than was
ever stocked."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text
from tests.conftest import TABLES, Infra

from bookbazar.db import create_engine, create_sessionmaker
from bookbazar.inventory import keys
from bookbazar.inventory.service import Inventory
from bookbazar.lua import Scripts
from bookbazar.redis import create_redis

BOOKS = 3
ORDERS = 6

op = st.one_of(
    st.tuples(
        st.just("reserve"),
        st.integers(0, ORDERS - 1),
        st.lists(st.tuples(st.integers(0, BOOKS - 1), st.integers(1, 4)), min_size=1, max_size=3),
    ),
    st.tuples(st.just("release"), st.integers(0, ORDERS - 1)),
    st.tuples(st.just("sell"), st.integers(0, ORDERS - 1)),
    st.tuples(st.just("restock"), st.integers(0, BOOKS - 1), st.integers(1, 5)),
    st.tuples(st.just("reconcile")),
    st.tuples(st.just("flush_counters")),
)


@dataclass
class Model:
    on_hand: list[int]
    stocked: list[int]
    sold: list[int] = field(default_factory=lambda: [0] * BOOKS)
    held: dict[int, dict[int, int]] = field(default_factory=dict)  # order -> book -> units
    ended: set[int] = field(default_factory=set)


async def _run(infra: Infra, initial: list[int], ops: list[tuple]) -> None:  # type: ignore[type-arg]
    engine = create_engine(infra.database_url, pool_size=2)
    redis = create_redis(infra.redis_url)
    try:
        async with engine.begin() as conn:
            await conn.execute(text(f"TRUNCATE {TABLES} CASCADE"))
        await redis.flushdb()
        inventory = Inventory(redis, Scripts(redis), create_sessionmaker(engine))
        books = [uuid.uuid4() for _ in range(BOOKS)]
        orders = [uuid.uuid4() for _ in range(ORDERS)]
        async with engine.begin() as conn:
            for book, units in zip(books, initial, strict=True):
                await conn.execute(
                    text(
                        "INSERT INTO books (id, title, author, price, currency, stock) "
                        "VALUES (:id, 'P', 'Q', 100, 'INR', :s)"
                    ),
                    {"id": book, "s": units},
                )
        model = Model(on_hand=list(initial), stocked=list(initial))

        async def set_on_hand(book: int, delta: int) -> None:
            async with engine.begin() as conn:
                await conn.execute(
                    text("UPDATE books SET stock = stock + :d WHERE id = :id"),
                    {"d": delta, "id": books[book]},
                )
            model.on_hand[book] += delta

        for step in ops:
            kind = step[0]
            if kind == "reserve":
                _, o, lines = step
                outcome = await inventory.reserve(orders[o], [(books[b], q) for b, q in lines])
                need: dict[int, int] = {}
                for b, q in lines:
                    need[b] = need.get(b, 0) + q
                free = {b: model.on_hand[b] - _held(model, b) for b in need}
                if o in model.held:
                    assert outcome.reserved and outcome.already_held
                elif o in model.ended:
                    assert not outcome.reserved and outcome.ended
                elif all(free[b] >= n for b, n in need.items()):
                    assert outcome.reserved and not outcome.already_held
                    model.held[o] = need
                else:
                    assert not outcome.reserved
                    short = {s.book_id for s in outcome.shortfalls}
                    assert short == {books[b] for b, n in need.items() if free[b] < n}
            elif kind == "release":
                await inventory.release(orders[step[1]])
                if model.held.pop(step[1], None) is not None or step[1] not in model.ended:
                    model.ended.add(step[1])
            elif kind == "sell":
                o = step[1]
                if o in model.held:
                    # As settlement does: on hand falls in PostgreSQL, then the reservation
                    # is converted.
                    for b, n in model.held[o].items():
                        await set_on_hand(b, -n)
                        model.sold[b] += n
                    await inventory.convert(orders[o])
                    del model.held[o]
                    model.ended.add(o)
            elif kind == "restock":
                _, b, q = step
                await set_on_hand(b, q)
                model.stocked[b] += q
                await inventory.reconcile([books[b]])
            elif kind == "reconcile":
                report = await inventory.reconcile()
                drifted = {b: v for b, v in report.corrected.items() if v[0] is not None}
                assert drifted == {}, "counters drifted from the truth"
            elif kind == "flush_counters":
                await redis.delete(*(keys.avail(b) for b in books))

            levels = await inventory.available(books)
            for b in range(BOOKS):
                held = _held(model, b)
                assert levels[books[b]] == model.on_hand[b] - held
                assert levels[books[b]] >= 0
                assert model.sold[b] + held <= model.stocked[b]
    finally:
        await redis.aclose()
        await engine.dispose()


def _held(model: Model, book: int) -> int:
    return sum(lines.get(book, 0) for lines in model.held.values())


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    initial=st.lists(st.integers(0, 6), min_size=BOOKS, max_size=BOOKS),
    ops=st.lists(op, min_size=1, max_size=25),
)
def test_any_sequence_keeps_stock_exact(infra: Infra, initial: list[int], ops: list) -> None:  # type: ignore[type-arg]
    asyncio.run(_run(infra, initial, ops))
