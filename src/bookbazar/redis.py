"""Redis client factory and the request dependency."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from redis.asyncio import BlockingConnectionPool, Redis


def create_redis(url: str, *, max_connections: int = 128) -> Redis:
    """A pooled client. The pool waits for a free connection under bursts instead of
    failing; socket_timeout=None because bullmq's blocking reads must not be cut short."""
    pool = BlockingConnectionPool.from_url(
        url,
        decode_responses=True,
        socket_timeout=None,
        socket_connect_timeout=5,
        health_check_interval=30,
        max_connections=max_connections,
        timeout=10,
    )
    return Redis.from_pool(pool)  # the client owns the pool: aclose() closes both


async def _request_redis(request: Request) -> Redis:
    redis: Redis = request.app.state.redis
    return redis


RedisDep = Annotated[Redis, Depends(_request_redis)]
