"""A plain asyncpg pool for the order flow's statements.

The order flow (placement, payments, settlement, expiry, the outbox relay, fulfilment,
e-mails) runs a handful of hand-written statements many times a second. Through the
SQLAlchemy ORM each one cost 1 to 2 ms of CPU; the same statement on an asyncpg connection
costs about 0.1 ms. So those statements are written as SQL, run on this pool, and the
rest of the product (catalog, accounts, admin, migrations) keeps SQLAlchemy.

- Rows are `Row`s: asyncpg records that also read as attributes (`row.status`).
- `json`/`jsonb` values go in and come out as Python objects.
- Connections go back to the pool without asyncpg's reset query (a round trip on every
  release): nothing here changes session state, and an open transaction is still rolled
  back before a connection is reused.
- The pool connects on first use, so building it needs no running loop.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

import asyncpg

# What a lost or unreachable server raises from asyncpg (the app answers 503 for these).
UNAVAILABLE: tuple[type[Exception], ...] = (
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    ConnectionError,
    OSError,
    TimeoutError,
)


class Row(asyncpg.Record):  # type: ignore[misc]
    """A record whose columns also read as attributes."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


def dsn(url: str) -> str:
    """A SQLAlchemy-style URL (postgresql+asyncpg://…) as a libpq DSN asyncpg accepts."""
    parts = urlsplit(url)
    scheme = parts.scheme.split("+", 1)[0]
    if scheme == "postgres":
        scheme = "postgresql"
    return urlunsplit((scheme, *parts[1:]))


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), default=str)


async def _init(conn: asyncpg.Connection) -> None:
    for name in ("json", "jsonb"):
        await conn.set_type_codec(name, encoder=_dumps, decoder=json.loads, schema="pg_catalog")


async def _keep_session(_: asyncpg.Connection) -> None:
    """The pool's reset hook: nothing to reset (see the module's docstring)."""


class Executor(Protocol):
    """What runs a statement: a connection (in a transaction or not) or the pool itself
    (each statement on its own). Rows read as attributes (`Row`)."""

    async def fetch(self, query: str, *args: Any) -> list[Any]: ...

    async def fetchrow(self, query: str, *args: Any) -> Any: ...

    async def fetchval(self, query: str, *args: Any) -> Any: ...

    async def execute(self, query: str, *args: Any) -> str: ...


class Pg:
    def __init__(self, url: str, *, max_size: int = 10, command_timeout: float = 30.0) -> None:
        self._dsn = dsn(url)
        self._max_size = max_size
        self._command_timeout = command_timeout
        self._pool: Any = None
        self._lock = asyncio.Lock()

    async def pool(self) -> Any:
        pool = self._pool
        if pool is not None:
            return pool
        async with self._lock:
            if self._pool is None:
                self._pool = await asyncpg.create_pool(
                    self._dsn,
                    min_size=0,
                    max_size=self._max_size,
                    max_inactive_connection_lifetime=300.0,
                    command_timeout=self._command_timeout,
                    init=_init,
                    reset=_keep_session,
                    record_class=Row,
                )
            return self._pool

    @asynccontextmanager
    async def connect(self) -> AsyncIterator[Executor]:
        """A connection; each statement commits on its own."""
        pool = await self.pool()
        async with pool.acquire() as conn:
            yield conn

    @asynccontextmanager
    async def tx(self) -> AsyncIterator[Executor]:
        """A connection in a transaction: committed when the block ends, rolled back if
        it raises."""
        pool = await self.pool()
        async with pool.acquire() as conn, conn.transaction():
            yield conn

    async def fetch(self, query: str, *args: Any) -> list[Any]:
        pool = await self.pool()
        rows: list[Any] = await pool.fetch(query, *args)
        return rows

    async def fetchrow(self, query: str, *args: Any) -> Any:
        pool = await self.pool()
        return await pool.fetchrow(query, *args)

    async def fetchval(self, query: str, *args: Any) -> Any:
        pool = await self.pool()
        return await pool.fetchval(query, *args)

    async def execute(self, query: str, *args: Any) -> str:
        pool = await self.pool()
        status: str = await pool.execute(query, *args)
        return status

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None
