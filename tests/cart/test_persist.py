"""Write-behind to PostgreSQL: the coalesced persistCart job, called directly and
through a real BullMQ worker. PostgreSQL converges on the latest version and never goes
back: retries, duplicates, reordering, Redis loss, dead-lettering, delayed runs."""

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
from bookbazar.cart.schemas import PersistCart
from bookbazar.kit.queues import CART, DEAD_LETTER
from bookbazar.models.commerce import MAX_LINE_QUANTITY
from bookbazar.services import Services
from bookbazar.worker import load_registry
from tests.cart.conftest import (
    add,
    eventually,
    persist_jobs,
    pg_state,
    redis_state,
    run_persist,
    user_id,
)
from tests.conftest import create_book, register


async def test_the_worker_registers_persist_cart() -> None:
    assert PersistCart.name in load_registry().handlers[CART]


async def test_a_burst_of_changes_schedules_one_job(
    client: httpx.AsyncClient, services: Services
) -> None:
    user = await register(client)
    uid = user_id(user)
    books = [await create_book(services) for _ in range(3)]
    for i, book in enumerate(books):
        assert (await add(client, user, book, i + 1)).status_code == 200
    assert (await add(client, user, books[0], 5)).status_code == 200
    [job] = await persist_jobs(services)
    assert job.name == "persistCart"
    assert job.data["userId"] == str(uid)
    assert job.opts["attempts"] == 10
    assert job.opts["backoff"] == {"type": "exponential", "delay": 1000}
    assert job.opts["delay"] == services.settings.cart_persist_delay_ms
    assert str(job.id) == f"persist-{uid}-{job.data['scheduledMs']}"
    # The job reads the cart (and its mark): the next change schedules the next job.
    assert (await run_persist(services, uid))["version"] == 4
    assert (await add(client, user, books[1], 9)).status_code == 200
    assert len(await persist_jobs(services)) == 2


async def test_persist_replayed_duplicated_and_out_of_order_leaves_pg_equal_to_redis(
    client: httpx.AsyncClient, services: Services
) -> None:
    user = await register(client)
    uid = user_id(user)
    books = [await create_book(services) for _ in range(3)]
    for i, book in enumerate(books):
        assert (await add(client, user, book, i + 1)).status_code == 200
    assert await pg_state(services, uid) is None  # nothing persisted until the job runs

    result = await run_persist(services, uid)
    assert result == {"written": True, "version": 3}
    assert await pg_state(services, uid) == await redis_state(services, uid)

    # Replayed and duplicated: no change.
    for _ in range(2):
        assert await run_persist(services, uid) == {"written": False, "version": 3}
    assert await pg_state(services, uid) == await redis_state(services, uid)

    # More changes; late, duplicated and replayed jobs all store the current cart.
    resp = await client.post(
        "/api/v1/cart/remove", json={"bookId": str(books[0])}, headers=user["headers"]
    )
    assert resp.status_code == 200
    assert (await add(client, user, books[1], 7)).status_code == 200
    for scheduled in (1, 5, 4, 2):
        await run_persist(services, uid, scheduled)
        assert await pg_state(services, uid) == await redis_state(services, uid)
    state = await pg_state(services, uid)
    assert state is not None and state[0] == 5
    assert state[2] == {books[1]: 7, books[2]: 3}

    # Clearing persists an empty cart at the new version.
    assert (await client.delete("/api/v1/cart", headers=user["headers"])).status_code == 200
    await run_persist(services, uid)
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
    assert await run_persist(services, user_id(user)) == {"written": False, "version": None}
    assert await pg_state(services, user_id(user)) is None


