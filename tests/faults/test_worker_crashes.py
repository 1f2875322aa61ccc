"""The worker process SIGKILLed at each crash point of its jobs and of the outbox relay,
restarted without the fault: the jobs it left running are run again (BullMQ's stalled-job
recovery), and nothing is lost, duplicated or stuck.

The API is the in-process live server here; the worker is the real `bookbazar worker`."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis
from sqlalchemy import text

from bookbazar.cart.service import DIRTY_KEY
from bookbazar.kit.queues import PAYMENT
from bookbazar.kit.ticker import LEASE_KEY
from bookbazar.services import Services
from tests.conftest import LiveServer, create_book, register
from tests.faults.harness import (
    FAST_SWEEPER,
    Launcher,
    Listener,
    all_relayed,
    assert_nothing_stuck,
    assert_stock_exact,
    caught_up,
    eventually,
    ids_by_type,
    job_state,
    outbox_events,
    requeue_stalled,
    resume,
)
from tests.notify.smtp import MailServer
from tests.orders.conftest import add_to_cart, order_status, place
from tests.payments.conftest import sandbox_event, signed

WEBHOOK = "/api/v1/payments/webhook/sandbox"
PRICE = 30_000


async def _placed(
    http: httpx.AsyncClient, services: Services, *, stock: int = 5, qty: int = 1
) -> tuple[dict[str, Any], uuid.UUID, str]:
    user = await register(http)
    book = await create_book(services, stock=stock, price=PRICE)
    await add_to_cart(http, user, book, qty)
    resp = await place(http, user)
    assert resp.status_code == 201, resp.text
    return user, book, resp.json()["data"]["orderId"]


async def _intent(http: httpx.AsyncClient, user: dict[str, Any], order_id: str) -> str:
    resp = await http.post(
        "/api/v1/payments/init", json={"orderId": order_id}, headers=user["headers"]
    )
    assert resp.status_code == 200, resp.text
    intent: str = resp.json()["data"]["paymentIntentId"]
    return intent


async def _pay(http: httpx.AsyncClient, order_id: str, intent: str, amount: int) -> None:
    payload = sandbox_event(intent, order_id, amount)
    resp = await http.post(WEBHOOK, content=payload.encode(), headers=signed(payload))
    assert resp.status_code == 200, resp.text


def _subjects(smtp: MailServer, order_id: str) -> list[str]:
    short = order_id.split("-")[0].upper()
    return sorted(m.subject for m in smtp.messages if short in m.subject)


async def _quiet_then_count(smtp: MailServer, order_id: str) -> list[str]:
    """Give a duplicate every chance to arrive before counting."""
    await asyncio.sleep(0.7)
    return _subjects(smtp, order_id)


async def _outbox_ids(services: Services, order_id: str) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for event_id, event_type, _ in await outbox_events(services, order_id):
        out.setdefault(event_type, set()).add(event_id)
    return out


@pytest.mark.parametrize("point", ["notify:after-claim", "notify:after-send"])
async def test_worker_killed_around_sending_an_email(
    launch: Launcher,
    live_server: LiveServer,
    http: httpx.AsyncClient,
    services: Services,
    raw_redis: Redis,
    smtp: MailServer,
    point: str,
) -> None:
    """Killed after claiming the confirmation (before sending it), or after the SMTP
    server took it (before it was marked sent): the email is never lost. The next
    worker waits out the dead sender's claim lease and sends; only in the second case
    (one database round trip wide) does the buyer get a second copy, with the same
    Message-ID, which mail clients show as one message."""
    user, book, order_id = await _placed(http, services)
    listener = Listener()
    await listener.connect(live_server.url, user["accessToken"])
    lease = {"NOTIFY_CLAIM_LEASE_SECONDS": "2"}
    worker = await launch.worker(
        faults=point, SMTP_URL=smtp.url, FULFILLMENT_SHIP_DELAY_SECONDS="3600", **lease
    )
    await listener.wait_for("order.created", order_id)
    await _pay(http, order_id, await _intent(http, user, order_id), PRICE)
    await worker.killed()
    await listener.close()
    sent_before = _subjects(smtp, order_id)
    assert sent_before == ([] if point == "notify:after-claim" else [_confirmed(order_id)])

    paid_id = (await _outbox_ids(services, order_id))["order.paid"].pop()
    await raw_redis.delete(LEASE_KEY)  # the dead worker's ticker lease lapses (5 s): now
    await launch.worker(
        SMTP_URL=smtp.url, FULFILLMENT_SHIP_DELAY_SECONDS="3600", **FAST_SWEEPER, **lease
    )

    async def marked() -> bool:
        async with services.sessionmaker() as session:
            return bool(
                (
                    await session.execute(
                        text("SELECT sent_at IS NOT NULL FROM notifications WHERE event_id = :e"),
                        {"e": uuid.UUID(paid_id)},
                    )
                ).scalar_one()
            )

    await eventually(marked, "the email to be sent after all", launch, timeout=40)
    copies = [m for m in smtp.messages if m.subject == _confirmed(order_id)]
    assert len(copies) == len(sent_before) + 1
    assert len({m.message["Message-ID"] for m in copies}) == 1
    await eventually(lambda: all_relayed(services), "the outbox to drain", launch)
    await assert_stock_exact(services, [book])
    await assert_nothing_stuck(services)
    seen = ids_by_type(await caught_up(listener, live_server.url, user["accessToken"]), order_id)
    assert seen.get("order.paid") == {paid_id}


def _confirmed(order_id: str) -> str:
    return f"Order {order_id[:8].upper()} confirmed"


async def test_relay_killed_after_publishing_before_marking_sent(
    launch: Launcher,
    live_server: LiveServer,
    http: httpx.AsyncClient,
    services: Services,
    raw_redis: Redis,
    smtp: MailServer,
) -> None:
    """Killed after publishing a batch, before marking it sent: the restarted relay
    publishes it again with the same event ids (at least once; clients deduplicate by id),
    the order's later events follow it in order, and every effect hooked on the events
    still happens once (one email, one fulfilment)."""
    user, book, order_id = await _placed(http, services, qty=2)
    await _pay(http, order_id, await _intent(http, user, order_id), 2 * PRICE)
    listener = Listener()
    await listener.connect(live_server.url, user["accessToken"])
    last_seen = None  # the client has seen none of this order's events yet

    worker = await launch.worker(
        faults="outbox:after-publish", SMTP_URL=smtp.url, FULFILLMENT_SHIP_DELAY_SECONDS="3600"
    )
    await worker.killed()
    await listener.wait_for("order.created", order_id)  # published live before the kill
    # The order's next event waits for the one before it to be marked sent.
    assert "order.paid" not in ids_by_type(listener.events, order_id)
    unsent = {t: sent for _, t, sent in await outbox_events(services, order_id)}
    assert (unsent["order.created"], unsent["order.paid"]) == (False, False)

    await requeue_stalled(raw_redis, services)
    await launch.worker(SMTP_URL=smtp.url, FULFILLMENT_SHIP_DELAY_SECONDS="3600", **FAST_SWEEPER)

    async def fulfilling() -> bool:
        return await order_status(services, order_id) == "FULFILLING" and await all_relayed(
            services
        )

    await eventually(fulfilling, "fulfilment to start and the outbox to drain", launch)
    await smtp.wait_for(1)
    assert await _quiet_then_count(smtp, order_id) == [f"Order {order_id[:8].upper()} confirmed"]
    outbox = await _outbox_ids(services, order_id)
    assert {t: len(ids) for t, ids in outbox.items()} == {
        "order.created": 1,
        "order.paid": 1,
        "order.fulfilling": 1,
    }
    await listener.wait_for("order.fulfilling", order_id)
    await listener.close()
    live = ids_by_type(listener.events, order_id)
    assert live == outbox  # duplicates, if any, carried the same ids
    assert len(listener.of(order_id)) >= 3
    missed = ids_by_type(await resume(live_server.url, user["accessToken"], last_seen), order_id)
    assert missed == outbox
    await assert_stock_exact(services, [book])
    await assert_nothing_stuck(services)


async def test_worker_killed_during_persist_cart(
    launch: Launcher,
    http: httpx.AsyncClient,
    services: Services,
    raw_redis: Redis,
) -> None:
    """Killed after reading the carts due, before writing them: their entries stay held
    under the dead worker's lease; once it runs out the next worker stores them, so a
    cart Redis then loses comes back whole."""
    user = await register(http)
    uid = user["user"]["id"]
    books = [await create_book(services, stock=5) for _ in range(2)]
    fast = {"CART_PERSIST_DELAY_MS": "0", "CART_PERSIST_INTERVAL_SECONDS": "0.2"}
    worker = await launch.worker(faults="cart:persist-before-write", **fast)
    await add_to_cart(http, user, books[0], 2)
    await worker.killed()
    assert await _stored_cart(services, user) == {}
    assert await raw_redis.zscore(DIRTY_KEY, uid) is not None  # held, not lost
    await raw_redis.zadd(DIRTY_KEY, {uid: 0}, xx=True)  # the lease runs out (60 s): now

    await launch.worker(**fast)

    async def stored() -> bool:
        return await _stored_cart(services, user) == {str(books[0]): 2}

    await eventually(stored, "the write-behind to run again", launch)
    await add_to_cart(http, user, books[1], 3)  # and it keeps working

    async def both() -> bool:
        return await _stored_cart(services, user) == {str(books[0]): 2, str(books[1]): 3}

    await eventually(both, "the next write-behind", launch)
    before = (await http.get("/api/v1/cart", headers=user["headers"])).json()["data"]
    await raw_redis.delete(f"bb:cart:{{{uid}}}")  # Redis loses the cart
    after = (await http.get("/api/v1/cart", headers=user["headers"])).json()["data"]
    assert after == before
    assert {i["bookId"]: i["quantity"] for i in after["items"]} == {
        str(books[0]): 2,
        str(books[1]): 3,
    }


async def _stored_cart(services: Services, user: dict[str, Any]) -> dict[str, int]:
    async with services.sessionmaker() as session:
        rows = await session.execute(
            text(
                "SELECT ci.book_id, ci.quantity FROM cart_items ci "
                "JOIN carts c ON c.id = ci.cart_id WHERE c.user_id = :u"
            ),
            {"u": uuid.UUID(user["user"]["id"])},
        )
        return {str(r.book_id): int(r.quantity) for r in rows}


@pytest.mark.parametrize("point", ["payment:refund-after-provider", "payment:refund-after-save"])
async def test_worker_killed_during_a_refund(
    launch: Launcher,
    live_server: LiveServer,
    http: httpx.AsyncClient,
    services: Services,
    raw_redis: Redis,
    smtp: MailServer,
    point: str,
) -> None:
    """A late payment with no stock left goes to REFUND_PENDING; the worker is killed
    mid-refund (after the provider refunded, before the id was stored; or before the order
    was marked REFUNDED). The job runs again: one refund, REFUNDED once, one
    order.refunded, one email; the other buyer's reservation is untouched."""
    late_user, book, late_order = await _placed(http, services, stock=1)
    intent = await _intent(http, late_user, late_order)
    cancel = await http.post(f"/api/v1/orders/{late_order}/cancel", headers=late_user["headers"])
    assert cancel.status_code == 200, cancel.text
    other = await register(http)
    await add_to_cart(http, other, book, 1)
    assert (await place(http, other)).status_code == 201  # takes the last copy
    await _pay(http, late_order, intent, PRICE)  # paid anyway: nothing left to sell
    assert await order_status(services, late_order) == "REFUND_PENDING"
    listener = Listener()
    await listener.connect(live_server.url, late_user["accessToken"])

    worker = await launch.worker(faults=point, SMTP_URL=smtp.url)
    await worker.killed()
    await listener.close()
    assert await order_status(services, late_order) == "REFUND_PENDING"
    refund_job = f"refund-{await _payment_id(services, late_order)}"
    assert refund_job in await requeue_stalled(raw_redis, services)
    await launch.worker(SMTP_URL=smtp.url, **FAST_SWEEPER)

    async def refunded() -> bool:
        return await order_status(services, late_order) == "REFUNDED" and await all_relayed(
            services
        )

    await eventually(refunded, "the refund job to run again", launch)
    refund_id = "re_sb_" + hashlib.sha256(refund_job.encode()).hexdigest()[:24]
    async with services.sessionmaker() as session:
        payment = (
            await session.execute(
                text("SELECT status, refund_id FROM payments WHERE order_id = :o"),
                {"o": uuid.UUID(late_order)},
            )
        ).one()
    assert (payment.status, payment.refund_id) == ("refunded", refund_id)
    ledger = await raw_redis.hgetall(f"sandbox:intent:{intent}")  # type: ignore[misc]
    assert (ledger["status"], ledger["refund"]) == ("refunded", refund_id)
    outbox = await _outbox_ids(services, late_order)
    assert len(outbox["order.refunded"]) == 1
    await smtp.wait_for(1)
    assert await _quiet_then_count(smtp, late_order) == [f"Order {late_order[:8].upper()} refunded"]
    seen = ids_by_type(
        await caught_up(listener, live_server.url, late_user["accessToken"]), late_order
    )
    assert seen.get("order.refunded") == outbox["order.refunded"]
    await assert_stock_exact(services, [book])
    await assert_nothing_stuck(services)
    assert (await services.inventory.available([book]))[book] == 0
    assert await job_state(services, PAYMENT, refund_job) == "completed"


async def _payment_id(services: Services, order_id: str) -> str:
    async with services.sessionmaker() as session:
        value = (
            await session.execute(
                text("SELECT id FROM payments WHERE order_id = :o"), {"o": uuid.UUID(order_id)}
            )
        ).scalar_one()
    return str(value)
