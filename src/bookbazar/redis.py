"""Redis client factory and the request dependency."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from redis.asyncio import BlockingConnectionPool, Redis


def create_redis(url: str, *, socket_timeout: float = 2.0, max_connections: int = 128) -> Redis:
    """A pooled client for requests, scripts and enqueueing (never for blocking reads:
    bullmq's workers open their own connections without a timeout). A stalled Redis
    fails a call within `socket_timeout` seconds (503) instead of hanging it. Under a
    burst the pool waits for a free connection (up to 10 s) instead of failing at once."""
    pool = BlockingConnectionPool.from_url(
        url,
        decode_responses=True,
        socket_timeout=socket_timeout,
        socket_connect_timeout=socket_timeout,
        health_check_interval=30,
        max_connections=max_connections,
        timeout=10,
    )
    return Redis.from_pool(pool)  # the client owns the pool: aclose() closes both


async def _request_redis(request: Request) -> Redis:
    redis: Redis = request.app.state.redis
    return redis


RedisDep = Annotated[Redis, Depends(_request_redis)]
