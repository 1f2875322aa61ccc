"""The long-lived clients a process needs, built once at start-up and closed at exit."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bookbazar.config import Settings
from bookbazar.db import create_engine, create_sessionmaker
from bookbazar.inventory.service import Inventory
from bookbazar.kit.queues import Queues
from bookbazar.lua import Scripts
from bookbazar.realtime.emitter import EmitFn, Emitter
from bookbazar.redis import create_redis


@dataclass
class Services:
    settings: Settings
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    redis: Redis
    scripts: Scripts
    inventory: Inventory
    queues: Queues
    emitter: Emitter

    @classmethod
    def create(cls, settings: Settings, emit: EmitFn, *, pool_size: int = 10) -> Services:
        database_url, redis_url = settings.require_urls()
        engine = create_engine(database_url, pool_size=pool_size)
        sessionmaker = create_sessionmaker(engine)
        redis = create_redis(redis_url)
        scripts = Scripts(redis)
        return cls(
            settings=settings,
            engine=engine,
            sessionmaker=sessionmaker,
            redis=redis,
            scripts=scripts,
            inventory=Inventory(redis, scripts, sessionmaker),
            queues=Queues(redis),
            emitter=Emitter(redis, emit),
        )

    async def close(self) -> None:
        await self.redis.aclose()
        await self.engine.dispose()


def _request_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(_request_services)]