async def test_postgres_converges_after_redis_loses_everything(
    client: httpx.AsyncClient, services: Services
) -> None:
    """Redis flushed between changes and jobs: the rehydrated cart continues from the
    stored version, and PostgreSQL only ever moves forward."""
    user = await register(client)
    uid = user_id(user)
    books = [await create_book(services) for _ in range(3)]
    assert (await add(client, user, books[0], 2)).status_code == 200
    assert (await add(client, user, books[1], 3)).status_code == 200
    await run_persist(services, uid)
    stored = await pg_state(services, uid)
    assert stored is not None and stored[0] == 2
    await services.redis.flushdb()
    await services.inventory.reconcile()
    # The next change rehydrates the cart from PostgreSQL first, then applies itself.
    assert (await add(client, user, books[2], 1)).status_code == 200
    state = await redis_state(services, uid)
    assert state is not None and state[0] == 3
    assert state[2] == {books[0]: 2, books[1]: 3, books[2]: 1}
    versions = [stored[0]]
    for _ in range(3):  # replayed jobs of before and after the loss
        await run_persist(services, uid)
        now = await pg_state(services, uid)
        assert now is not None
        versions.append(now[0])
    assert versions == sorted(versions) and versions[-1] == 3
    assert await pg_state(services, uid) == state


async def test_a_real_worker_converges_and_coalesces(
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
    seen: list[int] = []

    async def synced() -> bool:
        state = await pg_state(services, uid)
        if state is not None:
            seen.append(state[0])
        return state is not None and state == await redis_state(services, uid)

    await eventually(synced)
    assert (await pg_state(services, uid))[0] == 11  # type: ignore[index]
    assert seen == sorted(seen)  # never went back

    async def all_done() -> bool:
        counts = await services.queues.get(CART).getJobCounts(
            "waiting", "active", "delayed", "completed"
        )
        pending = counts["waiting"] + counts["active"] + counts["delayed"]
        return bool(pending == 0 and counts["completed"] >= 1)

    await eventually(all_done)
    completed = (await services.queues.get(CART).getJobCounts("completed"))["completed"]
    assert 1 <= completed < 11  # eleven changes, far fewer writes


async def test_a_job_that_always_fails_ends_in_the_dead_letter_queue(
    services: Services, cart_worker: Worker
) -> None:
    await services.queues.add(
        CART,
        PersistCart.name,
        {"userId": "not-a-user-id", "scheduledMs": 1},
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
    assert job.data["payload"] == {"userId": "not-a-user-id", "scheduledMs": 1}
    assert job.data["attemptsMade"] == 2
    assert "validation error for PersistCart" in job.data["reason"]
    assert "userId" in job.data["reason"]
    assert await services.queues.get(CART).getJobState("persist-broken-1") == "failed"


async def test_a_job_delayed_more_than_5_seconds_still_runs(
    client: httpx.AsyncClient, services: Services, cart_worker: Worker
) -> None:
    """The redis-py socket-timeout trap: an idle worker must still wake for a job that
    becomes due after more than 5 s (redis<8; bullmq's own connection, no timeout)."""
    services.settings.cart_persist_delay_ms = 6_000
    user = await register(client)
    uid = user_id(user)
    book = await create_book(services)
    await asyncio.sleep(0.5)  # the worker is idle, blocked waiting for jobs
    assert (await add(client, user, book, 4)).status_code == 200
    [job] = await persist_jobs(services)
    assert await services.queues.get(CART).getJobState(job.id) == "delayed"

    async def persisted() -> bool:
        return await pg_state(services, uid) == await redis_state(services, uid)

    await eventually(persisted, timeout=20, interval=0.2)
    assert await services.queues.get(CART).getJobState(job.id) == "completed"


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
    assert len(await persist_jobs(services)) == 1


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
    assert errors[0]["user_id"] == str(uid) and errors[0]["log_level"] == "error"

    # Once the lost job's mark is stale, the next change schedules again, and that job
    # persists everything, including the change whose job was lost.
    monkeypatch.undo()
    monkeypatch.setattr(cart_service, "PERSIST_STALE_MS", 0)
    other = await create_book(services)
    assert (await add(client, user, other, 1)).status_code == 200
    assert len(await persist_jobs(services)) == 1
    await run_persist(services, uid)
    assert (await pg_state(services, uid))[2] == {book: 2, other: 1}  # type: ignore[index]
