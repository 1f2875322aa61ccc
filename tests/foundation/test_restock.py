"""Restock with an Idempotency-Key, and a restock whose counter update fails (defect 9).

A restock commits, then rebuilds the book's availability counter from PostgreSQL. A retry
with the same Idempotency-Key adds nothing; the same key for another book or quantity is
refused; and when Redis fails after the commit the admin is told it worked (it did) and
the next reconcile brings the counter up, so nobody retries it into a double restock.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from sqlalchemy import text

from bookbazar.services import Services
from tests.conftest import create_book, make_admin


async def restock(
    client: httpx.AsyncClient,
    admin: dict[str, Any],
    book: uuid.UUID,
    quantity: int,
    key: str | None = None,
) -> httpx.Response:
    headers = dict(admin["headers"])
    if key is not None:
        headers["Idempotency-Key"] = key
    return await client.post(
        f"/api/v1/admin/books/{book}/restock", json={"quantity": quantity}, headers=headers
    )


async def on_hand(services: Services, book: uuid.UUID) -> int:
    async with services.sessionmaker() as session:
        value = (
            await session.execute(text("SELECT stock FROM books WHERE id = :b"), {"b": book})
        ).scalar_one()
    return int(value)


async def available(services: Services, book: uuid.UUID) -> int:
    return (await services.inventory.available([book]))[book]


async def test_a_retry_with_the_same_key_adds_nothing(
    client: httpx.AsyncClient, services: Services
) -> None:
    admin = await make_admin(client, services)
    book = await create_book(services, stock=10)
    key = uuid.uuid4().hex

    first = await restock(client, admin, book, 5, key)
    assert first.status_code == 200, first.text
    assert first.headers.get("Idempotent-Replayed") is None
    assert first.json()["data"]["stock"] == 15

    again = await restock(client, admin, book, 5, key)
    assert again.status_code == 200, again.text
    assert await on_hand(services, book) == 15, "the retry added the units again"
    assert again.json()["data"]["stock"] == 15
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert await available(services, book) == 15

    # A new key is a new restock.
    other = await restock(client, admin, book, 5, uuid.uuid4().hex)
    assert other.status_code == 200, other.text
    assert other.headers.get("Idempotent-Replayed") is None
    assert await on_hand(services, book) == 20
    assert await available(services, book) == 20


async def test_concurrent_retries_with_one_key_add_once(
    client: httpx.AsyncClient, services: Services
) -> None:
    admin = await make_admin(client, services)
    book = await create_book(services, stock=10)
    key = uuid.uuid4().hex
    answers = await asyncio.gather(*(restock(client, admin, book, 7, key) for _ in range(4)))
    assert [a.status_code for a in answers] == [200] * 4, [a.text for a in answers]
    assert await on_hand(services, book) == 17, "a retry added the units again"
    replayed = [a.headers.get("Idempotent-Replayed") for a in answers]
    assert replayed.count("true") == 3, replayed
    assert await available(services, book) == 17


@pytest.mark.parametrize("change", ["quantity", "book"])
async def test_the_same_key_for_another_restock_is_refused(
    client: httpx.AsyncClient, services: Services, change: str
) -> None:
    admin = await make_admin(client, services)
    book = await create_book(services, stock=10)
    other_book = await create_book(services, stock=3)
    key = uuid.uuid4().hex
    assert (await restock(client, admin, book, 5, key)).status_code == 200

    if change == "quantity":
        refused = await restock(client, admin, book, 6, key)
    else:
        refused = await restock(client, admin, other_book, 5, key)
    assert refused.status_code == 422, refused.text
    body = refused.json()
    assert body["success"] is False and body["statusCode"] == 422
    assert "Idempotency-Key" in body["message"]
    assert await on_hand(services, book) == 15
    assert await on_hand(services, other_book) == 3
    assert await available(services, book) == 15
    assert await available(services, other_book) == 3


async def test_redis_failing_after_the_commit_still_reports_the_restock(
    client: httpx.AsyncClient, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    admin = await make_admin(client, services)
    book = await create_book(services, stock=10)
    assert await available(services, book) == 10  # the counter exists, at 10
    key = uuid.uuid4().hex

    real_reconcile = services.inventory.reconcile
    calls: list[Any] = []

    async def failing_once(*args: Any, **kwargs: Any) -> Any:
        calls.append(args)
        if len(calls) == 1:
            raise RedisConnectionError("Connection reset by peer")
        return await real_reconcile(*args, **kwargs)

    monkeypatch.setattr(services.inventory, "reconcile", failing_once)

    done = await restock(client, admin, book, 5, key)
    assert done.status_code == 200, done.text
    assert len(calls) == 1
    body = done.json()
    assert body["success"] is True
    assert "catch up" in body["message"], body["message"]
    assert body["data"]["stock"] == 15
    assert await on_hand(services, book) == 15
    assert await available(services, book) == 10  # not yet: the counter update failed

    # The admin retries anyway (same key): nothing is added twice, and this time the
    # counter is rebuilt.
    retried = await restock(client, admin, book, 5, key)
    assert retried.status_code == 200, retried.text
    assert retried.headers.get("Idempotent-Replayed") == "true"
    assert await on_hand(services, book) == 15
    assert await available(services, book) == 15


async def test_the_next_reconcile_brings_the_counter_up(
    client: httpx.AsyncClient, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    admin = await make_admin(client, services)
    book = await create_book(services, stock=10)
    assert await available(services, book) == 10

    async def unreachable(*_: Any, **__: Any) -> Any:
        raise RedisConnectionError("Connection refused")

    with monkeypatch.context() as patch:
        patch.setattr(services.inventory, "reconcile", unreachable)
        done = await restock(client, admin, book, 4)
    assert done.status_code == 200, done.text
    assert "catch up" in done.json()["message"]
    assert await on_hand(services, book) == 14
    assert await available(services, book) == 10

    await services.inventory.reconcile()  # what the scheduled audit runs
    assert await on_hand(services, book) == 14
    assert await available(services, book) == 14


async def test_a_deferred_counter_is_not_reported_as_sold_out(
    client: httpx.AsyncClient, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    admin = await make_admin(client, services)
    book = await create_book(services, stock=10)
    assert await available(services, book) == 10

    async def unreachable(*_: Any, **__: Any) -> Any:
        raise RedisConnectionError("Connection refused")

    monkeypatch.setattr(services.inventory, "reconcile", unreachable)
    done = await restock(client, admin, book, 4)
    assert done.status_code == 200, done.text
    # Nothing is reserved: the answer says what the counter will be once rebuilt.
    assert done.json()["data"]["available"] == 14, done.json()["data"]


async def test_a_key_out_of_bounds_is_a_400_naming_the_header_and_adds_nothing(
    client: httpx.AsyncClient, services: Services
) -> None:
    admin = await make_admin(client, services)
    book = await create_book(services, stock=10)
    refused = await restock(client, admin, book, 5, "k" * 256)
    assert refused.status_code == 400, refused.text
    body = refused.json()
    assert body["success"] is False and body["statusCode"] == 400
    assert body["message"].startswith("The Idempotency-Key header is invalid")
    assert await on_hand(services, book) == 10
