"""Write-behind to PostgreSQL: the persistCart job, called directly and through a real
BullMQ worker; retries, duplicates, reordering, dead-lettering, delayed runs."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import httpx
import pytest
from bullmq import Worker
from structlog.testing import capture_logs

from bookbazar.cart import repository
from bookbazar.cart import service as cart_service
from bookbazar.kit.clock import now_ms
from bookbazar.kit.queues import CART, DEAD_LETTER
from bookbazar.models.commerce import MAX_LINE_QUANTITY
from bookbazar.services import Services
from bookbazar.worker import load_registry
from tests.cart.conftest import (
    add,
    eventually,
    pg_state,
    redis_state,
    run_persist,
    user_id,
)
from tests.conftest import create_book, register


async def test_the_worker_registers_persist_cart() -> None:
    assert cart_service.PERSIST_JOB in load_registry().handlers[CART]


async def test_each_change_enqueues_one_persist_job_with_default_options(
    client: httpx.AsyncClient, services: Services
) -> None:
    user = await register(client)
    uid = user_id(user)
    book = await create_book(services)
    assert (await add(client, user, book, 1)).status_code == 200
    assert (await add(client, user, book, 2)).status_code == 200
    jobs = await services.queues.get(CART).getJobs(["waiting"])
    assert sorted(j.data["version"] for j in jobs) == [1, 2]
    for job in jobs:
        assert job.name == "persistCart"
        assert job.data["userId"] == str(uid)
        assert job.opts["attempts"] == 10
        assert job.opts["backoff"] == {"type": "exponential", "delay": 1000}
        assert str(job.id).startswith(f"persist-{uid}-{job.data['version']}-")


async def test_persist_replayed_duplicated_and_out_of_order_leaves_pg_equal_to_redis(
    client: httpx.AsyncClient, services: Services
) -> None:
    user = await register(client)
    uid = user_id(user)
    books = [await create_book(services) for _ in range(3)]
    for i, book in enumerate(books):
        assert (await add(client, user, book, i + 1)).status_code == 200
    assert await pg_state(services, uid) is None  # nothing persisted until the job runs

    result = await run_persist(services, uid, 3)
    assert result == {"written": True, "version": 3}
    assert await pg_state(services, uid) == await redis_state(services, uid)

    # Replayed and duplicated: no change.
    for _ in range(2):
        assert await run_persist(services, uid, 3) == {"written": False, "version": 3}
    assert await pg_state(services, uid) == await redis_state(services, uid)

    # More changes; the late job for version 1 runs first, then 5, then 4 again.
    resp = await client.post(
        "/api/v1/cart/remove", json={"bookId": str(books[0])}, headers=user["headers"]
    )
    assert resp.status_code == 200
    assert (await add(client, user, books[1], 7)).status_code == 200
    for version in (1, 5, 4, 2):
        await run_persist(services, uid, version)
        assert await pg_state(services, uid) == await redis_state(services, uid)
    state = await pg_state(services, uid)
    assert state is not None and state[0] == 5
    assert state[2] == {books[1]: 7, books[2]: 3}

    # Clearing persists an empty cart at the new version.
    assert (await client.delete("/api/v1/cart", headers=user["headers"])).status_code == 200
    await run_persist(services, uid, 6)
    assert await pg_state(services, uid) == (6, (await redis_state(services, uid))[1], {})  # type: ignore[index]


async def test_many_concurrent_persist_runs_while_the_cart_changes(
    client: httpx.AsyncClient, services: Services
) -> None:
    user = await register(client)
    uid = user_id(user)
    books = [await create_book(services, stock=50) for _ in range(6)]

    async def change(i: int) -> None:
        resp = await add(client, user, books[i % len(books)], i % MAX_LINE_QUANTITY + 1)
        assert resp.status_code == 200, resp.text

    await asyncio.gather(
        *(change(i) for i in range(24)),
        *(run_persist(services, uid) for _ in range(24)),
    )
    # Whatever order they ran in, the last job leaves PostgreSQL equal to Redis.
    await run_persist(services, uid)
    assert await pg_state(services, uid) == await redis_state(services, uid)
    assert (await pg_state(services, uid))[0] == 24  # type: ignore[index]


async def test_an_older_snapshot_never_overwrites_a_newer_one(
    client: httpx.AsyncClient, services: Services
) -> None:
    """Two jobs that read different snapshots and commit in the wrong order."""
    user = await register(client)
    uid = user_id(user)
    old_book, new_book = await create_book(services), await create_book(services)
    at = datetime(2030, 1, 1, tzinfo=UTC)
    async with services.sessionmaker() as session, session.begin():
        assert await repository.save_snapshot(session, uid, 4, at, [(new_book, 2)])
    async with services.sessionmaker() as session, session.begin():
        assert not await repository.save_snapshot(session, uid, 3, at, [(old_book, 9)])
        assert not await repository.save_snapshot(session, uid, 4, at, [(old_book, 9)])
    assert await pg_state(services, uid) == (4, cart_service.datetime_to_ms(at), {new_book: 2})


async def test_persist_skips_users_and_books_that_no_longer_exist(
    services: Services, client: httpx.AsyncClient
) -> None:
    at = datetime(2030, 1, 1, tzinfo=UTC)
    ghost = uuid.uuid4()
    async with services.sessionmaker() as session, session.begin():
        assert not await repository.save_snapshot(session, ghost, 1, at, [])
    user = await register(client)
    kept = await create_book(services)
    async with services.sessionmaker() as session, session.begin():
        assert await repository.save_snapshot(
            session, user_id(user), 1, at, [(kept, 1), (uuid.uuid4(), 2)]
        )
    assert (await pg_state(services, user_id(user)))[2] == {kept: 1}  # type: ignore[index]


async def test_persist_with_no_cart_in_redis_does_nothing(
    client: httpx.AsyncClient, services: Services
) -> None:
    user = await register(client)
    assert await run_persist(services, user_id(user), 1) == {"written": False, "version": None}
    assert await pg_state(services, user_id(user)) is None


async def test_a_real_worker_persists_every_change(
    client: httpx.AsyncClient, services: Services, cart_worker: Worker
) -> None:
    user = await register(client)
    uid = user_id(user)
    books = [await create_book(services, stock=30) for _ in range(4)]
    for i in range(10):
        assert (await add(client, user, books[i % 4], i % 5 + 1)).status_code == 200
    resp = await client.post(
        "/api/v1/cart/remove", json={"bookId": str(books[0])}, headers=user["headers"]
    )
    assert resp.status_code == 200

    async def synced() -> bool:
        state = await pg_state(services, uid)
        return state is not None and state == await redis_state(services, uid)

    await eventually(synced)
    assert (await pg_state(services, uid))[0] == 11  # type: ignore[index]

    async def all_done() -> bool:
        counts = await services.queues.get(CART).getJobCounts("waiting", "active", "completed")
        return bool(counts["completed"] == 11 and counts["waiting"] + counts["active"] == 0)

    await eventually(all_done)


async def test_a_job_that_always_fails_ends_in_the_dead_letter_queue(
    services: Services, cart_worker: Worker
) -> None:
    await services.queues.add(
        CART,
        cart_service.PERSIST_JOB,
        {"userId": "not-a-user-id", "version": 1},
        job_id="persist-broken-1",
        attempts=2,
        backoff={"type": "fixed", "delay": 100},
    )
    dead_letters = services.queues.get(DEAD_LETTER)

    async def dead_lettered() -> bool:
        return bool(await dead_letters.getJobs(["waiting"]))

    await eventually(dead_lettered, timeout=15)
    [job] = await dead_letters.getJobs(["waiting"])
    assert job.name == "cart:persistCart"
    assert job.data["originalQueue"] == CART
    assert job.data["jobId"] == "persist-broken-1"
    assert job.data["payload"] == {"userId": "not-a-user-id", "version": 1}
    assert job.data["attemptsMade"] == 2
    assert "badly formed" in job.data["reason"] and "ValueError" in job.data["reason"]
    assert await services.queues.get(CART).getJobState("persist-broken-1") == "failed"


async def test_a_job_delayed_more_than_5_seconds_still_runs(
    client: httpx.AsyncClient, services: Services, cart_worker: Worker
) -> None:
    """The redis-py socket-timeout trap: an idle worker must still wake for a job that
    becomes due after more than 5 s (redis<8, socket_timeout=None)."""
    user = await register(client)
    uid = user_id(user)
    book = await create_book(services)
    # Change Redis through the script alone, so no immediate job is enqueued.
    await cart_service.rehydrate(services, uid)
    result = await services.scripts.run(
        "cart_set_line",
        [cart_service.cart_key(uid)],
        [str(book), 4, "INR", now_ms(), MAX_LINE_QUANTITY],
    )
    assert result[0] == "OK"
    await asyncio.sleep(0.5)  # the worker is idle, blocked waiting for jobs
    job_id = await services.queues.add(
        CART, cart_service.PERSIST_JOB, {"userId": str(uid), "version": 1}, delay_ms=6_000
    )
    assert await services.queues.get(CART).getJobState(job_id) == "delayed"

    async def persisted() -> bool:
        return await pg_state(services, uid) == await redis_state(services, uid)

    await eventually(persisted, timeout=20, interval=0.2)
    assert await services.queues.get(CART).getJobState(job_id) == "completed"


async def test_a_failed_enqueue_is_retried(
    client: httpx.AsyncClient, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    user = await register(client)
    book = await create_book(services)
    real_add = services.queues.add
    calls = 0

    async def flaky_add(*args: object, **kwargs: object) -> str:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise ConnectionError("injected enqueue failure")
        return await real_add(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(services.queues, "add", flaky_add)
    assert (await add(client, user, book, 1)).status_code == 200
    assert calls == 3
    assert [j.data["version"] for j in await services.queues.get(CART).getJobs(["waiting"])] == [1]


async def test_an_enqueue_that_keeps_failing_is_reported_not_dropped_silently(
    client: httpx.AsyncClient, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    user = await register(client)
    uid = user_id(user)
    book = await create_book(services)

    async def broken_add(*args: object, **kwargs: object) -> str:
        raise ConnectionError("injected enqueue failure")

    monkeypatch.setattr(services.queues, "add", broken_add)
    with capture_logs() as logs:
        resp = await add(client, user, book, 2)
    # The change is made (Redis is the truth) and the failure is logged with the user.
    assert resp.status_code == 200, resp.text
    assert (await redis_state(services, uid))[2] == {book: 2}  # type: ignore[index]
    errors = [e for e in logs if e["event"] == "cart_persist_enqueue_failed"]
    assert len(errors) == 1
    assert errors[0]["user_id"] == str(uid) and errors[0]["version"] == 1
    assert errors[0]["log_level"] == "error"

    # The next change's job persists everything, including the change whose job was lost.
    monkeypatch.undo()
    other = await create_book(services)
    assert (await add(client, user, other, 1)).status_code == 200
    await run_persist(services, uid, 2)
    assert (await pg_state(services, uid))[2] == {book: 2, other: 1}  # type: ignore[index]
