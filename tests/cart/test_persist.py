"""Write-behind to PostgreSQL: the coalesced `cart:persist` job, called directly and run
by a real worker. PostgreSQL converges on the latest version and never goes back:
retries, duplicates, reordering, concurrent writers, Redis loss, a worker that dies."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import httpx
import pytest

from bookbazar.cart import repository
from bookbazar.cart import service as cart_service
from bookbazar.cart.jobs import PERSIST_JOB
from bookbazar.config import Settings
from bookbazar.kit.clock import now_ms
from bookbazar.models.commerce import MAX_LINE_QUANTITY
from bookbazar.services import Services
from bookbazar.worker import WorkerProcess, load_registry
from tests.cart.conftest import (
    add,
    dirty,
    eventually,
    pg_state,
    redis_state,
    run_persist,
    user_id,
)
from tests.conftest import create_book, register


async def test_the_worker_schedules_the_write_behind() -> None:
    assert any(t.name == PERSIST_JOB for t in load_registry().ticks)


async def test_a_burst_of_changes_is_one_due_entry_written_once(
    client: httpx.AsyncClient, services: Services
) -> None:
    user = await register(client)
    uid = user_id(user)
    books = [await create_book(services) for _ in range(3)]
    before = now_ms()
    for i, book in enumerate(books):
        assert (await add(client, user, book, i + 1)).status_code == 200
    assert (await add(client, user, books[0], 5)).status_code == 200
    entries = await dirty(services)
    assert list(entries) == [str(uid)]
    delay = services.settings.cart_persist_delay_ms
    # Due one delay after the FIRST change of the burst: later changes ride along.
    assert before + delay <= entries[str(uid)] < before + delay + 2_000
    assert await cart_service.persist_due(services) == 0  # not due yet
    await services.redis.zadd(cart_service.DIRTY_KEY, {str(uid): now_ms() - 1})
    assert await cart_service.persist_due(services) == 1
    assert await dirty(services) == {}
    state = await pg_state(services, uid)
    assert state is not None and state == await redis_state(services, uid)
    assert state[0] == 4
    # The next change makes it due again.
    assert (await add(client, user, books[1], 9)).status_code == 200
    assert list(await dirty(services)) == [str(uid)]


async def test_a_change_while_the_job_holds_the_cart_is_not_lost(
    client: httpx.AsyncClient, services: Services
) -> None:
    """The job took the entry (under its lease) and read the cart; a change lands before
    it lets go: the entry stays, due again, and the next round writes the change."""
    user = await register(client)
    uid = user_id(user)
    book = await create_book(services)
    assert (await add(client, user, book, 1)).status_code == 200
    now = now_ms()
    lease = now + cart_service.PERSIST_LEASE_MS
    taken = await services.scripts.run(
        "dirty_take", [cart_service.DIRTY_KEY], [now + 10_000, lease, 10]
    )
    assert taken == [str(uid)]
    await cart_service.persist_carts(services, [uid])  # writes version 1
    assert (await add(client, user, book, 2)).status_code == 200  # version 2, meanwhile
    released = await services.scripts.run(
        "dirty_release", [cart_service.DIRTY_KEY], [lease, str(uid)]
    )
    assert released == 0  # kept: it changed again
    assert (await pg_state(services, uid))[0] == 1  # type: ignore[index]
    await services.redis.zadd(cart_service.DIRTY_KEY, {str(uid): now_ms() - 1})
    await cart_service.persist_due(services)
    assert await pg_state(services, uid) == await redis_state(services, uid)
    assert (await pg_state(services, uid))[0] == 2  # type: ignore[index]


async def test_a_worker_that_dies_holding_carts_lets_them_come_due_again(
    client: httpx.AsyncClient, services: Services
) -> None:
    user = await register(client)
    uid = user_id(user)
    assert (await add(client, user, await create_book(services), 3)).status_code == 200
    now = now_ms()
    # Taken by a worker that then dies (its lease ran out a moment ago).
    taken = await services.scripts.run(
        "dirty_take", [cart_service.DIRTY_KEY], [now + 10_000, now - 1, 10]
    )
    assert taken == [str(uid)]
    assert await cart_service.persist_due(services) == 1
    assert await pg_state(services, uid) == await redis_state(services, uid)


async def test_many_carts_are_written_in_one_round(
    client: httpx.AsyncClient, services: Services
) -> None:
    users = [await register(client) for _ in range(5)]
    book = await create_book(services, stock=100)
    for n, user in enumerate(users):
        assert (await add(client, user, book, n + 1)).status_code == 200
    for uid in await dirty(services):
        await services.redis.zadd(cart_service.DIRTY_KEY, {uid: now_ms() - 1})
    assert await cart_service.persist_due(services) == 5
    for n, user in enumerate(users):
        assert (await pg_state(services, user_id(user)))[2] == {book: n + 1}  # type: ignore[index]


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
    for _ in range(4):
        await run_persist(services, uid)
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
    async with services.pg.tx() as conn:
        assert await repository.save_snapshot(conn, uid, 4, at, [(new_book, 2)])
    async with services.pg.tx() as conn:
        assert not await repository.save_snapshot(conn, uid, 3, at, [(old_book, 9)])
        assert not await repository.save_snapshot(conn, uid, 4, at, [(old_book, 9)])
    assert await pg_state(services, uid) == (4, cart_service.datetime_to_ms(at), {new_book: 2})


async def test_persist_skips_users_and_books_that_no_longer_exist(
    services: Services, client: httpx.AsyncClient
) -> None:
    at = datetime(2030, 1, 1, tzinfo=UTC)
    ghost = uuid.uuid4()
    async with services.pg.tx() as conn:
        assert not await repository.save_snapshot(conn, ghost, 1, at, [])
    user = await register(client)
    kept = await create_book(services)
    async with services.pg.tx() as conn:
        assert await repository.save_snapshot(
            conn, user_id(user), 1, at, [(kept, 1), (uuid.uuid4(), 2)]
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
    """Redis flushed between changes and writes: the rehydrated cart continues from the
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
    for _ in range(3):  # replayed runs of before and after the loss
        await run_persist(services, uid)
        now = await pg_state(services, uid)
        assert now is not None
        versions.append(now[0])
    assert versions == sorted(versions) and versions[-1] == 3
    assert await pg_state(services, uid) == state


@pytest.fixture
async def running_worker(settings: Settings) -> AsyncIterator[WorkerProcess]:
    settings.cart_persist_interval_seconds = 0.2
    settings.cart_persist_delay_ms = 300
    settings.sweeper_interval_seconds = 3600
    process = WorkerProcess(settings, concurrency=4)
    task = asyncio.create_task(process.run())
    await asyncio.sleep(0.5)
    yield process
    process.stop.set()
    await asyncio.wait_for(task, timeout=30)


async def test_a_real_worker_converges_and_coalesces(
    client: httpx.AsyncClient, services: Services, running_worker: WorkerProcess
) -> None:
    user = await register(client)
    uid = user_id(user)
    books = [await create_book(services, stock=30) for _ in range(4)]
    seen: list[int] = []

    async def watch() -> None:
        while True:
            state = await pg_state(services, uid)
            if state is not None and (not seen or seen[-1] != state[0]):
                seen.append(state[0])
            await asyncio.sleep(0.02)

    watcher = asyncio.create_task(watch())
    try:
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
    finally:
        watcher.cancel()
    assert (await pg_state(services, uid))[0] == 11  # type: ignore[index]
    assert seen == sorted(seen)  # never went back
    assert len(seen) < 11  # eleven changes, far fewer writes
    assert await dirty(services) == {}
