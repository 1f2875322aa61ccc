"""Payment test helpers: orders awaiting payment, signed sandbox events, job runners."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from bookbazar.kit.jobs import JobContext
from bookbazar.outbox.relay import relay_once
from bookbazar.payments.providers.sandbox import sign_payload
from bookbazar.services import Services
from bookbazar.worker import load_registry
from tests.conftest import create_book, register
from tests.notify.smtp import MailServer, mail_server
from tests.orders.conftest import add_to_cart, place

WEBHOOK = "/api/v1/payments/webhook/sandbox"


@pytest.fixture
def smtp() -> Iterator[MailServer]:
    with mail_server() as server:
        yield server


async def placed_order(
    client: httpx.AsyncClient,
    services: Services,
    *,
    stock: int = 5,
    qty: int = 1,
    price: int = 49_900,
    user: dict[str, Any] | None = None,
    book: uuid.UUID | None = None,
) -> tuple[dict[str, Any], uuid.UUID, str]:
    """A registered user with a PAYMENT_PENDING order for `qty` of a new (or given) book."""
    user = user or await register(client)
    book = book or await create_book(services, stock=stock, price=price)
    await add_to_cart(client, user, book, qty)
    resp = await place(client, user)
    assert resp.status_code == 201, resp.text
    return user, book, resp.json()["data"]["orderId"]


async def init_payment(
    client: httpx.AsyncClient, user: dict[str, Any], order_id: str
) -> httpx.Response:
    return await client.post(
        "/api/v1/payments/init", json={"orderId": order_id}, headers=user["headers"]
    )


async def initialised(client: httpx.AsyncClient, user: dict[str, Any], order_id: str) -> str:
    resp = await init_payment(client, user, order_id)
    assert resp.status_code == 200, resp.text
    intent: str = resp.json()["data"]["paymentIntentId"]
    return intent


def sandbox_event(
    intent_id: str,
    order_id: str,
    amount: int,
    *,
    currency: str = "inr",
    succeeded: bool = True,
    event_id: str | None = None,
) -> str:
    """A Stripe-shaped event, exactly as DESIGN.md §3 describes it."""
    return json.dumps(
        {
            "id": event_id or f"evt_test_{uuid.uuid4().hex}",
            "type": "payment_intent.succeeded" if succeeded else "payment_intent.payment_failed",
            "created": int(time.time()),
            "data": {
                "object": {
                    "id": intent_id,
                    "amount": amount,
                    "currency": currency,
                    "metadata": {"orderId": order_id},
                }
            },
        }
    )


def signed(
    payload: str, secret: str = "whsec_test_secret", at: int | None = None
) -> dict[str, str]:
    return {
        "Stripe-Signature": sign_payload(payload, secret, at),
        "Content-Type": "application/json",
    }


async def post_event(
    client: httpx.AsyncClient, payload: str, headers: dict[str, str], path: str = WEBHOOK
) -> httpx.Response:
    return await client.post(path, content=payload.encode(), headers=headers)


async def pay(
    client: httpx.AsyncClient, order_id: str, intent_id: str, amount: int = 49_900, **kw: Any
) -> httpx.Response:
    payload = sandbox_event(intent_id, order_id, amount, **kw)
    return await post_event(client, payload, signed(payload))


async def payment_row(services: Services, order_id: str) -> dict[str, Any]:
    async with services.sessionmaker() as session:
        row = (
            await session.execute(
                text("SELECT * FROM payments WHERE order_id = :o"), {"o": uuid.UUID(order_id)}
            )
        ).one()
    return dict(row._mapping)


async def refund_job(services: Services, order_id: str) -> str:
    """The job id of the refund of the order's payment (refunds are per payment)."""
    return f"refund-{(await payment_row(services, order_id))['id']}"


async def order_row(services: Services, order_id: str) -> dict[str, Any]:
    async with services.sessionmaker() as session:
        row = (
            await session.execute(
                text("SELECT * FROM orders WHERE id = :o"), {"o": uuid.UUID(order_id)}
            )
        ).one()
    return dict(row._mapping)


async def count(services: Services, table: str) -> int:
    async with services.sessionmaker() as session:
        return int((await session.execute(text(f"SELECT count(*) FROM {table}"))).scalar_one())


async def snapshot(services: Services, order_id: str) -> tuple[Any, ...]:
    """Everything a webhook could change, to prove that one changed nothing."""
    order = await order_row(services, order_id)
    async with services.sessionmaker() as session:
        payments = (
            await session.execute(
                text("SELECT status, refund_id FROM payments WHERE order_id = :o"),
                {"o": uuid.UUID(order_id)},
            )
        ).all()
        stock = (await session.execute(text("SELECT id, stock FROM books ORDER BY id"))).all()
    return (
        order["status"],
        order["review_reason"],
        order["paid_at"],
        tuple(payments),
        tuple(stock),
        await count(services, "outbox_events"),
        await count(services, "processed_webhook_events"),
    )


async def run_job(services: Services, queue: str, job_id: str) -> Any:
    """Run an enqueued job's handler once, as the worker would (the job stays queued)."""
    job = await services.queues.get(queue).getJob(job_id)
    assert job is not None, f"no job {job_id} on {queue}"
    spec = load_registry().handlers[queue][job.name]
    payload = spec.payload.model_validate(job.data)
    return await spec.handler(JobContext(services, queue, job.name, job.id), payload)


async def relay(services: Services) -> int:
    """Relay the outbox until nothing is left, with every domain's event hooks (as the
    worker does: an order's next event goes once its previous one went)."""
    hooks = load_registry().event_hooks
    total = 0
    while handled := await relay_once(services, hooks):
        total += handled
    return total
