"""The long-lived clients a process needs, built once at start-up and closed at exit."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any

import aiohttp
from fastapi import Depends, Request
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bookbazar.catalog.cache import BookCache
from bookbazar.catalog.pages import CatalogPages
from bookbazar.config import Settings
from bookbazar.db import create_engine, create_sessionmaker
from bookbazar.inventory.service import Inventory
from bookbazar.kit.queues import Queues, queue_prefix
from bookbazar.lua import Scripts
from bookbazar.pg import Pg
from bookbazar.realtime.emitter import Emitter
from bookbazar.redis import create_redis


class HttpClient:
    """The process's one client for outbound HTTP (connections kept alive): an aiohttp
    session, opened on first use (it must be made inside the running loop). aiohttp
    costs about a fifth of the CPU per request of httpx, which matters for the sandbox's
    webhook deliveries (one per purchase)."""

    def __init__(self, *, timeout_seconds: float = 10.0, max_connections: int = 64) -> None:
        self._timeout = aiohttp.ClientTimeout(total=timeout_seconds)
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None

    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=self._timeout,
                connector=aiohttp.TCPConnector(limit=self._max_connections),
            )
        return self._session

    async def post(self, url: str, *, content: bytes, headers: dict[str, str]) -> int:
        """POST `content`; the response's status code (its body is read and dropped)."""
        async with self.session().post(url, data=content, headers=headers) as response:
            await response.read()
            return response.status

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


@dataclass
class Services:
    settings: Settings
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    # A separate small pool for stock reconciliation, which request code may need while
    # its own session holds a connection: sharing one pool could deadlock under load.
    maintenance_engine: AsyncEngine
    # The order flow's statements, written as SQL on a plain asyncpg pool (bookbazar/pg.py).
    pg: Pg
    redis: Redis
    scripts: Scripts
    inventory: Inventory
    queues: Queues
    emitter: Emitter
    books: BookCache
    catalog: CatalogPages
    # One HTTP client per process for every outbound call (connections kept alive).
    http: HttpClient
    # Other long-lived clients built on first use (payment providers), closed at exit.
    clients: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def create(cls, settings: Settings, *, pool_size: int = 10) -> Services:
        database_url, redis_url = settings.require_urls()
        engine = create_engine(database_url, pool_size=pool_size)
        sessionmaker = create_sessionmaker(engine)
        # Rarely used (so its connections are likely stale after a restart): pre-pinged.
        maintenance_engine = create_engine(database_url, pool_size=2, max_overflow=2, pre_ping=True)
        redis = create_redis(
            redis_url, socket_timeout=settings.redis_timeout_seconds, cluster=settings.redis_cluster
        )
        scripts = Scripts(redis)
        pg = Pg(database_url, max_size=pool_size)
        return cls(
            settings=settings,
            engine=engine,
            sessionmaker=sessionmaker,
            maintenance_engine=maintenance_engine,
            pg=pg,
            redis=redis,
            scripts=scripts,
            inventory=Inventory(
                redis,
                scripts,
                create_sessionmaker(maintenance_engine),
                orphan_grace_seconds=settings.pending_grace_seconds,
            ),
            queues=Queues(redis, queue_prefix(settings.redis_cluster)),
            emitter=Emitter(redis),
            books=BookCache(sessionmaker),
            catalog=CatalogPages(pg),
            http=HttpClient(),
        )

    async def close(self) -> None:
        for client in self.clients.values():
            await client.aclose()
        await self.http.aclose()
        await self.redis.aclose()
        await self.pg.close()
        await self.engine.dispose()
        await self.maintenance_engine.dispose()


async def _request_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(_request_services)]
