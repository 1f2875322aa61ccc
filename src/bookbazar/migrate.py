"""Apply Alembic migrations programmatically (no alembic.ini or relative paths needed)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from importlib.resources import files

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext

from bookbazar.db import create_engine


def alembic_config(database_url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(files("bookbazar") / "migrations"))
    # ConfigParser interpolation: a literal % in the URL must be doubled.
    cfg.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return cfg


def _in_thread(fn: Callable[[], None]) -> None:
    # env.py runs its own event loop (asyncio.run); a fresh thread keeps that legal even
    # when the caller is itself inside a running loop.
    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(fn).result()


def upgrade(database_url: str, revision: str = "head") -> None:
    _in_thread(lambda: command.upgrade(alembic_config(database_url), revision))


def downgrade(database_url: str, revision: str = "base") -> None:
    _in_thread(lambda: command.downgrade(alembic_config(database_url), revision))


def current(database_url: str) -> str | None:
    """The revision the database is at (None when never migrated)."""
    out: list[str | None] = []

    async def fetch() -> None:
        engine = create_engine(database_url, pool_size=1)
        try:
            async with engine.connect() as conn:
                revision = await conn.run_sync(
                    lambda c: MigrationContext.configure(c).get_current_revision()
                )
                out.append(revision)
        finally:
            await engine.dispose()

    _in_thread(lambda: asyncio.run(fetch()))
    return out[0]
