"""No stock leaks: killed processes, lost Redis, reconcile under load."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import uuid

import httpx
from sqlalchemy import text
from tests.conftest import create_book, process_env, register
from tests.orders.conftest import (
    add_to_cart,
    available,
    force_deadline_passed,
    held_in_db,
    hold_of,
    on_hand,
    order_status,
    place,
    quick_users,
    reservation_exists,
)

from bookbazar.config import Settings
from bookbazar.inventory import keys
from bookbazar.inventory.service import Hold, Reserve
from bookbazar.orders import service
from bookbazar.orders.jobs import sweep_once
from bookbazar.services import Services


async def _age_everything(services: Services, seconds: int = 120) -> None:
    """Make every order and reservation look older than the sweeper's grace period."""
    async with services.sessionmaker() as session, session.begin():
        await session.execute(
            text(f"UPDATE orders SET created_at = created_at - interval '{seconds} seconds'")
        )
    members = await services.redis.zrange(keys.INDEX, 0, -1, withscores=True)
    for member, score in members:
        await services.redis.zadd(keys.INDEX, {member: score - seconds * 1000})


async def test_legacy_pending_order_is_failed_and_its_hold_released(
    client: httpx.AsyncClient, services: Services
) -> None:
    """An earlier release inserted orders PENDING before reserving; one left PENDING by a
    crash is failed by the sweeper, its hold released, and a late reservation under its
    token is refused."""
    book = await create_book(services, stock=4)
    user = await register(client)
    order_id = uuid.uuid4()
    async with services.sessionmaker() as session, session.begin():
        await session.execute(
            text(
                "INSERT INTO orders (id, user_id, status, total, currency, idempotency_key, "
                "hold_token) VALUES (:id, :u, 'PENDING', 100, 'INR', 'crashed', 'legacy')"
            ),
            {"id": order_id, "u": uuid.UUID(user["user"]["id"])},
        )
        await session.execute(
            text(
                "INSERT INTO order_items (order_id, book_id, title, price, quantity) "
                "VALUES (:o, :b, 't', 50, 2)"
            ),
            {"o": order_id, "b": book},
        )
    hold = Hold(order_id, "legacy")
    assert (await services.inventory.reserve(hold, [(book, 2)])).held
    assert await available(services, book) == 2

    assert (await sweep_once(services))["failed"] == 0  # within the grace period: untouched
    await _age_everything(services)
    assert (await sweep_once(services))["failed"] == 1

    assert await order_status(services, order_id) == "FAILED"
    assert await available(services, book) == 4
    late = await services.inventory.reserve(hold, [(book, 2)])
    assert late.status is Reserve.ENDED and late.ended_as == "released"
    assert await available(services, book) == 4


async def test_api_killed_after_reserving_is_repaired(
    settings: Settings, services: Services, client: httpx.AsyncClient
) -> None:
    """A real API process SIGKILLed right after the reservation, before the order was
    written: the hold has no order; the sweeper releases it after the grace period, and
    the client's retry with the same key places the order."""
    from tests.conftest import free_port

    book = await create_book(services, stock=3)
    user = await register(client)
    await add_to_cart(client, user, book, 2)
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bookbazar",
        "api",
        "--port",
        str(port),
        env=process_env(settings, FAULT_POINTS="order:after-reserve"),
    )
    try:
        base = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=base, timeout=10) as http:
            for _ in range(150):
                try:
                    if (await http.get("/healthz")).status_code == 200:
                        break
                except httpx.TransportError:
                    await asyncio.sleep(0.1)
            with contextlib.suppress(httpx.TransportError):  # it dies mid-request, as intended
                await http.post(
                    "/api/v1/orders", headers={**user["headers"], "Idempotency-Key": "boom"}
                )
        assert await asyncio.wait_for(proc.wait(), timeout=15) == -9
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert await available(services, book) == 1  # held, never written as an order
    async with services.sessionmaker() as session:
        orders = (await session.execute(text("SELECT count(*) FROM orders"))).scalar_one()
    assert orders == 0
    assert (await sweep_once(services))["repaired"] == 0  # young: maybe still in flight
    await _age_everything(services)
    assert (await sweep_once(services))["repaired"] == 1
    assert await available(services, book) == 3
    # The client's retry with the same key (its claim lapsed) places the order once.
    await services.redis.delete(*[k async for k in services.redis.scan_iter("bb:idem:*")])
    retry = await place(client, user, key="boom")
    assert retry.status_code == 201, retry.text
    assert await available(services, book) == 1
    again = await place(client, user, key="boom")
    assert again.status_code == 201 and again.headers["Idempotent-Replayed"] == "true"
    assert await available(services, book) == 1


