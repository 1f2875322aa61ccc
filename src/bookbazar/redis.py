"""Redis client factory and the request dependency."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from redis.asyncio import Redis


def create_redis(url: str, *, max_connections: int = 64) -> Redis:
    # socket_timeout=None: bullmq's blocking reads must not be cut by a client timeout.
    return Redis.from_url(
        url,
        decode_responses=True,
        socket_timeout=None,
        socket_connect_timeout=5,
        health_check_interval=30,
        max_connections=max_connections,
    )


def _request_redis(request: Request) -> Redis:
    redis: Redis = request.app.state.redis
    return redis


RedisDep = Annotated[Redis, Depends(_request_redis)]
