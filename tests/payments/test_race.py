"""The webhook racing the expiry job (and a rival buyer): never oversold, never lost."""

from __future__ import annotations

import asyncio
import uuid

import httpx

from bookbazar.kit.queues import PAYMENT
from bookbazar.orders import service as orders
from bookbazar.services import Services
from tests.conftest import create_book
from tests.orders.conftest import (
    add_to_cart,
    available,
    force_deadline_passed,
    held_in_db,
    on_hand,
    order_status,
    place,
    quick_users,
)
from tests.payments.conftest import initialised, pay, refund_job, run_job

ROUNDS = 30


async def test_webhook_vs_expiry_race_never_oversells_or_loses_a_payment(
    client: httpx.AsyncClient, services: Services
) -> None:
    outcomes: dict[str, int] = {}
    for round_no in range(ROUNDS):
        with_rival = round_no % 3 != 2
        buyer, rival = await quick_users(services, 2)
        book = await create_book(services, stock=1, price=25_000)
        if with_rival:
            # The rival's cart holds the copy too; they order while the race runs.
            await add_to_cart(client, rival, book, 1)
        await add_to_cart(client, buyer, book, 1)
        placed = await place(client, buyer)
        assert placed.status_code == 201, placed.text
        order_id = placed.json()["data"]["orderId"]
        intent = await initialised(client, buyer, order_id)
        await force_deadline_passed(services, order_id)

        racers = [
            pay(client, order_id, intent, 25_000),
            orders.expire_order(services, uuid.UUID(order_id)),
        ]
        if with_rival:
            racers.append(place(client, rival))
        results = await asyncio.gather(*racers)
        webhook = results[0]
        assert webhook.status_code == 200, webhook.text
        result = webhook.json()["data"]["result"]
        if result == "refund":
            await run_job(services, PAYMENT, await refund_job(services, order_id))
        final = await order_status(services, order_id)
        outcomes[f"{result}->{final}"] = outcomes.get(f"{result}->{final}", 0) + 1

        # No lost payment: a succeeded payment ends sold or refunded, never just expired.
        assert final in {"PAID", "REFUNDED"}, (round_no, result, final)
        # Never oversold: sold + held never exceeds the one copy, and Redis agrees.
        stock_now = await on_hand(services, book)
        held = await held_in_db(services, book)
        sold = 1 - stock_now
        assert stock_now >= 0 and sold + held <= 1, (round_no, sold, held)
        assert await available(services, book) == stock_now - held
        if final == "PAID":
            assert sold == 1 and held == 0
        if with_rival:
            rival_resp = results[2]
            rival_holds = rival_resp.status_code == 201
            assert rival_holds == (final == "REFUNDED"), (round_no, final, rival_resp.text)
        else:
            assert final == "PAID"  # nobody else wanted it: re-reserved and sold
    assert sum(outcomes.values()) == ROUNDS