async def test_worker_killed_mid_expiry_is_repaired(
    settings: Settings, services: Services, client: httpx.AsyncClient
) -> None:
    """A real worker SIGKILLed after committing EXPIRED but before releasing the units."""
    book = await create_book(services, stock=5)
    user = await register(client)
    await add_to_cart(client, user, book, 2)
    order_id = (await place(client, user)).json()["data"]["orderId"]
    await force_deadline_passed(services, order_id)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bookbazar",
        "worker",
        env=process_env(
            settings, FAULT_POINTS="expire:after-commit", SWEEPER_INTERVAL_SECONDS="3600"
        ),
    )
    try:
        assert await asyncio.wait_for(proc.wait(), timeout=60) == -9
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert await order_status(services, order_id) == "EXPIRED"
    assert await reservation_exists(services, order_id)  # the units are still held
    assert await available(services, book) == 3
    await _age_everything(services)
    result = await sweep_once(services)
    assert result["repaired"] == 1
    assert await available(services, book) == 5
    assert not await reservation_exists(services, order_id)


async def test_flushall_then_reconcile_restores_counters_and_reservations(
    client: httpx.AsyncClient, services: Services
) -> None:
    books = [await create_book(services, stock=s) for s in (5, 12, 1)]
    buyers = await quick_users(services, 4)
    order_ids = []
    for i, buyer in enumerate(buyers):
        await add_to_cart(client, buyer, books[0], 1)
        await add_to_cart(client, buyer, books[1], i + 1)
        order_ids.append((await place(client, buyer)).json()["data"]["orderId"])
    # One order is cancelled, one is sold (on-hand stock falls when it is PAID).
    await client.post(f"/api/v1/orders/{order_ids[0]}/cancel", headers=buyers[0]["headers"])
    async with services.sessionmaker() as session, session.begin():
        await session.execute(
            text("UPDATE orders SET status = 'PAID' WHERE id = :id"),
            {"id": uuid.UUID(order_ids[1])},
        )
        await session.execute(
            text(
                "UPDATE books b SET stock = b.stock - oi.quantity FROM order_items oi "
                "WHERE oi.order_id = :id AND oi.book_id = b.id"
            ),
            {"id": uuid.UUID(order_ids[1])},
        )
    await services.inventory.convert(await hold_of(services, order_ids[1]))
    before = {b: await available(services, b) for b in books}

    await services.redis.flushall()
    report = await services.inventory.reconcile()

    after = {b: report.counters[b][1] for b in books}
    assert after == before
    assert all(report.counters[b][0] is None for b in books)
    for b in books:
        assert after[b] == await on_hand(services, b) - await held_in_db(services, b)
    # Reservations of orders still awaiting payment came back: expiry releases them.
    open_order = order_ids[3]
    assert await reservation_exists(services, open_order)
    await force_deadline_passed(services, open_order)
    await service.expire_order(services, uuid.UUID(open_order))
    assert await available(services, books[1]) == before[books[1]] + 4
    # A second reconcile finds nothing to correct.
    assert (await services.inventory.reconcile()).corrected == {}


async def test_reconcile_while_orders_are_placed_is_exact(
    client: httpx.AsyncClient, services: Services
) -> None:
    book = await create_book(services, stock=60)
    buyers = await quick_users(services, 40)
    await asyncio.gather(*(add_to_cart(client, b, book, 1) for b in buyers))

    async def reconcile_repeatedly() -> None:
        for _ in range(10):
            await services.inventory.reconcile([book])
            await asyncio.sleep(0.01)

    results, _ = await asyncio.gather(
        asyncio.gather(*(place(client, b) for b in buyers)), reconcile_repeatedly()
    )
    assert all(r.status_code == 201 for r in results)
    assert await available(services, book) == 20
    assert (await services.inventory.reconcile([book])).corrected == {}


async def test_cli_reconcile_reports_corrections(settings: Settings, services: Services) -> None:
    """One summary line; a wrong counter is named (and logged as drift), a missing one is
    only counted (a fresh Redis would otherwise print a line per book)."""
    book = await create_book(services, stock=9)
    await services.redis.set(keys.avail(book), 2)  # corrupted counter
    fresh = await create_book(services, stock=4)
    await services.redis.delete(keys.avail(fresh))  # no counter yet

    async def run(*flags: str) -> tuple[str, str]:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bookbazar",
            "reconcile",
            *flags,
            env=process_env(settings),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await proc.communicate()
        assert proc.returncode == 0, err.decode()
        return out.decode(), err.decode()

    # A dry run says the same and changes nothing.
    out, err = await run("--dry-run")
    assert out.startswith("dry run (nothing changed): stock counters: 1 to create, 1 to correct")
    assert f"book {book}: 2 -> 9" in out and "stock_reconciled" not in err
    assert int(await services.redis.get(keys.avail(book))) == 2
    assert not await services.redis.exists(keys.avail(fresh))

    out, err = await run()
    assert out.startswith("stock counters: 1 created, 1 corrected; holds: 0 checked"), out
    assert f"book {book}: 2 -> 9" in out
    assert str(fresh) not in out
    assert "stock_counters_created" in err and str(fresh) not in err
    assert "stock_reconciled" in err and str(book) in err
    assert await available(services, book) == 9
    assert await available(services, fresh) == 4

    await services.redis.delete(keys.avail(fresh))
    out, _ = await run("--verbose")
    assert f"book {fresh}: missing -> 4" in out
    out, _ = await run()
    assert out.strip() == (
        "stock counters: 0 created, 0 corrected; holds: 0 checked, 0 repaired (all were correct)"
    )
