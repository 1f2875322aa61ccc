"""Payment outcomes on orders: sale, late payment, refund, and the expiry race."""

from __future__ import annotations

import asyncio
import uuid

import httpx
from sqlalchemy import text
from tests.conftest import create_book, register
from tests.orders.conftest import (
    add_to_cart,
    available,
    force_deadline_passed,
    held_in_db,
    on_hand,
    order_status,
    outbox_types,
    place,
    quick_users,
    reservation_exists,
)

from bookbazar.orders import service
from bookbazar.orders.settlement import (
    Settled,
    extend_reservation,
    mark_refunded,
    record_payment_failure,
    settle_payment,
)
from bookbazar.services import Services


async def _order(client: httpx.AsyncClient, user: dict, book: uuid.UUID, qty: int) -> dict:
    await add_to_cart(client, user, book, qty)
    resp = await place(client, user)
    assert resp.status_code == 201, resp.text
    data: dict = resp.json()["data"]
    return data


async def _pay(services: Services, order: dict, amount: int | None = None) -> Settled:
    result = await settle_payment(
        services,
        uuid.UUID(order["orderId"]),
        amount=order["total"] if amount is None else amount,
        currency=order["currency"],
        provider="sandbox",
        intent_id=f"pi_test_{order['orderId']}",
    )
    return result.outcome


async def test_payment_sells_units_exactly_once(
    client: httpx.AsyncClient, services: Services
) -> None:
    book = await create_book(services, stock=5)
    order = await _order(client, await register(client), book, 2)
    assert await _pay(services, order) == Settled.PAID
    assert await _pay(services, order) == Settled.ALREADY_PAID
    assert await order_status(services, order["orderId"]) == "PAID"
    assert await on_hand(services, book) == 3  # sold units left the shelf
    assert await available(services, book) == 3  # unchanged by the sale itself
    assert not await reservation_exists(services, order["orderId"])
    assert await outbox_types(services, order["orderId"]) == ["order.created", "order.paid"]
    # Expiry after payment changes nothing.
    await force_deadline_passed(services, order["orderId"])
    assert await service.expire_order(services, uuid.UUID(order["orderId"])) is False
    assert await available(services, book) == 3


async def test_amount_mismatch_is_not_a_payment(
    client: httpx.AsyncClient, services: Services
) -> None:
    book = await create_book(services, stock=5, price=10_000)
    order = await _order(client, await register(client), book, 1)
    assert await _pay(services, order, amount=100) == Settled.MISMATCH
    assert await order_status(services, order["orderId"]) == "PAYMENT_PENDING"
    assert await on_hand(services, book) == 5
    assert await available(services, book) == 4


async def test_declined_payment_keeps_the_order_payable(
    client: httpx.AsyncClient, services: Services
) -> None:
    book = await create_book(services, stock=5)
    order = await _order(client, await register(client), book, 1)
    oid = uuid.UUID(order["orderId"])
    assert await record_payment_failure(services, oid, "card declined") is True
    assert await order_status(services, oid) == "PAYMENT_PENDING"
    assert await _pay(services, order) == Settled.PAID
    assert await record_payment_failure(services, oid, "late decline") is False
    assert await outbox_types(services, oid) == [
        "order.created",
        "order.payment_failed",
        "order.paid",
    ]


async def test_late_payment_with_stock_is_sold(
    client: httpx.AsyncClient, services: Services
) -> None:
    book = await create_book(services, stock=3)
    order = await _order(client, await register(client), book, 2)
    await force_deadline_passed(services, order["orderId"])
    await service.expire_order(services, uuid.UUID(order["orderId"]))
    assert await available(services, book) == 3
    assert await _pay(services, order) == Settled.PAID
    assert await order_status(services, order["orderId"]) == "PAID"
    assert await on_hand(services, book) == 1
    assert await available(services, book) == 1


async def test_late_payment_without_stock_is_refunded(
    client: httpx.AsyncClient, services: Services
) -> None:
    book = await create_book(services, stock=2)
    late_buyer, other = await register(client), await register(client)
    order = await _order(client, late_buyer, book, 2)
    await client.post(f"/api/v1/orders/{order['orderId']}/cancel", headers=late_buyer["headers"])
    await _order(client, other, book, 2)  # someone else took the units
    assert await _pay(services, order) == Settled.REFUND
    assert await order_status(services, order["orderId"]) == "REFUND_PENDING"
    assert await _pay(services, order) == Settled.REFUND  # a duplicate changes nothing
    assert await available(services, book) == 0
    assert await on_hand(services, book) == 2
    assert await mark_refunded(services, uuid.UUID(order["orderId"]), "re_1") is True
    assert await mark_refunded(services, uuid.UUID(order["orderId"]), "re_1") is True
    assert await order_status(services, order["orderId"]) == "REFUNDED"
    assert (await outbox_types(services, order["orderId"]))[-1] == "order.refunded"


async def test_payment_racing_expiry_never_oversells_or_loses_a_payment(
    client: httpx.AsyncClient, services: Services
) -> None:
    """The classic bug: the webhook and the expiry job run at the same moment."""
    book = await create_book(services, stock=3)
    rivals = await quick_users(services, 30)
    for rival in rivals:
        buyer = await register(client) if rival is rivals[0] else rival
        order = await _order(client, buyer, book, 2)
        oid = uuid.UUID(order["orderId"])
        await force_deadline_passed(services, oid)
        paid, expired = await asyncio.gather(
            _pay(services, order), service.expire_order(services, oid)
        )
        status = await order_status(services, oid)
        assert status in {"PAID", "REFUND_PENDING"}, (paid, expired)
        if status == "PAID":
            assert paid == Settled.PAID
            # Sold: put the units back on the shelf for the next round.
            async with services.sessionmaker() as session, session.begin():
                await session.execute(
                    text("UPDATE books SET stock = stock + 2 WHERE id = :b"), {"b": book}
                )
            await services.inventory.reconcile([book])
        else:
            assert paid == Settled.REFUND
        assert await on_hand(services, book) == 3
        assert await available(services, book) == 3
        assert await held_in_db(services, book) == 0


async def test_reconcile_during_payments_stays_exact(
    client: httpx.AsyncClient, services: Services
) -> None:
    book = await create_book(services, stock=40)
    buyers = await quick_users(services, 20)
    orders = [await _order(client, b, book, 1) for b in buyers]

    async def reconcile_repeatedly() -> None:
        for _ in range(15):
            await services.inventory.reconcile([book])
            await asyncio.sleep(0)

    outcomes, _ = await asyncio.gather(
        asyncio.gather(*(_pay(services, o) for o in orders)), reconcile_repeatedly()
    )
    assert set(outcomes) == {Settled.PAID}
    assert await on_hand(services, book) == 20
    assert await available(services, book) == 20
    assert (await services.inventory.reconcile([book])).corrected == {}


async def test_extend_reservation_before_payment(
    client: httpx.AsyncClient, services: Services
) -> None:
    book = await create_book(services, stock=3)
    order = await _order(client, await register(client), book, 1)
    oid = uuid.UUID(order["orderId"])
    far = await extend_reservation(services, oid, min_window_seconds=60)
    assert far is not None  # 900 s left already: unchanged
    await force_deadline_passed(services, oid)
    extended = await extend_reservation(services, oid, min_window_seconds=120)
    assert extended is not None
    assert await service.expire_order(services, oid) is False  # not due any more
    await force_deadline_passed(services, oid)
    assert await service.expire_order(services, oid) is True
    assert await extend_reservation(services, oid, min_window_seconds=120) is None
